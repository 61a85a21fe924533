"""Class-specific opacity patterns, following the RSNA study-level definitions.

- typical: multifocal, bilateral, peripheral, lower-zone ground glass or consolidation;
- indeterminate: opacities without that pattern (unilateral, central/perihilar or upper-zone);
- atypical: lobar/segmental consolidation, a single nodule or mass, a cavity, or pleural effusion;
- negative: none.

The typical/indeterminate border is kept fuzzy on purpose (typical cases sometimes carry an upper or
central patch or are one-sided; indeterminate ones are sometimes bilateral but central, or a single
lower peripheral patch), because readers disagree most on exactly that pair.

A lesion is stored in lung-local coordinates (a: medial 0 .. lateral 1, b: apex 0 .. base 1), so it
follows its lung when pose and breath change between a patient's images. Its value is the fraction
of the lung's air it replaces: ground glass ~0.1-0.4 and consolidation ~0.45-0.8, both scaled by a
per-patient severity (some cases are faint), lobes, masses and fluid ~0.5-1.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .anatomy import Anatomy, hilum
from .canvas import F32, Frame, bank_at, banks, clip

# Opacity masks mark where a lesion reaches this fraction of its own peak.
MASK_LEVEL = 0.3


@dataclass(frozen=True)
class Lesion:
    kind: str       # ggo | consolidation | nodule | mass | cavity | lobar_upper | lobar_lower
                    # | segment | effusion
    side: int       # -1 image-left lung, +1 image-right lung
    a: float        # lung-local position; a segment keeps its wedge direction (rad) here
    b: float        # lung-local position; the fissure or fluid level for lobar and effusion,
                    # the wedge half-angle (rad) for a segment
    size: float     # image heights (radius-like); a segment's gap from the hilum, an
                    # effusion's meniscus height
    value: float    # fraction of lung air replaced at the peak
    parts: tuple[tuple[float, float, float, float, float], ...] = ()  # dx, dy, sx, sy, weight
    tex: tuple[int, int] = (0, 0)


def _patch(rng: np.random.Generator, kind: str, side: int, a: float, b: float, sev: float,
           size_range: tuple[float, float] = (0.03, 0.075)) -> Lesion:
    size = float(rng.uniform(*size_range))
    if kind == "ggo":
        value = float(np.exp(rng.uniform(np.log(0.1), np.log(0.4)))) * sev
    else:
        value = float(rng.uniform(0.45, 0.8)) * min(sev, 1.2)
    n = int(rng.integers(2, 6))
    parts = tuple(
        (float(rng.normal(0, 0.6 * size)), float(rng.normal(0, 0.6 * size)),
         float(size * rng.uniform(0.45, 0.9)), float(size * rng.uniform(0.45, 0.9)),
         float(rng.uniform(0.6, 1.0)))
        for _ in range(n)
    )
    return Lesion(kind, side, a, b, size, min(value, 0.95), parts, _tex(rng))


def _tex(rng: np.random.Generator) -> tuple[int, int]:
    return int(rng.integers(0, 1 << 20)), int(rng.integers(0, 1 << 20))


def _sides(rng: np.random.Generator, n: int, bilateral: bool) -> list[int]:
    if not bilateral or n < 2:
        s = int(rng.choice([-1, 1]))
        return [s] * n
    sides = [-1, 1] + [int(rng.choice([-1, 1])) for _ in range(n - 2)]
    rng.shuffle(sides)
    return sides


def sample_lesions(label: str, rng: np.random.Generator) -> tuple[list[Lesion], str]:
    """Lesions and a short pattern name for one patient of the given (true) class."""
    # Severity: a per-patient scale, log-spread so that some cases are barely visible.
    sev = float(np.exp(rng.normal(0.0, 0.3)))

    def kind(p_consolidation: float) -> str:
        return "consolidation" if rng.random() < p_consolidation else "ggo"

    if label == "negative":
        return [], "clear"
    if label == "typical":
        n = int(rng.choice([2, 3, 4, 5], p=[0.3, 0.3, 0.25, 0.15]))
        bilateral = rng.random() < 0.85
        out = []
        for side in _sides(rng, n, bilateral):
            a = float(rng.uniform(0.62, 1.0))
            b = float(0.45 + 0.5 * np.sqrt(rng.random()))
            out.append(_patch(rng, kind(0.25), side, a, b, sev))
        pattern = "bilateral_peripheral_lower" if bilateral else "unilateral_multifocal_peripheral"
        # An extra patch where indeterminate cases have theirs: the two classes overlap.
        extra = rng.random()
        if extra < 0.25:
            out.append(_patch(rng, kind(0.2), int(rng.choice([-1, 1])), float(rng.uniform(0.15, 0.9)),
                              float(rng.uniform(0.12, 0.45)), sev))
            pattern += "+upper"
        elif extra < 0.45:
            out.append(_patch(rng, kind(0.2), int(rng.choice([-1, 1])), float(rng.uniform(0.0, 0.4)),
                              float(rng.uniform(0.3, 0.65)), sev))
            pattern += "+central"
        return out, pattern
    if label == "indeterminate":
        pattern = str(rng.choice(["unilateral", "central", "upper"], p=[0.35, 0.35, 0.3]))
        n = int(rng.choice([1, 2, 3, 4], p=[0.2, 0.35, 0.3, 0.15]))
        size = (0.04, 0.085)
        if pattern == "unilateral":
            sides = _sides(rng, n, False)
            where = [(float(rng.uniform(0.25, 1.0)), float(rng.uniform(0.25, 0.95))) for _ in sides]
        elif pattern == "central":
            # Perihilar haziness: larger patches around the lung roots.
            sides = _sides(rng, n, rng.random() < 0.5)
            where = [(float(rng.uniform(0.0, 0.42)), float(rng.uniform(0.3, 0.7))) for _ in sides]
            size = (0.05, 0.1)
        else:
            sides = _sides(rng, n, rng.random() < 0.45)
            where = [(float(rng.uniform(0.15, 1.0)), float(rng.uniform(0.05, 0.42))) for _ in sides]
        out = [_patch(rng, kind(0.35), s, a, b, sev, size) for s, (a, b) in zip(sides, where, strict=True)]
        if len(set(sides)) > 1:
            pattern += "_bilateral"
        return out, pattern
    if label == "atypical":
        return _atypical(rng, sev)
    raise ValueError(f"unknown class {label!r}")


def _atypical(rng: np.random.Generator, sev: float) -> tuple[list[Lesion], str]:
    pattern = str(rng.choice(["lobar", "segment", "nodule", "mass", "cavity", "effusion"],
                             p=[0.2, 0.12, 0.15, 0.1, 0.13, 0.3]))
    side = int(rng.choice([-1, 1]))
    dense = float(np.clip(rng.uniform(0.5, 0.85) * min(sev, 1.2), 0.35, 0.95))
    if pattern == "lobar":
        upper = rng.random() < 0.5
        kind = "lobar_upper" if upper else "lobar_lower"
        fissure = float(rng.uniform(0.38, 0.5)) if upper else float(rng.uniform(0.5, 0.62))
        return [Lesion(kind, side, 0.5, fissure, 0.0, dense, (), _tex(rng))], kind
    if pattern == "segment":
        ang = float(rng.uniform(-1.1, 1.1))   # wedge direction from the hilum (0 = lateral)
        width = float(rng.uniform(0.25, 0.45))
        return [Lesion("segment", side, ang, width, float(rng.uniform(0.1, 0.2)), dense, (), _tex(rng))], pattern
    if pattern in ("nodule", "mass", "cavity"):
        r = {"nodule": (0.012, 0.028), "mass": (0.035, 0.06), "cavity": (0.03, 0.05)}[pattern]
        return [Lesion(pattern, side, float(rng.uniform(0.2, 0.85)), float(rng.uniform(0.15, 0.8)),
                       float(rng.uniform(*r)), float(rng.uniform(0.7, 1.0)), (), _tex(rng))], pattern
    sides = [-1, 1] if rng.random() < 0.2 else [side]
    level = float(rng.uniform(0.55, 0.85))  # lung-local height of the fluid top; higher b = smaller
    out = [Lesion("effusion", s, 1.0, level + float(rng.uniform(-0.03, 0.03)),
                  float(rng.uniform(0.08, 0.2)), float(rng.uniform(0.85, 1.0)), (), _tex(rng)) for s in sides]
    return out, "effusion_bilateral" if len(sides) > 1 else "effusion"


# Lesions that fill the lung's whole depth (a lobe, a segment, pleural fluid) replace all of its
# air; a focal patch only its own thickness, which does not shrink near the chest wall the way the
# lung's depth does, so peripheral patches stay visible.
_FILLING = ("lobar_upper", "lobar_lower", "segment", "effusion")


def render_lesions(lesions: list[Lesion], anat: Anatomy, frame: Frame, density: np.ndarray,
                   air: np.ndarray, gain: float = 1.0) -> np.ndarray:
    """Add the lesions' attenuation to `density` in place; returns their mask (not yet clipped to
    the lungs). `air` is the attenuation the aerated lung removed (thorax.Layers.air)."""
    s = frame.size
    mask = np.zeros((s, s), bool)
    drawn = []
    for les in lesions:
        d = _draw(les, anat.lungs[0 if les.side < 0 else 1], anat, frame)
        if d is not None:
            drawn.append((les, *d))
    if not drawn:
        return mask
    # Work on the union of the lesions' windows only.
    r0 = min(w[0].start for _, w, _ in drawn)
    r1 = max(w[0].stop for _, w, _ in drawn)
    c0 = min(w[1].start for _, w, _ in drawn)
    c1 = max(w[1].stop for _, w, _ in drawn)
    box = (slice(r0, r1), slice(c0, c1))
    filling = np.zeros((r1 - r0, c1 - c0), F32)
    focal = np.zeros_like(filling)
    tex = banks(s)
    for les, win, f in drawn:
        oy, ox = les.tex
        if les.kind in ("ggo", "consolidation"):
            # Clipped texture: patchy, but never a hole that would read as a cavity.
            m = clip(bank_at(tex.mottle, oy, ox, *win), -1.3, 1.3)
            if les.kind == "ggo":
                f = f * (1.0 + 0.45 * m)
            else:
                # Denser and more uniform than ground glass, with soft (not sharp) margins.
                f = np.sqrt(clip(f * 1.25, 0, 1)) * (0.9 + 0.08 * m)
        elif les.kind in _FILLING:
            f = f * np.maximum(0.9 + 0.15 * bank_at(tex.mottle, oy, ox, *win), 0)
        else:
            f = f * (1.0 + 0.06 * bank_at(tex.mottle, oy, ox, *win))
        f *= F32(les.value * gain)
        mask[win] |= f > F32(MASK_LEVEL * les.value * gain)
        acc = filling if les.kind in _FILLING else focal
        local = (slice(win[0].start - r0, win[0].stop - r0), slice(win[1].start - c0, win[1].stop - c0))
        np.maximum(acc[local], f, out=acc[local])
    # A patch's own thickness, as attenuation: about what the middle of a lung holds.
    patch = F32(0.75 * anat.air_k * anat.body_k)
    a = air[box]
    seen = clip(a * F32(4.0 / patch), 0, 1)   # fades out at the lung's edge
    density[box] += np.minimum(filling, 1.0) * a + np.minimum(focal, 1.0) * (0.45 * a + 0.55 * patch * seen)
    return mask


def _draw(les: Lesion, lung, anat: Anatomy, frame: Frame):
    """Window and unit-peak profile of one lesion."""
    if les.kind in ("ggo", "consolidation"):
        cx, cy = lung.point(les.a, les.b, anat.cx)
        reach = les.size * 2.6
        win = frame.around(cx, cy, reach)
        if win is None:
            return None
        x, y = frame.x[win] - F32(cx), frame.y[win] - F32(cy)
        acc = np.zeros(x.shape, F32)
        for dx, dy, sx, sy, w in les.parts:
            ex, ey = (x - F32(dx)) * F32(1 / sx), (y - F32(dy)) * F32(1 / sy)
            acc += F32(w) * np.exp(F32(-0.5) * (ex * ex + ey * ey))
        return win, np.minimum(acc, 1.0)
    if les.kind in ("nodule", "mass", "cavity"):
        cx, cy = lung.point(les.a, les.b, anat.cx)
        r = les.size
        win = frame.around(cx, cy, r * 1.1)
        if win is None:
            return None
        x, y = frame.x[win] - F32(cx), frame.y[win] - F32(cy)
        d2 = (x * x + y * y) * F32(1 / (r * r))
        ball = np.sqrt(np.clip(F32(1.0) - d2, 0, 1))
        prof = np.minimum(ball * F32(2.5), F32(1.0))  # solid: dense right up to a sharp margin
        if les.kind == "cavity":
            inner = np.sqrt(np.clip(F32(1.0) - d2 * F32(1 / 0.42), 0, 1))
            # Air inside the wall, with a fluid level in the lower part of the cavity.
            lumen = np.minimum(inner * F32(3.0), F32(1.0)) * (y < F32(0.25 * r))
            prof = prof - F32(0.9) * lumen
        return win, prof
    x0, y0, x1, y1 = lung.bounds(anat.cx)
    win = frame.window(x0 - 0.01, y0 - 0.01, x1 + 0.01, y1 + 0.01)
    if win is None:
        return None
    x, y = frame.x[win], frame.y[win]
    a = (F32(lung.side) * (x - F32(anat.cx)) - F32(lung.q_med)) * F32(1 / lung.width)
    b = (y - F32(lung.y_apex)) * F32(1 / (lung.y_cp - lung.y_apex))
    if les.kind.startswith("lobar"):
        if les.kind == "lobar_upper":
            # Upper lobe: bounded below by a sharp, nearly horizontal fissure.
            return win, np.clip((F32(les.b) - b + F32(0.05) * a) * F32(60.0), 0, 1)
        # Lower lobe: bounded above by the oblique fissure, which runs down and forwards.
        return win, np.clip((b - F32(les.b) - F32(0.25) * (F32(0.5) - a)) * F32(25.0), 0, 1)
    if les.kind == "segment":
        hx, hy = hilum(lung, anat.cx)
        dx, dy = F32(lung.side) * (x - F32(hx)), y - F32(hy)
        ang = np.arctan2(dy, dx)
        dist = np.sqrt(dx * dx + dy * dy)
        wedge = np.clip((les.b - np.abs(ang - les.a)) * 5.0, 0, 1)
        return win, wedge * np.clip((dist - les.size) * 15.0, 0, 1)
    # Effusion: fluid in the dependent pleural space with a meniscus climbing the lateral wall.
    top = F32(les.b) - F32(les.size) * a * a
    return win, np.clip((b - top) * F32(14.0), 0, 1) * np.clip(F32(0.75) + (b - top) * F32(3.0), 0, 1)
