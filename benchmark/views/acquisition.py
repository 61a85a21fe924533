"""Acquisition-shift views: what another scanner, protocol or export step does to the same chest.

Each view takes one physical parameter (`noise@0.05`); the `robustness` suite scores three per shift
(mild, moderate, severe: suites/robustness.py). Shifts with a direction pick it per image from the
run's per-image seed, so they are deterministic and independent of batching.

- gamma@g: display curve x**g or x**(1/g), direction per image;
- contrast@c: contrast around the image mean scaled by c (< 1: flatter);
- noise@s: additive Gaussian noise of standard deviation s;
- blur@s: Gaussian blur, sigma s pixels at a 256-pixel side (scaled to the input size);
- resample@f: down-sampled by f (area average), then up again (bilinear);
- jpeg@q: a JPEG round trip at quality q (Pillow, 8 bits);
- invert: inverted photometry, the MONOCHROME1 mistake (no parameter: one severity);
- marker@n: n burned-in marks at random places: laterality letters and text lines, alternately;
- rotate@d: rotation by d degrees, direction per image, air where the image leaves the frame;
- crop@z: zoom by z around a random centre that keeps the crop inside the image.
"""
from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.views.base import BatchContext, View
from benchmark.views.mask import content_mask, gaussian_blur, image_generators, randn_per_image, single_threaded


class ShiftView(View):
    """A view with one numeric parameter, checked against its allowed range."""

    name = "shift"
    DEFAULT = "1"
    LOW, HIGH = -math.inf, math.inf

    def __init__(self, param: str | None = None):
        super().__init__(param)
        value = float(param if param is not None else self.DEFAULT)
        if not self.LOW <= value <= self.HIGH or not math.isfinite(value):
            raise ValueError(f"{self.name} needs a value in [{self.LOW}, {self.HIGH}], got {param!r}")
        self.value = value

    def apply(self, batch: torch.Tensor, ctx: BatchContext) -> torch.Tensor:
        with single_threaded(batch.device):
            return self.transform(batch, ctx)

    def transform(self, batch: torch.Tensor, ctx: BatchContext) -> torch.Tensor:
        raise NotImplementedError

    def uniform(self, ctx: BatchContext, device: torch.device) -> torch.Tensor:
        """One U(0, 1) draw per image, [B, 1, 1, 1], from the image's seed and this view's key."""
        gens = image_generators(ctx, f"{self.key}:u", device)
        return torch.stack([torch.rand((1, 1, 1), generator=g, device=device) for g in gens])

    def sign(self, ctx: BatchContext, device: torch.device) -> torch.Tensor:
        return torch.where(self.uniform(ctx, device) < 0.5, -1.0, 1.0)


class GammaView(ShiftView):
    name, DEFAULT, LOW, HIGH = "gamma", "1.6", 1.0, 10.0

    def transform(self, batch, ctx):
        exponent = torch.pow(torch.tensor(self.value, device=batch.device), self.sign(ctx, batch.device))
        return batch.clamp(0, 1).pow(exponent)


class ContrastView(ShiftView):
    name, DEFAULT, LOW, HIGH = "contrast", "0.5", 0.0, 4.0

    def transform(self, batch, ctx):
        inside = content_mask(batch).to(batch.dtype)
        mean = (batch * inside).sum(dim=(2, 3), keepdim=True) / inside.sum(dim=(2, 3), keepdim=True).clamp_min(1)
        return torch.where(inside > 0, mean + self.value * (batch - mean), batch).clamp(0, 1)


class NoiseView(ShiftView):
    name, DEFAULT, LOW, HIGH = "noise", "0.05", 0.0, 1.0

    def transform(self, batch, ctx):
        z = randn_per_image(tuple(batch.shape[1:]), image_generators(ctx, self.key, batch.device),
                            batch.device, batch.dtype)
        return (batch + self.value * z).clamp(0, 1)


class BlurView(ShiftView):
    name, DEFAULT, LOW, HIGH = "blur", "2", 0.0, 64.0

    def transform(self, batch, ctx):
        return gaussian_blur(batch, self.value * min(batch.shape[-2:]) / 256)


class ResampleView(ShiftView):
    name, DEFAULT, LOW, HIGH = "resample", "4", 1.0, 64.0

    def transform(self, batch, ctx):
        h, w = batch.shape[-2:]
        small = F.interpolate(batch, size=(max(round(h / self.value), 1), max(round(w / self.value), 1)),
                              mode="area")
        return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1)


class JpegView(ShiftView):
    name, DEFAULT, LOW, HIGH = "jpeg", "20", 1.0, 95.0

    def transform(self, batch, ctx):
        from PIL import Image

        pixels = (batch.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        out = np.empty(pixels.shape, dtype=np.float32)
        for k in range(pixels.shape[0]):
            buf = io.BytesIO()
            Image.fromarray(pixels[k, 0]).save(buf, format="JPEG", quality=round(self.value))
            buf.seek(0)
            out[k, 0] = np.asarray(Image.open(buf).convert("L"), dtype=np.float32) / 255.0
        return torch.from_numpy(out).to(device=batch.device, dtype=batch.dtype)


class InvertView(ShiftView):
    name = "invert"

    def __init__(self, param: str | None = None):
        if param not in (None, ""):
            raise ValueError("invert takes no parameter")
        View.__init__(self, None)

    def transform(self, batch, ctx):
        # Padding stays air: a MONOCHROME1 image read wrongly inverts its pixels, not the letterbox.
        return torch.where(content_mask(batch), 1.0 - batch, batch)


class MarkerView(ShiftView):
    """Burned-in laterality letters ("L"/"R" on a dark plate) and text lines at random places."""

    name, DEFAULT, LOW, HIGH = "marker", "2", 1.0, 16.0

    def transform(self, batch, ctx):
        b, _, h, w = batch.shape
        value = np.zeros((b, 1, h, w), np.float32)
        alpha = np.zeros((b, 1, h, w), np.float32)
        for k, seed in enumerate(ctx.seeds.tolist()):
            rng = np.random.default_rng([int(seed), 7919, int(self.value)])
            for j in range(int(self.value)):
                _burn(value[k, 0], alpha[k, 0], rng, letter=(j % 2 == 0))
        v = torch.from_numpy(value).to(batch.device, batch.dtype)
        a = torch.from_numpy(alpha).to(batch.device, batch.dtype)
        return batch + (v - batch) * a


def _burn(value: np.ndarray, alpha: np.ndarray, rng: np.random.Generator, *, letter: bool) -> None:
    from benchmark.data.synth.glyphs import text_bitmap

    side = min(value.shape)
    if letter:
        bm = text_bitmap(str(rng.choice(["L", "R"])), max(int(0.07 * side), 7))
        pad = max(side // 96, 1)
    else:
        text = f"{''.join(rng.choice(list('ABCDEFGHKMPRSTX'), 3))} {int(rng.integers(1000, 10000))}"
        bm = text_bitmap(text, max(int(0.04 * side), 6))
        pad = 0
    bh, bw = min(bm.shape[0], value.shape[0]), min(bm.shape[1], value.shape[1])
    bm = bm[:bh, :bw]
    r = int(rng.integers(0, value.shape[0] - bh + 1))
    c = int(rng.integers(0, value.shape[1] - bw + 1))
    if letter:  # lead markers sit on their own dark plate
        r0, c0 = max(r - pad, 0), max(c - pad, 0)
        value[r0:r + bh + pad, c0:c + bw + pad] = 0.1
        alpha[r0:r + bh + pad, c0:c + bw + pad] = 1.0
    region_v, region_a = value[r:r + bh, c:c + bw], alpha[r:r + bh, c:c + bw]
    region_v[:] = region_v * (1 - bm) + 0.97 * bm
    region_a[:] = np.maximum(region_a, bm)


def _affine(batch: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
    return F.grid_sample(batch, grid, mode="bilinear", padding_mode="zeros", align_corners=False).clamp(0, 1)


class RotateView(ShiftView):
    name, DEFAULT, LOW, HIGH = "rotate", "10", 0.0, 180.0

    def transform(self, batch, ctx):
        b, _, h, w = batch.shape
        angle = self.sign(ctx, batch.device).view(b) * math.radians(self.value)
        cos, sin = torch.cos(angle), torch.sin(angle)
        # affine_grid works in [-1, 1] coordinates per axis: correct for the aspect ratio.
        theta = torch.zeros((b, 2, 3), device=batch.device, dtype=batch.dtype)
        theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * h / w
        theta[:, 1, 0], theta[:, 1, 1] = sin * w / h, cos
        return _affine(batch, theta)


class CropView(ShiftView):
    name, DEFAULT, LOW, HIGH = "crop", "1.25", 1.0, 8.0

    def transform(self, batch, ctx):
        b = batch.shape[0]
        zoom = 1.0 / self.value
        room = 1.0 - zoom  # how far the crop's centre may move from the image's, in [-1, 1] units
        gens = image_generators(ctx, f"{self.key}:centre", batch.device)
        offset = torch.stack([torch.rand((2,), generator=g, device=batch.device) for g in gens]) * 2 - 1
        theta = torch.zeros((b, 2, 3), device=batch.device, dtype=batch.dtype)
        theta[:, 0, 0] = theta[:, 1, 1] = zoom
        theta[:, :, 2] = offset.to(batch.dtype) * room
        return _affine(batch, theta)


SHIFT_VIEWS = {v.name: v for v in (GammaView, ContrastView, NoiseView, BlurView, ResampleView, JpegView,
                                   InvertView, MarkerView, RotateView, CropView)}
