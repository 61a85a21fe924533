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
    # `--option KEY=VALUE` strings of the run; each suite declares its keys and types as a dataclass
    # (SuiteSpec.options) and reads them typed with `suite_options(config, Options)`.
    options: Mapping[str, str] = field(default_factory=dict)
    # Clean-image embeddings (DataFrame indexed by image_id) when a suite registered with
    # needs_embeddings=True and the model has them; None otherwise (benchmark.views.embedding).
    embeddings: Any = None


@dataclass(frozen=True)
class GroupedEstimate:
    """One metric measured on one group of images (`balanced_accuracy` on `site` = `site_a`):
    structured fields instead of a name like `balanced_accuracy[site_a]` (result.json v2)."""
    metric: str
    column: str
    group: str
    estimate: Any  # benchmark.stats.Estimate

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "group": {"column": self.column, "value": self.group},
                **self.estimate.to_json()}


@dataclass
class SuiteResult:
    metrics: dict[str, Any] = field(default_factory=dict)   # name -> benchmark.stats.Estimate
    tables: dict[str, Any] = field(default_factory=dict)    # JSON-able rows or matrices
    figures: dict[str, Any] = field(default_factory=dict)   # plotly figure dicts
    notes: list[str] = field(default_factory=list)
    grouped: list[GroupedEstimate] = field(default_factory=list)  # per-group metrics

    def to_json(self) -> dict[str, Any]:
        return {
            "metrics": {k: v.to_json() for k, v in self.metrics.items()},
            "grouped": [g.to_json() for g in self.grouped],
            "tables": self.tables,
            "figures": self.figures,
            "notes": self.notes,
        }


def suite_options(config: SuiteConfig, options: type) -> Any:
    """The run's `--option` values for a suite's options dataclass, converted to its fields' types."""
    from benchmark.core.specs import parse_options

    return parse_options(options, config.options)


def option_class(name: str, defaults: Mapping[str, Any]) -> type:
    """A frozen options dataclass (SuiteSpec.options) from a suite's table of defaults, so that the
    defaults are written once."""
    import dataclasses

    return dataclasses.make_dataclass(name, [(k, type(v), dataclasses.field(default=v)) for k, v in defaults.items()],
                                      frozen=True)


SuiteFn = Callable[[pd.DataFrame, pd.DataFrame, SuiteConfig], SuiteResult]


def register_suite(name: str, *, views: Sequence[str], description: str, needs_embeddings: bool = False,
                   options: type | None = None, metrics: Sequence[Any] | None = None) -> Callable[[SuiteFn], SuiteFn]:
    """Declare and register a suite (benchmark.core.specs.SuiteSpec); `metrics` defaults to the
    module's METRICS. The decorated function is returned unchanged, with the spec attached."""
    def decorator(fn: SuiteFn) -> SuiteFn:
        SUITES.register(name, fn, views=views, description=description, needs_embeddings=needs_embeddings,
                        options=options, metrics=tuple(metrics) if metrics is not None else None)
        return fn
    return decorator


def suite_needs_embeddings(name: str) -> bool:
    return SUITES.spec(name).needs_embeddings


def suite_views(name: str) -> tuple[str, ...]:
    return SUITES.spec(name).views


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
