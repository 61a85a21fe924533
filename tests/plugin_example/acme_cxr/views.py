"""The view's implementation (imports torch; loaded only when a run uses the view)."""
from __future__ import annotations

import torch

from benchmark.views.base import BatchContext, View


class FlipView(View):
    name = "acme_flip"

    def apply(self, batch: torch.Tensor, ctx: BatchContext) -> torch.Tensor:
        return torch.flip(batch, dims=(-1,))
