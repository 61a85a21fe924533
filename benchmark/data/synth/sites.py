"""Acquisition sites: each has a class prior and a look (exposure, noise, sharpness, frame, overlays).

The look is what a model can use to tell sites apart without looking at the lungs; the class prior is
what makes that shortcut pay off. `confound` scales how different the priors are.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from benchmark.core.labels import CLASSES

from .config import TAG_SITE, site_name

# A moderate version of the SIIM-FISABIO-RSNA study-level mix (27/47/17/8 %): skewed the same way,
# with enough atypical cases that every class has a usable test count at the default size.
BASE_PRIOR = np.array([0.28, 0.36, 0.20, 0.16])
# At confound = 1 a site puts this much extra mass on its favoured class (site k favours class k % 4).
MAX_TILT = 0.75

# (blur sigma px at 256, unsharp amount): soft, crisp, edge-enhanced, very soft.
_SHARPNESS = ((0.6, 0.0), (0.0, 0.0), (0.0, 0.5), (1.1, 0.0))
# Collimation frame width, fraction of the side.
_BORDERS = (0.0, 0.025, 0.045, 0.0, 0.06)

# (text, laterality marker) anchors: corners and top centre, where no lung reaches. The
# bottom-right corner is kept free for the planted class marker.
_LAYOUTS = (("tl", "tr"), ("bl", "tl"), ("tr", "bl"), ("tc", "tl"), ("bl", "tr"), ("tr", "tl"))


@dataclass(frozen=True)
class SiteProfile:
    index: int
    name: str
    prior: tuple[float, ...]   # over CLASSES
    exposure: float            # attenuation scale (mu)
    gamma: float               # > 1 darkens mid-tones
    lo: float                  # display window applied after gamma
    hi: float
    noise: float               # pixel noise sd at mid grey
    blur: float                # Gaussian sigma in pixels at 256 px
    sharpen: float             # unsharp-mask amount (edge enhancement some vendors apply)
    border: float              # collimation frame width, fraction of the side
    border_value: float        # 0.02 = shuttered black, ~0.9 = unexposed white
    heel: float                # left-right exposure gradient (anode heel effect)
    lat_glyph: str             # "L" or "R" lead marker
    lat_anchor: str
    text: str                  # fixed part of the burned-in annotation
    text_anchor: str


def site_prior(k: int, confound: float) -> np.ndarray:
    tilt = MAX_TILT * float(confound)
    onehot = np.zeros(len(CLASSES))
    onehot[k % len(CLASSES)] = 1.0
    return (1.0 - tilt) * BASE_PRIOR + tilt * onehot


@lru_cache(maxsize=64)
def site_profile(seed: int, k: int, confound: float) -> SiteProfile:
    rng = np.random.default_rng([seed, TAG_SITE, k])
    # Offsets shared by all sites of a dataset, so that its sites differ in sharpness and framing
    # instead of happening to draw the same option.
    spread = np.random.default_rng([seed, TAG_SITE]).integers(0, 1 << 16, 2)
    text_anchor, lat_anchor = _LAYOUTS[k % len(_LAYOUTS)]
    letters = "ABCDEFGHJKLMNPRSTUVWXYZ"
    word = "".join(rng.choice(list(letters), size=int(rng.integers(3, 6))))
    text = f"{word} {int(rng.integers(1, 10))}"
    bright_frame = bool(rng.random() < 0.5)
    return SiteProfile(
        index=k,
        name=site_name(k),
        prior=tuple(float(p) for p in site_prior(k, confound)),
        exposure=float(rng.uniform(1.2, 1.7)),
        gamma=float(rng.uniform(0.8, 1.3)),
        lo=float(rng.uniform(0.0, 0.08)),
        hi=float(rng.uniform(0.92, 1.05)),
        noise=float(rng.uniform(0.008, 0.035)),
        blur=_SHARPNESS[(k + spread[0]) % len(_SHARPNESS)][0] * float(rng.uniform(0.85, 1.15)),
        sharpen=_SHARPNESS[(k + spread[0]) % len(_SHARPNESS)][1],
        border=_BORDERS[(k + spread[1]) % len(_BORDERS)] * float(rng.uniform(0.8, 1.2)),
        border_value=float(rng.uniform(0.85, 0.95)) if bright_frame else float(rng.uniform(0.0, 0.04)),
        heel=float(rng.uniform(-0.08, 0.08)),
        lat_glyph="L" if rng.random() < 0.7 else "R",
        lat_anchor=lat_anchor,
        text=text,
        text_anchor=text_anchor,
    )


def anchor_position(anchor: str, size: int, h: int, w: int, inset: int) -> tuple[int, int]:
    """Top-left (row, col) of an h x w overlay at a named anchor, `inset` pixels from the edges."""
    row = {"t": inset, "m": (size - h) // 3, "b": size - h - inset}[anchor[0]]
    col = {"l": inset, "c": (size - w) // 2, "r": size - w - inset}[anchor[1]]
    return row, col
