"""Is the test set large enough? Minimum detectable differences from bootstrap variances.

For a two-sided level-alpha test of "no difference" whose estimate of the difference has standard
error SE, a true difference delta is detected with probability `power` when

    delta >= MDD = (z_{1 - alpha/2} + z_{power}) * SE.

SE comes from the bootstrap (same resampling unit as every reported interval):
- with `probs_b` (a second model on the same images): SE = sd of the paired bootstrap replicates of
  a - b, which carries the models' actual correlation;
- without it: two similar models, each with bootstrap variance var of model a, correlated `rho`
  across resamples: SE = sqrt(2 * var * (1 - rho)). The default rho = 0.5 (two models trained on the
  same task tend to err on the same images) makes SE = sd(a); rho = 0 is the conservative choice.
Also reported: the half-width of model a's `config.level` interval, (hi - lo) / 2.
Scaling: SE shrinks like 1/sqrt(units), so reaching a target difference delta needs about
n_units * (MDD / delta)^2 units (`units_needed`).
"""
from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtri  # the normal quantile; lighter to import than scipy.stats

from benchmark.core.errors import CxrbenchError
from benchmark.stats.bootstrap import DEFAULT_CONFIG, BootstrapConfig, BootstrapResult, bootstrap
from benchmark.stats.paired import paired_replicates
from benchmark.stats.weighted import StatFn


def _sd(reps: np.ndarray) -> float:
    r = reps[np.isfinite(reps)]
    return float(np.std(r, ddof=1)) if r.size >= 2 else math.nan


def detectable_difference(stat_fn: StatFn, y, probs, *, probs_b=None, clusters=None, strata=None,
                          config: BootstrapConfig = DEFAULT_CONFIG, power: float = 0.8,
                          alpha: float = 0.05, rho: float = 0.5) -> dict[str, float]:
    """Per metric m: `mdd_<m>` (see the module docstring for the formula) and `ci_half_width_<m>`."""
    if not 0.0 < alpha < 1.0 or not 0.0 < power < 1.0:
        raise CxrbenchError(f"expected alpha and power in (0, 1), found {alpha!r}, {power!r}", where="power")
    if not -1.0 <= rho < 1.0:
        raise CxrbenchError(f"expected a correlation in [-1, 1), found {rho!r}", where="rho")
    single = bootstrap(stat_fn, y, probs, clusters=clusters, strata=strata, config=config)
    se = None
    if probs_b is not None:
        diffs = paired_replicates(stat_fn, y, probs, probs_b, clusters=clusters, strata=strata, config=config)
        se = {k: _sd(d) for k, d in diffs.items()}
    return adequacy(single, diff_se=se, power=power, alpha=alpha, rho=rho)


def adequacy(single: BootstrapResult, *, diff_se: dict[str, float] | None = None, power: float = 0.8,
             alpha: float = 0.05, rho: float = 0.5, names=None) -> dict[str, float]:
    """`mdd_<m>` and `ci_half_width_<m>` from a bootstrap already computed (no new resampling).

    Without `diff_se` (the paired bootstrap SD of a difference) the SE of a difference between two
    models is taken as sqrt(2 (1 - rho)) times the single-model bootstrap SD.
    """
    factor = float(ndtri(1 - alpha / 2) + ndtri(power))
    out: dict[str, float] = {}
    for name, est in single.estimates.items():
        if names is not None and name not in names:
            continue
        se = diff_se[name] if diff_se is not None else math.sqrt(2.0 * (1.0 - rho)) * _sd(single.replicates(name))
        out[f"mdd_{name}"] = factor * se
        out[f"ci_half_width_{name}"] = (est.ci[1] - est.ci[0]) / 2.0
    return out


def units_needed(mdd: float, n_units: int, target: float) -> int:
    """Units (patients) needed for the detectable difference to shrink from `mdd` to `target`."""
    if not (math.isfinite(mdd) and target > 0):
        raise CxrbenchError(f"expected a finite mdd and a positive target, found {mdd!r}, {target!r}",
                            where="units_needed")
    return math.ceil(n_units * (mdd / target) ** 2)
