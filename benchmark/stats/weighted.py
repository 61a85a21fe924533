"""Weighted metric families: the `StatFn`s that the bootstrap evaluates.

A StatFn maps `(y: int[n], probs: float[n, K], w: float[b, n])` to `{metric: float64[b]}`: row r of
`w` holds per-image weights, and row r of every output is the metric on the sample in which image i
appears `w[r, i]` times. Weights of all ones give the plain point estimate; resampling counts give
bootstrap replicates; zeros give jackknife deletes. With integer weights each value equals the
scikit-learn metric on the duplicated sample (tests/test_stats_kernels.py checks this).

Predicted class = argmax of the row (first maximum on ties, like `np.argmax`).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from benchmark.core.errors import CxrbenchError
from benchmark.stats import _validate as v
from benchmark.stats.binsum import bin_sums, block_index, block_rows
from benchmark.stats.calibration import adaptive_ece, fixed_bin_metrics
from benchmark.stats.confusion import confusion_metrics, nanmean_rows
from benchmark.stats.ranking import cached_rank_plan, rank_metrics

StatFn = Callable[[np.ndarray, np.ndarray, np.ndarray], dict[str, np.ndarray]]


def _class_names(class_names: Sequence[str], k: int) -> tuple[str, ...]:
    names = tuple(str(c) for c in class_names)
    if len(names) != k:
        raise CxrbenchError(f"expected {k} class names (one per probability column), found {len(names)}",
                            where="class_names")
    if len(set(names)) != k:
        raise CxrbenchError(f"class names must be distinct, found {list(names)}", where="class_names")
    return names


def classification_stats(y, probs, w, *, class_names: Sequence[str]) -> dict[str, np.ndarray]:
    """Discrimination metrics of a K-class classifier for each weight row.

    Keys: accuracy, balanced_accuracy, macro_f1, kappa, mcc, macro_auroc, map, and per class c:
    f1_<c>, recall_<c>, precision_<c>, auroc_<c>, ap_<c>.

    - auroc_<c> / ap_<c>: one-vs-rest, scores probs[:, c], positives y == c (`roc_auc_score`,
      `average_precision_score`); NaN where the weighted sample has no positive (or, for AUROC, no
      negative) of class c.
    - macro_auroc / map: mean over the classes where auroc_<c> / ap_<c> is defined. With every class
      present this equals `roc_auc_score(y, probs, multi_class="ovr", average="macro")` and the mean
      of per-class `average_precision_score`; a bootstrap resample that misses a class averages the
      remaining ones rather than failing.
    - Confusion metric conventions: see benchmark.stats.confusion.
    """
    y = v.labels_array(y)
    probs = v.probs_array(probs, n=y.size)
    k = probs.shape[1]
    y = v.labels_array(y, n_classes=k)
    names = _class_names(class_names, k)
    w = v.weights_array(w, n=y.size, check_values=False)

    pred = np.argmax(probs, axis=1)
    plans = [cached_rank_plan((y == c).astype(np.int64), probs[:, c]) for c in range(k)]
    b = w.shape[0]
    confusion = np.empty((b, k, k))
    aurocs = np.empty((b, k))
    aps = np.empty((b, k))
    # Every kernel reads the same weights: taking a cache-sized block of rows through all of them
    # reads `w` from memory once instead of once per kernel.
    step = block_rows(y.size)
    cells = block_index(y * k + pred, k * k, step)  # confusion cell (true * K + pred) of each image
    for lo in range(0, b, step):
        block = w[lo:lo + step]
        v.check_weight_values(block)
        confusion[lo:lo + step] = bin_sums(block, cells, k * k, step).reshape(-1, k, k)
        for c, plan in enumerate(plans):
            aurocs[lo:lo + step, c], aps[lo:lo + step, c] = rank_metrics(plan, block)
    out = confusion_metrics(confusion, names)
    out["macro_auroc"] = nanmean_rows(aurocs)
    out["map"] = nanmean_rows(aps)
    for c, name in enumerate(names):
        out[f"auroc_{name}"] = aurocs[:, c]
        out[f"ap_{name}"] = aps[:, c]
    return out


def binary_stats(y01, score, w) -> dict[str, np.ndarray]:
    """auroc and ap of a binary score (`roc_auc_score`, `average_precision_score`), per weight row."""
    y01 = v.binary_array(y01)
    score = v.score_array(score, n=y01.size)
    w = v.weights_array(w, n=y01.size)
    auroc, ap = rank_metrics(cached_rank_plan(y01, score), w)
    return {"auroc": auroc, "ap": ap}


def calibration_stats(y, probs, w, *, n_bins: int = 15) -> dict[str, np.ndarray]:
    """ece, ece_adaptive, classwise_ece, mce, brier, nll per weight row.

    Definitions and their reference implementations: see benchmark.stats.calibration.
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise CxrbenchError(f"expected a positive integer number of bins, found {n_bins!r}", where="n_bins")
    y = v.labels_array(y)
    probs = v.unit_probs(v.probs_array(probs, n=y.size))
    y = v.labels_array(y, n_classes=probs.shape[1])
    w = v.weights_array(w, n=y.size)
    out = fixed_bin_metrics(y, probs, w, int(n_bins))
    out["ece_adaptive"] = adaptive_ece(y, probs, w, int(n_bins))
    return {key: out[key] for key in ("ece", "ece_adaptive", "classwise_ece", "mce", "brier", "nll")}
