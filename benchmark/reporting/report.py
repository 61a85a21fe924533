"""report.html: one file that opens offline, read from the top down.

First the verdict panel (benchmark.reporting.verdict: the default deploy policy check by check, the shortcut
verdict, headline numbers with CIs, warnings), then the figures a reader would rather look at than
read, in a grid, then every suite's full tables and remaining figures, collapsed. plotly.js is inlined
(about 4.6 MB), or, with `shared_plotly`, written once beside the run folders and referenced (the
report is then about a tenth of the size and opens offline as long as it stays in its folder).
Every string that came from a result file is escaped; figure JSON cannot close its <script>.
"""
from __future__ import annotations

import json
import re
from html import escape
from pathlib import Path
from typing import Any

from benchmark.reporting.report_panel import PANEL_CSS, verdict_panel
from benchmark.core.files import atomic_write_text
from benchmark.core.jsonsafe import json_safe

PLOTLY_FILE = "plotly.min.js"
# The figures of the grid, in reading order: (suite, figure).
GRID = (("subtype", "confusion_matrix"), ("calibration", "reliability_diagram"), ("cross_site", "per_group_metrics"),
        ("shortcut", "retention"), ("shortcut", "view_examples"), ("robustness", "degradation_macro_f1"))


def _fmt(x: Any) -> str:
    return "n/a" if x is None else f"{x:.3f}" if isinstance(x, float) else escape(str(x))


def metric_cell(m: dict[str, Any]) -> str:
    lo, hi = (m.get("ci") or [None, None])
    return f"{_fmt(m.get('value'))} <span class=ci>[{_fmt(lo)}, {_fmt(hi)}]</span>"


def script_json(obj: Any) -> str:
    """JSON that is safe inside a <script> element (no early `</script>`, no HTML comment)."""
    return (json.dumps(json_safe(obj), allow_nan=False).replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("&", "\\u0026"))


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    cols = list(dict.fromkeys(c for r in rows for c in r))
    head = "".join(f"<th>{escape(str(c))}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(
            f"<td>{metric_cell(r[c]) if isinstance(r.get(c), dict) and 'value' in r[c] else _fmt(r.get(c))}</td>"
            for c in cols) + "</tr>"
        for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _matrix(table: dict[str, Any]) -> str:
    """A labelled matrix such as the confusion matrix: {"classes": [...], "<rows>": [[...], ...]}."""
    classes = table.get("classes") if isinstance(table.get("classes"), list) else []
    matrix = next((v for k, v in table.items() if k != "classes" and isinstance(v, list) and v
                   and all(isinstance(r, list) for r in v)), None)
    if matrix is None:
        return f"<pre>{escape(json.dumps(table, default=str)[:4000])}</pre>"
    head = "<th>true \\ predicted</th>" + "".join(f"<th>{escape(str(c))}</th>" for c in classes)
    body = "".join(f"<tr><th>{escape(str(classes[i])) if i < len(classes) else ''}</th>"
                   + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>" for i, row in enumerate(matrix))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def _images(fig: dict[str, Any]) -> str:
    """A figure of type "images": {"title", "images": [{"caption", "png_base64"}]}, as a grid of
    inline PNGs; anything that is not plain base64 is left out rather than written into the page."""
    cells = "".join(
        f"<figure><img alt='{escape(str(im.get('caption', '')))}' src='data:image/png;base64,{im['png_base64']}'>"
        f"<figcaption>{escape(str(im.get('caption', '')))}</figcaption></figure>"
        for im in fig.get("images", []) if isinstance(im, dict) and isinstance(im.get("png_base64"), str)
        and _BASE64.fullmatch(im["png_base64"]))
    return f"<p>{escape(str(fig.get('title', '')))}</p><div class=gallery>{cells}</div>"


class _Figures:
    """Plotly figures of the page, drawn by the page script: the grid's at load, a collapsed section's
    when it is opened (plotly cannot size a plot inside a closed <details>)."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}

    def add(self, fig: Any, *, in_grid: bool = False) -> str:
        if not isinstance(fig, dict):
            return ""
        if fig.get("type") == "images":
            return _images(fig)
        from benchmark.reporting.figure_filter import safe_figure

        fig = safe_figure(fig)  # allow-listed parts only: no URL from a result file reaches the page
        div = f"fig-{len(self.items)}"
        layout = dict(fig["layout"])
        if in_grid:  # the cell decides the width
            layout.pop("width", None)
            height = layout.get("height")
            if not (isinstance(height, int | float) and not isinstance(height, bool) and height >= 100):
                height = 380
            layout.update(autosize=True, height=min(height, 380),
                          margin={"l": 90, "r": 20, "t": 50, "b": 60})
        data = fig["data"]
        self.items[div] = {"data": data, "layout": layout, "grid": in_grid}
        return f"<div class=fig id='{div}'></div>"

    def script(self) -> str:
        return (f"<script type='application/json' id='cxr-figures'>{script_json(self.items)}</script>"
                f"<script>{DRAW_JS}</script>")


DRAW_JS = """(function(){var figs=JSON.parse(document.getElementById('cxr-figures').textContent);
function draw(el){var f=figs[el.id];if(!f||el.dataset.drawn)return;el.dataset.drawn='1';
if(typeof Plotly==='undefined'){el.textContent='plotly.js did not load (a report made with the shared asset needs '+
'plotly.min.js in the folder above the run folder); the numbers are in the tables.';return;}
Plotly.newPlot(el,f.data,f.layout,{displaylogo:false,responsive:true,displayModeBar:f.grid?false:'hover'});}
document.querySelectorAll('#figures .fig').forEach(draw);
document.querySelectorAll('details').forEach(function(d){d.addEventListener('toggle',function(){
if(d.open)d.querySelectorAll('.fig').forEach(draw);});});
document.body.dataset.plots='done';})();"""


def _grid(result: dict[str, Any], figures: _Figures) -> str:
    cells = []
    for suite, name in GRID:
        fig = result["suites"].get(suite, {}).get("figures", {}).get(name)
        if isinstance(fig, dict):
            cells.append(f"<figure class=cell><figcaption>{escape(suite)}: {escape(name)}"
                         f"</figcaption>{figures.add(fig, in_grid=True)}</figure>")
    if not cells:
        return ""
    return f"<section id=figures><h2>Figures</h2><div class=grid>{''.join(cells)}</div></section>"


def _suite_details(name: str, body: dict[str, Any], figures: _Figures) -> str:
    metrics = body.get("metrics", {})
    tables = body.get("tables", {}) if isinstance(body.get("tables"), dict) else {}
    from benchmark.core.metric_spec import better  # direction from the metric's spec, never from its name

    parts = [_table([{"metric": k, "better": better(name, k, body), "value [95% CI]": v} for k, v in metrics.items()])]
    parts += [f"<p class=note>{escape(str(n))}</p>" for n in body.get("notes", []) or []]
    for tname, table in tables.items():
        if isinstance(table, list) and table and all(isinstance(r, dict) for r in table):
            parts.append(f"<h3>{escape(tname)}</h3>{_table(table)}")
        elif isinstance(table, dict):
            parts.append(f"<h3>{escape(tname)}</h3>{_matrix(table)}")
    shown = {n for s, n in GRID if s == name}
    for fname, fig in (body.get("figures", {}) or {}).items():
        if fname not in shown:
            parts.append(f"<h3>{escape(fname)}</h3>{figures.add(fig)}")
    summary = f"{escape(name)}: {len(metrics)} metrics, {len(tables)} tables"
    return f"<details id='suite-{escape(name)}'><summary>{summary}</summary>{''.join(parts)}</details>"


CSS = """body{font-family:system-ui,sans-serif;margin:1.5em 2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3}.ci{color:#666;font-size:.9em}.note{color:#444;font-style:italic}td.num{text-align:right}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}dt{font-weight:600}dd{margin:0;word-break:break-all}
.gallery{display:flex;flex-wrap:wrap;gap:.4em}.gallery figure{margin:0;text-align:center;font-size:.8em}
.gallery img{image-rendering:pixelated;width:96px;border:1px solid #ccc}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:1em}
figure.cell{margin:0;border:1px solid #e1e4e8;border-radius:6px;padding:.4em;overflow:hidden}
figure.cell>figcaption{font-weight:600;color:#444;font-size:.9em}.fig{min-height:300px}
details{margin:.4em 0;border:1px solid #e1e4e8;border-radius:6px;padding:.3em .8em}
details>summary{cursor:pointer;font-weight:600;color:#0969da}""" + "\n" + PANEL_CSS


def render_report(result: dict[str, Any], predictions: Any = None, *, plotly_src: str | None = None) -> str:
    """The page; plotly.js inlined, or loaded from `plotly_src` (a relative URL) when given."""
    from benchmark.core.errors import CxrbenchError
    from benchmark.reporting.verdict import build_verdict

    model, dataset, prov = result["model"], result["dataset"], result["provenance"]
    counts = dataset.get("counts", {}) if isinstance(dataset.get("counts"), dict) else {}
    title = f"cxrbench: {model.get('name')} on {dataset.get('name')}"
    bs = prov.get("bootstrap") if isinstance(prov.get("bootstrap"), dict) else {}
    subtitle = (f"{counts.get('images')} images, {counts.get('patients')} patients; 95% CIs from a "
                f"{bs.get('method')} bootstrap over {bs.get('unit')}s (B = {bs.get('n_resamples')}); "
                f"{prov.get('started_at')}")
    try:
        panel = verdict_panel(build_verdict(result, predictions), title=title, subtitle=subtitle)
    except CxrbenchError as exc:  # the report still shows the numbers
        panel = (f"<header id=verdict class=verdict><h1>{escape(title)}</h1>"
                 f"<p class=overall>No verdict: {escape(str(exc))}</p></header>")
    figures = _Figures()
    grid = _grid(result, figures)
    details = "".join(_suite_details(n, b, figures) for n, b in result["suites"].items() if isinstance(b, dict))
    facts = {
        "model": model.get("name"), "weights sha256": model.get("sha256"), "dataset": dataset.get("name"),
        "manifest sha256": dataset.get("manifest_sha256"), "images": counts.get("images"),
        "patients": counts.get("patients"), "cxrbench": prov.get("version"),
        "metric code version": prov.get("metric_code_version"), "seed": prov.get("seed"),
        "bootstrap": json.dumps(prov.get("bootstrap")), "device": prov.get("device"), "started": prov.get("started_at"),
    }
    dl = "".join(f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in facts.items())
    plotly = (f"<script>{_plotly_js()}</script>" if plotly_src is None
              else f"<script src='{escape(plotly_src, quote=True)}'></script>")
    return (f"<!doctype html><html><head><meta charset=utf-8><title>{escape(title)}</title><style>{CSS}</style>"
            f"{plotly}</head><body>{panel}{grid}<section id=tables><h2>Full results</h2>{details}"
            f"<details id=provenance><summary>provenance</summary><dl>{dl}</dl></details></section>"
            f"{figures.script()}</body></html>")


def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def write_shared_plotly(folder: Path) -> Path:
    """plotly.js once for a folder of run folders (rewritten only when the installed version differs)."""
    path = Path(folder) / PLOTLY_FILE
    js = _plotly_js()
    if not path.is_file() or path.stat().st_size != len(js.encode("utf-8")):
        atomic_write_text(path, js)
    return path


def write_report(run_dir: Path, result: dict[str, Any], *, shared_plotly: bool = False) -> Path:
    """report.html in the run folder; with `shared_plotly`, plotly.js goes to the folder above, once."""
    predictions = None
    pred_path = Path(run_dir) / "predictions.parquet"
    if pred_path.is_file():  # for the constant-output warning; the report does without it
        import pandas as pd

        try:
            predictions = pd.read_parquet(pred_path)
        except Exception:  # noqa: BLE001 - pyarrow raises many types; the warning then reads the result
            predictions = None
    src = None
    if shared_plotly:
        write_shared_plotly(Path(run_dir).parent)
        src = f"../{PLOTLY_FILE}"
    path = Path(run_dir) / "report.html"
    atomic_write_text(path, render_report(result, predictions, plotly_src=src))
    return path
