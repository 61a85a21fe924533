"""Mask-perturbation views: one region of the canonical batch replaced by a fill.

Regions: `no_lung` (the lung fields), `only_lung` (everything but the lungs), `random_area` (a random
smooth region of the same pixel count as the lungs, drawn outside them: the control for `no_lung`,
so that a drop there is not just a reaction to hiding that much image), `lesion` (the
opacity boxes), `border` (the outer frame, 8% of each side), `corners` (four squares of 15% of the
side, where markers and text usually sit). Regions never reach into letterbox padding.

Fills, chosen by the view's parameter (`no_lung@blur`), default `inpaint`:
- `inpaint`: a smooth, edge-free fill from the region's border (approximately harmonic);
- `mean`: the mean intensity of the rest of the image;
- `blur`: the region's own content under a heavy Gaussian blur (sigma = 1/16 of the side);
- `noise`: Gaussian noise with the local mean and detail spread of the surrounding pixels.
Every view is deterministic per image: random draws use the run's per-image seed and the view's key.
"""
from __future__ import annotations

import math
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from benchmark.views.base import BatchContext, View

FILLS = ("inpaint", "mean", "blur", "noise")
DEFAULT_FILL = "inpaint"
BORDER_FRACTION = 0.08
CORNER_FRACTION = 0.15
BLUR_FRACTION = 1 / 16          # heavy-blur sigma, as a fraction of the image side
NOISE_WINDOW_PX = 2.0           # sigma of the window that measures local spread
_SWEEPS_FINE, _SWEEPS_COARSE = 8, 8


# --- shared image operations ------------------------------------------------------------------

def content_bounds(batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(r0, r1, c0, c1), each [B, 1, 1, 1], exclusive ends: the rows and columns that are not all
    zero (letterbox padding is exact zeros; real image rows almost never are). An all-zero image
    counts as content everywhere."""
    h, w = batch.shape[-2:]
    nz = batch != 0
    rows = nz.any(dim=3, keepdim=True)              # [B, 1, H, 1]
    cols = nz.any(dim=2, keepdim=True)              # [B, 1, 1, W]
    r = torch.arange(h, device=batch.device).view(1, 1, -1, 1)
    c = torch.arange(w, device=batch.device).view(1, 1, 1, -1)
    empty = ~rows.flatten(1).any(dim=1).view(-1, 1, 1, 1)
    r0 = torch.where(empty, 0, torch.where(rows, r, h).amin(dim=2, keepdim=True))
    r1 = torch.where(empty, h, torch.where(rows, r, -1).amax(dim=2, keepdim=True) + 1)
    c0 = torch.where(empty, 0, torch.where(cols, c, w).amin(dim=3, keepdim=True))
    c1 = torch.where(empty, w, torch.where(cols, c, -1).amax(dim=3, keepdim=True) + 1)
    return r0, r1, c0, c1


def _grid(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    h, w = batch.shape[-2:]
    return (torch.arange(h, device=batch.device).view(1, 1, -1, 1),
            torch.arange(w, device=batch.device).view(1, 1, 1, -1))


def content_mask(batch: torch.Tensor) -> torch.Tensor:
    """[B, 1, H, W] bool: the image's content box, without letterbox padding."""
    r0, r1, c0, c1 = content_bounds(batch)
    r, c = _grid(batch)
    return (r >= r0) & (r < r1) & (c >= c0) & (c < c1)


def _blur_axis(x: torch.Tensor, k: torch.Tensor, dim: int) -> torch.Tensor:
    r = (len(k) - 1) // 2
    n = x.shape[dim]
    p = F.pad(x, (r, r, 0, 0) if dim == 3 else (0, 0, r, r), mode="reflect")
    out = k[0] * p.narrow(dim, 0, n)
    for i in range(1, len(k)):
        out += k[i] * p.narrow(dim, i, n)
    return out


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of [B, C, H, W] with reflected edges.

    Separable taps as shifted slices (on CPU far cheaper than a convolution of one channel); a sigma
    above 3 px is blurred at a reduced size and brought back bilinearly, which is close to Gaussian
    at a fraction of the taps.
    """
    if sigma <= 0:
        return x
    h, w = x.shape[-2:]
    factor = int(sigma // 1.5) if sigma > 3 else 1
    if factor > 1 and min(h, w) // factor >= 4:
        small = F.avg_pool2d(x, factor, ceil_mode=True)
        # Area averaging already blurs by about factor / sqrt(12); take the rest at the small size.
        rest = math.sqrt(max(sigma**2 - factor**2 / 12.0, 0.25)) / factor
        small = gaussian_blur(small, rest)
        return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    radius = min(math.ceil(3 * sigma), h - 1, w - 1)
    if radius < 1:
        return x
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    return _blur_axis(_blur_axis(x, k, 3), k, 2)


def _neighbour_mean(u: torch.Tensor) -> torch.Tensor:
    """Mean of the four neighbours, edges replicated (slices: far cheaper than a 3x3 conv on CPU)."""
    p = F.pad(u, (1, 1, 1, 1), mode="replicate")
    s = p[..., :-2, 1:-1] + p[..., 2:, 1:-1]
    s += p[..., 1:-1, :-2]
    s += p[..., 1:-1, 2:]
    return s.mul_(0.25)


def harmonic_fill(x: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """`region` ([B, 1, H, W] bool, shared by every channel of x) replaced by a smooth fill that
    meets the surrounding pixels without an edge: an approximate solution of Laplace's equation with
    those pixels as boundary values, and nothing taken from inside the region.

    Coarse to fine: a pyramid of masked averages anchors every level to what is known around the
    region (cells at least half known), the coarser level's answer is the first guess, and a few
    Jacobi sweeps relax it. An exact solution would take a hundred-odd sweeps at full size and is
    dominated by the one-pixel rim just outside the region; this costs a handful per level and
    follows the surroundings' average level instead.
    """
    known = (~region).to(x.dtype)
    values, weights = [x * known], [known]
    while min(values[-1].shape[-2:]) > 4:
        values.append(F.avg_pool2d(values[-1], 2, ceil_mode=True))
        weights.append(F.avg_pool2d(weights[-1], 2, ceil_mode=True))
    mean = values[0].sum(dim=(2, 3), keepdim=True) / weights[0].sum(dim=(2, 3), keepdim=True).clamp_min(1)
    u = mean.expand_as(values[-1])
    for level in range(len(values) - 1, -1, -1):
        v, w = values[level], weights[level]
        if u.shape[-2:] != v.shape[-2:]:
            u = F.interpolate(u, size=v.shape[-2:], mode="bilinear", align_corners=False)
        fixed = w >= (1.0 if level == 0 else 0.5)
        val = v / w.clamp_min(1e-8)
        for _ in range(_SWEEPS_FINE if level == 0 else _SWEEPS_COARSE):
            u = torch.where(fixed, val, _neighbour_mean(u))
    return torch.where(region, u, x)


@contextmanager
def single_threaded(device: torch.device) -> Iterator[None]:
    """Run view arithmetic on one CPU thread. Views are chains of small elementwise passes that one
    thread does at memory speed; intra-op threads only add synchronisation, which on a busy machine
    costs several times the work itself (perf/views_cost.py: 7x slower with 2 threads under load)."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def image_generators(ctx: BatchContext, key: str, device: torch.device) -> list[torch.Generator]:
    """One generator per image, seeded by the image's run seed and the view's key."""
    salt = zlib.crc32(key.encode())
    out = []
    for s in ctx.seeds.tolist():
        g = torch.Generator(device=device)
        g.manual_seed((int(s) * 1_000_003 + salt) % (2**63 - 1))
        out.append(g)
    return out


def randn_per_image(shape: tuple[int, ...], gens: list[torch.Generator], device: torch.device,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.stack([torch.randn(shape, generator=g, device=device, dtype=dtype) for g in gens])


def fill_region(x: torch.Tensor, region: torch.Tensor, fill: str, gens: list[torch.Generator] | None = None
                ) -> torch.Tensor:
    """`x` with `region` ([B, 1, H, W] bool) replaced by the named fill; values stay in [0, 1]."""
    if fill == "mean":
        known = (~region).to(x.dtype)
        mean = (x * known).sum(dim=(2, 3), keepdim=True) / known.sum(dim=(2, 3), keepdim=True).clamp_min(1)
        out = mean.expand_as(x)
    elif fill == "blur":
        out = gaussian_blur(x, BLUR_FRACTION * min(x.shape[-2:]))
    elif fill == "inpaint":
        return harmonic_fill(x, region).clamp(0, 1)
    elif fill == "noise":
        # Mean and spread of the surrounding pixels, carried into the region smoothly: the spread is
        # the local standard deviation of the detail (image minus its 2 px blur) outside the region.
        known = (~region).to(x.dtype)
        detail = (x - gaussian_blur(x, NOISE_WINDOW_PX)) ** 2 * known
        var = gaussian_blur(detail, NOISE_WINDOW_PX) / gaussian_blur(known, NOISE_WINDOW_PX).clamp_min(1e-6)
        mean, var = harmonic_fill(torch.cat([x, var], dim=1), region).split(x.shape[1], dim=1)
        z = randn_per_image(tuple(x.shape[1:]), gens or [], x.device, x.dtype)
        out = mean + var.clamp_min(0).sqrt() * z
    else:
        raise ValueError(f"unknown fill {fill!r}; fills: {', '.join(FILLS)}")
    return torch.where(region, out, x).clamp(0, 1)


# --- the views --------------------------------------------------------------------------------

class MaskView(View):
    """A region chosen per image, replaced by the fill named in the parameter."""

    name = "mask"

    def __init__(self, param: str | None = None):
        super().__init__(param)
        self.fill = param or DEFAULT_FILL
        if self.fill not in FILLS:
            raise ValueError(f"unknown fill {self.fill!r}; fills: {', '.join(FILLS)}")

    def region(self, batch: torch.Tensor, ctx: BatchContext) -> torch.Tensor:
        raise NotImplementedError

    def apply(self, batch: torch.Tensor, ctx: BatchContext) -> torch.Tensor:
        with single_threaded(batch.device):
            region = self.region(batch, ctx) & content_mask(batch)
            gens = image_generators(ctx, f"{self.key}:fill", batch.device) if self.fill == "noise" else None
            return fill_region(batch, region, self.fill, gens)


def _lungs(batch: torch.Tensor, ctx: BatchContext) -> torch.Tensor:
    if ctx.lung_masks is None:
        raise ValueError("this view needs lung masks, and the runner gave none")
    return ctx.lung_masks.to(batch.device, torch.bool)


class NoLungView(MaskView):
    name = "no_lung"
    needs_masks = True

    def region(self, batch, ctx):
        return _lungs(batch, ctx)


class OnlyLungView(MaskView):
    name = "only_lung"
    needs_masks = True

    def region(self, batch, ctx):
        return ~_lungs(batch, ctx)


class RandomAreaView(MaskView):
    """The control for `no_lung`: as many pixels as the lungs hold, but in a random smooth region
    outside them, so a drop here measures the reaction to hiding that much image, not to the lungs."""

    name = "random_area"
    needs_masks = True
    GRID = 6  # the random field's resolution: blobs about 1/6 of the side

    def region(self, batch, ctx):
        lungs = _lungs(batch, ctx)
        b, _, h, w = batch.shape
        gens = image_generators(ctx, f"{self.key}:region", batch.device)
        field = randn_per_image((1, self.GRID, self.GRID), gens, batch.device)
        field = F.interpolate(field, size=(h, w), mode="bicubic", align_corners=False)
        allowed = ~lungs & content_mask(batch)
        score = torch.where(allowed, field, torch.full_like(field, -torch.inf)).flatten(1)
        area = torch.minimum(lungs.flatten(1).sum(dim=1), allowed.flatten(1).sum(dim=1))
        order = score.argsort(dim=1, descending=True)
        rank = torch.empty_like(order)
        rank.scatter_(1, order, torch.arange(h * w, device=batch.device).expand(b, -1))
        return (rank < area[:, None]).view(b, 1, h, w)


class LesionView(MaskView):
    """The opacity boxes the dataset gives (none: the image is unchanged)."""

    name = "lesion"
    needs_boxes = True

    def region(self, batch, ctx):
        b, _, h, w = batch.shape
        out = torch.zeros((b, 1, h, w), dtype=torch.bool, device=batch.device)
        ys = torch.arange(h, device=batch.device).view(-1, 1) + 0.5
        xs = torch.arange(w, device=batch.device).view(1, -1) + 0.5
        for k, boxes in enumerate(ctx.boxes[:b]):
            for x1, y1, x2, y2 in boxes.tolist():
                out[k, 0] |= (xs >= x1) & (xs < x2) & (ys >= y1) & (ys < y2)
        return out


def _frame(batch: torch.Tensor, fraction: float, corners: bool) -> torch.Tensor:
    """The outer frame (or only its corner squares) of each image's content box."""
    r0, r1, c0, c1 = content_bounds(batch)
    r, c = _grid(batch)
    width = (fraction * torch.minimum(r1 - r0, c1 - c0).to(torch.float32)).round().long().clamp_min(1)
    near_r = (r < r0 + width) | (r >= r1 - width)
    near_c = (c < c0 + width) | (c >= c1 - width)
    inside = (r >= r0) & (r < r1) & (c >= c0) & (c < c1)
    return inside & ((near_r & near_c) if corners else (near_r | near_c))


class BorderView(MaskView):
    name = "border"

    def region(self, batch, ctx):
        return _frame(batch, BORDER_FRACTION, corners=False)


class CornersView(MaskView):
    name = "corners"

    def region(self, batch, ctx):
        return _frame(batch, CORNER_FRACTION, corners=True)


MASK_VIEWS = {v.name: v for v in (NoLungView, OnlyLungView, RandomAreaView, LesionView, BorderView, CornersView)}
