"""Small bitmaps burned into images: laterality letters, text runs and the class marker symbols."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from benchmark.core.labels import CLASSES

from .canvas import frozen


@lru_cache(maxsize=8)
def _font(height: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=height)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: fixed bitmap font
        return ImageFont.load_default()


@lru_cache(maxsize=512)
def glyph(ch: str, height: int) -> np.ndarray:
    """Coverage [h, w] in [0, 1] of one character drawn about `height` pixels tall."""
    font = _font(height)
    x0, y0, x1, y1 = font.getbbox(ch)
    w = max(int(x1), 1) + 1
    h = max(int(y1), height) + 1
    im = Image.new("L", (w, h), 0)
    ImageDraw.Draw(im).text((0, 0), ch, fill=255, font=font)
    arr = np.asarray(im, dtype=np.float32) / 255.0
    if ch == " ":
        arr = np.zeros((h, max(height // 3, 2)), np.float32)
    else:
        cols = np.flatnonzero(arr.max(axis=0) > 0.05)
        arr = arr[:, cols[0]: cols[-1] + 1] if cols.size else arr
    return frozen(arr)[0]


def text_bitmap(text: str, height: int) -> np.ndarray:
    """A run of characters, left-aligned, one pixel apart."""
    parts = [glyph(ch, height) for ch in text]
    h = max(p.shape[0] for p in parts)
    gap = max(height // 8, 1)
    width = sum(p.shape[1] for p in parts) + gap * (len(parts) - 1)
    out = np.zeros((h, max(width, 1)), np.float32)
    x = 0
    for p in parts:
        out[: p.shape[0], x: x + p.shape[1]] = p
        x += p.shape[1] + gap
    return out


@lru_cache(maxsize=32)
def class_symbol(label: str, size: int) -> np.ndarray:
    """A distinct bright symbol per class on a square of side `size` (the planted shortcut)."""
    k = CLASSES.index(label)
    s = size * 4  # drawn large then reduced, for clean edges
    im = Image.new("L", (s, s), 0)
    d = ImageDraw.Draw(im)
    m, w = s // 8, max(s // 7, 1)
    if k == 0:
        d.rectangle([m, m, s - m - 1, s - m - 1], outline=255, width=w)
    elif k == 1:
        d.ellipse([m, m, s - m - 1, s - m - 1], fill=255)
    elif k == 2:
        d.polygon([(s // 2, m), (s - m - 1, s - m - 1), (m, s - m - 1)], fill=255)
    else:
        d.line([(m, m), (s - m - 1, s - m - 1)], fill=255, width=w)
        d.line([(m, s - m - 1), (s - m - 1, m)], fill=255, width=w)
    im = im.resize((size, size), Image.Resampling.BOX)
    return frozen(np.asarray(im, dtype=np.float32) / 255.0)[0]


def stamp(img: np.ndarray, bitmap: np.ndarray, row: int, col: int, value: float,
          backing: float | None = None, pad: int = 0) -> list[int]:
    """Burn a bitmap in at (row, col) (clipped to the image); returns its box [x1, y1, x2, y2].

    With `backing`, the box (plus `pad`) is first filled with that value, the way lead markers and
    overlay text sit on their own plate.
    """
    n_r, n_c = img.shape
    h, w = bitmap.shape
    r0, c0 = max(row - pad, 0), max(col - pad, 0)
    r1, c1 = min(row + h + pad, n_r), min(col + w + pad, n_c)
    if backing is not None:
        img[r0:r1, c0:c1] = backing
    br0, bc0 = max(row, 0), max(col, 0)
    br1, bc1 = min(row + h, n_r), min(col + w, n_c)
    if br1 > br0 and bc1 > bc0:
        sub = bitmap[br0 - row: br1 - row, bc0 - col: bc1 - col]
        region = img[br0:br1, bc0:bc1]
        region += (value - region) * sub
    return [c0, r0, c1, r1]
