"""A model ready for the runner: card + module, fed canonical images, returning canonical probabilities."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.core.errors import ModelOutputError
from benchmark.core.labels import CLASSES
from benchmark.models.card import ModelCard, load_card, model_fingerprint, preprocessing_key
from benchmark.models.digest import weights_digest
from benchmark.models.loaders import ModuleLike, load_module

# How far a row of a "probabilities" output may stray from summing to 1 (float16 models included).
PROB_SUM_TOLERANCE = 1e-3


def _prepare(module: ModuleLike, device: torch.device) -> ModuleLike:
    if isinstance(module, torch.nn.Module):
        try:
            module.eval()
        except NotImplementedError:
            # torch.export modules fix train/eval at export time and are placed by their loader.
            return module
        module = module.to(device)
    return module


class OutOfMemory(ModelOutputError):
    """The model does not fit the device's memory even one image at a time."""


def _free_cuda() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _concat(outs: list[Any]) -> Any:
    """The pieces' outputs as one: arrays stacked, tuples item by item, None stays None."""
    if len(outs) == 1:
        return outs[0]
    if isinstance(outs[0], tuple):
        return tuple(_concat([o[k] for o in outs]) for k in range(len(outs[0])))
    if any(o is None for o in outs):
        return None
    return np.concatenate(outs, axis=0)


def _rows(mask: torch.Tensor) -> str:
    rows = torch.nonzero(mask).flatten().tolist()
    shown = ", ".join(str(r) for r in rows[:8])
    return f"row {shown}" if len(rows) == 1 else f"rows {shown}{', ...' if len(rows) > 8 else ''}"


class LoadedModel:
    """`predict` returns float64 [B, 4] probabilities in the order of benchmark.core.labels.CLASSES."""

    def __init__(self, card: ModelCard, module: ModuleLike, *, sha256: str,
                 weights_path: str | Path | None = None, device: str | torch.device = "cpu",
                 loading: dict[str, Any] | None = None):
        self.card = card
        # What loading did to the checkpoint (wrappers passed, key prefix stripped): provenance.
        self.loading = dict(loading or {})
        self.device = torch.device(device)
        self.module = _prepare(module, self.device)
        self.sha256 = sha256
        self.weights_path = Path(weights_path) if weights_path is not None else None
        shape = (1, -1, 1, 1)
        self._mean = torch.tensor(card.input.mean, dtype=torch.float32, device=self.device).view(shape)
        self._std = torch.tensor(card.input.std, dtype=torch.float32, device=self.device).view(shape)
        self._index = torch.tensor(card.class_index, dtype=torch.long)
        # Rows per forward call once the device ran out of memory (None: the whole batch). Kept for
        # the rest of the run, so every later batch does not fail once before it fits.
        self.max_rows: int | None = None

    def to(self, device: str | torch.device) -> LoadedModel:
        """This model on `device`, moved in place (a model registered in process is built before the
        run knows its --device). A module its loader placed (torch.export) stays where it is."""
        device = torch.device(device)
        if device == self.device or not isinstance(self.module, torch.nn.Module):
            return self
        try:
            self.module.eval()
        except NotImplementedError:
            return self
        self.module = self.module.to(device)
        self.device = device
        self._mean, self._std = self._mean.to(device), self._std.to(device)
        return self

    @property
    def name(self) -> str:
        return self.card.name

    def __repr__(self) -> str:
        return f"LoadedModel({self.card.name!r}, format={self.card.format!r}, sha256={self.sha256[:12]})"

    # ------------------------------------------------------------ inputs

    def preprocessing_key(self) -> str:
        return preprocessing_key(self.card)

    def fingerprint(self) -> str:
        return model_fingerprint(self.card, self.sha256)

    def preprocess(self, batch: torch.Tensor) -> torch.Tensor:
        """[B, 1, H, W] canonical images in [0, 1] at card.input.size -> the model's input."""
        height, width = self.card.input.size
        if batch.ndim != 4 or batch.shape[1] != 1 or tuple(batch.shape[2:]) != (height, width):
            raise ValueError(f"model {self.name!r} expects canonical batches [B, 1, {height}, {width}], "
                             f"got {tuple(batch.shape)}")
        x = batch.to(device=self.device, dtype=torch.float32)
        x = x.expand(-1, self.card.input.channels, -1, -1)
        return (x - self._mean) / self._std

    # ------------------------------------------------------------ outputs

    def _pick_output(self, out: Any) -> Any:
        if isinstance(out, (tuple, list)) and out:
            return out[0]
        if isinstance(out, dict) and out:
            keys = ("logits",) if self.card.output == "logits" else ("probabilities", "probs")
            return next((out[k] for k in keys if k in out), next(iter(out.values())))
        return out

    def _check(self, out: Any, batch_size: int, where: str | None) -> torch.Tensor:
        out = self._pick_output(out)
        if not isinstance(out, torch.Tensor):
            raise ModelOutputError(f"model {self.name!r} returned an object of type "
                                   f"{type(out).__name__!r}, not a tensor",
                                   where=where)
        if tuple(out.shape) != (batch_size, self.card.num_classes):
            raise ModelOutputError(
                f"model {self.name!r} returned shape {tuple(out.shape)} for a batch of {batch_size}; "
                f"card says {self.card.num_classes} classes", where=where)
        out = out.detach().to("cpu", torch.float64)
        for bad, label in ((torch.isnan(out), "NaN"), (torch.isinf(out), "inf")):
            if bad.any():
                rows = _rows(bad.any(dim=1))
                raise ModelOutputError(
                    f"model {self.name!r} returned {label} for a batch of {batch_size} ({rows})",
                    where=where)
        return out

    def _to_probabilities(self, out: torch.Tensor, where: str | None) -> torch.Tensor:
        if self.card.output == "logits":
            return torch.softmax(out, dim=1)
        sums = out.sum(dim=1)
        off = ((sums - 1).abs() > PROB_SUM_TOLERANCE) | (out < -PROB_SUM_TOLERANCE).any(dim=1)
        if off.any():
            row = int(torch.nonzero(off)[0])
            raise ModelOutputError(
                f"model {self.name!r} has output 'probabilities' but {_rows(off)} do not form a "
                f"distribution (row {row} sums to {float(sums[row]):.4g}); if it returns logits, "
                "set \"output\": \"logits\" in its card", where=where)
        return out.clamp(min=0) / out.clamp(min=0).sum(dim=1, keepdim=True)

    def _forward(self, fn: Any, batch: torch.Tensor, where: str | None) -> Any:
        x = self.preprocess(batch)
        try:
            return fn(x)
        except torch.cuda.OutOfMemoryError:
            raise  # _in_pieces halves the batch and retries
        except Exception as exc:
            raise ModelOutputError(
                f"model {self.name!r} failed on a batch of shape {tuple(x.shape)}: "
                f"{(str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]} (a checkpoint "
                "exported with a fixed batch size or input size fails like this)", where=where) from exc

    def _in_pieces(self, call: Any, batch: torch.Tensor, where: str | None) -> Any:
        """`call` on pieces of the batch of at most `max_rows` rows. When the device runs out of
        memory the piece is halved and retried, down to one image; only then is it an error, one
        line naming --batch-size (the batches already computed are in the prediction store)."""
        n = int(batch.shape[0])
        size = min(n, self.max_rows or n) or 1
        outs, start = [], 0
        while start < n:
            try:
                outs.append(call(batch[start:start + size]))
            except torch.cuda.OutOfMemoryError as exc:
                _free_cuda()
                if size == 1:
                    raise OutOfMemory(
                        f"model {self.name!r} ran out of {self.device.type} memory even on one image at a "
                        f"time (a batch of {n} was halved down to 1, so a smaller --batch-size does not help); "
                        "free the device's memory or run with --device cpu",
                        where=where) from exc
                size = self.max_rows = max(1, size // 2)
                continue
            start += size
        return _concat(outs) if outs else call(batch)

    def predict(self, batch: torch.Tensor, *, where: str | None = None) -> np.ndarray:
        """Canonical probabilities [B, 4]; classes the model does not predict get 0.

        `where` (e.g. "images 128-191") is put in front of any error message.
        """
        return self._in_pieces(lambda b: self._predict(b, where), batch, where)

    def _predict(self, batch: torch.Tensor, where: str | None) -> np.ndarray:
        with torch.inference_mode():
            return self._canonical(self._forward(self.module, batch, where), batch.shape[0], where)

    def _canonical(self, raw: Any, batch_size: int, where: str | None) -> np.ndarray:
        probs = self._to_probabilities(self._check(raw, batch_size, where), where)
        canonical = torch.zeros((probs.shape[0], len(CLASSES)), dtype=torch.float64)
        canonical[:, self._index] = probs
        return canonical.numpy()

    @property
    def fuses_embedding(self) -> bool:
        """True when one pass gives probabilities and pooled features: the module splits its forward
        into forward_features and forward_head (timm's convention, forward = head(features))."""
        m = self.module
        return callable(getattr(m, "forward_features", None)) and callable(getattr(m, "forward_head", None)) \
            and not hasattr(m, "embed")

    def predict_and_embed(self, batch: torch.Tensor, *, where: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """`predict` and `embed` of one batch, from a single forward_features pass when the module
        allows it (so a run that needs both costs one pass), else from two."""
        return self._in_pieces(lambda b: self._predict_and_embed(b, where), batch, where)

    def _predict_and_embed(self, batch: torch.Tensor, where: str | None) -> tuple[np.ndarray, np.ndarray | None]:
        if not self.fuses_embedding:
            return self.predict(batch, where=where), self.embed(batch, where=where)
        with torch.inference_mode():
            fmap = self._pick_output(self._forward(self.module.forward_features, batch, where))
            try:
                feats = self.module.forward_head(fmap, pre_logits=True).flatten(1)
            except TypeError:  # a forward_head without pre_logits
                return self.predict(batch, where=where), self.embed(batch, where=where)
            probs = self._canonical(self.module.forward_head(fmap), batch.shape[0], where)
        return probs, feats.detach().to("cpu", torch.float64).numpy()

    def embed(self, batch: torch.Tensor, *, where: str | None = None) -> np.ndarray | None:
        """Pooled features [B, D] when the module exposes `embed` or `forward_features`, else None."""
        fn = getattr(self.module, "embed", None) or getattr(self.module, "forward_features", None)
        if fn is None:
            return None
        return self._in_pieces(lambda b: self._embed(fn, b, where), batch, where)

    def _embed(self, fn: Any, batch: torch.Tensor, where: str | None) -> np.ndarray:
        with torch.inference_mode():
            feats = self._forward(fn, batch, where)
            feats = self._pool(feats)
        return feats.detach().to("cpu", torch.float64).numpy()

    def _pool(self, feats: Any) -> torch.Tensor:
        feats = self._pick_output(feats)
        head = getattr(self.module, "forward_head", None)
        if head is not None and not hasattr(self.module, "embed"):
            try:  # timm models: the head's own pooling (global average, class token ...)
                return head(feats, pre_logits=True).flatten(1)
            except TypeError:
                pass
        if feats.ndim == 4:
            return feats.mean(dim=(2, 3))
        if feats.ndim == 3:  # tokens [B, T, D]
            return feats.mean(dim=1)
        return feats.flatten(1)


def load_model_file(path: str | Path, *, trust_code: bool = False,
                    device: str | torch.device = "cpu") -> LoadedModel:
    """A checkpoint file, folder or card path -> a LoadedModel; errors name the file and field."""
    card, weights = load_card(Path(path))
    digest = weights_digest(weights, card)
    notes: dict[str, Any] = {}
    module = load_module(card, weights, trust_code=trust_code, device=device, notes=notes)
    return LoadedModel(card, module, sha256=digest, weights_path=weights, device=device, loading=notes)
