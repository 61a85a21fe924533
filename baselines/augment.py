"""Chest X-ray augmentation, batched on the training device.

One random affine per image (small rotation, random resized crop, optional flip) is applied to the
image and its masks through the same sampling grid, so targets stay aligned; then brightness and
contrast (supervised) or a blur (contrastive views: MoCo v2 without colour jitter). Work happens in
canonical [0, 1] space, where the letterbox padding and anything the crop pulls in are air (0).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# The input normalization every baseline's card declares: (canonical - MEAN) / STD.
MEAN, STD = 0.5, 0.25


@dataclass(frozen=True)
class AugmentSpec:
    rotate_deg: float = 10.0
    area: tuple[float, float] = (0.75, 1.0)      # random resized crop: fraction of the image kept
    ratio: tuple[float, float] = (3 / 4, 4 / 3)  # ... and its aspect ratio
    brightness: float = 0.1                      # additive shift, +- this
    contrast: float = 0.2                        # multiplicative, 1 +- this, about the image mean
    blur_p: float = 0.0                          # probability of a Gaussian blur
    hflip: bool = False


SUPERVISED = AugmentSpec()
# MoCo-CXR (Sowrirajan et al. 2021): no colour jitter, and crops mild enough to keep most of the chest.
CONTRASTIVE = AugmentSpec(area=(0.5, 1.0), brightness=0.0, contrast=0.0, blur_p=0.5)
PRETEXT = AugmentSpec(area=(0.6, 1.0), brightness=0.05, contrast=0.1)


def normalize(x: torch.Tensor) -> torch.Tensor:
    return (x - MEAN) / STD


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def random_affine(n: int, spec: AugmentSpec, gen: torch.Generator) -> torch.Tensor:
    """[n, 2, 3] sampling matrices (output -> input, normalized coordinates)."""
    area = _uniform(n, *spec.area, gen)
    log_ratio = _uniform(n, math.log(spec.ratio[0]), math.log(spec.ratio[1]), gen)
    ratio = torch.exp(log_ratio)
    sx = torch.sqrt(area * ratio).clamp(max=1.0)
    sy = torch.sqrt(area / ratio).clamp(max=1.0)
    cx = (1 - sx) * _uniform(n, -1.0, 1.0, gen)
    cy = (1 - sy) * _uniform(n, -1.0, 1.0, gen)
    angle = torch.deg2rad(_uniform(n, -spec.rotate_deg, spec.rotate_deg, gen))
    cos, sin = torch.cos(angle), torch.sin(angle)
    flip = torch.ones(n)
    if spec.hflip:
        flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 0, 2] = cos * sx * flip, -sin * sy, cx
    theta[:, 1, 0], theta[:, 1, 1], theta[:, 1, 2] = sin * sx * flip, cos * sy, cy
    return theta


def augment(images: torch.Tensor, masks: torch.Tensor | None = None, *, spec: AugmentSpec,
            gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Augment canonical images [B,1,H,W] (and float masks [B,C,H,W] alike); returns canonical images."""
    n = images.shape[0]
    theta = random_affine(n, spec, gen).to(images.device, images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if masks is not None:
        warped = F.grid_sample(masks.to(images.dtype), grid, mode="bilinear", padding_mode="zeros",
                               align_corners=False)
        masks = (warped >= 0.5).to(images.dtype)
    if spec.contrast or spec.brightness:
        c = _uniform(n, 1 - spec.contrast, 1 + spec.contrast, gen).to(out.device).view(-1, 1, 1, 1)
        b = _uniform(n, -spec.brightness, spec.brightness, gen).to(out.device).view(-1, 1, 1, 1)
        m = out.mean(dim=(1, 2, 3), keepdim=True)
        out = ((out - m) * c + m + b).clamp(0.0, 1.0)
    if spec.blur_p > 0:
        out = _random_blur(out, spec.blur_p, gen)
    return out, masks


def _random_blur(x: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """A Gaussian blur on a random subset (one sigma per batch, up to 1% of the image side)."""
    chosen = (torch.rand(x.shape[0], generator=gen) < p).to(x.device)
    sigma = float(_uniform(1, 0.1, 1.0, gen)) * max(x.shape[-1] / 100, 0.5)
    radius = max(1, math.ceil(2 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    blurred = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    blurred = F.conv2d(F.pad(blurred, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1))
    return torch.where(chosen.view(-1, 1, 1, 1), blurred, x)
