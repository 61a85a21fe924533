"""Plans and executes forward passes; the only module that touches a model.

Each image is decoded and resized once per batch; every view that still lacks predictions for those
rows is applied to the same batch on the model's device. Finished batches go straight to the store.
"""
from __future__ import annotations

import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from benchmark.data.dataset import Dataset
from benchmark.errors import CxrbenchError, DataError
from benchmark.store import PredictionStore, prediction_key
from benchmark.views import BatchContext, View


def pick_device(requested: str | None = None) -> torch.device:
    if requested and requested != "auto":
        try:
            device = torch.device(requested)
        except RuntimeError as exc:
            raise CxrbenchError(f"unknown device {requested!r}", where="--device") from exc
        if device.type == "cuda" and not torch.cuda.is_available():
            raise CxrbenchError("CUDA was requested but no GPU is available", where="--device")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def image_seed(run_seed: int, image_id: str) -> int:
    """A per-image seed that does not depend on batch size, order or sharding."""
    return zlib.crc32(f"{run_seed}:{image_id}".encode()) & 0x7FFFFFFF


class _Prepared(TorchDataset):
    """Decodes row i to the model's input geometry. Errors travel as strings, so the main process can
    report them as one line after saving every batch before them."""

    def __init__(self, dataset: Dataset, rows: np.ndarray, size: tuple[int, int], keep_aspect: bool,
                 with_masks: bool):
        self.dataset, self.rows, self.size = dataset, rows, tuple(size)
        self.keep_aspect, self.with_masks = keep_aspect, with_masks

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, k: int):
        from benchmark.data.geometry import letterbox, resize_image, resize_mask

        i = int(self.rows[k])
        h, w = self.size
        try:
            img = self.dataset.source.image(i)
            lb = letterbox(img.shape, (h, w), keep_aspect=self.keep_aspect)
            out = torch.from_numpy(np.ascontiguousarray(resize_image(img, lb), dtype=np.float32))[None]
            mask = torch.zeros((1, h, w), dtype=torch.bool)
            if self.with_masks:
                m = self.dataset.source.lung_mask(i)
                if m is not None:
                    mask = torch.from_numpy(resize_mask(m, lb))[None]
            return i, out, mask, ""
        except CxrbenchError as exc:
            return i, torch.zeros((1, h, w)), torch.zeros((1, h, w), dtype=torch.bool), f"row {i + 2}: {exc}"
        except Exception as exc:  # a decoder bug must still name its row
            return i, torch.zeros((1, h, w)), torch.zeros((1, h, w), dtype=torch.bool), (
                f"row {i + 2}: cannot decode image ({type(exc).__name__}: {exc})")


@dataclass
class RunStats:
    forward_images: int = 0
    cached_views: list[str] = field(default_factory=list)
    computed_views: list[str] = field(default_factory=list)
    seconds: float = 0.0


def predict_views(model, dataset: Dataset, views: Sequence[View], *, store: PredictionStore,
                  batch_size: int = 32, workers: int = 0, seed: int = 0,
                  progress: bool = True) -> tuple[dict[str, np.ndarray], RunStats]:
    """Probabilities [n, 4] (canonical order) per view key, from the store where possible."""
    t0 = time.perf_counter()
    stats = RunStats()
    fingerprints = dataset.source.fingerprints()
    entries = {
        v.key: store.entry(prediction_key(
            model_sha256=model.fingerprint(), preprocessing=model.preprocessing_key(),
            manifest_sha256=dataset.manifest.sha256, view=v.key), fingerprints)
        for v in views
    }
    todo = [v for v in views if not entries[v.key].complete()]
    stats.cached_views = [v.key for v in views if v not in todo]
    if todo:
        done = {v.key: entries[v.key].done_mask() for v in todo}
        missing = np.flatnonzero(~np.logical_and.reduce([done[v.key] for v in todo]))
        if len(missing):
            _forward(model, dataset, todo, entries, done, missing, batch_size=batch_size, workers=workers,
                     seed=seed, progress=progress, stats=stats)
        stats.computed_views = [v.key for v in todo]
    out = {v.key: (entries[v.key].load() if entries[v.key].complete() else entries[v.key].finalize())
           for v in views}
    stats.seconds = time.perf_counter() - t0
    return out, stats


def _forward(model, dataset, todo, entries, done, missing, *, batch_size, workers, seed, progress, stats):
    card_in = model.card.input
    with_masks = any(v.needs_masks for v in todo)
    prepared = _Prepared(dataset, missing, card_in.size, card_in.keep_aspect, with_masks)
    loader = DataLoader(prepared, batch_size=batch_size, shuffle=False, num_workers=workers,
                        pin_memory=model.device.type == "cuda", persistent_workers=False)
    ids = dataset.table["image_id"].to_numpy()
    bar = _progress(progress, len(missing), f"{model.card.name} on {dataset.name}")
    try:
        for rows, images, masks, errors in loader:
            bad = [e for e in errors if e]
            if bad:
                raise DataError(bad[0], where=_where(dataset))
            rows_np = rows.numpy()
            images = images.to(model.device, non_blocking=True)
            ctx = BatchContext(
                rows=rows,
                seeds=torch.tensor([image_seed(seed, ids[i]) for i in rows_np], dtype=torch.int64),
                lung_masks=masks.to(model.device) if with_masks else None,
            )
            for view in todo:
                need = ~done[view.key][rows_np]
                if not need.any():
                    continue
                with _autocast(model.device):
                    probs = model.predict(view.apply(images, ctx))
                entries[view.key].write_chunk(rows_np[need], np.asarray(probs)[need])
                stats.forward_images += int(need.sum())
            if bar:
                bar[0].advance(bar[1], len(rows_np))
    finally:
        if bar:
            bar[0].stop()


def _where(dataset: Dataset) -> str:
    root = dataset.manifest.root
    return str(root / "manifest.csv") if root else dataset.name


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def _progress(enabled: bool, total: int, label: str):
    if not enabled:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    bar = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                   TimeRemainingColumn(), transient=True)
    task = bar.add_task(label, total=total)
    bar.start()
    return bar, task
