"""A patient's anatomy: the shape parameters every image of that patient shares.

All lengths are in image heights, in body coordinates (see canvas.py). Ranges are loose adult PA
proportions: cardiothoracic ratio ~0.4-0.5, right hemidiaphragm higher than the left, ~10
posterior ribs above the domes, clavicles over the apices. None of them depends on the class, so
anatomy alone says nothing about the label.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class Lung:
    side: int        # -1: image left (patient's right lung), +1: image right (patient's left)
    q_med: float     # medial edge above the heart, distance from the midline
    q_lat: float     # lateral edge at the base
    y_apex: float
    y_cp: float      # costophrenic angle, the lung's lowest point
    y_dome: float    # top of the hemidiaphragm
    a0: float        # where the apex sits across the lung, 0 = medial .. 1 = lateral
    open_len: float  # how far below the apex the lateral edge keeps widening
    heart: tuple[float, float, float]  # extra medial width at the widest, level of it, height of the curve
    knob: tuple[float, float, float] = (0.0, 0.0, 1.0)  # aortic knob: extra width, level, half-height

    @property
    def width(self) -> float:
        return self.q_lat - self.q_med

    def edges(self, y):
        """(medial, lateral) edge distances from the midline at height y (float or float32 array)."""
        rel = np.maximum(y - self.y_apex, 1e-6)
        # Power < 1 but > 1/2: a domed apex that is narrower than a parabola's.
        grow = np.minimum(rel * (1.0 / self.open_len), 1.0) ** 0.7
        lateral = self.q_med + self.width * (self.a0 + (1.0 - self.a0) * grow)
        close = 1.0 - np.minimum(rel * (1.0 / 0.1), 1.0) ** 0.6
        hw, hy, hh = self.heart
        t = np.clip((hy - y) * (1.0 / hh), 0.0, 1.0)
        kw, ky, kh = self.knob
        k = (y - ky) * (1.0 / kh)
        # Heart: convex ventricular contour widening down to the diaphragm. Knob: a smooth bump.
        medial = (self.q_med + self.width * self.a0 * close + hw * (1.0 - t * t) ** 1.5
                  + kw * np.maximum(1.0 - k * k, 0.0) ** 1.5)
        return medial, lateral

    def point(self, a: float, b: float, cx: float) -> tuple[float, float]:
        """Body coordinates of a lung-local position: a across (0 medial edge .. 1 lateral edge at
        that height), b down (0 apex .. 1 costophrenic angle)."""
        y = self.y_apex + b * (self.y_cp - self.y_apex)
        med, lat = self.edges(y)
        return cx + self.side * float(med + a * (lat - med)), y

    def bounds(self, cx: float) -> tuple[float, float, float, float]:
        xa, xb = cx + self.side * self.q_med, cx + self.side * self.q_lat
        return min(xa, xb), self.y_apex, max(xa, xb), self.y_cp


@dataclass(frozen=True)
class Anatomy:
    cx: float                 # body midline
    xs: float                 # spine (differs from cx when the patient is rotated)
    body_k: float             # soft-tissue attenuation at the thickest point
    air_k: float              # how much of it the aerated lung removes
    chest_hw: float           # chest wall half-width at the bases
    shoulder_hw: float
    neck_hw: float
    shoulder_y: float
    lungs: tuple[Lung, Lung]
    carina_y: float
    ribs: tuple[float, ...]   # first-rib y, spacing, spacing growth, arch, half-width, density, drop
    clavicle: tuple[float, ...]  # medial y, lateral y, lateral x, half-width, density, bend
    spine_k: float
    humerus: tuple[float, float, float]  # x from cx, y, r
    scapula: tuple[float, float]          # medial-border x offset from lung edge, density
    gastric: tuple[float, float, float]   # dx, dy below the left dome, strength (0 = none)
    breast: tuple[float, float]           # radius, density (0 = none)
    nipple: float                          # density (0 = none)
    hilum_k: float
    vessel_k: float
    vessels: np.ndarray       # [n, 5]: x0, y0, x1, y1, generation
    tex: tuple[int, int]      # texture-bank offsets, so a patient's tissue texture is stable

    def with_inspiration(self, d: float) -> Anatomy:
        """Deeper (d > 0) or shallower breath: domes move, apices barely do."""
        lungs = tuple(
            replace(lung, y_cp=lung.y_cp + d, y_dome=lung.y_dome + d,
                    heart=(lung.heart[0], lung.heart[1] + d, lung.heart[2] + d))
            for lung in self.lungs)
        return replace(self, lungs=lungs)


def sample_anatomy(rng: np.random.Generator) -> Anatomy:
    u = rng.uniform
    cx = u(-0.015, 0.015)
    chest_hw = u(0.39, 0.45)
    lat = chest_hw - u(0.025, 0.04)
    y_apex = u(0.10, 0.14)
    y_cp = u(0.77, 0.85)
    dome_r = y_cp - u(0.08, 0.12)
    dome_l = dome_r + u(0.015, 0.035)
    knob_y = y_apex + u(0.13, 0.16)
    # Cardiothoracic ratio ~0.38-0.52 of the inner thoracic width.
    ctr = u(0.38, 0.52)
    heart_w = ctr * 2 * lat
    q_right = heart_w * u(0.3, 0.37)
    q_med_r, q_med_l = u(0.04, 0.055), u(0.035, 0.05)
    lungs = (
        Lung(-1, q_med_r, lat + u(-0.01, 0.01), y_apex + u(-0.008, 0.008), y_cp - u(0.0, 0.015),
             dome_r, u(0.3, 0.42), u(0.28, 0.36),
             heart=(max(q_right - q_med_r, 0.01), dome_r - u(0.0, 0.03), u(0.14, 0.2))),
        Lung(1, q_med_l, lat + u(-0.015, 0.005), y_apex + u(-0.008, 0.008), y_cp + u(0.0, 0.015),
             dome_l, u(0.3, 0.42), u(0.28, 0.36),
             heart=(heart_w - q_right - q_med_l, dome_l - u(0.01, 0.04), dome_l - knob_y - u(0.04, 0.07)),
             knob=(u(0.015, 0.028), knob_y, u(0.035, 0.05))),
    )
    return Anatomy(
        cx=cx,
        xs=cx + u(-0.012, 0.012),
        body_k=u(0.95, 1.1),
        air_k=u(0.74, 0.84),
        chest_hw=chest_hw,
        shoulder_hw=u(0.52, 0.62),
        neck_hw=u(0.085, 0.11),
        shoulder_y=u(-0.08, -0.03),
        lungs=lungs,
        carina_y=y_apex + u(0.19, 0.23),
        ribs=(y_apex - u(0.0, 0.015), u(0.042, 0.05), u(0.0008, 0.0018), u(0.065, 0.085),
              u(0.011, 0.014), u(0.09, 0.13), u(0.12, 0.16)),
        clavicle=(y_apex + u(0.07, 0.1), y_apex + u(0.02, 0.05), u(0.34, 0.4), u(0.018, 0.023),
                  u(0.28, 0.36), u(-1.0, 1.0)),
        spine_k=u(0.1, 0.15),
        humerus=(chest_hw + u(0.05, 0.08), u(0.13, 0.17), u(0.06, 0.075)),
        scapula=(u(-0.02, 0.02), u(0.04, 0.08)),
        gastric=(u(0.1, 0.18), u(0.03, 0.05), u(0.15, 0.35) if rng.random() < 0.7 else 0.0),
        breast=(u(0.11, 0.16), u(0.05, 0.12)) if rng.random() < 0.4 else (0.0, 0.0),
        nipple=u(0.08, 0.16) if rng.random() < 0.2 else 0.0,
        hilum_k=u(0.14, 0.22),
        vessel_k=u(0.16, 0.22),
        vessels=_vessel_tree(rng, lungs, cx),
        tex=(int(rng.integers(0, 1 << 20)), int(rng.integers(0, 1 << 20))),
    )


def hilum(lung: Lung, cx: float) -> tuple[float, float]:
    return lung.point(0.05, 0.4, cx)


def _vessel_tree(rng: np.random.Generator, lungs: tuple[Lung, Lung], cx: float) -> np.ndarray:
    """Pulmonary vessel trunks from each hilum: 6 trunks, 3 generations of bifurcation.

    Only the larger vessels are drawn as lines; the fine peripheral markings are a texture.
    """
    segs = []
    for lung in lungs:
        hx, hy = hilum(lung, cx)
        # Angles from straight lateral, in image orientation (positive = downwards).
        base = np.array([-80.0, -50.0, -20.0, 10.0, 40.0, 70.0])
        ang = np.deg2rad(base + rng.uniform(-10, 10, base.size))
        x = np.full(base.size, hx)
        y = np.full(base.size, hy) + rng.uniform(-0.02, 0.03, base.size)
        length = rng.uniform(0.06, 0.09, base.size) * lung.width / 0.3
        for gen in range(3):
            x1 = x + lung.side * np.cos(ang) * length
            y1 = y + np.sin(ang) * length
            segs.append(np.stack([x, y, x1, y1, np.full_like(x, gen)], axis=1))
            n = len(x)
            spread = np.deg2rad(rng.uniform(15, 32, n))
            x, y = np.repeat(x1, 2), np.repeat(y1, 2)
            ang = np.repeat(ang, 2) + np.stack([spread, -spread], axis=1).ravel()
            ang += np.deg2rad(rng.uniform(-8, 8, 2 * n))
            length = np.repeat(length, 2) * rng.uniform(0.62, 0.8, 2 * n)
    return np.concatenate(segs).astype(np.float32)
