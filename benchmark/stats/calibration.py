"""Calibration metrics for many weight vectors at once.

Fixed-bin quantities are linear in the weights: for bin j, n_j/N * |acc_j - conf_j| equals
|sum_{i in j} w_i (correct_i - conf_i)| / N, so every equal-width ECE variant is one matrix product
of `w[b, n]` with a per-image indicator matrix. Equal-mass bins depend on the weights (their edges
are weighted quantiles), so `ece_adaptive` works on cumulative sums in confidence order instead.

Definitions (N = total weight):
- ece: top-label confidence max_k p_k, `n_bins` equal-width bins on [0, 1] (left-closed, the last
  one closed), confidences clipped to [eps, 1 - eps]; equals netcal `ECE(bins=n_bins).measure(p, y)`.
- mce: the largest |acc_j - conf_j| over non-empty equal-width bins; equals netcal `MCE`.
- ece_adaptive: the same top-label gap with equal-mass bins. Edge j is the weighted inverted-CDF
  quantile j/n_bins of the confidences (`np.quantile(method="inverted_cdf")` on the sample with
  every image repeated by its weight); an image whose confidence equals an edge goes to the upper bin.
  Unlike netcal's `equal_intervals=False` (linearly interpolated quantiles), this depends only on the
  weighted empirical distribution, so a resample with integer weights equals the duplicated sample.
- classwise_ece: mean over classes k of the equal-width ECE of p_k against 1[y == k] (Kull et al. 2019).
- brier: mean over images of sum_k (p_k - 1[y == k])^2 (sklearn `brier_score_loss(y, p, labels=...)`
  for more than two classes, which does not halve it).
- nll: mean of -log(clip(p_y, eps, 1 - eps)), eps = float64 machine epsilon (sklearn `log_loss`).
"""
from __future__ import annotations

import numpy as np

EPS = float(np.finfo(np.float64).eps)


def equal_width_bins(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin index in [0, n_bins) of each value in [0, 1], as np.histogram assigns it."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.searchsorted(edges, values, side="right") - 1
    return np.clip(idx, 0, n_bins - 1)


def _indicator(bins: np.ndarray, n_bins: int, values: np.ndarray | None = None) -> np.ndarray:
    """[n, n_bins] matrix with `values` (or 1) in each image's bin column."""
    out = np.zeros((bins.size, n_bins), dtype=np.float64)
    out[np.arange(bins.size), bins] = 1.0 if values is None else values
    return out


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def fixed_bin_metrics(y: np.ndarray, probs: np.ndarray, w: np.ndarray, n_bins: int) -> dict[str, np.ndarray]:
    """ece, mce, classwise_ece, brier, nll as float64[b] arrays."""
    n, k = probs.shape
    clipped = np.clip(probs, EPS, 1.0 - EPS)
    pred = np.argmax(probs, axis=1)
    conf = clipped[np.arange(n), pred]
    gap = (pred == y).astype(np.float64) - conf
    top_bins = equal_width_bins(conf, n_bins)

    onehot = np.zeros((n, k), dtype=np.float64)
    onehot[np.arange(n), y] = 1.0
    class_gap = onehot - clipped
    class_cols = [_indicator(equal_width_bins(clipped[:, c], n_bins), n_bins, class_gap[:, c]) for c in range(k)]
    brier = ((probs - onehot) ** 2).sum(axis=1)
    nll = -np.log(np.clip(probs[np.arange(n), y], EPS, 1.0 - EPS))

    # One product for everything: [top-label gap per bin | count per bin | class gaps | brier | nll | 1].
    design = np.concatenate(
        [_indicator(top_bins, n_bins, gap), _indicator(top_bins, n_bins), *class_cols,
         brier[:, None], nll[:, None], np.ones((n, 1))],
        axis=1,
    )
    sums = w @ design
    nb = n_bins
    gap_sums, counts = sums[:, :nb], sums[:, nb:2 * nb]
    class_sums = sums[:, 2 * nb:2 * nb + k * nb].reshape(-1, k, nb)
    brier_sum, nll_sum, total = sums[:, -3], sums[:, -2], sums[:, -1]

    bin_gap = np.abs(_safe_div(gap_sums, counts))
    mce = np.where(counts > 0, bin_gap, -np.inf).max(axis=1)
    mce[total <= 0] = np.nan
    return {
        "ece": _safe_div(np.abs(gap_sums).sum(axis=1), total),
        "mce": mce,
        "classwise_ece": _safe_div(np.abs(class_sums).sum(axis=2).mean(axis=1), total),
        "brier": _safe_div(brier_sum, total),
        "nll": _safe_div(nll_sum, total),
    }


def adaptive_ece(y: np.ndarray, probs: np.ndarray, w: np.ndarray, n_bins: int) -> np.ndarray:
    """Top-label ECE with weighted equal-mass bins (see the module docstring), float64[b]."""
    n = probs.shape[0]
    pred = np.argmax(probs, axis=1)
    conf = np.clip(probs[np.arange(n), pred], EPS, 1.0 - EPS)
    gap = (pred == y).astype(np.float64) - conf
    order = np.argsort(conf, kind="stable")
    c = conf[order]
    new_group = np.empty(n, dtype=bool)
    new_group[0] = True
    new_group[1:] = c[1:] != c[:-1]
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(n), 0))

    ws = np.take(w, order, axis=1)
    wcum = np.cumsum(ws, axis=1)
    gcum = np.cumsum(ws * gap[order], axis=1)
    del ws
    b = w.shape[0]
    total = wcum[:, -1]
    out = np.full(b, np.nan)
    j = np.arange(1, n_bins)
    for r in range(b):
        if total[r] <= 0:
            continue
        # Edge j sits at the first image where F(c) >= j / n_bins; compare wcum * n_bins >= j * W so
        # that integer weights decide exactly.
        first = np.searchsorted(wcum[r] * n_bins, j * total[r], side="left")
        # Boundaries in sorted positions: bins are [start_j, start_{j+1}); an image equal to the edge
        # value starts the upper bin, so the boundary is the start of the edge's tie group.
        bounds = np.concatenate([[0], group_start[np.minimum(first, n - 1)], [n]])
        cum = np.concatenate([[0.0], gcum[r]])
        out[r] = np.abs(np.diff(cum[bounds])).sum() / total[r]
    return out
