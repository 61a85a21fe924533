"""Confidence intervals from bootstrap replicates: percentile and BCa.

Replicates that are NaN (the metric is undefined in that resample, e.g. a class's recall when the
resample holds no image of the class) are dropped: the interval is conditional on the metric being
defined. The count of such replicates is visible through `BootstrapResult.replicates`.
"""
from __future__ import annotations

import numpy as np
from scipy.special import ndtr, ndtri


def _finite(reps: np.ndarray) -> np.ndarray:
    return reps[np.isfinite(reps)]


def percentile_interval(reps: np.ndarray, level: float) -> tuple[float, float]:
    """Equal-tailed percentile interval (linear interpolation between order statistics, as
    `np.percentile` and `scipy.stats.bootstrap` do)."""
    r = _finite(reps)
    if r.size == 0:
        return (float("nan"), float("nan"))
    alpha = 1.0 - level
    lo, hi = np.percentile(r, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return (float(lo), float(hi))


def jackknife_acceleration(jack: np.ndarray) -> float:
    """a = sum(u^3) / (6 * sum(u^2)^1.5), u = mean(jack) - jack (Efron 1987).

    With the delete-group jackknife, each u sums about d unit influences; the ratio is unchanged to
    first order (both numerator and denominator scale with the number of units), so the same formula
    applies. Returns 0 where it is undefined (constant jackknife values).
    """
    j = _finite(jack)
    if j.size < 2:
        return 0.0
    u = j.mean() - j
    den = 6.0 * np.sum(u**2) ** 1.5
    return float(np.sum(u**3) / den) if den > 0 else 0.0


def bca_interval(reps: np.ndarray, theta_hat: float, acceleration: float, level: float) -> tuple[float, float]:
    """Bias-corrected and accelerated interval (Efron 1987), following scipy.stats.bootstrap: the bias
    correction z0 uses the mid-rank fraction of replicates below the point estimate."""
    r = _finite(reps)
    if r.size == 0 or not np.isfinite(theta_hat):
        return (float("nan"), float("nan"))
    frac = (np.count_nonzero(r < theta_hat) + np.count_nonzero(r <= theta_hat)) / (2.0 * r.size)
    if frac <= 0.0 or frac >= 1.0:
        # Every replicate on one side of the estimate: z0 is infinite and BCa undefined.
        return percentile_interval(r, level)
    z0 = ndtri(frac)
    alpha = 1.0 - level
    ends = []
    for z_alpha in (ndtri(alpha / 2), ndtri(1 - alpha / 2)):
        num = z0 + z_alpha
        ends.append(float(ndtr(z0 + num / (1 - acceleration * num))))
    lo, hi = np.percentile(r, [100 * ends[0], 100 * ends[1]])
    return (float(lo), float(hi))
