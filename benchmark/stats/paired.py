"""Paired bootstrap comparison of two models scored on the same images.

Both models are evaluated on the same resamples (same counts per unit), so the replicates of the
difference a - b carry the between-model correlation. The p-value inverts the percentile interval:
p = min(1, 2 * min(1 + #{d* <= 0}, 1 + #{d* >= 0}) / (B + 1)), B the number of defined replicates;
the +1 terms keep p > 0 with a finite number of resamples (Davison & Hinkley 1997, ch. 4).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmark.core.errors import CxrbenchError
from benchmark.core.jsonsafe import finite as json_float
from benchmark.stats.bootstrap import (
    DEFAULT_CONFIG,
    BootstrapConfig,
    check_inputs,
    interval,
    jackknife_stats,
    point_estimate,
    replicate_weights,
)
from benchmark.stats.resample import make_units
from benchmark.stats.weighted import StatFn


@dataclass(frozen=True)
class PairedEstimate:
    """Model a versus model b on one metric: diff = value_a - value_b."""

    value_a: float
    value_b: float
    diff: float
    ci: tuple[float, float]
    p_value: float

    def to_json(self) -> dict:
        return {
            "value_a": json_float(self.value_a), "value_b": json_float(self.value_b),
            "diff": json_float(self.diff), "ci": [json_float(self.ci[0]), json_float(self.ci[1])],
            "p_value": json_float(self.p_value),
        }


def bootstrap_p_value(diffs: np.ndarray) -> float:
    """Two-sided p-value of H0: diff = 0 from bootstrap replicates of the difference."""
    d = diffs[np.isfinite(diffs)]
    if d.size == 0:
        return float("nan")
    below = 1 + np.count_nonzero(d <= 0)
    above = 1 + np.count_nonzero(d >= 0)
    return float(min(1.0, 2.0 * min(below, above) / (d.size + 1)))


def _paired_stat(stat_fn: StatFn, probs_b: np.ndarray) -> StatFn:
    """A StatFn whose inputs carry both models: evaluates each on the same weights, keys a:<m>, b:<m>."""
    def both(y, probs_a, w):
        out = {f"a:{k}": v for k, v in stat_fn(y, probs_a, w).items()}
        out.update({f"b:{k}": v for k, v in stat_fn(y, probs_b, w).items()})
        return out
    return both


def _diff_replicates(both: StatFn, y, probs_a, units, config: BootstrapConfig) -> dict[str, np.ndarray]:
    parts: dict[str, list[np.ndarray]] = {}
    for w in replicate_weights(units, config):
        out = both(y, probs_a, w)
        for k in out:
            if k.startswith("a:"):
                name = k[2:]
                parts.setdefault(name, []).append(np.asarray(out[k]) - np.asarray(out[f"b:{name}"]))
    return {k: np.concatenate(v) for k, v in parts.items()}


def _prepare(y, probs_a, probs_b, clusters, strata):
    y, probs_a = check_inputs(y, probs_a)
    _, probs_b = check_inputs(y, probs_b)
    if probs_a.shape != probs_b.shape:
        raise CxrbenchError(f"both models must score the same images and classes: {probs_a.shape} vs "
                            f"{probs_b.shape}", where="probs_b")
    return y, probs_a, probs_b, make_units(y.size, clusters=clusters, strata=strata)


def paired_replicates(stat_fn: StatFn, y, probs_a, probs_b, *, clusters=None, strata=None,
                      config: BootstrapConfig = DEFAULT_CONFIG) -> dict[str, np.ndarray]:
    """Bootstrap replicates of a - b per metric (the distribution `paired_bootstrap` summarizes)."""
    y, probs_a, probs_b, units = _prepare(y, probs_a, probs_b, clusters, strata)
    return _diff_replicates(_paired_stat(stat_fn, probs_b), y, probs_a, units, config)


def paired_bootstrap(stat_fn: StatFn, y, probs_a, probs_b, *, clusters=None, strata=None,
                     config: BootstrapConfig = DEFAULT_CONFIG) -> dict[str, PairedEstimate]:
    """Per metric: values of both models, their difference a - b with a `config.level` interval
    (percentile or BCa on the difference), and the two-sided bootstrap p-value."""
    y, probs_a, probs_b, units = _prepare(y, probs_a, probs_b, clusters, strata)
    both = _paired_stat(stat_fn, probs_b)
    point = point_estimate(both, y, probs_a)
    reps = _diff_replicates(both, y, probs_a, units, config)
    jack_diff: dict[str, np.ndarray] = {}
    if config.method == "bca":
        jack = jackknife_stats(both, y, probs_a, units, config)
        jack_diff = {k: jack[f"a:{k}"] - jack[f"b:{k}"] for k in reps}
    result = {}
    for name, d in reps.items():
        va, vb = point[f"a:{name}"], point[f"b:{name}"]
        result[name] = PairedEstimate(va, vb, va - vb, interval(d, va - vb, config, jack_diff.get(name)),
                                      bootstrap_p_value(d))
    return result
