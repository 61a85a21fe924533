"""`moco`: MoCo v2 self-supervised pre-training of a timm encoder (He et al. 2020; Chen et al. 2020).

Two augmented views of each image; the query encoder (backbone + MLP projection head) is trained with
InfoNCE against its momentum copy's key for the other view (the positive) and a queue of earlier keys
(the negatives). Views use CXR augmentations without colour jitter: crops, small rotations, blur.
Keys are computed with shuffled batch-norm groups, the single-process stand-in for MoCo's
cross-GPU shuffle, so batch statistics cannot leak which key is the positive.
"""
from __future__ import annotations

import copy

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from baselines.augment import CONTRASTIVE, augment, normalize
from baselines.backbones import pooled_features
from baselines.runtime import Runtime
from baselines.task import Batch, Task, batches

VALIDATION_SEED = 12345  # the same views at every validation, so the numbers compare across epochs


class MoCoEncoder(nn.Module):
    """Backbone (timm classifier without its head) + the MoCo v2 MLP head; outputs unit vectors."""

    def __init__(self, backbone: nn.Module, dim: int):
        super().__init__()
        self.backbone = backbone
        d = backbone.num_features
        # MoCo v2's fc-relu-fc head, with batch norm on the hidden layer (as in MoCo v3): it keeps the
        # projections of a randomly initialised encoder from all pointing the same way, so short
        # trainings start learning at once.
        self.projector = nn.Sequential(nn.Linear(d, d, bias=False), nn.BatchNorm1d(d), nn.ReLU(inplace=True),
                                       nn.Linear(d, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projector(pooled_features(self.backbone, x)).float(), dim=1)


class MoCoTask(Task):
    phase = "pretrain-moco"

    def __init__(self, rt: Runtime, seed: int, model: nn.Module, *, dim: int = 128, queue: int = 4096,
                 temperature: float = 0.2, momentum: float = 0.99):
        super().__init__(rt, seed)
        model.reset_classifier(0)
        self.module = rt.place(MoCoEncoder(model, dim))
        self.key = copy.deepcopy(self.module).requires_grad_(False)
        self.t, self.m = temperature, momentum
        g = torch.Generator().manual_seed(seed)
        self.queue = F.normalize(torch.randn(queue, dim, generator=g), dim=1).to(rt.device)
        self.ptr = 0
        self._pending: torch.Tensor | None = None

    def loss(self, net: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        v1, _ = augment(batch.image, spec=CONTRASTIVE, gen=self.gen)
        v2, _ = augment(batch.image, spec=CONTRASTIVE, gen=self.gen)
        q = net(self.rt.layout(normalize(v1)))
        with torch.no_grad():
            self._momentum_update()
            k = self._keys(self.rt.layout(normalize(v2)))
        logits = torch.cat([(q * k).sum(1, keepdim=True), q @ self.queue.T], dim=1) / self.t
        target = torch.zeros(len(q), dtype=torch.long, device=q.device)
        self._pending = k
        return F.cross_entropy(logits, target), {"top1": (logits.argmax(1) == 0).float().mean()}

    def after_step(self) -> None:
        keys = _gather(self._pending) if self.rt.distributed else self._pending
        n = min(len(keys), len(self.queue))
        idx = (self.ptr + torch.arange(n, device=self.queue.device)) % len(self.queue)
        self.queue[idx] = keys[-n:].to(self.queue.dtype)
        self.ptr = int((self.ptr + n) % len(self.queue))

    @torch.no_grad()
    def _momentum_update(self) -> None:
        for pk, pq in zip(self.key.parameters(), self.module.parameters()):
            pk.mul_(self.m).add_(pq.detach(), alpha=1 - self.m)

    @torch.no_grad()
    def _keys(self, x: torch.Tensor) -> torch.Tensor:
        """Keys of a shuffled batch, its batch-norm statistics taken in groups, then unshuffled."""
        n = len(x)
        groups = 4 if n >= 16 else 2 if n >= 4 else 1
        perm = torch.randperm(n, generator=self.gen).to(x.device)
        keys = torch.cat([self.key(chunk) for chunk in x[perm].chunk(groups)])
        out = torch.empty_like(keys)
        out[perm] = keys
        return out

    @torch.no_grad()
    def validate(self, loader: DataLoader) -> dict[str, float]:
        """In-batch InfoNCE between two fixed views of held-out images (the query encoder on both)."""
        gen = torch.Generator().manual_seed(VALIDATION_SEED)
        was = self.module.training
        self.module.eval()
        total, top1, n = 0.0, 0.0, 0
        for b in batches(loader, self.rt, where="validation"):
            if len(b.image) < 2:
                continue
            v1, _ = augment(b.image, spec=CONTRASTIVE, gen=gen)
            v2, _ = augment(b.image, spec=CONTRASTIVE, gen=gen)
            with self.rt.autocast():
                q1 = self.module(self.rt.layout(normalize(v1)))
                q2 = self.module(self.rt.layout(normalize(v2)))
            logits = q1 @ q2.T / self.t
            target = torch.arange(len(q1), device=q1.device)
            total += float(F.cross_entropy(logits, target, reduction="sum"))
            top1 += float((logits.argmax(1) == target).sum())
            n += len(q1)
        self.module.train(was)
        return {"infonce": total / n, "top1": top1 / n} if n else {}


def _gather(x: torch.Tensor) -> torch.Tensor:
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)
