"""Ribs, clavicles, spine, scapulae and humeral heads, added to the attenuation map.

Ribs are drawn per side with one vectorised pass each: every rib's centre line is the same arch
shifted down by a spacing that grows caudally, so the whole rib stack is one profile along
"height minus arch offset", looked up from 1-D tables.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .anatomy import Anatomy
from .canvas import F32, Frame, clip, frozen, lut_heights

N_RIBS = 12


def render_bones(anat: Anatomy, frame: Frame, density: np.ndarray) -> None:
    for side in (-1, 1):
        _ribs(anat, frame, density, side)
        _clavicle(anat, frame, density, side)
        _shoulder(anat, frame, density, side)
    _spine(anat, frame, density)


def _band(dist: np.ndarray, half: float, edge: float, cortex: float) -> np.ndarray:
    """Bone cross-section: a plateau with brighter cortical margins (piecewise linear: cheap)."""
    body = np.clip((half - dist) * (1 / edge), 0, 1)
    rim = np.clip(1.0 - np.abs(dist - 0.8 * half) * (1 / (0.3 * half)), 0, 1)
    return body * (1 - cortex) + rim * cortex


def _table_index(v: np.ndarray, lo: float, hi: float, n: int) -> np.ndarray:
    idx = ((v - lo) * ((n - 1) / (hi - lo)) + 0.5).astype(np.int32)
    return clip(idx, 0, n - 1)


@lru_cache(maxsize=256)
def _rib_tables(ribs: tuple[float, ...], size: int) -> tuple[np.ndarray, ...]:
    """Side-independent rib tables of one patient.

    Every rib shares one arch shape t -> offset (t = 0 at the spine, 1 at the cage wall), so the
    image is the rib-stack profile P(y - offset(t)); P and the arch are 1-D tables, so the
    per-pixel work is a handful of lookups whatever the number of ribs.
    """
    y1, s0, s1, arch, half, _, drop = ribs
    # Functions of t: posterior arch (up from the spine, over the top a third of the way out,
    # down laterally), anterior course (from the lateral end steeply down towards the sternum)
    # and where each is visible.
    tt = np.linspace(0.0, T_HI, N_T)
    tc = np.minimum(tt, 1.0)
    bend = np.maximum(tt - 0.72, 0)
    post_y = arch * (-3.2 * tc + 2.5 * tc * tc) + 0.6 * bend * bend
    ant_y = arch * -0.7 + 0.6 * 0.28**2 + drop * (1.0 - tc)
    post_w = np.clip(tt * (1 / 0.12), 0, 1) * np.clip((1.03 - tt) * (1 / 0.06), 0, 1)
    ant_w = 0.4 * np.clip((tt - 0.32) * (1 / 0.15), 0, 1) * np.clip((1.02 - tt) * (1 / 0.05), 0, 1)
    # Rib-stack profiles along u = y - offset: centre lines at y1 + s0*n + s1*n^2.
    uu = np.linspace(U_LO, U_HI, _n_u(size))
    n = (np.sqrt(np.maximum(s0 * s0 + 4 * s1 * (uu - y1), 0)) - s0) / (2 * s1)
    dist = np.abs(n - np.round(n)) * (s0 + 2 * s1 * n)
    prof_p = _band(dist, half, 0.004, 0.45) * ((n > -0.5) & (n < N_RIBS - 0.5))
    prof_a = _band(dist, half * 1.15, 0.006, 0.25) * ((n > -0.5) & (n < 7.5))
    return frozen(*(v.astype(F32) for v in (post_y, ant_y, post_w, ant_w, prof_p, prof_a)))


@lru_cache(maxsize=512)
def _cage_tables(q_lat: float, y_apex: float, open_len: float, chest_hw: float, k: float,
                 size: int) -> tuple[np.ndarray, np.ndarray]:
    h = lut_heights(size)
    # The cage narrows towards the apex like the lung inside it, and never passes the body wall.
    rel = np.clip((h - (y_apex - 0.03)) * (1 / (open_len + 0.04)), 0, 1)
    cage = np.minimum(0.09 + (q_lat - 0.09) * np.sqrt(rel), chest_hw + 0.03 * (h - 0.6) - 0.012)
    # Lower ribs hide behind more soft tissue and the diaphragm.
    k_h = k * (1.0 - 0.45 * np.clip((h - 0.45) * (1 / 0.4), 0, 1))
    return frozen((1.0 / cage).astype(F32), k_h.astype(F32))


N_T, T_HI = 1024, 1.1
U_LO, U_HI = -0.25, 1.3


def _n_u(size: int) -> int:
    return int((U_HI - U_LO) * size * 4) + 2


def _table_index(v: np.ndarray, lo: float, hi: float, n: int) -> np.ndarray:
    idx = ((v - lo) * ((n - 1) / (hi - lo)) + 0.5).astype(np.int32)
    return clip(idx, 0, n - 1)


def _ribs(anat: Anatomy, frame: Frame, density: np.ndarray, side: int) -> None:
    """Posterior and anterior ribs of one side."""
    lung = anat.lungs[0 if side < 0 else 1]
    q_lat = lung.q_lat + 0.03
    xa, xb = anat.xs, anat.xs + side * (q_lat + 0.02)
    # Below the domes the lower ribs are hidden by the abdomen; stop a little under them.
    win = frame.window(min(xa, xb), anat.ribs[0] - 0.06, max(xa, xb), lung.y_cp + 0.08)
    if win is None:
        return
    post_y, ant_y, post_w, ant_w, prof_p, prof_a = _rib_tables(anat.ribs, frame.size)
    inv_cage, k_h = _cage_tables(q_lat, lung.y_apex, lung.open_len, anat.chest_hw, anat.ribs[5],
                                 frame.size)
    n_u = len(prof_p)
    y = frame.y[win]
    t = (side * (frame.x[win] - anat.xs)) * frame.by_height(inv_cage, win)
    ti = _table_index(t, 0.0, T_HI, N_T)
    rib = post_w.take(ti) * prof_p.take(_table_index(y - post_y.take(ti), U_LO, U_HI, n_u))
    rib += ant_w.take(ti) * prof_a.take(_table_index(y - ant_y.take(ti), U_LO, U_HI, n_u))
    rib *= frame.by_height(k_h, win)
    density[win] += rib


def _clavicle(anat: Anatomy, frame: Frame, density: np.ndarray, side: int) -> None:
    y_med, y_lat, x_lat, half, k, bend = anat.clavicle
    q0, q1 = 0.025, x_lat
    xa, xb = anat.xs + side * q0, anat.cx + side * q1
    win = frame.window(min(xa, xb) - 0.02, min(y_med, y_lat) - 0.04, max(xa, xb) + 0.02,
                       max(y_med, y_lat) + 0.04)
    if win is None:
        return
    x, y = frame.x[win], frame.y[win]
    t = (F32(side) * (x - F32(anat.xs)) - F32(q0)) * F32(1 / (q1 - q0))
    tc = clip(t, 0, 1)
    # Gentle S: the medial third bows down, the lateral end curves up to the acromion.
    centre = F32(y_med) + F32(y_lat - y_med) * tc * tc + F32(0.01 * bend) * np.sin(F32(2 * np.pi) * tc)
    thick = F32(half) * (F32(1.3) - F32(0.5) * tc)
    dist = np.abs(y - centre) / thick * F32(half)
    ends = clip(t * F32(1 / 0.05), 0, 1) * clip((F32(1.0) - t) * F32(1 / 0.04), 0, 1)
    density[win] += F32(k) * _band(dist, half, 0.003, 0.4) * ends


def _shoulder(anat: Anatomy, frame: Frame, density: np.ndarray, side: int) -> None:
    hx, hy, r = anat.humerus
    x0 = anat.cx + side * hx
    win = frame.around(x0, hy, r)
    if win is not None:
        dx, dy = frame.x[win] - F32(x0), frame.y[win] - F32(hy)
        d = np.sqrt(dx * dx + dy * dy)
        head = np.sqrt(clip(F32(1.0) - (d * F32(1 / r)) ** 2, 0, 1))
        density[win] += F32(0.28) * (F32(0.6) * head + F32(0.4) * _band(d, r, 0.004, 1.0))
    # Scapula: a thin plate whose medial border crosses the upper lateral lung.
    off, k = anat.scapula
    lung = anat.lungs[0 if side < 0 else 1]
    q_b = lung.q_lat - 0.09 + off
    xa, xb = anat.cx + side * q_b, anat.cx + side * (lung.q_lat + 0.08)
    win = frame.window(min(xa, xb) - 0.04, 0.08, max(xa, xb), lung.y_apex + 0.4)
    if win is None:
        return
    x, y = frame.x[win], frame.y[win]
    q = F32(side) * (x - F32(anat.cx))
    # Medial border slants laterally going down, to the inferior angle.
    border = F32(q_b) + F32(0.2) * (y - F32(0.15))
    inside = clip((q - border) * F32(1 / 0.006), 0, 1)
    bottom = clip((F32(lung.y_apex + 0.36) - y - F32(0.4) * (q - border)) * F32(1 / 0.01), 0, 1)
    top = clip((y - F32(0.1)) * F32(1 / 0.03), 0, 1)
    rim = clip(F32(1.0) - np.abs(q - border - F32(0.004)) * F32(1 / 0.004), 0, 1)
    density[win] += F32(k) * (inside + F32(0.8) * rim) * bottom * top


@lru_cache(maxsize=16)
def _spine_tables(size: int) -> tuple[np.ndarray, ...]:
    """Vertebral pattern as functions of height (the column's geometry is the same for everyone)."""
    y = lut_heights(size).astype(np.float64)
    # Vertebral height grows caudally: p(y) = p0 + g*y, phase = integral of dy / p(y).
    p0, g = 0.036, 0.022
    phase = np.log(np.maximum(1.0 + y * (g / p0), 1e-3)) * (1 / g)
    frac = phase - np.floor(phase)
    half_w = 0.022 + 0.014 * y
    disc = np.clip(np.abs(frac - 0.5) * (1 / 0.08) - 4.6, 0, 1)   # ~16% of the period
    endplate = np.clip(1.0 - np.abs(np.abs(frac - 0.5) - 0.38) * (1 / 0.05), 0, 1)
    level = 0.75 - 0.55 * disc + 0.35 * endplate
    ped_y = ((frac - 0.35) * (1 / 0.17)) ** 2
    spin_y = ((frac - 0.7) * (1 / 0.12)) ** 2
    return frozen(*(v.astype(F32) for v in (half_w, level, ped_y, spin_y)))


def _spine(anat: Anatomy, frame: Frame, density: np.ndarray) -> None:
    xs = anat.xs
    win = frame.window(xs - 0.06, -0.02, xs + 0.06, 1.02)
    if win is None:
        return
    half_w, level, ped_y, spin_y = (frame.by_height(v, win) for v in _spine_tables(frame.size))
    dx = np.abs(frame.x[win] - xs)
    body = clip((half_w - dx) * (1 / 0.004), 0, 1)
    ped_x = (dx - 0.75 * half_w) * (1 / 0.006)
    ring = clip(1.0 - np.abs(ped_x * ped_x + ped_y - 0.8) * (1 / 0.35), 0, 1)
    spinous = clip(1.0 - (dx * (1 / 0.006)) ** 2 - spin_y, 0, 1)
    density[win] += anat.spine_k * (body * level + 0.6 * ring + 0.5 * spinous)
