"""What a suite is: a pure function of predictions plus the manifest, registered by name.

Suites never call a model. They declare the views they need; the runner computes those once.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from benchmark.core.labels import CLASSES, PROB_COLUMNS
from benchmark.core.registry import SUITES


@dataclass(frozen=True)
class SuiteConfig:
    bootstrap: Any  # benchmark.stats.BootstrapConfig
    seed: int = 0
    group_by: str = "site"
    options: Mapping[str, str] = field(default_factory=dict)  # suite-specific, from `--option KEY=VALUE`
    # Clean-image embeddings (DataFrame indexed by image_id) when a suite registered with
    # needs_embeddings=True and the model has them; None otherwise (benchmark.views.embedding).
    embeddings: Any = None


@dataclass
class SuiteResult:
    metrics: dict[str, Any] = field(default_factory=dict)   # name -> benchmark.stats.Estimate
    tables: dict[str, Any] = field(default_factory=dict)    # JSON-able rows or matrices
    figures: dict[str, Any] = field(default_factory=dict)   # plotly figure dicts
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "metrics": {k: v.to_json() for k, v in self.metrics.items()},
            "tables": self.tables,
            "figures": self.figures,
            "notes": self.notes,
        }


SuiteFn = Callable[[pd.DataFrame, pd.DataFrame, SuiteConfig], SuiteResult]


def register_suite(name: str, *, views: Sequence[str], description: str,
                   needs_embeddings: bool = False) -> Callable[[SuiteFn], SuiteFn]:
    def decorator(fn: SuiteFn) -> SuiteFn:
        fn.views = tuple(views)  # type: ignore[attr-defined]
        SUITES.register(name, fn, views=tuple(views), description=description, needs_embeddings=needs_embeddings)
        return fn
    return decorator


def suite_needs_embeddings(name: str) -> bool:
    return bool(SUITES.meta(name).get("needs_embeddings", False))


def suite_views(name: str) -> tuple[str, ...]:
    return tuple(getattr(SUITES.get(name), "views", ("clean",)))


# --- helpers shared by suites ---------------------------------------------------------------

def view_frame(predictions: pd.DataFrame, view: str) -> pd.DataFrame:
    return predictions[predictions["view"] == view].reset_index(drop=True)


def arrays(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(labels as canonical indices, probabilities [n, K]) of a predictions frame."""
    y = frame["label"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy(dtype=np.int64)
    return y, frame[list(PROB_COLUMNS)].to_numpy(dtype=np.float64)


def clusters_of(frame: pd.DataFrame) -> np.ndarray | None:
    """Patient ids as integer codes when the data has patients; None resamples images."""
    if "patient_id" not in frame.columns or frame["patient_id"].isna().any():
        return None
    codes, _ = pd.factorize(frame["patient_id"].astype(str))
    return codes
