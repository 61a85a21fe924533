"""Plotly figures from result files, cut down to what draws a chart and nothing that can fetch.

A result file comes from a stranger, and a Plotly figure can make the browser fetch things: a layout
image (`layout.images[].source`), an `image` trace, a map's tiles or topojson, a template that carries
any of these. The report and the leaderboard promise a page that reaches no network, so every figure
from a result file passes `safe_figure` first: trace types, trace keys and layout keys from an
allow-list, fetching keys dropped at any depth, and any string that looks like a link (a URL, `url(`,
`href=`, `src=`) defused. One function for both pages, so they cannot drift apart.
"""
from __future__ import annotations

import math
import re
from typing import Any

TRACE_TYPES = frozenset({"scatter", "bar", "heatmap", "histogram", "box", "violin", "contour"})
TRACE_KEYS = frozenset({
    "type", "mode", "x", "y", "z", "name", "text", "hovertext", "hovertemplate", "hoverinfo", "texttemplate",
    "textposition", "textfont", "textangle", "marker", "line", "error_x", "error_y", "orientation", "showlegend",
    "legendgroup", "colorscale", "reversescale", "autocolorscale", "zmin", "zmax", "zmid", "zauto", "showscale",
    "colorbar", "xaxis", "yaxis", "opacity", "fill", "fillcolor", "customdata", "width", "offset", "base",
    "visible", "xgap", "ygap", "nbinsx", "nbinsy", "boxpoints", "connectgaps", "cliponaxis", "hoverongaps",
    "insidetextanchor", "offsetgroup", "alignmentgroup",
})
LAYOUT_KEYS = frozenset({
    "title", "xaxis", "yaxis", "height", "width", "autosize", "showlegend", "legend", "margin", "barmode",
    "bargap", "bargroupgap", "boxmode", "annotations", "shapes", "hovermode", "font", "coloraxis",
    "plot_bgcolor", "paper_bgcolor", "colorway", "grid",
})
_AXIS = re.compile(r"[xy]axis[2-9]")
# Keys that load something, wherever they appear inside an allowed subtree.
FETCHING_KEYS = frozenset({"images", "source", "template", "href", "url", "src", "link", "mapbox", "geo",
                           "topojson", "layers", "updatemenus", "sliders", "meta"})
_LINK = re.compile(
    r"""(?ix)
    [a-z][a-z0-9+.\-]*://[^\s'"<>()]*        # scheme://host/path
    | //[^\s/'"<>()][^\s'"<>()]*              # //host/path (scheme-relative)
    | url\s*\([^)]*\)?                      # CSS url(...)
    | \b(?:xlink:)?(?:href|src)\s*=\s*(?:'[^']*'|"[^"]*"|[^\s>]*)
    | @import | javascript: | \bdata:
    | <\s*/?\s*(?:a|img|image|link|iframe|object|embed|svg|style|script)\b[^>]*>?
    """)
MAX_DEPTH = 12  # a figure nested deeper than this is not a chart


def safe_figure(fig: Any) -> dict[str, Any]:
    """{"data": [...], "layout": {...}} holding only allow-listed, non-fetching parts of `fig`."""
    if not isinstance(fig, dict):
        return {"data": [], "layout": {}}
    data = fig.get("data") if isinstance(fig.get("data"), list) else []
    layout = fig.get("layout") if isinstance(fig.get("layout"), dict) else {}
    traces = []
    for trace in data:
        if not isinstance(trace, dict) or trace.get("type", "scatter") not in TRACE_TYPES:
            continue
        traces.append({k: _clean(v, 1) for k, v in trace.items() if k in TRACE_KEYS})
    kept = {k: _clean(v, 1) for k, v in layout.items() if k in LAYOUT_KEYS or _AXIS.fullmatch(str(k))}
    return {"data": traces, "layout": kept}


def _clean(value: Any, depth: int) -> Any:
    if depth > MAX_DEPTH:
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v, depth + 1) for k, v in value.items() if str(k) not in FETCHING_KEYS}
    if isinstance(value, list | tuple):
        return [_clean(v, depth + 1) for v in value]
    if isinstance(value, str):
        return _LINK.sub("[link removed]", value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float):
        return value
    return str(value)
