"""Boundary checks shared by the stats engine: shapes, finiteness, label range.

Every public entry point converts and checks its arrays here once, so the kernels behind it can
assume clean float64/int64 inputs and stay branch-free.
"""
from __future__ import annotations

import numpy as np

from benchmark.core.errors import CxrbenchError


def labels_array(y, *, name: str = "y", n_classes: int | None = None) -> np.ndarray:
    """Integer class indices as int64[n]; with `n_classes`, every value must lie in [0, n_classes)."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise CxrbenchError(f"expected a 1-D array of class indices, found shape {arr.shape}", where=name)
    if arr.size == 0:
        raise CxrbenchError("expected at least one image, found none", where=name)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise CxrbenchError("expected integer class indices, found non-integer or NaN values", where=name)
    elif arr.dtype.kind not in "iub":
        raise CxrbenchError(f"expected integer class indices, found dtype {arr.dtype}", where=name)
    arr = arr.astype(np.int64)
    if n_classes is not None and (arr.min() < 0 or arr.max() >= n_classes):
        bad = arr[(arr < 0) | (arr >= n_classes)][0]
        raise CxrbenchError(f"class index {bad} outside [0, {n_classes})", where=name)
    return arr


def binary_array(y01, *, name: str = "y01") -> np.ndarray:
    """A 0/1 outcome vector as int64[n]."""
    arr = labels_array(y01, name=name)
    if arr.min() < 0 or arr.max() > 1:
        raise CxrbenchError("expected binary labels (0 or 1), found other values", where=name)
    return arr


def probs_array(probs, *, n: int, name: str = "probs", n_classes: int | None = None) -> np.ndarray:
    """Scores as float64[n, K] (K >= 2), finite."""
    arr = np.asarray(probs, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != n or arr.shape[1] < 2:
        raise CxrbenchError(f"expected shape ({n}, K>=2), found {arr.shape}", where=name)
    if n_classes is not None and arr.shape[1] != n_classes:
        raise CxrbenchError(f"expected {n_classes} columns (one per class), found {arr.shape[1]}", where=name)
    if not np.all(np.isfinite(arr)):
        raise CxrbenchError("found NaN or infinite scores", where=name)
    return arr


def unit_probs(probs: np.ndarray, *, name: str = "probs") -> np.ndarray:
    """Extra check for probability metrics (calibration): values in [0, 1]."""
    if probs.min() < 0.0 or probs.max() > 1.0:
        raise CxrbenchError("expected probabilities in [0, 1], found values outside", where=name)
    return probs


def score_array(score, *, n: int, name: str = "score") -> np.ndarray:
    """A 1-D finite score vector as float64[n]."""
    arr = np.asarray(score, dtype=np.float64)
    if arr.shape != (n,):
        raise CxrbenchError(f"expected shape ({n},), found {arr.shape}", where=name)
    if not np.all(np.isfinite(arr)):
        raise CxrbenchError("found NaN or infinite scores", where=name)
    return arr


def weights_array(w, *, n: int, name: str = "w", check_values: bool = True) -> np.ndarray:
    """Per-image weights as C-contiguous float64[b, n] (a 1-D vector becomes one row), finite and
    non-negative. `check_values=False` leaves the value check to the caller (`check_weight_values`
    on each block of rows, while the block is in cache)."""
    arr = np.ascontiguousarray(w, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != n:
        raise CxrbenchError(f"expected weights of shape (b, {n}), found {arr.shape}", where=name)
    if check_values:
        check_weight_values(arr, name=name)
    return arr


def check_weight_values(w: np.ndarray, *, name: str = "w") -> None:
    # min/max reductions make no temporaries; NaN fails the first comparison.
    if w.size and not (w.min() >= 0.0 and w.max() < np.inf):
        raise CxrbenchError("weights must be finite and non-negative", where=name)


def group_codes(ids, *, n: int, name: str) -> tuple[np.ndarray, int]:
    """Arbitrary ids (patient ids, site names) -> (int64 codes in [0, G), G)."""
    arr = np.asarray(ids)
    if arr.shape != (n,):
        raise CxrbenchError(f"expected one id per image, shape ({n},), found {arr.shape}", where=name)
    if arr.dtype.kind == "f" and np.any(np.isnan(arr)):
        raise CxrbenchError("found missing (NaN) ids", where=name)
    if arr.dtype == object and any(v is None for v in arr):
        raise CxrbenchError("found missing (None) ids", where=name)
    try:
        _, codes = np.unique(arr, return_inverse=True)
    except TypeError:  # mixed types (e.g. ints and strings in one object column) do not sort
        _, codes = np.unique(arr.astype(str), return_inverse=True)
    codes = codes.reshape(-1).astype(np.int64)
    return codes, int(codes.max()) + 1
