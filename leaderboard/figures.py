"""Figures the leaderboard draws from an entry's predictions when the run lacks the suite that would
have drawn them: a reliability diagram (calibration) and per-site bars with error bars (cross_site).
Plotly figure dicts, like the suites' own."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from benchmark.core.labels import CLASSES, PROB_COLUMNS


def reliability_figure(clean: pd.DataFrame, *, n_bins: int = 15) -> dict[str, Any]:
    """Top-label reliability: accuracy against mean confidence in equal-width confidence bins."""
    probs = clean[list(PROB_COLUMNS)].to_numpy(dtype=np.float64)
    y = clean["label"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy()
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y).astype(np.float64)
    bins = np.clip(np.floor(conf * n_bins).astype(int), 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    has = count > 0
    acc = np.bincount(bins, weights=correct, minlength=n_bins)[has] / count[has]
    mean_conf = np.bincount(bins, weights=conf, minlength=n_bins)[has] / count[has]
    ece = float(np.sum(count[has] * np.abs(acc - mean_conf)) / max(len(conf), 1))
    return {
        "data": [
            {"type": "scatter", "mode": "lines", "x": [0, 1], "y": [0, 1], "name": "perfect calibration",
             "line": {"dash": "dash", "color": "#999"}},
            {"type": "scatter", "mode": "lines+markers", "x": mean_conf.round(4).tolist(),
             "y": acc.round(4).tolist(), "name": "model", "text": [f"{int(c)} images" for c in count[has]],
             "hovertemplate": "confidence %{x:.2f}<br>accuracy %{y:.2f}<br>%{text}<extra></extra>"},
        ],
        "layout": {"title": {"text": f"Reliability diagram ({n_bins} bins, top-label ECE {ece:.3f})"},
                   "xaxis": {"title": {"text": "mean confidence"}, "range": [0, 1]},
                   "yaxis": {"title": {"text": "accuracy"}, "range": [0, 1]}, "height": 420, "width": 520},
    }


def per_site_figure(clean: pd.DataFrame, *, config: Any, metric: str = "balanced_accuracy") -> dict[str, Any] | None:
    """`metric` per site with bootstrap intervals (patients resampled within the site); None when the
    predictions carry no site."""
    from benchmark.stats import bootstrap, classification_stats
    from benchmark.core.suite import arrays, clusters_of

    if "site" not in clean.columns or clean["site"].isna().all():
        return None
    sites, values, lo, hi, counts = [], [], [], [], []
    for site, frame in clean.dropna(subset=["site"]).groupby(clean["site"].astype(str), sort=True):
        frame = frame.reset_index(drop=True)
        y, probs = arrays(frame)

        def fn(y, probs, w):
            return {metric: classification_stats(y, probs, w, class_names=CLASSES)[metric]}

        est = bootstrap(fn, y, probs, clusters=clusters_of(frame), config=config).estimates[metric]
        sites.append(str(site))
        values.append(est.value)
        lo.append(est.ci[0])
        hi.append(est.ci[1])
        counts.append(len(frame))
    v, lo_, hi_ = (np.asarray(a, dtype=np.float64) for a in (values, lo, hi))
    return {
        "data": [{"type": "bar", "x": sites, "y": np.nan_to_num(v).round(4).tolist(), "name": metric,
                  "hovertext": [f"{n} images" for n in counts],
                  "error_y": {"type": "data", "symmetric": False,
                              "array": np.nan_to_num(hi_ - v).round(4).tolist(),
                              "arrayminus": np.nan_to_num(v - lo_).round(4).tolist()}}],
        "layout": {"title": {"text": f"{metric} per site (95% CI)"},
                   "yaxis": {"title": {"text": metric}, "range": [0, 1]},
                   "xaxis": {"title": {"text": "site"}, "type": "category"}, "height": 400, "width": 640},
    }
