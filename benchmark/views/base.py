"""Views: deterministic transforms of the canonical image batch that suites ask predictions for.

A view is named by a string, `base` or `base@param` (e.g. `clean`, `noise@0.05`). The runner decodes
each image once and applies every requested view to the same batch, on the model's device.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from benchmark.core.errors import CxrbenchError
from benchmark.core.registry import VIEWS


@dataclass
class BatchContext:
    """What a view may use besides the pixels: row indices, per-image seeds, masks and boxes."""

    rows: torch.Tensor                       # [B] manifest row indices
    seeds: torch.Tensor                      # [B] per-image seeds, fixed by the run seed and the image id
    lung_masks: torch.Tensor | None = None   # [B, 1, H, W] bool, in the resized geometry
    boxes: list[torch.Tensor] = field(default_factory=list)  # per image [N, 4], resized geometry


class View:
    name: str = "clean"
    needs_masks: bool = False
    needs_boxes: bool = False

    def __init__(self, param: str | None = None):
        self.param = param

    @property
    def key(self) -> str:
        """The view's full spec; part of the prediction cache key."""
        return self.name if self.param is None else f"{self.name}@{self.param}"

    def apply(self, batch: torch.Tensor, ctx: BatchContext) -> torch.Tensor:
        raise NotImplementedError


class CleanView(View):
    name = "clean"

    def apply(self, batch: torch.Tensor, ctx: BatchContext) -> torch.Tensor:
        return batch


def parse_view(spec: str) -> View:
    base, sep, param = spec.partition("@")
    factory = VIEWS.get(base)
    try:
        return factory(param if sep else None)
    except (TypeError, ValueError) as exc:
        raise CxrbenchError(f"view {spec!r}: bad parameter ({exc})", where="views") from exc


class EmbeddingView(CleanView):
    """The clean image, answered with the model's pooled features instead of its probabilities
    (benchmark.views.embedding)."""

    name = "embedding"

    def answer(self, model, batch) -> np.ndarray:
        feats = model.embed(batch)
        return np.zeros((batch.shape[0], 0)) if feats is None else np.asarray(feats, dtype=np.float64)
