"""The one JSON sanitiser: numbers as JSON can hold them.

JSON has no NaN or infinity (Python's json writes them, other readers refuse them) and knows no
numpy types; an undefined number (a metric on a class with no images, a CI with too few resamples)
is written as null, so a reader sees "undefined", never a made-up 0.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np


def finite(x: Any) -> float | None:
    """One number for JSON: a float, or None where it is missing, NaN or infinite."""
    if x is None or isinstance(x, bool):
        return None if x is None else float(x)
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def json_safe(obj: Any) -> Any:
    """A structure json.dumps(..., allow_nan=False) accepts: numpy scalars and arrays to Python,
    tuples to lists, keys to strings, NaN/inf to None; anything else is left as it is."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


__all__ = ["finite", "json_safe"]
