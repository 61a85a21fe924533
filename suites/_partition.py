"""Patient-disjoint calibration/evaluation parts for post-hoc recalibration.

The manifest's `split == "val"` rows are the calibration part when the data has them; otherwise a
seeded, label-stratified half of the patients is. Either way no patient contributes to both parts.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from benchmark.data.manifest import patient_labels
from benchmark.core.labels import CLASSES


@dataclass(frozen=True)
class Partition:
    fit: np.ndarray      # bool per row: the calibration part (T is fitted here)
    evaluate: np.ndarray  # bool per row: the other part (scaled metrics are measured here)
    source: str          # how the parts were chosen, for the report
    dropped: int = 0     # rows in neither part (patients with both val and non-val images)


def _split_of(frame: pd.DataFrame, manifest: pd.DataFrame) -> pd.Series | None:
    if "split" in frame.columns:
        split = frame["split"]
    elif "split" in manifest.columns and "image_id" in manifest.columns:
        split = frame["image_id"].map(manifest.drop_duplicates("image_id").set_index("image_id")["split"])
    else:
        return None
    split = split.astype("string").str.strip().str.lower()
    return split if (split == "val").any() else None


def stratified_half(frame: pd.DataFrame, *, seed: int) -> np.ndarray:
    """Bool per row: the patient falls in the calibration half. Within each class (of the patient's
    label), patients are shuffled with `seed` and dealt alternately, so both halves share the mix."""
    labels = patient_labels(frame)
    rng = np.random.default_rng([seed, 0xCA1])
    chosen: set[str] = set()
    for c in CLASSES:
        members = np.sort(labels.index[labels == c].to_numpy().astype(str))
        members = members[rng.permutation(len(members))]
        start = int(rng.integers(0, 2))  # who gets the odd patient is a coin, not always the same half
        chosen.update(members[start::2].tolist())
    return frame["patient_id"].astype(str).isin(chosen).to_numpy()


def calibration_partition(frame: pd.DataFrame, manifest: pd.DataFrame, *, seed: int) -> Partition:
    """Split the rows of a predictions frame (image_id, patient_id, label) into the two parts."""
    split = _split_of(frame, manifest)
    if split is None:
        fit = stratified_half(frame, seed=seed)
        return Partition(fit, ~fit, f"label-stratified half of the patients (seed {seed})")
    is_val = (split == "val").fillna(False).to_numpy()
    patients = frame["patient_id"].astype(str)
    val_patients = set(patients[is_val])
    mixed = patients.isin(val_patients).to_numpy() & ~is_val
    return Partition(is_val, ~is_val & ~mixed, "manifest split == 'val'", dropped=int(mixed.sum()))
