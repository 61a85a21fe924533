"""The statistics engine shared by every suite: weighted metric kernels, the cluster bootstrap,
paired comparisons and sample-size adequacy.

A metric family is a StatFn `(y, probs, w[b, n]) -> {name: float64[b]}`; `bootstrap` turns one into
point estimates with intervals, resampling patients when `clusters` is given.
"""
from __future__ import annotations

from benchmark.stats.bootstrap import (
    BootstrapConfig,
    BootstrapResult,
    Estimate,
    bootstrap,
)
from benchmark.stats.contingency import McNemarResult, adjust_pvalues, mcnemar_exact
from benchmark.stats.delong import DeLongResult, auc_covariance, delong_test
from benchmark.stats.paired import PairedEstimate, paired_bootstrap, paired_replicates
from benchmark.stats.power import adequacy, detectable_difference, units_needed
from benchmark.stats.resample import draw_counts, jackknife_groups, make_units
from benchmark.stats.weighted import (
    StatFn,
    binary_stats,
    calibration_stats,
    classification_stats,
)

__all__ = [
    "BootstrapConfig",
    "BootstrapResult",
    "DeLongResult",
    "Estimate",
    "McNemarResult",
    "PairedEstimate",
    "StatFn",
    "adjust_pvalues",
    "auc_covariance",
    "binary_stats",
    "bootstrap",
    "calibration_stats",
    "classification_stats",
    "delong_test",
    "adequacy",
    "detectable_difference",
    "draw_counts",
    "jackknife_groups",
    "make_units",
    "mcnemar_exact",
    "paired_bootstrap",
    "paired_replicates",
    "units_needed",
]
