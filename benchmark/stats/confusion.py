"""Confusion-matrix metrics for many weight vectors at once.

A weighted confusion matrix is a per-row sum of weights over the K*K cells (true * K + pred), so all
`b` of them come from one pass over `w[b, n]` (benchmark.stats.binsum). Every metric below is then a
handful of array operations on `C[b, K, K]` (rows = true class, columns = predicted class).

Conventions (each equals a named scikit-learn call on the sample in which every image is repeated
as many times as its weight, i.e. zero-weight images removed):
- per-class precision / recall / f1: `precision_recall_fscore_support(labels=[c],
  zero_division=np.nan)`: NaN where the metric's denominator is zero (class never predicted, class
  absent from the truth, or both for f1).
- macro_f1: `f1_score(average="macro")` without `labels`: the mean over classes present in the truth
  or the predictions (exactly the classes whose f1 is defined); absent classes do not count as 0.
- balanced_accuracy: `balanced_accuracy_score`: the mean recall over classes present in the truth.
- kappa: `cohen_kappa_score` (NaN where undefined); mcc: `matthews_corrcoef` (0 where undefined).
"""
from __future__ import annotations

import numpy as np

from benchmark.stats.binsum import bin_sums, block_index, block_rows


def confusion_matrices(y: np.ndarray, pred: np.ndarray, w: np.ndarray, n_classes: int) -> np.ndarray:
    """Weighted confusion matrices `C[b, K, K]` for int64 `y`, `pred` in [0, K) and weights `w[b, n]`."""
    k = n_classes
    rows = block_rows(y.size)
    sums = bin_sums(w, block_index(y * k + pred, k * k, rows), k * k, rows)
    return sums.reshape(w.shape[0], k, k)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with NaN where den == 0."""
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def nanmean_rows(x: np.ndarray) -> np.ndarray:
    """Mean over the last axis ignoring NaN; NaN (no warning) where a row is all NaN."""
    ok = ~np.isnan(x)
    count = ok.sum(axis=-1)
    total = np.where(ok, x, 0.0).sum(axis=-1)
    return _ratio(total, count.astype(np.float64))


def per_class_scores(C: np.ndarray) -> dict[str, np.ndarray]:
    """precision, recall, f1 as [b, K] arrays (NaN where undefined)."""
    tp = np.diagonal(C, axis1=1, axis2=2)
    true_count = C.sum(axis=2)
    pred_count = C.sum(axis=1)
    return {
        "precision": _ratio(tp, pred_count),
        "recall": _ratio(tp, true_count),
        # 2tp / (2tp + fp + fn) == 2tp / (true + pred): sklearn's form, defined unless the class is
        # absent from both the truth and the predictions.
        "f1": _ratio(2.0 * tp, true_count + pred_count),
    }


def accuracy(C: np.ndarray) -> np.ndarray:
    return _ratio(np.trace(C, axis1=1, axis2=2), C.sum(axis=(1, 2)))


def cohen_kappa(C: np.ndarray) -> np.ndarray:
    """Unweighted Cohen's kappa; NaN where the expected disagreement is zero (sklearn's default)."""
    total = C.sum(axis=(1, 2))
    observed_disagreement = total - np.trace(C, axis1=1, axis2=2)
    t = C.sum(axis=2)
    p = C.sum(axis=1)
    # sum of off-diagonal expected counts: (total^2 - sum_k t_k p_k) / total
    expected_disagreement = _ratio(total**2 - np.einsum("bk,bk->b", t, p), total)
    return 1.0 - _ratio(observed_disagreement, expected_disagreement)


def matthews(C: np.ndarray) -> np.ndarray:
    """Multiclass MCC (Gorodkin's R_K); 0 where undefined, as sklearn returns."""
    t = C.sum(axis=2)
    p = C.sum(axis=1)
    n = C.sum(axis=(1, 2))
    correct = np.trace(C, axis1=1, axis2=2)
    cov_tp = correct * n - np.einsum("bk,bk->b", t, p)
    cov_pp = n**2 - np.einsum("bk,bk->b", p, p)
    cov_tt = n**2 - np.einsum("bk,bk->b", t, t)
    den = cov_pp * cov_tt
    out = np.zeros_like(n)
    np.divide(cov_tp, np.sqrt(den, where=den > 0, out=np.zeros_like(den)), out=out, where=den > 0)
    return out


def confusion_metrics(C: np.ndarray, class_names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """All confusion-based metrics of the `classification_stats` family, each a float64[b] array."""
    scores = per_class_scores(C)
    out = {
        "accuracy": accuracy(C),
        "balanced_accuracy": nanmean_rows(scores["recall"]),
        "macro_f1": nanmean_rows(scores["f1"]),
        "kappa": cohen_kappa(C),
        "mcc": matthews(C),
    }
    for i, name in enumerate(class_names):
        for metric in ("f1", "recall", "precision"):
            out[f"{metric}_{name}"] = scores[metric][:, i]
    return out
