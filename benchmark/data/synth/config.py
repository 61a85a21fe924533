"""What the generator is asked for (SynthConfig) and what it gives back per image (SynthCase)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

import numpy as np

from benchmark.core.errors import DataError

# Part of every cache key: bump it whenever the same config would render different pixels or rows.
GENERATOR_VERSION = "1"

# Random streams are seeded as [seed, TAG, index] so that, e.g., image 7 and patient 7 never share
# a stream; every image, patient and site can then be drawn alone, in any order, in any process.
TAG_TABLE = 1
TAG_SITE = 2
TAG_PATIENT = 3
TAG_IMAGE = 4


@dataclass(frozen=True)
class SynthConfig:
    n_patients: int = 300
    n_sites: int = 4
    image_size: int = 256          # square output
    confound: float = 0.5          # site/label confounding strength 0..1
    label_noise: float = 0.0       # fraction of patients whose stored label is another class
    marker_label_corr: float = 0.0  # probability that an image carries its label's marker glyph
    seed: int = 0

    def __post_init__(self) -> None:
        where = "synth config"
        for name in ("n_patients", "n_sites", "image_size", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise DataError(f"{name} must be an integer, got {value!r}", where=where)
        if self.n_patients < 1:
            raise DataError(f"n_patients must be >= 1, got {self.n_patients}", where=where)
        if not 1 <= self.n_sites <= 26 * 27:
            raise DataError(f"n_sites must be in 1..702, got {self.n_sites}", where=where)
        if not 64 <= self.image_size <= 4096:
            raise DataError(f"image_size must be in 64..4096, got {self.image_size}", where=where)
        if self.seed < 0:
            raise DataError(f"seed must be >= 0, got {self.seed}", where=where)
        for name in ("confound", "label_noise", "marker_label_corr"):
            value = getattr(self, name)
            if not isinstance(value, (int, float, np.floating)) or not 0.0 <= float(value) <= 1.0:
                raise DataError(f"{name} must be a number in [0, 1], got {value!r}", where=where)

    def key(self) -> str:
        """Stable short hash of every field and the generator version, for cache keys."""
        fields = {k: (float(v) if isinstance(v, float) else int(v)) for k, v in asdict(self).items()}
        blob = json.dumps({"generator": GENERATOR_VERSION, **fields}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class SynthCase:
    image: np.ndarray          # float32 [H, W] in [0, 1], 0 = air
    lung_mask: np.ndarray      # bool [H, W]
    opacity_mask: np.ndarray   # bool [H, W], always inside lung_mask
    boxes: list[list[float]]   # [[x1, y1, x2, y2], ...], pixel edges: a box holds cols x1..x2-1
    meta: dict = field(default_factory=dict)


def site_name(k: int) -> str:
    """site_a .. site_z, then site_aa, site_ab, ..."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    return "site_" + (letters[k] if k < 26 else letters[k // 26 - 1] + letters[k % 26])
