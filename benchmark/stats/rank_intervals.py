"""How sure is a ranking? Bootstrap rank intervals and the probability of being best.

Every entry is scored on the same images, so all of them are evaluated on the same resamples of
patients (one weight matrix per chunk, as in the paired comparison): the between-model correlation
stays in the replicates. In each resample the entries are ranked on the metric; an entry's rank is 1
plus the number of entries strictly better (equal values share the better rank), its interval is the
`level` percentile range of its ranks, and its probability of being best is the share of resamples in
which it is first, a tie for first splitting that resample equally. Resamples in which some entry's
metric is undefined are left out. Two identical models therefore get identical intervals and equal
probabilities; a model better on every resample gets [1, 1] and probability 1.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from benchmark.core.errors import CxrbenchError
from benchmark.core.jsonsafe import finite
from benchmark.stats.bootstrap import DEFAULT_CONFIG, BootstrapConfig, check_inputs, replicate_weights
from benchmark.stats.resample import make_units
from benchmark.stats.weighted import StatFn


@dataclass(frozen=True)
class RankInterval:
    rank: int                  # on the full test set (same rule: 1 + entries strictly better)
    ci: tuple[int, int]        # percentile interval of the bootstrap ranks
    p_best: float              # share of resamples in which this entry is first
    value: float               # the metric on the full test set

    def to_json(self) -> dict:
        return {"rank": self.rank, "ci": [self.ci[0], self.ci[1]], "p_best": self.p_best,
                "value": finite(self.value)}


@dataclass(frozen=True)
class RankSummary:
    metric: str
    intervals: tuple[RankInterval, ...]   # one per entry, in the order given
    n_resamples: int                      # resamples used (all entries defined)
    level: float
    unit: str                             # patient or image


def ranks_of(values: np.ndarray) -> np.ndarray:
    """Competition ranks along the last axis, larger is better: 1 + the number strictly larger."""
    v = np.asarray(values, dtype=np.float64)
    return 1 + (v[..., None, :] > v[..., :, None]).sum(axis=-1)


def rank_intervals(stat_fn: StatFn, metric: str, y, probs: Sequence[np.ndarray], *, clusters=None,
                   lower_is_better: bool = False, config: BootstrapConfig = DEFAULT_CONFIG) -> RankSummary:
    """Rank intervals of several models (`probs[i]`, each [n, K]) scored on the same images `y`."""
    if len(probs) < 1:
        raise CxrbenchError("no entries to rank", where="rank_intervals")
    y, first = check_inputs(y, probs[0])
    mats = [first] + [check_inputs(y, p)[1] for p in probs[1:]]
    if any(m.shape != first.shape for m in mats):
        raise CxrbenchError("every entry must score the same images and classes", where="rank_intervals")
    sign = -1.0 if lower_is_better else 1.0
    units = make_units(y.size, clusters=clusters)
    ones = np.ones((1, y.size))
    point = np.array([_metric(stat_fn, y, m, ones, metric)[0] for m in mats])
    chunks = []
    for w in replicate_weights(units, config):
        chunks.append(np.stack([_metric(stat_fn, y, m, w, metric) for m in mats], axis=1))
    reps = np.concatenate(chunks) * sign                      # [B, E], larger is better
    reps = reps[np.isfinite(reps).all(axis=1)]
    full_rank = ranks_of(np.where(np.isfinite(point), point * sign, -np.inf))
    if reps.shape[0] == 0:
        nan_ci = (0, 0)
        return RankSummary(metric, tuple(RankInterval(int(r), nan_ci, float("nan"), float(v))
                                         for r, v in zip(full_rank, point)), 0, config.level, units.kind)
    ranks = ranks_of(reps)                                     # [B, E]
    first_place = ranks == 1
    p_best = (first_place / first_place.sum(axis=1, keepdims=True)).mean(axis=0)
    alpha = (1.0 - config.level) / 2.0
    lo = np.quantile(ranks, alpha, axis=0, method="inverted_cdf")
    hi = np.quantile(ranks, 1.0 - alpha, axis=0, method="inverted_cdf")
    out = tuple(RankInterval(int(r), (int(a), int(b)), float(p), float(v))
                for r, a, b, p, v in zip(full_rank, lo, hi, p_best, point))
    return RankSummary(metric, out, int(reps.shape[0]), config.level, units.kind)


def _metric(stat_fn: StatFn, y: np.ndarray, probs: np.ndarray, w: np.ndarray, metric: str) -> np.ndarray:
    out = stat_fn(y, probs, w)
    if metric not in out:
        raise CxrbenchError(f"unknown metric {metric!r}; choose from {', '.join(sorted(out))}", where="rank_intervals")
    return np.asarray(out[metric], dtype=np.float64)
