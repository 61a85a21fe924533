"""Plans forward passes and serves predictions; the only module that asks for a model.

Predictions come from the store whenever they are there: a cached rerun neither loads the model nor
imports torch. What is missing is computed by `benchmark.execution.forward`, batch by batch.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from benchmark.data.dataset import Dataset
from benchmark.execution.store import PredictionStore, prediction_key


@dataclass
class RunStats:
    forward_images: int = 0
    cached_views: list[str] = field(default_factory=list)
    computed_views: list[str] = field(default_factory=list)
    seconds: float = 0.0
    device: str = "none (all predictions cached)"
    lung_mask_sources: np.ndarray | None = None  # per row, when a view uses lung masks (benchmark.data.lungs)


def predict_views(model, dataset: Dataset, views: Sequence[str], *, store: PredictionStore,
                  device: str | None = None, batch_size: int = 32, workers: int = 0, seed: int = 0,
                  progress: bool = True) -> tuple[dict[str, np.ndarray], RunStats]:
    """Probabilities [n, 4] (canonical order) per view spec, from the store where possible.

    `model` is a ModelRef (or a LoadedModel): only its fingerprint is needed unless something must
    be computed, and only then is it loaded onto the device.
    """
    t0 = time.perf_counter()
    entries, stats = fill_views(model, dataset, views, store=store, device=device, batch_size=batch_size,
                                workers=workers, seed=seed, progress=progress)
    out = {v: (entries[v].load() if entries[v].complete() else entries[v].finalize()) for v in views}
    stats.seconds = time.perf_counter() - t0
    return out, stats


def fill_views(model, dataset: Dataset, views: Sequence[str], *, store: PredictionStore,
               rows: np.ndarray | None = None, device: str | None = None, batch_size: int = 32,
               workers: int = 0, seed: int = 0, progress: bool = True) -> tuple[dict, RunStats]:
    """Compute what the store lacks of `views` for `rows` (all rows when None), batch by batch.

    Returns the views' store entries and what was done. A shard (benchmark.execution.shards) is such a set
    of rows; its predictions stay as pieces in the store until a run that needs every row merges them.
    """
    t0 = time.perf_counter()
    stats = RunStats()
    masks = _mask_plan(dataset, views)
    stats.lung_mask_sources = None if masks is None else masks.sources
    entries = view_entries(model, dataset, views, store, masks)
    todo = [v for v in views if not entries[v].complete()]
    stats.cached_views = [v for v in views if v not in todo]
    if todo:
        done = {v: entries[v].done_mask() for v in todo}
        wanted = np.ones(len(dataset), dtype=bool) if rows is None else _row_mask(rows, len(dataset))
        missing = np.flatnonzero(wanted & ~np.logical_and.reduce([done[v] for v in todo]))
        # A view whose wanted rows are all stored (finished shards, say) is served from the store.
        todo = [v for v in todo if not done[v][wanted].all()]
        stats.cached_views = [v for v in views if v not in todo]
        if len(missing):
            from benchmark.execution.forward import forward, pick_device

            on = pick_device(device)  # a ModelRef loads there; a LoadedModel given directly is moved there
            loaded = model.load(on) if hasattr(model, "load") else model.to(on) if hasattr(model, "to") else model
            stats.device = str(loaded.device)
            forward(loaded, dataset, todo, entries, done, missing, batch_size=batch_size, workers=workers,
                    seed=seed, progress=progress, stats=stats)
        stats.computed_views = list(todo)
    stats.seconds = time.perf_counter() - t0
    return entries, stats


def view_entries(model, dataset: Dataset, views: Sequence[str], store: PredictionStore, masks=None) -> dict:
    """The store entry of each view of this model on this dataset (masks: benchmark.data.lungs.plan_masks)."""
    from benchmark.core.labels import PROB_COLUMNS
    from benchmark.views.embedding import EMBEDDING_VIEW

    if masks is None:
        masks = _mask_plan(dataset, views)
    fingerprints = dataset.source.fingerprints()
    return {
        v: store.entry(prediction_key(
            model_sha256=model.fingerprint(), preprocessing=model.preprocessing_key(),
            manifest_sha256=dataset.manifest.sha256,
            view=f"{v}#lungs:{masks.key}" if masks is not None and _uses_masks(v) else v), fingerprints,
            width=None if v == EMBEDDING_VIEW else len(PROB_COLUMNS))
        for v in views
    }


def _row_mask(rows: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    out[np.asarray(rows, dtype=np.int64)] = True
    return out


def _uses_masks(spec: str) -> bool:
    from benchmark.core.registry import VIEWS

    return VIEWS.spec(spec.partition("@")[0]).needs_masks  # declared, so a cached rerun imports no torch


def _mask_plan(dataset: Dataset, views: Sequence[str]):
    """Where each row's lung mask comes from, when a view uses masks; it is part of those views'
    cache keys, so a segmenter installed later recomputes them."""
    if not any(_uses_masks(v) for v in views):
        return None
    from benchmark.data.lungs import plan_masks

    return plan_masks(dataset)
