"""`supervised`: a timm classifier trained with class-weighted cross-entropy and CXR augmentation.

The same task fine-tunes the MoCo and inpainting encoders (full, or a linear probe on frozen features).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from baselines.augment import SUPERVISED, augment, normalize
from baselines.runtime import Runtime
from baselines.task import Batch, Task, batches
from benchmark.core.labels import CLASSES


class SupervisedTask(Task):
    def __init__(self, rt: Runtime, seed: int, model: nn.Module, class_weights: torch.Tensor, *,
                 hflip: bool = False, linear: bool = False, phase: str = "supervised"):
        super().__init__(rt, seed)
        self.phase = phase
        self.module = model
        self.linear = linear
        self.weights = class_weights.to(rt.device)
        self.spec = replace(SUPERVISED, hflip=hflip)
        if linear:
            for p in model.parameters():
                p.requires_grad_(False)
            for p in model.get_classifier().parameters():
                p.requires_grad_(True)

    def train_mode(self) -> None:
        # A linear probe keeps the encoder exactly as pre-trained, batch-norm statistics included.
        self.module.train(not self.linear)
        if self.linear:
            self.module.get_classifier().train()

    def loss(self, net: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x, _ = augment(batch.image, spec=self.spec, gen=self.gen)
        logits = net(self.rt.layout(normalize(x)))
        return F.cross_entropy(logits.float(), batch.label, weight=self.weights), {}

    def validate(self, loader: DataLoader) -> dict[str, float]:
        y, logits = predict_logits(self.module, loader, self.rt)
        return classification_metrics(y, logits, self.weights.cpu())


@torch.no_grad()
def predict_logits(model: nn.Module, loader: DataLoader, rt: Runtime) -> tuple[np.ndarray, torch.Tensor]:
    was = model.training
    model.eval()
    ys, outs = [], []
    for b in batches(loader, rt, where="validation"):
        with rt.autocast():
            outs.append(model(rt.layout(normalize(b.image))).float().cpu())
        ys.append(b.label.cpu())
    model.train(was)
    return torch.cat(ys).numpy(), torch.cat(outs)


def classification_metrics(y: np.ndarray, logits: torch.Tensor, weights: torch.Tensor | None = None) -> dict[str, float]:
    """Validation loss (the training objective), accuracy, balanced accuracy and macro-F1."""
    from sklearn.metrics import f1_score

    if len(y) == 0:
        return {}
    loss = F.cross_entropy(logits, torch.as_tensor(y), weight=weights)
    pred = logits.argmax(1).numpy()
    present = [c for c in range(len(CLASSES)) if (y == c).any()]
    recall = [float((pred[y == c] == c).mean()) for c in present]
    return {
        "loss": float(loss),
        "accuracy": float((pred == y).mean()),
        "balanced_accuracy": float(np.mean(recall)),
        "macro_f1": float(f1_score(y, pred, labels=list(range(len(CLASSES))), average="macro", zero_division=0)),
    }
