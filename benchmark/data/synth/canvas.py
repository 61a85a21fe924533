"""Per-image geometry (pixels <-> body coordinates) and the per-size caches the renderer reuses.

Body coordinates are in image heights: x = 0 on the body's midline, positive towards image right
(the patient's left in PA convention), y = 0 at the top edge and 1 at the bottom. A small pose
(shift, scale, in-plane tilt) maps body coordinates to pixels, so the same patient can be drawn a
little differently in each of their images while every structure stays consistent with its masks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

try:  # the ufunc itself: np.clip's Python wrapper costs more than the work on small windows
    from numpy._core.umath import clip
except ImportError:  # numpy < 2
    from numpy.core.umath import clip  # type: ignore[no-redef]

F32 = np.float32
# Lookup tables span these ranges of body y and x, at LUT_PER_PX samples per output pixel.
LUT_Y0, LUT_Y1, LUT_X0, LUT_X1, LUT_PER_PX = -0.25, 1.25, -0.75, 0.75, 4


def frozen(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Mark cached arrays read-only, so a caller that writes into one fails loudly instead of
    changing every later image."""
    for a in arrays:
        a.setflags(write=False)
    return arrays


@lru_cache(maxsize=16)
def pixel_axes(size: int, step: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates of one axis of a size/step grid: x in (-0.5, 0.5), y in (0, 1)."""
    n = -(-size // step)
    c = (step * np.arange(n, dtype=np.float64) + step / 2) / size
    return frozen((c - 0.5).astype(F32), c.astype(F32))


@lru_cache(maxsize=16)
def lut_heights(size: int) -> np.ndarray:
    n = int((LUT_Y1 - LUT_Y0) * size * LUT_PER_PX) + 1
    return frozen(np.linspace(LUT_Y0, LUT_Y1, n).astype(F32))[0]


@lru_cache(maxsize=16)
def lut_widths(size: int) -> np.ndarray:
    n = int((LUT_X1 - LUT_X0) * size * LUT_PER_PX) + 1
    return frozen(np.linspace(LUT_X0, LUT_X1, n).astype(F32))[0]


@dataclass(frozen=True)
class Pose:
    tx: float = 0.0      # shift, image heights
    ty: float = 0.0
    scale: float = 1.0   # > 1 makes the patient look larger
    tilt: float = 0.0    # radians, in-plane


class Frame:
    """Body-coordinate grids of one rendered image, with helpers to work on small windows.

    With step = 2 the grid has half the resolution (pixel j covers output pixels 2j and 2j+1),
    for the smooth layers that are cheaper to draw coarse and upsample.
    """

    def __init__(self, size: int, pose: Pose, step: int = 1):
        self.size = size
        self.step = step
        self.n = -(-size // step)
        self.pose = pose
        self._c, self._s = math.cos(pose.tilt), math.sin(pose.tilt)
        self._yidx: np.ndarray | None = None
        self._xidx: np.ndarray | None = None
        xi, yi = pixel_axes(size, step)
        dx = (xi - F32(pose.tx)) / F32(pose.scale)
        dy = (yi - F32(0.5 + pose.ty)) / F32(pose.scale)
        c, s = F32(self._c), F32(self._s)
        # Two broadcast ops per grid: cheap, and the tilt keeps every structure consistent.
        self.x = c * dx[None, :] + s * dy[:, None]
        self.y = F32(0.5) - s * dx[None, :] + c * dy[:, None]

    def to_pixel(self, x: float, y: float) -> tuple[float, float]:
        """(column, row) of a body point, as continuous pixel coordinates."""
        p = self.pose
        yb = y - 0.5
        xi = p.tx + p.scale * (self._c * x - self._s * yb)
        yi = 0.5 + p.ty + p.scale * (self._s * x + self._c * yb)
        half = (self.step - 1) / 2
        return ((xi + 0.5) * self.size - 0.5 - half) / self.step, (yi * self.size - 0.5 - half) / self.step

    def px(self, length: float) -> float:
        """A body length in this grid's pixels."""
        return length * self.pose.scale * self.size / self.step

    def by_height(self, values: np.ndarray, win: tuple[slice, slice]) -> np.ndarray:
        """Look up a function of body y, tabulated on lut_heights(size), over a window.

        Functions of height alone (lung edges, body width) are evaluated once on a fine 1-D table
        instead of per pixel; the table is 4x finer than the pixels so the steps do not show.
        """
        if self._yidx is None:  # every height table has len(lut_heights(size)) entries
            k = (len(values) - 1) / (LUT_Y1 - LUT_Y0)
            idx = ((self.y - LUT_Y0) * k + 0.5).astype(np.int32)
            self._yidx = clip(idx, 0, len(values) - 1)
        return values.take(self._yidx[win])

    def by_width(self, values: np.ndarray, win: tuple[slice, slice]) -> np.ndarray:
        """Like by_height, for a function of body x tabulated on lut_widths(size)."""
        if self._xidx is None:
            k = (len(values) - 1) / (LUT_X1 - LUT_X0)
            idx = ((self.x - LUT_X0) * k + 0.5).astype(np.int32)
            self._xidx = clip(idx, 0, len(values) - 1)
        return values.take(self._xidx[win])

    def window(self, x0: float, y0: float, x1: float, y1: float) -> tuple[slice, slice] | None:
        """Pixel slices covering a body-coordinate rectangle (None when it misses the image)."""
        cols, rows = [], []
        for x, y in ((x0, y0), (x1, y0), (x0, y1), (x1, y1)):
            c, r = self.to_pixel(x, y)
            cols.append(c)
            rows.append(r)
        n = self.n
        c0, c1 = max(int(min(cols)) - 1, 0), min(int(max(cols)) + 2, n)
        r0, r1 = max(int(min(rows)) - 1, 0), min(int(max(rows)) + 2, n)
        if c0 >= c1 or r0 >= r1:
            return None
        return slice(r0, r1), slice(c0, c1)

    def around(self, x: float, y: float, r: float) -> tuple[slice, slice] | None:
        return self.window(x - r, y - r, x + r, y + r)


@dataclass(frozen=True)
class Banks:
    """Fixed random fields, sliced at random offsets instead of drawing fresh noise per image.

    Fresh normals for every pixel would cost about a tenth of a 256-px render; a window of a
    2x-size bank, placed by the image's own generator, is as good for noise and texture.
    """

    noise: np.ndarray   # white, unit variance, [2S, 2S]
    cloud: np.ndarray   # smooth (feature size ~S/10), unit variance, [2S, 2S]
    mottle: np.ndarray  # medium (feature size ~S/32), unit variance, [2S, 2S]


@lru_cache(maxsize=8)
def banks(size: int) -> Banks:
    rng = np.random.default_rng(20240611)
    n = 2 * size
    noise = rng.standard_normal((n, n), dtype=F32)
    fields = frozen(noise, _smooth_field(rng, n, 10), _smooth_field(rng, n, 32))
    return Banks(noise=fields[0], cloud=fields[1], mottle=fields[2])


def _smooth_field(rng: np.random.Generator, n: int, cells_per_size: int) -> np.ndarray:
    # The bank spans two image sizes, so it needs twice the cells of one image.
    m = max(4, cells_per_size * 2)
    coarse = rng.standard_normal((m, m)).astype(F32)
    up = upsample_matrix(n, m, wrap=True)
    field = up @ coarse @ up.T
    field -= field.mean()
    field /= field.std() + 1e-6
    # Tails clipped: a 4-sigma spot would read as a lesion (or a hole) rather than as texture.
    return np.clip(field, -2.2, 2.2).astype(F32)


@lru_cache(maxsize=32)
def upsample_matrix(n_out: int, n_in: int, wrap: bool = False) -> np.ndarray:
    """Matrix M with (M @ a @ M.T) = smooth (cubic B-spline-like) resize of a [n_in, n_in] array."""
    pos = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
    base = np.floor(pos).astype(int)
    m = np.zeros((n_out, n_in), dtype=np.float64)
    frac = pos - base
    # Cubic B-spline weights: smooth with no ringing, which bilinear lacks (visible creases).
    w = (
        (1 - frac) ** 3 / 6,
        (3 * frac**3 - 6 * frac**2 + 4) / 6,
        (-3 * frac**3 + 3 * frac**2 + 3 * frac + 1) / 6,
        frac**3 / 6,
    )
    rows = np.arange(n_out)
    for k, wk in zip(range(-1, 3), w, strict=True):
        idx = base + k
        idx = np.mod(idx, n_in) if wrap else np.clip(idx, 0, n_in - 1)
        np.add.at(m, (rows, idx), wk)
    return frozen(m.astype(F32))[0]


def bank_window(bank: np.ndarray, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    oy = int(rng.integers(0, bank.shape[0] - h + 1))
    ox = int(rng.integers(0, bank.shape[1] - w + 1))
    return bank[oy:oy + h, ox:ox + w]


def bank_at(bank: np.ndarray, oy: int, ox: int, rows: slice, cols: slice) -> np.ndarray:
    """Window of a bank anchored at a fixed offset, aligned with an image window."""
    n = bank.shape[0] // 2
    oy, ox = oy % n, ox % n
    return bank[oy + rows.start:oy + rows.stop, ox + cols.start:ox + cols.stop]


def smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0, 1)
    return x * x * (3 - 2 * x)


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-like blur of about `sigma` pixels (edges replicate), cheap rather than exact.

    Up to ~0.7 px: one separable 3-tap pass with the right variance; above, the 2x down/up pair,
    whose blur is about 1 px whatever was asked.
    """
    var = sigma * sigma
    if var < 0.06:
        return img
    if var > 0.5:
        return upsample2(downsample2(img), img.shape[0])
    w = F32(var / 2)
    taps = np.array([w, 1 - 2 * w, w], F32)
    return _conv_axis(_conv_axis(img, taps, 0), taps, 1)


def _conv_axis(a: np.ndarray, taps: np.ndarray, axis: int) -> np.ndarray:
    r = len(taps) // 2
    out = a * taps[r]
    for k in range(1, r + 1):
        w = taps[r + k]
        if axis == 0:
            out[k:] += w * a[:-k]
            out[:k] += w * a[:1]
            out[:-k] += w * a[k:]
            out[-k:] += w * a[-1:]
        else:
            out[:, k:] += w * a[:, :-k]
            out[:, :k] += w * a[:, :1]
            out[:, :-k] += w * a[:, k:]
            out[:, -k:] += w * a[:, -1:]
    return out


def downsample2(img: np.ndarray) -> np.ndarray:
    """Mean of 2x2 blocks (an odd last row/column is repeated)."""
    h, w = img.shape
    if h % 2 or w % 2:
        img = np.pad(img, ((0, h % 2), (0, w % 2)), mode="edge")
    return (img[0::2, 0::2] + img[1::2, 0::2] + img[0::2, 1::2] + img[1::2, 1::2]) * F32(0.25)


def upsample2(a: np.ndarray, size: int) -> np.ndarray:
    """Bilinear x2 of a half-resolution grid (pixel j centred between output pixels 2j, 2j+1)."""
    h, w = a.shape
    q, t = F32(0.25), F32(0.75)
    a3 = a * t
    rows = np.stack([a3 + np.concatenate([a[:1], a[:-1]]) * q,
                     a3 + np.concatenate([a[1:], a[-1:]]) * q], axis=1).reshape(2 * h, w)
    r3 = rows * t
    out = np.stack([r3 + np.concatenate([rows[:, :1], rows[:, :-1]], axis=1) * q,
                    r3 + np.concatenate([rows[:, 1:], rows[:, -1:]], axis=1) * q], axis=2)
    return out.reshape(2 * h, 2 * w)[:size, :size]
