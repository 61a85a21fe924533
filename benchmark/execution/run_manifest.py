"""The manifest columns a run's suites read, kept in the run folder (`manifest.parquet`).

Suites are pure functions of predictions and the manifest, and `predictions.parquet` carries only
image, label, patient and site. The calibration suite also reads `split`, the subtype suite
`study_id`, the shortcut suite `boxes`, and `--group-by COL` any column: without them nobody can
recompute a run's metrics from its folder (`cxrbench verify`). File paths stay out: they describe
the submitter's machine, not the data.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchmark.core.errors import CxrbenchError
from benchmark.core.files import atomic_path

FILE_NAME = "manifest.parquet"
# What the built-in suites look up in the manifest, plus identity columns.
SUITE_COLUMNS = ("image_id", "patient_id", "study_id", "label", "site", "split", "boxes", "view")
PATH_COLUMNS = ("path", "lung_mask")


def suite_columns(manifest: pd.DataFrame, group_by: str) -> list[str]:
    wanted = [*SUITE_COLUMNS, group_by]
    return [c for c in dict.fromkeys(wanted) if c in manifest.columns and c not in PATH_COLUMNS]


def write_run_manifest(run_dir: Path, manifest: pd.DataFrame, group_by: str = "site") -> Path | None:
    """manifest.parquet, or None when a column cannot be stored as it is (converting it could change
    what a recomputation sees, so `verify` then says it cannot verify rather than guess)."""
    path = Path(run_dir) / FILE_NAME
    frame = manifest[suite_columns(manifest, group_by)].reset_index(drop=True)
    if "boxes" in frame.columns:  # suites count only JSON text here; anything else reads as absent
        frame["boxes"] = frame["boxes"].map(lambda v: v if isinstance(v, str) else None).astype(object)
    try:
        with atomic_path(path) as tmp:
            frame.to_parquet(tmp, index=False)
    except Exception:  # noqa: BLE001 - a column parquet cannot hold (mixed types): the run goes on unverifiable
        return None
    return path


def read_run_manifest(run_dir: Path) -> pd.DataFrame | None:
    """The run's manifest columns, or None when the folder has none (runs before this file existed)."""
    path = Path(run_dir) / FILE_NAME
    if not path.is_file():
        return None
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many types for a bad file
        raise CxrbenchError(f"cannot read ({type(exc).__name__}: {str(exc).splitlines()[0]})", where=str(path)) from exc
    if "image_id" not in frame.columns:
        raise CxrbenchError("column 'image_id' is missing", where=str(path))
    return frame
