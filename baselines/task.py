"""What the shared training loop asks of each baseline's phase (supervised, MoCo, inpainting, ...)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader

from baselines.runtime import Runtime


@dataclass
class Batch:
    """One batch on the training device; images are canonical ([0, 1], not yet normalized)."""

    image: torch.Tensor       # [B, 1, S, S] float
    label: torch.Tensor       # [B] long, canonical class index
    seg: torch.Tensor         # [B, 2, S, S] float, (opacity, lung)
    seg_known: torch.Tensor   # [B, 2] bool


class Task:
    """One training phase. `module` is what gets optimized (wrapped in DDP); `loss` calls it through
    `net` (the wrapped module) so that gradients are synchronized across processes."""

    phase: str = "train"
    module: nn.Module

    def __init__(self, rt: Runtime, seed: int):
        # Each process draws its own augmentations: the seed includes the rank.
        self.gen = torch.Generator().manual_seed(seed * 1009 + rt.rank)
        self.rt = rt

    def parameters(self) -> list[nn.Parameter]:
        return [p for p in self.module.parameters() if p.requires_grad]

    def train_mode(self) -> None:
        self.module.train()

    def loss(self, net: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def after_step(self) -> None:
        """Work after each optimizer step (MoCo's momentum encoder and queue)."""

    def validate(self, loader: DataLoader) -> dict[str, float]:
        """Validation numbers for train_log.json (run on the main process, in eval mode)."""
        return {}


def batches(loader: DataLoader, rt: Runtime, *, where: str):
    """Device batches from a loader; the first undecodable image stops training with its row."""
    from baselines.data import first_error
    from benchmark.core.errors import DataError

    for image, label, seg, known, errors in loader:
        bad = first_error(errors)
        if bad:
            raise DataError(bad, where=where)
        yield Batch(image=rt.to_device(image), label=rt.to_device(label),
                    seg=rt.to_device(seg).float(), seg_known=rt.to_device(known))
