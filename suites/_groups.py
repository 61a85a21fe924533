"""Grouping a predictions frame by a manifest column, and per-group metrics with worst and gap.

As in WILDS' groupers, groups come from metadata: `site` by default, any manifest column on request;
per-group, worst-group and gap are one mechanism whatever the column means.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from benchmark.core.errors import CxrbenchError
from benchmark.core.labels import CLASSES
from benchmark.core.metric_spec import MetricSpec, column_tag
from suites.calibration import METRICS as CALIBRATION_METRICS
from suites.subtype import CLASSIFICATION

HEADLINE = ("accuracy", "balanced_accuracy", "macro_f1", "kappa", "mcc", "macro_auroc", "map")
# The metrics measured per group, with their meaning: "worst" is the minimum of a higher-is-better
# metric and the maximum of a lower-is-better one (ECE), as the spec says, never as the name suggests.
PER_GROUP: dict[str, MetricSpec] = {
    s.name: s for s in (*CLASSIFICATION, *CALIBRATION_METRICS) if s.name in (*HEADLINE, "ece")}


@dataclass(frozen=True)
class Groups:
    column: str            # the manifest column
    tag: str               # the column as it appears in metric names (`worst_<tag>_...`)
    names: tuple[str, ...]  # group values, sorted
    codes: np.ndarray      # int64 per row, index into names
    patients: np.ndarray   # int64 per group: distinct patients
    eligible: np.ndarray   # bool per group: counted in worst/gap (enough patients)

    def mask(self, j: int) -> np.ndarray:
        return self.codes == j


def group_values(frame: pd.DataFrame, manifest: pd.DataFrame, column: str) -> pd.Series:
    """The grouping column for each row of `frame` as strings (NA where unknown)."""
    if column in frame.columns:
        values = frame[column]
    elif column in manifest.columns and "image_id" in manifest.columns:
        lookup = manifest.drop_duplicates("image_id").set_index("image_id")[column]
        values = frame["image_id"].map(lookup)
    else:
        cols = sorted(set(manifest.columns) | set(frame.columns))
        raise CxrbenchError(f"no column {column!r} to group by (columns: {', '.join(map(str, cols))})",
                            where="--group-by")
    values = values.astype("string").str.strip()
    return values.mask(values == "").reset_index(drop=True)


def make_groups(frame: pd.DataFrame, values: pd.Series, column: str, *, min_patients: int) -> Groups:
    names = tuple(sorted(values.dropna().unique()))
    codes = values.map({g: i for i, g in enumerate(names)}).to_numpy(dtype=np.int64)
    patients = frame.groupby(codes)["patient_id"].nunique().reindex(range(len(names)), fill_value=0).to_numpy()
    big = patients >= min_patients
    eligible = big if big.sum() >= 2 else np.ones(len(names), dtype=bool)
    return Groups(column, column_tag(column), names, codes, patients.astype(np.int64), eligible)


def strata_for(groups: Groups, frame: pd.DataFrame) -> np.ndarray | None:
    """Resample within groups when every patient belongs to one group (keeps group sizes fixed)."""
    per_patient = pd.Series(groups.codes).groupby(frame["patient_id"].astype(str).to_numpy()).nunique()
    return groups.codes if (per_patient <= 1).all() else None


def per_group_fn(groups: Groups, n_bins: int):
    """StatFn: every headline metric and ECE per group, then worst and gap over eligible groups."""
    from benchmark.stats import classification_stats
    from benchmark.stats.calibration import fixed_bin_metrics

    masks = [groups.mask(j) for j in range(len(groups.names))]

    def fn(y, probs, w):
        out: dict[str, np.ndarray] = {}
        per: dict[str, list[np.ndarray]] = {m: [] for m in (*HEADLINE, "ece")}
        for g, m in zip(groups.names, masks):
            stats = classification_stats(y[m], probs[m], w[:, m], class_names=CLASSES)
            stats["ece"] = fixed_bin_metrics(y[m], probs[m], w[:, m], n_bins)["ece"]
            for metric in per:
                out[f"{metric}[{g}]"] = stats[metric]
                per[metric].append(stats[metric])
        for metric, arrs in per.items():
            values = np.stack(arrs, axis=1)[:, groups.eligible]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a resample where every group is NaN
                hi, lo = np.nanmax(values, axis=1), np.nanmin(values, axis=1)
            out[f"worst_{groups.tag}_{metric}"] = worst_of(PER_GROUP[metric], lo, hi)
            out[f"{groups.tag}_gap_{metric}"] = hi - lo
        return out
    return fn


def worst_of(spec: MetricSpec, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The worst group's value: its minimum when higher is better, its maximum when lower is."""
    if spec.higher_is_better is None:
        raise ValueError(f"metric {spec.name!r} has no better direction, so no worst group")
    return lo if spec.higher_is_better else hi


def composition_rows(frame: pd.DataFrame, groups: Groups, min_patients: int) -> list[dict]:
    """Per group: images, patients, class counts and shares, and the small-group flag."""
    rows = []
    for j, g in enumerate(groups.names):
        labels = frame["label"][groups.mask(j)]
        n = int(len(labels))
        row = {groups.column: g, "images": n, "patients": int(groups.patients[j])}
        for c in CLASSES:
            k = int((labels == c).sum())
            row[c] = f"{k} ({k / n:.0%})" if n else "0"
        row["flag"] = f"under {min_patients} patients" if groups.patients[j] < min_patients else ""
        rows.append(row)
    return rows
