"""Plotly figure dicts for the cross-site suite: per-group bars with error bars, the class mix, the
site probe and the operating-point transfer matrix."""
from __future__ import annotations

from typing import Any

from benchmark.core.jsonsafe import finite
from benchmark.core.labels import CLASSES


def _error_bar(estimates: list[Any]) -> dict:
    values = [e.value for e in estimates]
    hi = [None if e.ci[1] is None or v is None else max(e.ci[1] - v, 0.0) for e, v in zip(estimates, values)]
    lo = [None if e.ci[0] is None or v is None else max(v - e.ci[0], 0.0) for e, v in zip(estimates, values)]
    return {"type": "data", "symmetric": False, "array": hi, "arrayminus": lo, "visible": True}


def grouped_bars(series: dict[str, list[Any]], groups: list[str], *, title: str, yaxis: str,
                 column: str) -> dict:
    """One bar per group for each series (a metric), each with its bootstrap interval as error bar."""
    data = []
    for name, estimates in series.items():
        data.append({"type": "bar", "name": name, "x": list(groups), "y": [finite(e.value) for e in estimates],
                     "error_y": _error_bar(estimates)})
    return {"data": data, "layout": {"title": {"text": title}, "barmode": "group", "height": 420,
                                     "xaxis": {"title": {"text": column}}, "yaxis": {"title": {"text": yaxis}}}}


def class_mix(shares: dict[str, list[float]], groups: list[str], column: str) -> dict:
    data = [{"type": "bar", "name": c, "x": list(groups), "y": shares[c]} for c in CLASSES]
    return {"data": data, "layout": {"title": {"text": f"Class mix per {column}"}, "barmode": "stack", "height": 380,
                                     "xaxis": {"title": {"text": column}},
                                     "yaxis": {"title": {"text": "share of images"}, "range": [0, 1]}}}


def probe_bars(estimates: dict[str, Any], column: str) -> dict:
    names = list(estimates)
    ests = [estimates[n] for n in names]
    return {"data": [{"type": "bar", "x": names, "y": [finite(e.value) for e in ests], "error_y": _error_bar(ests),
                      "marker": {"color": ["#c0392b" if n == "model outputs" else "#7f8c8d" for n in names]}}],
            "layout": {"title": {"text": f"How well a linear probe tells the {column} (macro AUROC, 0.5 = chance)"},
                       "height": 380, "yaxis": {"range": [0, 1], "title": {"text": "AUROC"}},
                       "shapes": [{"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": 0.5, "y1": 0.5,
                                   "line": {"dash": "dash", "color": "#999"}}]}}


def transfer_heatmap(matrix: list[list[float | None]], groups: list[str], *, title: str, column: str) -> dict:
    text = [["" if v is None else f"{v:.2f}" for v in row] for row in matrix]
    return {"data": [{"type": "heatmap", "z": matrix, "x": list(groups), "y": list(groups), "zmin": 0, "zmax": 1,
                      "colorscale": "RdYlGn", "text": text, "texttemplate": "%{text}"}],
            "layout": {"title": {"text": title}, "height": 420, "width": 560,
                       "xaxis": {"title": {"text": f"{column} evaluated"}},
                       "yaxis": {"title": {"text": f"{column} the threshold was chosen on"}, "autorange": "reversed"}}}
