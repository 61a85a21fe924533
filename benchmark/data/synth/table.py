"""The dataset's rows: patients, their images, sites, labels, label noise, splits and markers.

Everything here is a few vectorised draws from one [seed, TAG_TABLE] stream, so the whole table is
cheap to rebuild and `render_case(cfg, i)` can look its row up in any process. All draws are made
whatever the config, in a fixed order: two configs that differ only in, say, `label_noise` share
their patients, sites and true labels.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from benchmark.core.labels import CLASSES

from .canvas import frozen
from .config import TAG_TABLE, SynthConfig, site_name
from .sites import site_prior

IMAGES_PER_PATIENT = (1, 2, 3)
IMAGES_PER_PATIENT_P = (0.45, 0.35, 0.20)
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Rows:
    """Per-image arrays (index i = image i)."""

    patient: np.ndarray      # patient index
    shot: np.ndarray         # 0-based image number within the patient
    n_shots: np.ndarray      # images the patient has
    site: np.ndarray         # site index
    true_label: np.ndarray   # class index
    label: np.ndarray        # class index after label noise
    split: np.ndarray        # index into SPLITS
    marker: np.ndarray       # bool: the class marker is drawn

    def __len__(self) -> int:
        return len(self.patient)


@lru_cache(maxsize=16)
def rows(cfg: SynthConfig) -> Rows:
    rng = np.random.default_rng([cfg.seed, TAG_TABLE])
    n, k = cfg.n_patients, len(CLASSES)
    n_shots = rng.choice(IMAGES_PER_PATIENT, size=n, p=IMAGES_PER_PATIENT_P)
    # Unequal site sizes, as in real multi-centre data, but never an empty-looking site.
    site_w = 0.6 + 0.8 * rng.random(cfg.n_sites)
    site = rng.choice(cfg.n_sites, size=n, p=site_w / site_w.sum())
    cum = np.cumsum(np.stack([site_prior(s, cfg.confound) for s in range(cfg.n_sites)]), axis=1)
    u_label = rng.random(n)
    true = np.minimum((u_label[:, None] > cum[site]).sum(axis=1), k - 1)
    flip = rng.random(n) < cfg.label_noise
    other = (true + rng.integers(1, k, size=n)) % k
    label = np.where(flip, other, true)
    split = _stratified_split(rng, true)

    patient = np.repeat(np.arange(n), n_shots)
    first = np.cumsum(n_shots) - n_shots
    shot = np.arange(len(patient)) - np.repeat(first, n_shots)
    marker = rng.random(len(patient)) < cfg.marker_label_corr
    out = Rows(
        patient=patient,
        shot=shot,
        n_shots=n_shots[patient],
        site=site[patient],
        true_label=true[patient],
        label=label[patient],
        split=split[patient],
        marker=marker,
    )
    frozen(*(getattr(out, f) for f in out.__dataclass_fields__))
    return out


def _stratified_split(rng: np.random.Generator, strata: np.ndarray) -> np.ndarray:
    """Patient-level 60/20/20 within each class, so small configs still get every class in test."""
    out = np.zeros(len(strata), dtype=np.int64)
    order = rng.permutation(len(strata))
    for c in range(len(CLASSES)):
        members = order[strata[order] == c]
        m = len(members)
        n_train = int(round(SPLIT_FRACTIONS[0] * m))
        n_val = int(round(SPLIT_FRACTIONS[1] * m))
        out[members[n_train:n_train + n_val]] = 1
        out[members[n_train + n_val:]] = 2
    return out


def image_id(index: int) -> str:
    return f"synth-{index:06d}"


def synth_table(cfg: SynthConfig) -> pd.DataFrame:
    """One row per image (no pixels); `index` is what `render_case` takes."""
    r = rows(cfg)
    idx = np.arange(len(r))
    names = np.array(CLASSES)
    sites = np.array([site_name(s) for s in range(cfg.n_sites)])
    return pd.DataFrame({
        "image_id": [image_id(i) for i in idx],
        "index": idx,
        "patient_id": [f"synth-p{p:05d}" for p in r.patient],
        "study_id": [f"synth-s{i:06d}" for i in idx],
        "site": sites[r.site],
        "label": names[r.label],
        "true_label": names[r.true_label],
        "view": "PA",
        "split": np.array(SPLITS)[r.split],
        "has_marker": r.marker.copy(),
    })
