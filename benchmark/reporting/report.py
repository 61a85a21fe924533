"""report.html: one file that opens offline, read from the top down.

First the verdict panel (benchmark.reporting.verdict: the default deploy policy check by check, the shortcut
verdict, headline numbers with CIs, warnings), then the figures a reader would rather look at than
read, in a grid, then every suite's full tables and remaining figures, collapsed. plotly.js is inlined
(about 4.6 MB), or, with `shared_plotly`, written once beside the run folders and referenced (the
report is then about a tenth of the size and opens offline as long as it stays in its folder).
The page is templates/report.html (Jinja2, autoescaped: benchmark.reporting.templating), so every
string that came from a result file is escaped; figure JSON cannot close its <script>.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from markupsafe import Markup

from benchmark.core.files import atomic_write_text
from benchmark.reporting.report_panel import PANEL_CSS
from benchmark.reporting.templating import script_json, table_view

PLOTLY_FILE = "plotly.min.js"
# The figures of the grid, in reading order: (suite, figure).
GRID = (("subtype", "confusion_matrix"), ("calibration", "reliability_diagram"), ("cross_site", "per_group_metrics"),
        ("shortcut", "retention"), ("shortcut", "view_examples"), ("robustness", "degradation_macro_f1"))

__all__ = ["render_report", "write_report", "write_shared_plotly", "script_json"]

_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def _images(fig: dict[str, Any]) -> dict[str, Any]:
    """A figure of type "images": {"title", "images": [{"caption", "png_base64"}]}; anything that is
    not plain base64 is left out rather than written into the page."""
    shown = [{"caption": str(im.get("caption", "")), "png_base64": im["png_base64"]}
             for im in fig.get("images", []) if isinstance(im, dict) and isinstance(im.get("png_base64"), str)
             and _BASE64.fullmatch(im["png_base64"])]
    return {"kind": "images", "title": str(fig.get("title", "")), "images": shown}


class _Figures:
    """Plotly figures of the page, drawn by the page script: the grid's at load, a collapsed section's
    when it is opened (plotly cannot size a plot inside a closed <details>)."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}

    def add(self, fig: Any, *, in_grid: bool = False) -> dict[str, Any] | None:
        """What the template shows for `fig`: a plot's div, a gallery, or nothing."""
        if not isinstance(fig, dict):
            return None
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
        self.items[div] = {"data": fig["data"], "layout": layout, "grid": in_grid}
        return {"kind": "plot", "div": div}


DRAW_JS = Markup("""(function(){var figs=JSON.parse(document.getElementById('cxr-figures').textContent);
function draw(el){var f=figs[el.id];if(!f||el.dataset.drawn)return;el.dataset.drawn='1';
if(typeof Plotly==='undefined'){el.textContent='plotly.js did not load (a report made with the shared asset needs '+
'plotly.min.js in the folder above the run folder); the numbers are in the tables.';return;}
Plotly.newPlot(el,f.data,f.layout,{displaylogo:false,responsive:true,displayModeBar:f.grid?false:'hover'});}
document.querySelectorAll('#figures .fig').forEach(draw);
document.querySelectorAll('details').forEach(function(d){d.addEventListener('toggle',function(){
if(d.open)d.querySelectorAll('.fig').forEach(draw);});});
document.body.dataset.plots='done';})();""")


def _grid(result: dict[str, Any], figures: _Figures) -> list[dict[str, Any]]:
    cells = []
    for suite, name in GRID:
        fig = result["suites"].get(suite, {}).get("figures", {}).get(name)
        if isinstance(fig, dict):
            cells.append({"caption": f"{suite}: {name}", "figure": figures.add(fig, in_grid=True)})
    return cells


def _suite(name: str, body: dict[str, Any], figures: _Figures) -> dict[str, Any]:
    from benchmark.core.metric_spec import better  # direction from the metric's spec, never from its name

    metrics = body.get("metrics", {})
    tables = body.get("tables", {}) if isinstance(body.get("tables"), dict) else {}
    shown = {n for s, n in GRID if s == name}
    return {
        "name": name, "summary": f"{name}: {len(metrics)} metrics, {len(tables)} tables",
        "metrics": [{"metric": k, "better": better(name, k, body), "value [95% CI]": v} for k, v in metrics.items()],
        "notes": [str(n) for n in body.get("notes", []) or []],
        "tables": [t for t in (table_view(k, v) for k, v in tables.items()) if t is not None],
        "figures": [(k, figures.add(f)) for k, f in (body.get("figures", {}) or {}).items() if k not in shown],
    }


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
    from benchmark.reporting.result_rules import ci_computed
    from benchmark.reporting.summary import POINT_ONLY
    from benchmark.reporting.templating import render
    from benchmark.reporting.verdict import build_verdict

    model, dataset, prov = result["model"], result["dataset"], result["provenance"]
    counts = dataset.get("counts", {}) if isinstance(dataset.get("counts"), dict) else {}
    title = f"cxrbench: {model.get('name')} on {dataset.get('name')}"
    bs = prov.get("bootstrap") if isinstance(prov.get("bootstrap"), dict) else {}
    how = (POINT_ONLY if not ci_computed(result) else
           f"95% CIs from a {bs.get('method')} bootstrap over {bs.get('unit')}s (B = {bs.get('n_resamples')})")
    subtitle = f"{counts.get('images')} images, {counts.get('patients')} patients; {how}; {prov.get('started_at')}"
    verdict, problem = None, ""
    try:
        verdict = build_verdict(result, predictions)
    except CxrbenchError as exc:  # the report still shows the numbers
        problem = str(exc)
    figures = _Figures()
    grid = _grid(result, figures)
    suites = [_suite(n, b, figures) for n, b in result["suites"].items() if isinstance(b, dict)]
    facts = {
        "model": model.get("name"), "weights sha256": model.get("sha256"), "dataset": dataset.get("name"),
        "manifest sha256": dataset.get("manifest_sha256"), "images": counts.get("images"),
        "patients": counts.get("patients"), "cxrbench": prov.get("version"),
        "metric code version": prov.get("metric_code_version"), "seed": prov.get("seed"),
        "bootstrap": json.dumps(prov.get("bootstrap")), "device": prov.get("device"), "started": prov.get("started_at"),
    }
    return str(render("report.html", title=title, subtitle=subtitle, verdict=verdict, no_verdict=problem,
                      css=Markup(CSS), plotly_src=plotly_src,
                      plotly_js=Markup(_plotly_js()) if plotly_src is None else "",
                      grid=grid, suites=suites, facts=[(k, str(v)) for k, v in facts.items()],
                      figures=figures.items, draw_js=DRAW_JS))


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
