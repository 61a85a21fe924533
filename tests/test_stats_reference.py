"""Slow, obviously-correct references for the stats engine (scikit-learn, netcal, plain loops),
shared by the other test_stats_* modules, plus checks that the references agree with each other."""
from __future__ import annotations

import math
import warnings

import numpy as np
from sklearn import metrics as skm

NAMES5 = ("c0", "c1", "c2", "c3", "c4")


def close(a: float, b: float, tol: float = 1e-9) -> bool:
    """Equal within tol, or both NaN."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= tol


def assert_metrics_close(ours: dict[str, float], ref: dict[str, float], tol: float = 1e-9, where: str = "") -> None:
    assert set(ref) <= set(ours), sorted(set(ref) - set(ours))
    bad = {k: (ours[k], ref[k]) for k in ref if not close(float(ours[k]), float(ref[k]), tol)}
    assert not bad, f"{where}: {bad}"


def sklearn_classification(y: np.ndarray, probs: np.ndarray, names) -> dict[str, float]:
    """Every classification_stats metric from scikit-learn calls on an unweighted sample."""
    k = probs.shape[1]
    pred = probs.argmax(axis=1)
    present = set(np.unique(y).tolist())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = {
            "accuracy": skm.accuracy_score(y, pred),
            "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
            "macro_f1": skm.f1_score(y, pred, average="macro"),
            "kappa": skm.cohen_kappa_score(y, pred),
            "mcc": skm.matthews_corrcoef(y, pred),
        }
        prec, rec, f1, _ = skm.precision_recall_fscore_support(y, pred, labels=list(range(k)), zero_division=np.nan)
        aurocs, aps = [], []
        for c in range(k):
            pos = (y == c).astype(int)
            aurocs.append(skm.roc_auc_score(pos, probs[:, c]) if 0 < pos.sum() < pos.size else math.nan)
            aps.append(skm.average_precision_score(pos, probs[:, c]) if pos.sum() > 0 else math.nan)
    for c, name in enumerate(names[:k]):
        out[f"precision_{name}"], out[f"recall_{name}"], out[f"f1_{name}"] = prec[c], rec[c], f1[c]
        out[f"auroc_{name}"], out[f"ap_{name}"] = aurocs[c], aps[c]
    defined = [a for a in aurocs if not math.isnan(a)]
    out["macro_auroc"] = float(np.mean(defined)) if defined else math.nan
    defined = [a for a in aps if not math.isnan(a)]
    out["map"] = float(np.mean(defined)) if defined else math.nan
    if len(present) == k and k > 2 and np.allclose(probs.sum(axis=1), 1.0):
        # The documented equality with the one-call multiclass form.
        assert close(out["macro_auroc"], skm.roc_auc_score(y, probs, multi_class="ovr", average="macro"))
    return {key: float(val) for key, val in out.items()}


def duplicate(weights: np.ndarray) -> np.ndarray:
    """Indices of the sample in which image i appears weights[i] times."""
    return np.repeat(np.arange(weights.size), weights.astype(int))


def _equal_width_ece(values: np.ndarray, outcome: np.ndarray, n_bins: int) -> tuple[float, float]:
    """(ece, mce) of confidences `values` against 0/1 `outcome` with np.histogram's bins."""
    edges = np.linspace(0, 1, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, n_bins - 1)
    ece, mce = 0.0, 0.0
    for j in range(n_bins):
        sel = idx == j
        if sel.any():
            gap = abs(outcome[sel].mean() - values[sel].mean())
            ece += sel.mean() * gap
            mce = max(mce, gap)
    return ece, mce


def adaptive_ece_reference(conf: np.ndarray, correct: np.ndarray, n_bins: int) -> float:
    """Equal-mass ECE with inverted-CDF quantile edges, in exact integer arithmetic for the rank."""
    n = conf.size
    s = np.sort(conf)
    edges = [s[-(-n * j // n_bins) - 1] for j in range(1, n_bins)]  # smallest x with F(x) >= j/n_bins
    idx = np.searchsorted(np.array(edges), conf, side="right")
    return sum((idx == j).mean() * abs(correct[idx == j].mean() - conf[idx == j].mean())
               for j in range(n_bins) if (idx == j).any())


def reference_calibration(y: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> dict[str, float]:
    eps = np.finfo(np.float64).eps
    k = probs.shape[1]
    clipped = np.clip(probs, eps, 1 - eps)
    pred = probs.argmax(axis=1)
    conf = clipped[np.arange(y.size), pred]
    correct = (pred == y).astype(float)
    ece, mce = _equal_width_ece(conf, correct, n_bins)
    classwise = np.mean([_equal_width_ece(clipped[:, c], (y == c).astype(float), n_bins)[0] for c in range(k)])
    return {
        "ece": ece, "mce": mce, "classwise_ece": float(classwise),
        "ece_adaptive": adaptive_ece_reference(conf, correct, n_bins),
        "brier": skm.brier_score_loss(y, probs, labels=list(range(k)), scale_by_half=False),
        "nll": skm.log_loss(y, probs, labels=list(range(k))),
    }


def test_reference_adaptive_matches_numpy_quantile_off_boundaries():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.3, 1.0, 97)  # 97 is prime: j * 97 / 15 is never an integer
    correct = (rng.random(97) < conf).astype(float)
    edges = np.quantile(conf, np.arange(1, 15) / 15, method="inverted_cdf")
    idx = np.searchsorted(edges, conf, side="right")
    expected = sum((idx == j).mean() * abs(correct[idx == j].mean() - conf[idx == j].mean())
                   for j in range(15) if (idx == j).any())
    assert close(adaptive_ece_reference(conf, correct, 15), expected, 1e-12)


def test_reference_classification_matches_sklearn_multiclass_forms():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 60)
    probs = rng.dirichlet(np.ones(4), 60)
    ref = sklearn_classification(y, probs, NAMES5)
    assert close(ref["map"], skm.average_precision_score(np.eye(4)[y], probs, average="macro"))
