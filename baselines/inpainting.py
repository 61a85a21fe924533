"""`inpainting`: the inpainting-CXR pretext task (context-encoder style, Pathak et al. 2016).

Regions of each radiograph are hidden (filled with the mean) by random rectangles or irregular blobs
covering about `mask_area` of the image; the encoder plus a light decoder reconstructs them, and the
loss is the squared error on the hidden pixels only. The encoder is then fine-tuned for the classes.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from baselines.augment import PRETEXT, augment, normalize
from baselines.runtime import Runtime
from baselines.task import Batch, Task, batches

VALIDATION_SEED = 54321


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class InpaintNet(nn.Module):
    """The classifier's convolutional trunk (forward_features) and an upsampling decoder to one channel."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone
        reduction = int(backbone.feature_info[-1]["reduction"])
        width = min(256, backbone.num_features)
        layers: list[nn.Module] = [nn.Conv2d(backbone.num_features, width, 1)]
        for _ in range(round(math.log2(reduction))):
            nxt = max(16, width // 2)
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), _block(width, nxt)]
            width = nxt
        layers.append(nn.Conv2d(width, 1, 3, padding=1))
        self.decoder = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.decoder(self.backbone.forward_features(x))
        if out.shape[-2:] != x.shape[-2:]:
            out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return out


def random_masks(n: int, size: int, area: float, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """[n, 1, size, size] masks (1 = hidden): even rows rectangles, odd rows irregular blobs.

    Each mask's area is drawn from [area/2, 3*area/2] (capped at 0.9) and the aspect of rectangles from
    [1/2, 2]; blobs are thresholded smooth noise, so their area is exact up to a pixel.
    """
    a = (area * (0.5 + torch.rand(n, generator=gen))).clamp(0.02, 0.9)
    ratio = torch.exp((torch.rand(n, generator=gen) * 2 - 1) * math.log(2))
    h = (torch.sqrt(a / ratio) * size).clamp(1, size)
    w = (torch.sqrt(a * ratio) * size).clamp(1, size)
    top = torch.rand(n, generator=gen) * (size - h)
    left = torch.rand(n, generator=gen) * (size - w)
    noise = torch.rand(n, 1, 6, 6, generator=gen)
    a, h, w, top, left, noise = (t.to(device) for t in (a, h, w, top, left, noise))
    coords = torch.arange(size, device=device, dtype=torch.float32) + 0.5
    rows = (coords[None, :] >= top[:, None]) & (coords[None, :] < (top + h)[:, None])
    cols = (coords[None, :] >= left[:, None]) & (coords[None, :] < (left + w)[:, None])
    rect = (rows[:, :, None] & cols[:, None, :]).float()[:, None]
    smooth = F.interpolate(noise, size=(size, size), mode="bicubic", align_corners=False).flatten(1)
    k = ((1 - a) * (size * size - 1)).long()
    threshold = smooth.sort(dim=1).values.gather(1, k[:, None])
    blob = (smooth > threshold).float().view(n, 1, size, size)
    odd = (torch.arange(n, device=device) % 2 == 1).view(-1, 1, 1, 1)
    return torch.where(odd, blob, rect)


def masked_error(recon: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of squared errors on hidden pixels, number of hidden pixels)."""
    return (((recon.float() - target) ** 2) * mask).sum(), mask.sum()


class InpaintingTask(Task):
    phase = "pretrain-inpainting"

    def __init__(self, rt: Runtime, seed: int, model: nn.Module, *, mask_area: float = 0.25):
        super().__init__(rt, seed)
        model.reset_classifier(0)
        self.module = rt.place(InpaintNet(model))
        self.area = mask_area

    def _pair(self, image: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        target = normalize(image)
        mask = random_masks(len(image), image.shape[-1], self.area, gen, image.device)
        return target * (1 - mask), target, mask  # 0 in normalized space is the mean intensity

    def loss(self, net: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x, _ = augment(batch.image, spec=PRETEXT, gen=self.gen)
        hidden, target, mask = self._pair(x, self.gen)
        sse, count = masked_error(net(self.rt.layout(hidden)), target, mask)
        return sse / count.clamp(min=1), {}

    @torch.no_grad()
    def validate(self, loader: DataLoader) -> dict[str, float]:
        """Squared error per hidden pixel on held-out images with fixed masks (normalized units)."""
        gen = torch.Generator().manual_seed(VALIDATION_SEED)
        was = self.module.training
        self.module.eval()
        sse, count = 0.0, 0.0
        for b in batches(loader, self.rt, where="validation"):
            hidden, target, mask = self._pair(b.image, gen)
            with self.rt.autocast():
                recon = self.module(self.rt.layout(hidden))
            s, c = masked_error(recon, target, mask)
            sse, count = sse + float(s), count + float(c)
        self.module.train(was)
        return {"masked_mse": sse / count} if count else {}
