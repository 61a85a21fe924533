"""Forward passes: decode, letterbox, apply views on the model's device, store each finished batch.

Each image is decoded and resized once per batch; every view that still lacks predictions for those
rows is applied to the same batch. Only `benchmark.execution.runner` calls this module, and only when the
prediction store lacks something.
"""
from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from benchmark.data.dataset import Dataset
from benchmark.views.embedding import EMBEDDING_VIEW
from benchmark.core.errors import CxrbenchError, DataError, ModelOutputError
from benchmark.models.output_checks import warn_if_constant
from benchmark.core.progress import advance_bar, progress_bar
from benchmark.views.base import BatchContext, parse_view


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


MAX_BOXES = 64  # opacity boxes per image handed to views (batches need one shape); more are dropped


class _Prepared(TorchDataset):
    """Decodes row i to the model's input geometry. Errors travel as strings, so the main process can
    report them as one line after saving every batch before them."""

    def __init__(self, dataset: Dataset, rows: np.ndarray, size: tuple[int, int], keep_aspect: bool,
                 with_masks: bool, with_boxes: bool = False, interpolation: str = "bilinear"):
        from benchmark.data.lungs import plan_masks

        self.dataset, self.rows, self.size = dataset, rows, tuple(size)
        self.keep_aspect, self.with_masks, self.with_boxes = keep_aspect, with_masks, with_boxes
        self.interpolation = interpolation
        # Rows without a manifest mask get a segmenter's or the lung prior (benchmark.data.lungs).
        self.masks = plan_masks(dataset) if with_masks else None

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, k: int):
        from benchmark.data.geometry import letterbox, resize_image, resize_mask

        i = int(self.rows[k])
        h, w = self.size
        try:
            img = self.dataset.source.image(i)
            lb = letterbox(img.shape, (h, w), keep_aspect=self.keep_aspect)
            out = torch.from_numpy(np.ascontiguousarray(resize_image(img, lb, self.interpolation),
                                                    dtype=np.float32))[None]
            mask, boxes = self._no_mask(), self._no_boxes()
            if self.masks is not None:
                from benchmark.data.lungs import lung_mask

                mask = torch.from_numpy(resize_mask(lung_mask(self.dataset, i, img, self.masks), lb))[None]
            if self.with_boxes:
                from benchmark.data.geometry import transform_boxes
                from benchmark.data.lungs import lesion_boxes

                b = torch.from_numpy(transform_boxes(lesion_boxes(self.dataset, i), lb))[:MAX_BOXES]
                boxes[: len(b)] = b
            return i, out, mask, boxes, ""
        except CxrbenchError as exc:
            return self._failed(i, f"row {self.dataset.manifest.line(i)}: {exc}")
        except Exception as exc:  # a decoder bug must still name its row
            return self._failed(i, f"row {self.dataset.manifest.line(i)}: cannot decode image "
                                   f"({type(exc).__name__}: {exc})")

    def _failed(self, i: int, message: str):
        h, w = self.size
        return i, torch.zeros((1, h, w)), self._no_mask(), self._no_boxes(), message

    # Placeholders of one shape per run; empty when no view uses them, so nothing is built or batched.
    def _no_mask(self) -> torch.Tensor:
        return torch.zeros((1, *self.size) if self.with_masks else (0,), dtype=torch.bool)

    def _no_boxes(self) -> torch.Tensor:
        return torch.full((MAX_BOXES, 4) if self.with_boxes else (0, 4), float("nan"))


def forward(model, dataset, todo: Sequence[str], entries, done, missing, *, batch_size, workers, seed, progress,
            stats) -> None:
    """Compute the views named in `todo` for the rows in `missing`, writing each batch to its entry."""
    views = [(spec, parse_view(spec)) for spec in todo]
    fusion = _Fusion(model, todo)
    card_in = model.card.input
    with_masks = any(v.needs_masks for _, v in views)
    with_boxes = any(v.needs_boxes for _, v in views)
    prepared = _Prepared(dataset, missing, card_in.size, card_in.keep_aspect, with_masks, with_boxes,
                         card_in.interpolation)
    loader = DataLoader(prepared, batch_size=batch_size, shuffle=False, num_workers=workers,
                        pin_memory=model.device.type == "cuda", persistent_workers=False)
    ids = dataset.table["image_id"].to_numpy()
    bar = progress_bar(progress, len(missing), f"{model.card.name} on {dataset.name}")
    checked_outputs = False
    stored = 0
    try:
        for rows, images, masks, boxes, errors in loader:
            bad = [e for e in errors if e]
            if bad:
                raise DataError(bad[0], where=_where(dataset))
            rows_np = rows.numpy()
            images = images.to(model.device, non_blocking=True)
            ctx = BatchContext(
                rows=rows,
                seeds=torch.tensor([image_seed(seed, ids[i]) for i in rows_np], dtype=torch.int64),
                lung_masks=masks.to(model.device) if with_masks else None,
                boxes=[b[~b.isnan().any(dim=1)].to(model.device) for b in boxes] if with_boxes else [],
            )
            needs = {spec: ~done[spec][rows_np] for spec, _ in views}
            try:
                answers = fusion.answers(model, images, needs)
            except ModelOutputError as exc:
                raise _traced(exc, dataset, rows_np) from exc
            for spec, view in views:
                need = needs[spec]
                if not need.any():
                    continue
                if spec in answers:
                    probs = answers[spec]
                else:
                    try:
                        with _autocast(model.device):
                            x = view.apply(images, ctx)
                            # A view may answer with something other than probabilities (benchmark.views.embedding).
                            probs = view.answer(model, x) if hasattr(view, "answer") else model.predict(x)
                    except ModelOutputError as exc:
                        raise _traced(exc, dataset, rows_np, spec) from exc
                entries[spec].write_chunk(rows_np[need], np.asarray(probs)[need])
                if spec == "clean" and not checked_outputs and need.sum() >= 2:
                    checked_outputs = True  # first batch only: the check costs nothing after that
                    warn_if_constant(model.card.name, np.asarray(probs)[need])
                if spec != EMBEDDING_VIEW:  # forward_images counts predictions, as a run reports them
                    stats.forward_images += int(need.sum())
            advance_bar(bar, len(rows_np))
            stored += len(rows_np)
    except torch.cuda.OutOfMemoryError as exc:
        raise _out_of_memory(model, batch_size, stored) from exc
    finally:
        if bar:
            bar[0].stop()


def _out_of_memory(model, batch_size: int, stored: int) -> CxrbenchError:
    """Device memory ran out outside the model's forward (a view on the GPU, the copy of a batch;
    the forward itself halves its batch, benchmark.models.loaded): one line naming --batch-size."""
    return CxrbenchError(f"out of {model.device.type} memory on a batch of {batch_size} images (the {stored} "
                         "images before it are stored and will not be computed again): rerun with a smaller "
                         "--batch-size", where="--batch-size")


CHECK_IMAGES = 4  # images run both ways on the first fused batch


class _Fusion:
    """The clean probabilities and the embedding of a batch from one forward pass, when the model
    splits its forward into features and head (LoadedModel.predict_and_embed). The first fused batch
    is also run plainly: a module whose forward is not head(features) is then not fused."""

    def __init__(self, model, todo: Sequence[str]):
        self.on = "clean" in todo and EMBEDDING_VIEW in todo and getattr(model, "fuses_embedding", False)
        self.checked = False

    def answers(self, model, images: torch.Tensor, needs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not (self.on and needs["clean"].any() and needs[EMBEDDING_VIEW].any()):
            return {}
        with _autocast(model.device):
            probs, feats = model.predict_and_embed(images)
            if not self.checked:  # on a few images: a whole extra batch would cost a few % of a run
                self.checked = True
                few = images[:CHECK_IMAGES]
                fused_few, _ = model.predict_and_embed(few)
                if not np.allclose(fused_few, model.predict(few), rtol=0, atol=1e-6):
                    self.on = False
                    return {"clean": model.predict(images)}
        feats = np.zeros((len(images), 0)) if feats is None else np.asarray(feats, dtype=np.float64)
        return {"clean": probs, EMBEDDING_VIEW: feats}  # zero columns: a model without features


def _where(dataset: Dataset) -> str:
    """The manifest file as given (whatever its name), or the dataset's folder or name."""
    return dataset.manifest.where


_BATCH_ROW = re.compile(r"\((?:row|rows) (\d+)")


def _traced(exc: ModelOutputError, dataset: Dataset, rows: np.ndarray, view: str = "clean") -> ModelOutputError:
    """A model error about row k of a batch, retold about the manifest row and image file it came from
    (the batch is the loader's, so its row numbers mean nothing to the user)."""
    found = _BATCH_ROW.search(str(exc))
    if found is None or exc.where is not None or int(found.group(1)) >= len(rows):
        return exc
    i = int(rows[int(found.group(1))])
    manifest = dataset.manifest
    image = manifest.table["path"].iat[i]
    on_view = "" if view == "clean" else f" (view {view})"
    return ModelOutputError(f"row {manifest.line(i)} (image {image}){on_view}: {exc}", where=_where(dataset))


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)
