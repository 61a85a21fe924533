"""Per-image embeddings of the clean view, for suites that probe what a model's features encode.

A suite asks for them with `needs_embeddings=True` in its registration. The runner computes them
as one more view, `embedding` (the clean image, answered by `LoadedModel.embed` instead of
`predict`), so they are cached in the prediction store beside the probabilities and cost nothing on
a rerun. A model without features stores zero columns, so it is not asked again. A run folder
keeps them in `embeddings.npz` (image ids + float32 matrix) beside `predictions.parquet`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.core.files import atomic_path

EMBEDDING_VIEW = "embedding"
FILE_NAME = "embeddings.npz"


def embedding_frame(image_ids, values: np.ndarray) -> pd.DataFrame | None:
    """Embeddings as a frame indexed by image_id (what `SuiteConfig.embeddings` holds); None when the
    model had none (stored as zero columns) or they are not finite."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] == 0 or not np.isfinite(values).all():
        return None
    return pd.DataFrame(values, index=pd.Index(np.asarray(image_ids, dtype=str), name="image_id"))


def write_embeddings(run_dir: Path, frame: pd.DataFrame) -> Path:
    path = Path(run_dir) / FILE_NAME
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, image_id=frame.index.to_numpy(dtype=str), values=frame.to_numpy(dtype=np.float32))
    return path


def read_embeddings(path: str | Path) -> pd.DataFrame | None:
    """The embeddings beside a predictions file (or in a run folder), or None when there are none."""
    path = Path(path)
    if path.is_file() and path.name != FILE_NAME:
        path = path.with_name(FILE_NAME)
    elif path.is_dir():
        path = path / FILE_NAME
    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            return embedding_frame(z["image_id"], z["values"])
    except (OSError, ValueError, KeyError):
        return None  # an unreadable side file only costs the embedding probe, not the run
