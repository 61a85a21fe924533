"""The dataset manifest: one validated table, whatever layout the data came in.

Columns follow the README's generic manifest ("Data"). `image_id` is added (the path without its suffix when the
manifest has none) because predictions, caches and paired comparisons are keyed by it.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from benchmark.core.errors import DataError
from benchmark.core.labels import canonicalize_labels

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
    source: Path | None = None              # the manifest file itself, when there is one
    lines: tuple[int, ...] | None = None    # the file's line number of each row (blank lines skipped)

    def __len__(self) -> int:
        return len(self.table)

    def line(self, i: int) -> int:
        """Row i's line in the manifest file (the header is line 1), for error messages."""
        return self.lines[i] if self.lines is not None and i < len(self.lines) else i + 2

    @property
    def where(self) -> str:
        """The file errors about rows should name."""
        if self.source is not None:
            return str(self.source)
        return str(self.root) if self.root is not None else self.name

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
    """Check the README's manifest columns ("Data"), canonicalize labels and fill the optional columns.

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
                    sha256=table_sha256(table), explicit=explicit, source=path, lines=_record_lines(path, len(table)))


def _record_lines(path: Path, n: int) -> tuple[int, ...] | None:
    """The first line of each data record, as pandas reads them (blank lines skipped, quoted newlines
    kept inside their record); None when the count does not match, and errors fall back to row + 2."""
    try:
        with path.open(newline="", encoding="utf-8", errors="replace") as fh:
            reader = csv.reader(fh)
            starts, line = [], 1
            for record in reader:
                if record and any(field.strip() for field in record):
                    starts.append(line)
                line = reader.line_num + 1
    except (OSError, csv.Error):
        return None
    return tuple(starts[1:]) if len(starts) == n + 1 else None


def patient_labels(table: pd.DataFrame) -> pd.Series:
    """Each patient's most frequent label (ties: the first in canonical order)."""
    from benchmark.core.labels import CLASSES

    order = {c: i for i, c in enumerate(CLASSES)}
    counts = table.groupby(["patient_id", "label"]).size().reset_index(name="n")
    counts["rank"] = counts["label"].map(order)
    counts = counts.sort_values(["patient_id", "n", "rank"], ascending=[True, False, True])
    return counts.drop_duplicates("patient_id").set_index("patient_id")["label"]


def outside_path(value: str) -> str | None:
    """Why a manifest path leaves the manifest's folder (absolute, or climbing out with `..`), or None.
    Judged on the text, as written: a symlink inside the folder is the folder owner's choice."""
    if os.path.isabs(value) or Path(value).is_absolute():
        return "is absolute"
    if os.path.normpath(value).split(os.sep)[0] == "..":
        return "climbs out of the manifest's folder with '..'"
    return None


def check_paths_inside(manifest: Manifest) -> None:
    """--strict-paths: every image and mask path stays inside the manifest's folder."""
    for col in ("path", "lung_mask"):
        if col not in manifest.table.columns:
            continue
        for i, value in enumerate(manifest.table[col]):
            if not isinstance(value, str) or not value:
                continue
            why = outside_path(value)
            if why is not None:
                raise DataError(f"row {manifest.line(i)}: {col} {value!r} {why}; --strict-paths refuses paths "
                                "outside the manifest's folder", where=manifest.where)


def resolve_path(manifest: Manifest, value: str) -> Path:
    p = Path(value)
    if not p.is_absolute() and manifest.root is not None:
        p = manifest.root / p
    return p
