"""Reliability diagrams and confidence histograms as table rows and plotly figure dicts."""
from __future__ import annotations

import numpy as np

from benchmark.stats.calibration import EPS, equal_width_bins


def reliability_bins(y: np.ndarray, probs: np.ndarray, n_bins: int) -> list[dict]:
    """One row per equal-width top-label confidence bin: edges, count, mean confidence, accuracy.

    The bins and clip are those of the `ece` metric, so sum(count * |accuracy - confidence|) / n is it.
    """
    pred = np.argmax(probs, axis=1)
    conf = np.clip(probs[np.arange(len(y)), pred], EPS, 1.0 - EPS)
    correct = (pred == y).astype(np.float64)
    bins = equal_width_bins(conf, n_bins)
    count = np.bincount(bins, minlength=n_bins)
    conf_sum = np.bincount(bins, weights=conf, minlength=n_bins)
    acc_sum = np.bincount(bins, weights=correct, minlength=n_bins)
    rows = []
    for j in range(n_bins):
        n = int(count[j])
        rows.append({
            "bin": j, "lower": round(j / n_bins, 6), "upper": round((j + 1) / n_bins, 6), "count": n,
            "confidence": float(conf_sum[j] / n) if n else None,
            "accuracy": float(acc_sum[j] / n) if n else None,
        })
    return rows


def reliability_figure(curves: dict[str, list[dict]], title: str) -> dict:
    """Accuracy against mean confidence per bin (marker text: the bin's count), with the diagonal."""
    data: list[dict] = [{"type": "scatter", "mode": "lines", "x": [0, 1], "y": [0, 1], "name": "perfect calibration",
                         "line": {"dash": "dash", "color": "#999"}, "hoverinfo": "skip"}]
    for name, rows in curves.items():
        used = [r for r in rows if r["count"]]
        data.append({
            "type": "scatter", "mode": "lines+markers", "name": name,
            "x": [r["confidence"] for r in used], "y": [r["accuracy"] for r in used],
            "text": [f"n = {r['count']}" for r in used],
            "hovertemplate": "confidence %{x:.3f}<br>accuracy %{y:.3f}<br>%{text}<extra>" + name + "</extra>",
            "marker": {"size": [6 + 10 * np.sqrt(r["count"] / max(u["count"] for u in used)) for r in used]},
        })
    return {"data": data, "layout": {
        "title": {"text": title}, "height": 440, "width": 560,
        "xaxis": {"title": {"text": "mean top-label confidence"}, "range": [0, 1]},
        "yaxis": {"title": {"text": "accuracy"}, "range": [0, 1]},
        "legend": {"x": 0.02, "y": 0.98}}}


def confidence_histogram(curves: dict[str, list[dict]], title: str) -> dict:
    """Image counts per confidence bin, one bar series per curve."""
    data = []
    for name, rows in curves.items():
        data.append({"type": "bar", "name": name, "x": [(r["lower"] + r["upper"]) / 2 for r in rows],
                     "y": [r["count"] for r in rows], "width": [r["upper"] - r["lower"] for r in rows],
                     "opacity": 0.6})
    return {"data": data, "layout": {
        "title": {"text": title}, "barmode": "overlay", "height": 360, "width": 560,
        "xaxis": {"title": {"text": "top-label confidence"}, "range": [0, 1]},
        "yaxis": {"title": {"text": "images"}}}}
