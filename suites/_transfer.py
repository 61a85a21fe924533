"""What carries over from one site to another: a fitted temperature, and a decision threshold.

Both are StatFns over all rows: in every bootstrap resample the temperature (or threshold) is refitted
on the source group's resampled rows and applied to the target group's, so the intervals include the
fit's own uncertainty. Pair keys are `source>target`.
"""
from __future__ import annotations

import warnings

import numpy as np

from suites._groups import Groups
from suites._temperature import fit_temperature, scaled_metrics


def pairs(groups: Groups) -> list[tuple[int, int]]:
    """Ordered (source, target) pairs of distinct eligible groups."""
    idx = np.flatnonzero(groups.eligible)
    return [(a, b) for a in idx for b in idx if a != b]


def temperature_transfer_fn(groups: Groups, n_bins: int):
    """T fitted on each source group; top-label ECE of each other group at that T."""
    masks = [groups.mask(j) for j in range(len(groups.names))]
    todo = pairs(groups)
    sources = sorted({a for a, _ in todo})

    def fn(y, z, w):
        temps = {a: fit_temperature(z[masks[a]], y[masks[a]], w[:, masks[a]]) for a in sources}
        out = {f"temperature[{groups.names[a]}]": temps[a] for a in sources}
        eces = []
        for a, b in todo:
            m = masks[b]
            e = scaled_metrics(z[m], y[m], temps[a], w[:, m], n_bins, only_ece=True)["ece"]
            out[f"ece[{groups.names[a]}>{groups.names[b]}]"] = e
            eces.append(e)
        stacked = np.stack(eces, axis=1)
        out["temperature_transfer_worst_ece"] = stacked.max(axis=1)
        out["temperature_transfer_mean_ece"] = stacked.mean(axis=1)
        return out
    return fn


def sensitivity_threshold(score: np.ndarray, w: np.ndarray, target: float) -> np.ndarray:
    """Per weight row, the highest threshold t with weighted sensitivity P(score >= t | positive) >=
    target, from the positives' scores and weights w[b, n_pos]; NaN without positive weight."""
    if len(score) == 0:  # a group with no positive image has no sensitivity to hold
        return np.full(w.shape[0], np.nan)
    order = np.argsort(-score, kind="stable")
    s = score[order]
    cum = np.cumsum(w[:, order], axis=1)
    total = cum[:, -1]
    # First position where the covered weight reaches the target (a small slack absorbs rounding).
    k = np.argmax(cum >= target * total[:, None] - 1e-9 * np.maximum(total[:, None], 1.0), axis=1)
    return np.where(total > 0, s[k], np.nan)


def _rate(hit: np.ndarray, w: np.ndarray) -> np.ndarray:
    total = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (w * hit).sum(axis=1) / total, np.nan)


def operating_point_fn(groups: Groups, positive: np.ndarray, score: np.ndarray, target: float):
    """Threshold at `target` sensitivity on each source group; sensitivity and specificity on every
    group at that threshold (the source's own included, for reference)."""
    masks = [groups.mask(j) for j in range(len(groups.names))]
    idx = list(np.flatnonzero(groups.eligible))
    todo = pairs(groups)

    def fn(y, probs, w):
        thr = {a: sensitivity_threshold(score[masks[a] & positive], w[:, masks[a] & positive], target) for a in idx}
        out = {f"threshold[{groups.names[a]}]": thr[a] for a in idx}
        for a in idx:
            t = thr[a][:, None]
            for b in idx:
                pos, neg = masks[b] & positive, masks[b] & ~positive
                key = f"{groups.names[a]}>{groups.names[b]}"
                out[f"sensitivity[{key}]"] = _rate(score[pos][None] >= t, w[:, pos])
                out[f"specificity[{key}]"] = _rate(score[neg][None] < t, w[:, neg])
        for m in ("sensitivity", "specificity"):
            stacked = np.stack([out[f"{m}[{groups.names[a]}>{groups.names[b]}]"] for a, b in todo], axis=1)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a resample where no pair is defined
                out[f"op_transfer_worst_{m}"] = np.nanmin(stacked, axis=1)
        return out
    return fn
