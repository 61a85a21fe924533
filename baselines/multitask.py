"""`multitask`: a U-Net on a timm feature pyramid with a classification head and a segmentation head.

The segmentation head has two channels, opacity and lungs; each is trained where its target is known
(opacity from masks or boxes rasterized to filled rectangles, lungs from lung masks). Loss = class-
weighted CE + seg_weight * (BCE + Dice). `forward` returns class logits (the harness contract);
`embed` gives pooled encoder features and `segment` per-channel probabilities, which make the model a
lung / opacity segmenter (baselines/segmenter.py).
"""
from __future__ import annotations

from dataclasses import replace
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from baselines.augment import SUPERVISED, augment, normalize
from baselines.backbones import MULTITASK_BACKBONES, create_features
from baselines.data import SEG_CHANNELS
from baselines.runtime import Runtime
from baselines.supervised import classification_metrics
from baselines.task import Batch, Task, batches


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class MultiTaskNet(nn.Module):
    def __init__(self, backbone: str, num_classes: int = 4, in_chans: int = 1, seg_channels: int = 2):
        super().__init__()
        if in_chans != 1:
            raise ValueError(f"the multitask network takes one channel, not {in_chans}")
        self.encoder = create_features(backbone)
        chans = list(self.encoder.feature_info.channels())
        # Decoder widths halve the encoder's, between 16 and 256 (resnet50: 32, 128, 256, 256, 256).
        width = [int(min(256, max(16, c // 2))) for c in chans]
        self.center = nn.Conv2d(chans[-1], width[-1], 1)
        # Decoder level i (deep to shallow): upsample the level below, concatenate the skip, two convs.
        self.up = nn.ModuleList(nn.Sequential(_conv(width[i + 1] + chans[i], width[i]), _conv(width[i], width[i]))
                                for i in range(len(chans) - 1))
        self.seg_head = nn.Sequential(_conv(width[0], 16), nn.Conv2d(16, seg_channels, 1))
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Linear(chans[-1], num_classes)

    def _classify(self, deepest: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(deepest.mean(dim=(2, 3))))

    def _decode(self, feats: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        y = self.center(feats[-1])
        for i in range(len(feats) - 2, -1, -1):
            y = F.interpolate(y, size=feats[i].shape[-2:], mode="nearest")
            y = self.up[i](torch.cat([y, feats[i]], dim=1))
        y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
        return self.seg_head(y)

    def forward_all(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(class logits [B, K], segmentation logits [B, 2, H, W]) from one encoder pass."""
        feats = self.encoder(x)
        return self._classify(feats[-1]), self._decode(feats, x.shape[-2:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._classify(self.encoder(x)[-1])

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)[-1].mean(dim=(2, 3))

    def segment(self, x: torch.Tensor) -> torch.Tensor:
        """Per-channel probabilities [B, 2, H, W] (opacity, lungs) for a normalized input batch."""
        return torch.sigmoid(self._decode(self.encoder(x), x.shape[-2:]))


def build_multitask(backbone: str, num_classes: int, in_chans: int) -> MultiTaskNet:
    return MultiTaskNet(backbone, num_classes=num_classes, in_chans=in_chans)


def __getattr__(name: str):
    # The loaders' fixed table names one builder per backbone: build_multitask_<backbone>.
    prefix = "build_multitask_"
    if name.startswith(prefix) and name[len(prefix):] in MULTITASK_BACKBONES:
        return partial(build_multitask, name[len(prefix):])
    raise AttributeError(name)


class _Joint(nn.Module):
    """Training view of the network: forward returns both heads (DDP syncs what forward touches)."""

    def __init__(self, net: MultiTaskNet):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net.forward_all(x)


def seg_losses(logits: torch.Tensor, target: torch.Tensor, known: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(BCE, 1 - soft Dice), each averaged over the channels whose target is known for some image."""
    logits = logits.float()
    w = known.float()[:, :, None, None]
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(dim=(2, 3))
    bce = (bce * known.float()).sum() / known.float().sum().clamp(min=1)
    p = torch.sigmoid(logits) * w
    t = target * w
    dice = (2 * (p * t).sum(dim=(0, 2, 3)) + 1) / (p.sum(dim=(0, 2, 3)) + t.sum(dim=(0, 2, 3)) + 1)
    used = known.any(dim=0).float()
    return bce, ((1 - dice) * used).sum() / used.sum().clamp(min=1)


class MultitaskTask(Task):
    phase = "multitask"

    def __init__(self, rt: Runtime, seed: int, net: MultiTaskNet, class_weights: torch.Tensor, *,
                 seg_weight: float = 1.0, hflip: bool = False):
        super().__init__(rt, seed)
        self.net = rt.place(net)
        self.module = _Joint(self.net)
        self.weights = class_weights.to(rt.device)
        self.lam = seg_weight
        self.spec = replace(SUPERVISED, hflip=hflip)

    def loss(self, net: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x, seg = augment(batch.image, batch.seg, spec=self.spec, gen=self.gen)
        logits, seg_logits = net(self.rt.layout(normalize(x)))
        ce = F.cross_entropy(logits.float(), batch.label, weight=self.weights)
        bce, dice = seg_losses(seg_logits, seg, batch.seg_known)
        return ce + self.lam * (bce + dice), {"ce": ce.detach(), "bce": bce.detach(), "dice_loss": dice.detach()}

    @torch.no_grad()
    def validate(self, loader: DataLoader) -> dict[str, float]:
        """Classification metrics and, per segmentation channel, Dice at 0.5 pooled over the images
        whose target is known (2 |P & T| / (|P| + |T|))."""
        was = self.net.training
        self.net.eval()
        ys, outs = [], []
        inter = np.zeros(2)
        sizes = np.zeros(2)
        for b in batches(loader, self.rt, where="validation"):
            with self.rt.autocast():
                logits, seg_logits = self.net.forward_all(self.rt.layout(normalize(b.image)))
            ys.append(b.label.cpu())
            outs.append(logits.float().cpu())
            w = b.seg_known.float()[:, :, None, None]
            pred = (seg_logits.float() > 0).float() * w
            t = b.seg * w
            inter += (pred * t).sum(dim=(0, 2, 3)).cpu().numpy()
            sizes += (pred.sum(dim=(0, 2, 3)) + t.sum(dim=(0, 2, 3))).cpu().numpy()
        self.net.train(was)
        if not ys:
            return {}
        out = classification_metrics(torch.cat(ys).numpy(), torch.cat(outs), self.weights.cpu())
        for c, name in enumerate(SEG_CHANNELS):
            if sizes[c] > 0:
                out[f"dice_{name}"] = float(2 * inter[c] / sizes[c])
        return out
