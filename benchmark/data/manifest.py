"""The dataset manifest: one validated table, whatever layout the data came in.

Columns follow DESIGN's generic CSV form. `image_id` is added (the path without its suffix when the
manifest has none) because predictions, caches and paired comparisons are keyed by it.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from benchmark.errors import DataError
from benchmark.labels import canonicalize_labels

REQUIRED = ("path", "label")
OPTIONAL = ("image_id", "patient_id", "study_id", "site", "view", "lung_mask", "boxes", "split")
HASHED = ("image_id", "path", "label", "patient_id", "study_id", "site", "view", "lung_mask", "boxes", "split")


@dataclass
class Manifest:
    """A validated manifest. `table` has one row per image in a fixed order; `root` resolves paths."""

    name: str
    table: pd.DataFrame
    root: Path | None
    sha256: str
    explicit: frozenset[str] = frozenset()  # optional columns the data really had

    def __len__(self) -> int:
        return len(self.table)

    @property
    def has_patients(self) -> bool:
        """False when each image stands for its own patient (no patient_id column)."""
        return "patient_id" in self.explicit


def table_sha256(table: pd.DataFrame) -> str:
    """A hash of what defines the dataset (ids, files, labels, groups), not of its row order's dtypes."""
    cols = [c for c in HASHED if c in table.columns]
    canon = table[cols].astype("string").fillna("").to_csv(index=False, lineterminator="\n")
    return hashlib.sha256(canon.encode()).hexdigest()


def validate_table(raw: pd.DataFrame, *, where: str) -> tuple[pd.DataFrame, frozenset[str]]:
    """Check DESIGN's columns, canonicalize labels and fill the optional columns.

    Errors name the manifest and, where there is one, the row (as a 1-based CSV line number).
    """
    missing = [c for c in REQUIRED if c not in raw.columns]
    if missing:
        raise DataError(
            f"required column {missing[0]!r} is missing (columns found: {', '.join(map(str, raw.columns))})",
            where=where,
        )
    if len(raw) == 0:
        raise DataError("the dataset is empty (no rows)", where=where)
    table = raw.copy()
    explicit = [c for c in OPTIONAL if c in table.columns]
    for col in ("path",):
        empty = table[col].isna() | (table[col].astype(str).str.strip() == "")
        if empty.any():
            raise DataError(f"row {int(empty.to_numpy().argmax()) + 2}: column {col!r} is empty", where=where)
    table["label"] = canonicalize_labels(table["label"], where=where)
    if "image_id" not in table.columns:
        table["image_id"] = [Path(str(p)).with_suffix("").as_posix() for p in table["path"]]
    table["image_id"] = table["image_id"].astype(str)
    dup = table["image_id"].duplicated()
    if dup.any():
        row = int(dup.to_numpy().argmax())
        raise DataError(f"row {row + 2}: image_id {table['image_id'].iloc[row]!r} appears twice", where=where)
    if "patient_id" not in table.columns:
        table["patient_id"] = table["image_id"]  # each image its own patient
    table["patient_id"] = table["patient_id"].fillna(table["image_id"]).astype(str)
    for col in ("study_id", "site", "view", "lung_mask", "boxes", "split"):
        if col not in table.columns:
            table[col] = pd.NA
    if "boxes" in explicit:
        for row, value in enumerate(table["boxes"]):
            _check_boxes(value, row=row, where=where)
    return table.reset_index(drop=True), frozenset(explicit)


def _check_boxes(value: object, *, row: int, where: str) -> None:
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NA or value == "":
        return
    try:
        boxes = json.loads(value) if isinstance(value, str) else value
        ok = isinstance(boxes, list) and all(isinstance(b, list) and len(b) == 4 for b in boxes)
    except (ValueError, TypeError):
        ok = False
    if not ok:
        raise DataError(f"row {row + 2}: column 'boxes' is not a JSON list of [x1, y1, x2, y2]: {value!r}", where=where)


def load_manifest_csv(path: str | Path, *, name: str | None = None) -> Manifest:
    """Read and validate a generic manifest CSV; image paths are relative to its folder."""
    path = Path(path)
    if not path.is_file():
        raise DataError("manifest file not found", where=str(path))
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"not a readable CSV manifest ({str(exc).splitlines()[0]})", where=str(path)) from exc
    table, explicit = validate_table(raw, where=str(path))
    return Manifest(name=name or path.parent.name or path.stem, table=table, root=path.parent.resolve(),
                    sha256=table_sha256(table), explicit=explicit)


def patient_labels(table: pd.DataFrame) -> pd.Series:
    """Each patient's most frequent label (ties: the first in canonical order)."""
    from benchmark.labels import CLASSES

    order = {c: i for i, c in enumerate(CLASSES)}
    counts = table.groupby(["patient_id", "label"]).size().reset_index(name="n")
    counts["rank"] = counts["label"].map(order)
    counts = counts.sort_values(["patient_id", "n", "rank"], ascending=[True, False, True])
    return counts.drop_duplicates("patient_id").set_index("patient_id")["label"]


def resolve_path(manifest: Manifest, value: str) -> Path:
    p = Path(value)
    if not p.is_absolute() and manifest.root is not None:
        p = manifest.root / p
    return p
