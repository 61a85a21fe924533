"""From attenuation to a displayed image the way one site's equipment would make it.

Detector response, display curve, blur or edge enhancement, pixel noise, the collimation frame, the
lead laterality marker, burned-in text and (optionally) the planted class marker. Everything here is
site-specific except the class marker, which sits at the same place in every image.
"""
from __future__ import annotations

import numpy as np

from .canvas import F32, bank_window, banks, blur, clip, downsample2, pixel_axes, upsample2
from .glyphs import class_symbol, stamp, text_bitmap
from .sites import SiteProfile, anchor_position

# Attenuation at which the display reaches ~white: a little above the mediastinum's.
_WHITE = 1.6


# The tone curve is tabulated over attenuation [0, _D_MAX) (steps of ~1e-3 in output, far below
# the pixel noise) instead of evaluating exp/log/pow per pixel.
_D_MAX, _LUT_N = 3.0, 4096


def tone_curve(site: SiteProfile, mu: float, gamma: float) -> np.ndarray:
    d = np.linspace(0.0, _D_MAX, _LUT_N)
    v = (1.0 - np.exp(-mu * d)) / (1.0 - np.exp(-mu * _WHITE))
    v = np.clip(v, 0.0, None) ** gamma
    return ((v - site.lo) / (site.hi - site.lo)).astype(F32)


def expose(density: np.ndarray, site: SiteProfile, rng: np.random.Generator) -> np.ndarray:
    s = density.shape[0]
    mu = site.exposure * rng.uniform(0.94, 1.06)
    gamma = site.gamma * rng.uniform(0.95, 1.05)
    lut = tone_curve(site, mu, gamma)
    idx = clip(density * F32((_LUT_N - 1) / _D_MAX), 0, _LUT_N - 1).astype(np.int32)
    img = lut.take(idx)
    # Anode heel: exposure falls off towards one side (applied on the display scale: close enough).
    xi, _ = pixel_axes(s)
    img *= 1.0 + site.heel * xi[None, :]
    scale = s / 256
    if site.blur > 0:
        img = blur(img, site.blur * scale)
    if site.sharpen > 0:
        # Edge enhancement (unsharp mask, ~1 px radius: the 2x down/up pair is that blur, cheaply).
        img += F32(site.sharpen) * (img - upsample2(downsample2(img), s))
    # Quantum noise: fewer photons get through dense tissue, so bright regions are noisier.
    noise = bank_window(banks(s).noise, rng, s, s)
    if rng.random() < 0.5:
        noise = noise.T
    img += F32(site.noise * rng.uniform(0.8, 1.2)) * (0.5 + img) * noise
    return img


def overlay(img: np.ndarray, site: SiteProfile, rng: np.random.Generator, marker: str | None) -> dict:
    """Burn in the frame and marks; returns their pixel boxes for the meta record."""
    s = img.shape[0]
    meta: dict = {}
    b = int(round(site.border * s)) + (int(rng.integers(0, 2)) if site.border > 0 else 0)
    if b > 0:
        v = F32(site.border_value)
        img[:b] = v
        img[-b:] = v
        img[:, :b] = v
        img[:, -b:] = v
    meta["border_px"] = b
    # Overlays are burned in after collimation, so they may sit on the frame, near the edge.
    inset = max(int(0.015 * s), 1)

    lat = text_bitmap(site.lat_glyph, max(int(0.055 * s), 7))
    row, col = anchor_position(site.lat_anchor, s, lat.shape[0], lat.shape[1], inset)
    meta["laterality_box"] = stamp(img, lat, row, col, 0.97, backing=0.15, pad=max(s // 128, 1))

    text = f"{site.text} {int(rng.integers(1000, 10000))}"
    bm = text_bitmap(text, max(int(0.03 * s), 6))
    row, col = anchor_position(site.text_anchor, s, bm.shape[0], bm.shape[1], inset)
    # White text, or black where it lands on a white (unexposed) frame, so it always reads.
    under = img[max(row, 0):row + bm.shape[0], max(col, 0):col + bm.shape[1]]
    meta["text_box"] = stamp(img, bm, row, col, 0.95 if under.mean() < 0.6 else 0.05)

    meta["marker_box"] = class_marker_box(s)
    meta["marker_class"] = marker
    if marker is not None:
        x1, y1, x2, y2 = meta["marker_box"]
        size = x2 - x1
        stamp(img, class_symbol(marker, size), y1, x1, 0.98, backing=0.05)
    clip(img, 0.0, 1.0, out=img)
    return meta


def class_marker_box(size: int) -> list[int]:
    """Where the planted class marker goes: the same bottom-right square in every image."""
    g = max(int(round(0.05 * size)), 6)
    inset = max(int(round(0.015 * size)), 1)
    x1 = y1 = size - inset - g
    return [x1, y1, x1 + g, y1 + g]

