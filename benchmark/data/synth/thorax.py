"""Soft tissue, lungs, heart, airways and vessels as an attenuation map (bones are in bones.py).

Attenuation is additive along the ray, so structures simply add; the exponential detector response
in acquire.py then makes overlapping dense things (spine behind the heart) lose contrast the way
they do on film.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from .anatomy import Anatomy, Lung, hilum
from .bones import render_bones
from .canvas import (
    F32,
    Frame,
    bank_at,
    banks,
    blur,
    clip,
    downsample2,
    lut_heights,
    lut_widths,
    smoothstep,
    upsample2,
)


@dataclass
class Layers:
    density: np.ndarray    # attenuation, float32 [S, S]
    air: np.ndarray        # attenuation removed by aerated lung; lesions give a fraction back
    lung_mask: np.ndarray  # bool [S, S]


def render_thorax(anat: Anatomy, frame: Frame, coarse: Frame) -> Layers:
    """Everything but the lesions. Lung borders are drawn at full resolution (they must match the
    mask); the body and the smooth or fine-but-faint layers (vessels, bones, textures) on the
    half-resolution `coarse` grid, then upsampled."""
    s = frame.size
    body_c = _body(anat, coarse)
    body = upsample2(body_c, s)
    air = np.zeros((s, s), F32)
    lung_mask = np.zeros((s, s), bool)
    for lung in anat.lungs:
        _lung(frame, anat, lung, air, lung_mask)
    lung_vis_c = downsample2(air)
    # Aerated lung removes attenuation in proportion to the local body thickness.
    air *= body * (anat.air_k / anat.body_k)
    density = body - air

    detail = np.zeros_like(body_c)
    tex = banks(coarse.n)
    oy, ox = anat.tex
    full = (slice(0, coarse.n), slice(0, coarse.n))
    # Interstitium and soft-tissue heterogeneity.
    detail += 0.035 * bank_at(tex.mottle, oy, ox, *full) * lung_vis_c
    detail += 0.025 * bank_at(tex.cloud, ox, oy, *full) * body_c
    _vessels(coarse, anat, detail, lung_vis_c)
    _airways(coarse, anat, detail)
    _soft_tissue(coarse, anat, detail)
    render_bones(anat, coarse, detail)
    density += upsample2(detail, s)
    return Layers(density=density, air=air, lung_mask=lung_mask)


def _body_tables(anat: Anatomy, size: int) -> tuple[np.ndarray, np.ndarray]:
    y = lut_heights(size)
    # Shoulders and arms fill the upper corners; below the axillae the chest wall is narrower.
    sh = clip(1.0 - (y - 0.04) * (1 / 0.3), 0, 1)
    half_width = anat.chest_hw + 0.03 * (y - 0.6) + (anat.shoulder_hw - anat.chest_hw) * sh
    # A little more tissue over the shoulders and the upper abdomen than mid-chest.
    gain = anat.body_k * (1.0 + 0.12 * (np.abs(y - 0.5) * 2.0) ** 2)
    return (1.0 / half_width).astype(F32), gain.astype(F32)


def _body(anat: Anatomy, frame: Frame) -> np.ndarray:
    inv_hw, gain = _body_tables(anat, frame.size)
    full = (slice(0, frame.n), slice(0, frame.n))
    ax = np.abs(frame.x - anat.cx)
    r = ax * frame.by_height(inv_hw, full)
    # Path length through an elliptical trunk.
    thick = np.sqrt(clip(1.0 - r * r, 0, 1))
    # Shoulders slope off the neck and droop towards the arms.
    out = np.maximum(ax - anat.neck_hw, 0)
    y_top = anat.shoulder_y + 0.12 * out + 0.35 * out * out
    thick *= clip((frame.y - y_top) * (1 / 0.03), 0, 1)
    return thick * frame.by_height(gain, full)


def _lung_tables(lung: Lung, cx: float, size: int) -> tuple[np.ndarray, ...]:
    h = lut_heights(size)
    medial, lateral = lung.edges(h)
    # Hemidiaphragm: a dome peaking a little medial of mid-lung, lowest at the costophrenic angle.
    peak = 0.45
    a = (lung.side * (lut_widths(size) - cx) - lung.q_med) * (1.0 / lung.width)
    dome = np.maximum(1.0 - ((a - peak) * (1 / (1 - peak))) ** 2, 0)
    y_bot = lung.y_cp - (lung.y_cp - lung.y_dome) * dome
    # Apices lie under the shoulder girdle; lower zones are overlapped by more soft tissue.
    vert = 0.6 + 0.4 * smoothstep((h - lung.y_apex) * (1 / 0.2)) - 0.12 * np.clip(
        (h - lung.y_dome + 0.12) * (1 / 0.12), 0, 1)
    return medial.astype(F32), lateral.astype(F32), vert.astype(F32), y_bot.astype(F32)


def _lung(frame: Frame, anat: Anatomy, lung: Lung, air: np.ndarray, mask: np.ndarray) -> None:
    x0, y0, x1, y1 = lung.bounds(anat.cx)
    win = frame.window(x0 - 0.01, y0 - 0.01, x1 + 0.01, y1 + 0.01)
    if win is None:
        return
    x, y = frame.x[win], frame.y[win]
    q = lung.side * (x - anat.cx)
    med_t, lat_t, vert_t, bot_t = _lung_tables(lung, anat.cx, frame.size)
    medial, lateral = frame.by_height(med_t, win), frame.by_height(lat_t, win)
    y_bot = frame.by_width(bot_t, win)
    d = np.minimum(np.minimum(lateral - q, q - medial), y_bot - y)
    mask[win] |= d > 0
    # sqrt: the tangent through a rounded cavity, so edges are crisp and the interior is full.
    depth = np.sqrt(clip(d * (1 / 0.03), 0, 1))
    np.maximum(air[win], depth * frame.by_height(vert_t, win), out=air[win])


def _tube(frame: Frame, p0: tuple[float, float], p1: tuple[float, float], r: float):
    """Window and thickness profile (0..1) of a cylinder of radius r along p0 -> p1."""
    (xa, ya), (xb, yb) = p0, p1
    win = frame.window(min(xa, xb) - r, min(ya, yb) - r, max(xa, xb) + r, max(ya, yb) + r)
    if win is None:
        return None, None
    dx, dy = xb - xa, yb - ya
    l2 = max(dx * dx + dy * dy, 1e-9)
    px, py = frame.x[win] - F32(xa), frame.y[win] - F32(ya)
    t = clip((px * F32(dx) + py * F32(dy)) * F32(1 / l2), 0, 1)
    ex, ey = px - t * F32(dx), py - t * F32(dy)
    return win, np.sqrt(clip(F32(1.0) - (ex * ex + ey * ey) * F32(1 / (r * r)), 0, 1))


def _airways(frame: Frame, anat: Anatomy, density: np.ndarray) -> None:
    xt = anat.xs + 0.004
    cy = anat.carina_y
    k = 0.22 * anat.body_k
    for p0, p1, r, kk in (
        ((xt, -0.05), (xt + 0.004, cy), 0.017, k),
        ((xt + 0.004, cy), (xt - 0.035, cy + 0.06), 0.011, 0.7 * k),   # right main bronchus, steeper
        ((xt + 0.004, cy), (xt + 0.055, cy + 0.05), 0.010, 0.7 * k),
    ):
        win, prof = _tube(frame, p0, p1, r)
        if win is not None:
            density[win] -= F32(kk) * prof


def _vessels(frame: Frame, anat: Anatomy, detail: np.ndarray, lung_vis: np.ndarray) -> None:
    """Vessel trunks drawn as lines on the (coarse) grid, seen only against aerated lung."""
    im = Image.new("F", (frame.n, frame.n), 0.0)
    draw = ImageDraw.Draw(im)
    v = anat.vessels
    p = frame.pose
    c, sn = np.cos(p.tilt), np.sin(p.tilt)
    off = (frame.step - 1) / 2
    # Body -> grid pixels for all end points at once (the map of Frame.to_pixel).
    ends = []
    for xb, yb in ((v[:, 0], v[:, 1]), (v[:, 2], v[:, 3])):
        xi = p.tx + p.scale * (c * xb - sn * (yb - 0.5))
        yi = 0.5 + p.ty + p.scale * (sn * xb + c * (yb - 0.5))
        ends.append((((xi + 0.5) * frame.size - 0.5 - off) / frame.step,
                     (yi * frame.size - 0.5 - off) / frame.step))
    gen = v[:, 4].astype(int)
    width0 = frame.px(0.012)
    widths = np.maximum(np.round(width0 * 0.7 ** gen), 1).astype(int).tolist()
    fills = (0.8 ** gen).tolist()
    (c0, r0), (c1, r1) = ends
    for xa, ya, xb, yb, w, val in zip(c0.tolist(), r0.tolist(), c1.tolist(), r1.tolist(), widths, fills,
                                      strict=True):
        draw.line([(xa, ya), (xb, yb)], fill=val, width=w)
    # A light blur turns the aliased lines into soft tubular shadows.
    lines = blur(np.asarray(im, dtype=F32), 0.7)
    detail += anat.vessel_k * lines * clip(lung_vis * 4.0, 0, 1)
    # Hila: the dense roots of the pulmonary arteries at each lung root.
    for lung in anat.lungs:
        hx, hy = hilum(lung, anat.cx)
        win = frame.around(hx, hy, 0.08)
        if win is None:
            continue
        dx, dy = frame.x[win] - hx, frame.y[win] - hy
        g = np.exp(-(dx * dx * (1 / (2 * 0.02**2)) + dy * dy * (1 / (2 * 0.04**2))))
        detail[win] += anat.hilum_k * g


def _soft_tissue(frame: Frame, anat: Anatomy, density: np.ndarray) -> None:
    """Breast shadows, nipples and the gastric bubble: normal findings, common to every class."""
    radius, k = anat.breast
    for lung in anat.lungs:
        bx, by = lung.point(0.55, 0.72, anat.cx)
        if k > 0:
            win = frame.around(bx, by, radius)
            if win is not None:
                dx, dy = frame.x[win] - F32(bx), frame.y[win] - F32(by)
                r2 = (dx * dx + dy * dy) * F32(1 / radius**2)
                # Only the lower half casts a sharp contour; the upper half fades into the chest wall.
                fade = clip(F32(0.5) + dy * F32(1 / radius), 0, 1)
                density[win] += F32(k) * np.sqrt(clip(F32(1.0) - r2, 0, 1)) * fade
        if anat.nipple > 0:
            nx, ny = lung.point(0.62, 0.66, anat.cx)
            r = 0.009
            win = frame.around(nx, ny, r)
            if win is not None:
                dx, dy = frame.x[win] - F32(nx), frame.y[win] - F32(ny)
                density[win] += F32(anat.nipple) * np.sqrt(
                    clip(F32(1.0) - (dx * dx + dy * dy) * F32(1 / r**2), 0, 1))
    gx, gy, g = anat.gastric
    left = anat.lungs[1]
    if g > 0:
        cx_, cy_ = anat.cx + gx, left.y_dome + gy
        win = frame.around(cx_, cy_, 0.05)
        if win is not None:
            dx, dy = frame.x[win] - F32(cx_), frame.y[win] - F32(cy_)
            e = (dx * F32(1 / 0.045)) ** 2 + (dy * F32(1 / 0.03)) ** 2
            # Gas rises: flat fluid level below, dome above.
            density[win] -= F32(g) * np.sqrt(clip(F32(1.0) - e, 0, 1)) * (dy < F32(0.01))
