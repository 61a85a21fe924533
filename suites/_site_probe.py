"""Site decodability: how well a linear probe tells the group (site) from what the model puts out.

A logistic regression is cross-validated with patient-grouped, group-stratified folds (each
group's patients dealt evenly over the folds), so no patient is in the probe's training and test
folds at once; its out-of-fold probabilities are then
scored by one-vs-rest macro AUROC with the shared bootstrap. The same probe fed only the true label
measures how much is explained by sites having different label mixes (a perfect model that reads
only lungs reaches exactly that level); fed outputs and label together, it shows what the outputs
add beyond the label mix, which is the shortcut signal whatever the model's accuracy.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from benchmark.core.labels import CLASSES
from suites._temperature import logits_from_probs


@dataclass(frozen=True)
class ProbeInputs:
    name: str             # metric suffix: "" (model outputs), "label_only", "embedding"
    features: np.ndarray  # float64[n, d]


def output_features(probs: np.ndarray) -> np.ndarray:
    """The model's logits up to a shift (log p, centred per row): linear in what the model computed."""
    z = logits_from_probs(probs)
    return z - z.mean(axis=1, keepdims=True)


def label_features(y: np.ndarray) -> np.ndarray:
    out = np.zeros((len(y), len(CLASSES)))
    out[np.arange(len(y)), y] = 1.0
    return out


def n_folds(target: np.ndarray, patients: np.ndarray, wanted: int) -> int:
    """As many folds as asked, but no more than the smallest group has patients (0: no probe)."""
    smallest = min(len(np.unique(patients[target == g])) for g in np.unique(target))
    return min(wanted, smallest) if smallest >= 2 else 0


def patient_folds(target: np.ndarray, patients: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold index per row: all images of a patient in one fold, each group's patients dealt evenly
    over the folds (a patient seen in several groups goes with its most frequent one)."""
    frame = pd.DataFrame({"patient": patients, "group": target})
    home = frame.groupby(["patient", "group"]).size().reset_index(name="n")
    home = home.sort_values(["patient", "n", "group"], ascending=[True, False, True]).drop_duplicates("patient")
    rng = np.random.default_rng([seed, 0x51E])
    fold_of: dict[str, int] = {}
    for _, members in home.groupby("group", sort=True):
        ids = np.sort(members["patient"].to_numpy().astype(str))
        ids = ids[rng.permutation(len(ids))]
        start = int(rng.integers(0, folds))
        fold_of.update({pid: (start + k) % folds for k, pid in enumerate(ids)})
    return frame["patient"].astype(str).map(fold_of).to_numpy(dtype=np.int64)


def out_of_fold_scores(features: np.ndarray, target: np.ndarray, fold: np.ndarray) -> np.ndarray:
    """Out-of-fold predicted group probabilities, float64[n, n_groups]."""
    from threadpoolctl import threadpool_limits

    from suites._logistic import fit_predict_proba

    n_groups = int(target.max()) + 1
    out = np.zeros((len(target), n_groups))
    # The probe's matrices are small: BLAS threads only add overhead (ten-fold on a busy machine).
    with warnings.catch_warnings(), threadpool_limits(1, user_api="blas"):
        warnings.simplefilter("ignore")  # overflow chatter on degenerate folds
        for k in np.unique(fold):
            train, test = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
            classes = np.unique(target[train])
            if len(classes) == 1:  # a training fold with one group: the probe can only say that one
                out[np.ix_(test, classes)] = 1.0
                continue
            classes, probs = fit_predict_proba(features[train], target[train], features[test])
            out[np.ix_(test, classes)] = probs
    return out


def probe_fn(names: list[str], n_groups: int, baseline: str = "label_only", richer: str = "with_label"):
    """StatFn over packed scores [n, n_groups * len(names)]: macro AUROC per feature set, plus
    `excess`: the probe fed outputs and label minus the probe fed the label alone (paired: the same
    resamples). Near 0 when the outputs hold nothing about the site beyond the label mix, whatever
    the model's accuracy; above 0 when they do."""
    from benchmark.stats import classification_stats

    classes = [f"g{j}" for j in range(n_groups)]

    def fn(target, packed, w):
        out = {}
        for k, name in enumerate(names):
            block = packed[:, k * n_groups:(k + 1) * n_groups]
            out[name] = classification_stats(target, block, w, class_names=classes)["macro_auroc"]
        if richer in out and baseline in out:
            out["excess"] = out[richer] - out[baseline]
        return out
    return fn
