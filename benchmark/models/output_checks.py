"""Does a model's output depend on the image? The classic symptom of a wrong input normalisation
(a model trained on 0-255 fed 0-1, or mean/std from another dataset) is that it does not: clearly
different images all get nearly the same probabilities. Used by `cxrbench card check` and by the
runner on its first batch."""
from __future__ import annotations

import warnings

import numpy as np

from benchmark.core.errors import ModelWarning

# Below this, the largest per-class range of probabilities across clearly different images is
# "nearly constant": a working classifier on chest X-rays moves some class by far more than 1%.
CONSTANT_SPREAD = 0.01


def output_spread(probs: np.ndarray) -> float:
    """max over classes of (max - min over images) of the probabilities; 0 for a constant model."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or len(probs) < 2:
        return float("nan")
    return float((probs.max(axis=0) - probs.min(axis=0)).max())


def constant_output_message(name: str, probs: np.ndarray) -> str | None:
    spread = output_spread(probs)
    if not spread < CONSTANT_SPREAD:  # NaN (one image) says nothing
        return None
    return (f"model {name!r} gives nearly the same probabilities to {len(probs)} different images "
            f"(largest per-class range {spread:.2g} < {CONSTANT_SPREAD}): check input.mean, input.std "
            "and input.size in its card (e.g. a model trained on 0-255 pixels fed 0-1); "
            "`cxrbench card check` shows the details")


def warn_if_constant(name: str, probs: np.ndarray) -> bool:
    message = constant_output_message(name, probs)
    if message:
        warnings.warn(message, ModelWarning, stacklevel=2)
    return message is not None
