"""HTML pieces shared by the pages. Every string that came with a submission goes through `esc`;
figure JSON goes through `script_json`, which cannot close its <script> element."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from string import Template
from typing import Any

from benchmark.reporting.report import script_json

TEMPLATES = Path(__file__).parent / "templates"


def esc(x: Any) -> str:
    return escape(str(x), quote=True)


def fmt(x: Any) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, float):
        return f"{x:.3f}"
    return esc(x)


def is_metric(x: Any) -> bool:
    return isinstance(x, dict) and "value" in x and "ci" in x


def metric_cell(m: dict[str, Any] | None, *, tag: str = "td") -> str:
    """`value [lo, hi]` with the value as the sort key."""
    if not is_metric(m):
        return f"<{tag} class=num data-sort=''>n/a</{tag}>"
    value = m.get("value")
    ci = m.get("ci") if isinstance(m.get("ci"), list) and len(m["ci"]) == 2 else [None, None]
    key = "" if not isinstance(value, int | float) else repr(float(value))
    return (f"<{tag} class=num data-sort='{esc(key)}'>{fmt(value)} "
            f"<span class=ci>[{fmt(ci[0])}, {fmt(ci[1])}]</span></{tag}>")


def cell(x: Any) -> str:
    if is_metric(x):
        return metric_cell(x)
    if isinstance(x, int | float) and not isinstance(x, bool):
        return f"<td class=num data-sort='{esc(repr(float(x)))}'>{fmt(x)}</td>"
    if isinstance(x, dict | list):
        return f"<td><code>{esc(json.dumps(x, default=str)[:400])}</code></td>"
    return f"<td data-sort='{esc(x)}'>{fmt(x)}</td>"


def rows_table(rows: list[dict[str, Any]], *, sortable: bool = False) -> str:
    cols: list[str] = []
    for r in rows:
        cols += [str(c) for c in r if str(c) not in cols]
    head = "".join(header(c, sortable=sortable) for c in cols)
    body = "".join("<tr>" + "".join(cell(r.get(c)) for c in cols) + "</tr>" for r in rows)
    cls = " class=sortable" if sortable else ""
    return f"<div class=scroll><table{cls}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def header(label: str, *, sortable: bool = False, kind: str = "num") -> str:
    if not sortable:
        return f"<th>{esc(label)}</th>"
    return f"<th data-type='{kind}'><button type=button>{esc(label)}</button></th>"


def matrix_table(classes: list[Any], matrix: list[list[Any]], *, corner: str = "true \\ predicted") -> str:
    head = f"<th>{esc(corner)}</th>" + "".join(f"<th>{esc(c)}</th>" for c in classes)
    body = "".join(f"<tr><th>{esc(classes[i]) if i < len(classes) else ''}</th>"
                   + "".join(f"<td class=num>{fmt(v)}</td>" for v in row) + "</tr>"
                   for i, row in enumerate(matrix))
    return f"<table class=matrix><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def any_table(name: str, table: Any) -> str:
    """A suite table in whatever shape it came: row dicts, a labelled matrix, a mapping, or JSON."""
    title = f"<h4>{esc(name)}</h4>"
    if isinstance(table, list) and table and all(isinstance(r, dict) for r in table):
        return title + rows_table(table)
    if isinstance(table, dict):
        matrix = next((v for k, v in table.items() if k != "classes" and isinstance(v, list)
                       and v and all(isinstance(r, list) for r in v)), None)
        if isinstance(table.get("classes"), list) and matrix is not None:
            return title + matrix_table(table["classes"], matrix)
        return title + rows_table([{"key": k, "value": v} for k, v in table.items()])
    return title + f"<pre>{esc(json.dumps(table, default=str, indent=1)[:4000])}</pre>"


@dataclass
class Figures:
    """The plotly figures of one page: each gets a div now and is drawn by leaderboard.js on load."""

    items: list[dict[str, Any]] = field(default_factory=list)

    def add(self, fig: Any, *, caption: str = "") -> str:
        if not isinstance(fig, dict):
            return ""
        from benchmark.reporting.figure_filter import safe_figure  # no URL from a result file reaches the page

        div = f"fig-{len(self.items)}"
        fig = safe_figure(fig)
        self.items.append({"div": div, "data": fig["data"], "layout": fig["layout"]})  # script_json cleans
        cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
        return f"<figure><div class=plot id='{div}'></div>{cap}</figure>"

    def script(self) -> str:
        if not self.items:
            return ""
        return f"<script type='application/json' id='cxr-figures'>{script_json(self.items)}</script>"


def render(template: str, **values: str) -> str:
    """Fill a template from leaderboard/templates; every value is already HTML."""
    return Template((TEMPLATES / template).read_text(encoding="utf-8")).substitute(values)


def page(*, title: str, content: str, root: str, figures: Figures | None = None, built: str) -> str:
    from benchmark import METRIC_CODE_VERSION, __version__

    plotly = f"<script src='{root}assets/plotly.min.js'></script>" if figures and figures.items else ""
    return render("base.html", title=esc(title), root=root, head=plotly, content=content,
                  figures=figures.script() if figures else "", version=esc(__version__),
                  metric_code=esc(METRIC_CODE_VERSION), built=esc(built))
