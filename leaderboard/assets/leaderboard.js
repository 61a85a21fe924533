// Sortable tables and plotly figures for the static leaderboard. No network: plotly.js sits in
// assets/ beside this file and figure data is inline JSON in the page.
(function () {
  "use strict";

  function sortKey(row, col, numeric) {
    var cell = row.children[col];
    var raw = cell ? (cell.getAttribute("data-sort") !== null ? cell.getAttribute("data-sort") : cell.textContent) : "";
    if (!numeric) return raw.trim().toLowerCase();
    var x = parseFloat(raw);
    return isNaN(x) ? null : x;
  }

  function sortTable(table, col, direction) {
    var th = table.tHead.rows[0].cells[col];
    var numeric = th.getAttribute("data-type") === "num";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var sign = direction === "ascending" ? 1 : -1;
    rows.sort(function (a, b) {
      var ka = sortKey(a, col, numeric), kb = sortKey(b, col, numeric);
      if (ka === kb) return 0;
      if (ka === null) return 1;   // missing values stay at the bottom either way
      if (kb === null) return -1;
      return (ka < kb ? -1 : 1) * sign;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (c) { c.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", direction);
  }

  function initSorting() {
    Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
        var button = th.querySelector("button");
        if (!button) return;
        button.addEventListener("click", function () {
          var current = th.getAttribute("aria-sort");
          var first = th.getAttribute("data-type") === "num" ? "descending" : "ascending";
          var next = current ? (current === "ascending" ? "descending" : "ascending") : first;
          sortTable(table, col, next);
        });
      });
    });
  }

  function initFigures() {
    var holder = document.getElementById("cxr-figures");
    if (!holder) { document.body.setAttribute("data-plots", "none"); return; }
    if (typeof Plotly === "undefined") {
      document.body.setAttribute("data-plots", "missing-plotly");
      return;
    }
    var figures = JSON.parse(holder.textContent);
    var done = figures.map(function (f) {
      return Plotly.newPlot(f.div, f.data, f.layout, {displaylogo: false, responsive: true});
    });
    Promise.all(done).then(function () {
      document.body.setAttribute("data-plots", "done");
    }, function (err) {
      document.body.setAttribute("data-plots", "error");
      throw err;
    });
  }

  function init() {
    initSorting();
    initFigures();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
