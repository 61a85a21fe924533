"""A single-file HTML report that opens offline: plotly.js is inlined, every string is escaped."""
from __future__ import annotations

import json
import re
from html import escape
from pathlib import Path
from typing import Any

from benchmark.results import atomic_write_text, json_safe


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
    cols = list(rows[0])
    head = "".join(f"<th>{escape(str(c))}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(
            f"<td>{metric_cell(r[c]) if isinstance(r.get(c), dict) and 'value' in r[c] else _fmt(r.get(c))}</td>"
            for c in cols) + "</tr>"
        for r in rows)
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


def _suite_section(name: str, body: dict[str, Any], figures: list[tuple[str, dict]]) -> str:
    metrics = body.get("metrics", {})
    rows = [{"metric": k, "value [95% CI]": v} for k, v in metrics.items()]
    parts = [f"<section id='suite-{escape(name)}'><h2>{escape(name)}</h2>", _table(rows)]
    for note in body.get("notes", []):
        parts.append(f"<p class=note>{escape(str(note))}</p>")
    for tname, table in body.get("tables", {}).items():
        if isinstance(table, list) and table and isinstance(table[0], dict):
            parts.append(f"<h3>{escape(tname)}</h3>{_table(table)}")
    for fname, fig in body.get("figures", {}).items():
        if isinstance(fig, dict) and fig.get("type") == "images":
            parts.append(f"<h3>{escape(fname)}</h3>{_images(fig)}")
            continue
        div = f"fig-{len(figures)}"
        figures.append((div, fig))
        parts.append(f"<h3>{escape(fname)}</h3><div class=fig id='{div}'></div>")
    parts.append("</section>")
    return "".join(parts)


CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3}.ci{color:#666;font-size:.9em}.note{color:#444;font-style:italic}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}dt{font-weight:600}
.gallery{display:flex;flex-wrap:wrap;gap:.4em}.gallery figure{margin:0;text-align:center;font-size:.8em}
.gallery img{image-rendering:pixelated;width:112px;border:1px solid #ccc}"""


def render_report(result: dict[str, Any]) -> str:
    from plotly.offline import get_plotlyjs

    model, dataset, prov = result["model"], result["dataset"], result["provenance"]
    figures: list[tuple[str, dict]] = []
    sections = "".join(_suite_section(n, b, figures) for n, b in result["suites"].items())
    facts = {
        "model": model.get("name"), "weights sha256": model.get("sha256"), "dataset": dataset.get("name"),
        "manifest sha256": dataset.get("manifest_sha256"), "images": dataset.get("counts", {}).get("images"),
        "patients": dataset.get("counts", {}).get("patients"), "cxrbench": prov.get("version"),
        "seed": prov.get("seed"), "bootstrap": json.dumps(prov.get("bootstrap")), "device": prov.get("device"),
        "started": prov.get("started_at"),
    }
    dl = "".join(f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in facts.items())
    bs = prov.get("bootstrap") if isinstance(prov.get("bootstrap"), dict) else {}
    if bs.get("ci_reliable") is False:  # benchmark.result_rules: too few resampling units
        dl += (f"<dt>CI warning</dt><dd class=unreliable>unreliable: the 95% CIs rest on {escape(str(bs.get('units')))} "
               f"{escape(str(bs.get('unit')))}s, fewer than {escape(str(bs.get('min_units')))}</dd>")
    plots = "".join(
        f"Plotly.newPlot({script_json(div)},{script_json(fig.get('data', []))},"
        f"{script_json(fig.get('layout', {}))},{{staticPlot:false,displaylogo:false}});"
        for div, fig in figures)
    title = escape(f"cxrbench: {model.get('name')} on {dataset.get('name')}")
    return (f"<!doctype html><html><head><meta charset=utf-8><title>{title}</title><style>{CSS}</style>"
            f"<script>{get_plotlyjs()}</script></head><body><h1>{title}</h1><dl>{dl}</dl>{sections}"
            f"<script>{plots}</script></body></html>")


def write_report(run_dir: Path, result: dict[str, Any]) -> Path:
    path = run_dir / "report.html"
    atomic_write_text(path, render_report(result))
    return path
