"""The cluster bootstrap: point estimates with confidence intervals for any StatFn.

Resampling unit: a patient (all of a patient's images together) when `clusters` is given, else an
image. Each resample is a vector of multinomial counts over units; an image's weight is its unit's
count, and the StatFn evaluates a chunk of resamples at once from the weight matrix. See
benchmark.stats.intervals for the interval methods and benchmark.stats.resample for the draws.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from benchmark.core.errors import CxrbenchError
from benchmark.core.jsonsafe import finite
from benchmark.stats.intervals import (
    bca_interval,
    jackknife_acceleration,
    percentile_interval,
)
from benchmark.stats.resample import (
    Units,
    draw_counts,
    jackknife_groups,
    jackknife_weights,
    make_units,
)
from benchmark.stats.weighted import StatFn

METHODS = ("percentile", "bca")


@dataclass(frozen=True)
class BootstrapConfig:
    """How intervals are computed. `chunk` bounds memory (resamples evaluated at once); it never
    changes results. `jackknife_groups` caps the number of jackknife deletes used for BCa.
    `n_resamples` 0 asks for point estimates only (no interval at all: `ci` is null in the result)."""

    n_resamples: int = 1000
    level: float = 0.95
    method: str = "percentile"
    seed: int = 0
    chunk: int = 200
    jackknife_groups: int = 200

    def __post_init__(self) -> None:
        for name, least in (("n_resamples", 2), ("chunk", 1), ("jackknife_groups", 2)):
            val = getattr(self, name)
            if name == "n_resamples" and not isinstance(val, bool) and isinstance(val, (int, np.integer)) \
                    and val == 0:
                continue  # point estimates only
            if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < least:
                also = "0 (point estimates only) or " if name == "n_resamples" else ""
                raise CxrbenchError(f"expected {also}an integer >= {least}, found {val!r}", where=f"bootstrap.{name}")
        if isinstance(self.level, bool) or not isinstance(self.level, (int, float)) or not 0.0 < self.level < 1.0:
            raise CxrbenchError(f"expected a level in (0, 1), found {self.level!r}", where="bootstrap.level")
        if self.method not in METHODS:
            raise CxrbenchError(f"expected one of {list(METHODS)}, found {self.method!r}", where="bootstrap.method")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise CxrbenchError(f"expected a non-negative integer seed, found {self.seed!r}", where="bootstrap.seed")

    @property
    def point_only(self) -> bool:
        """No resampling: estimates carry no interval."""
        return self.n_resamples == 0

    def to_json(self) -> dict:
        return {k: (int(v) if isinstance(v, np.integer) else v) for k, v in asdict(self).items()}


DEFAULT_CONFIG = BootstrapConfig()


@dataclass(frozen=True)
class Estimate:
    """A point estimate on the full test set and its confidence interval. Without resampling
    (`--bootstrap 0`) there is none: `has_ci` is False, `ci` is (nan, nan) so that code reading its
    ends sees "undefined", and the JSON says `"ci": null`, not an interval of unknown ends."""

    value: float
    ci: tuple[float, float]
    has_ci: bool = True

    def to_json(self) -> dict:
        if not self.has_ci:
            return {"value": finite(self.value), "ci": None}
        return {"value": finite(self.value), "ci": [finite(self.ci[0]), finite(self.ci[1])]}


@dataclass(frozen=True)
class BootstrapResult:
    """Estimates per metric, plus the replicates they came from (float64[n_resamples] per metric)."""

    estimates: dict[str, Estimate]
    unit: str            # "patient" | "image"
    n_units: int
    n_images: int
    config: BootstrapConfig
    samples: dict[str, np.ndarray] = field(repr=False)

    def replicates(self, name: str) -> np.ndarray:
        if name not in self.samples:
            raise CxrbenchError(f"unknown metric {name!r}; available: {sorted(self.samples)}", where="bootstrap")
        return self.samples[name]

    def to_json(self) -> dict:
        return {
            "unit": self.unit, "n_units": self.n_units, "n_images": self.n_images,
            "bootstrap": self.config.to_json(),
            "metrics": {k: e.to_json() for k, e in self.estimates.items()},
        }


def check_inputs(y, probs) -> tuple[np.ndarray, np.ndarray]:
    """Minimal shape agreement; the StatFn validates contents."""
    y = np.asarray(y)
    probs = np.asarray(probs)
    if y.ndim != 1 or y.size == 0:
        raise CxrbenchError(f"expected a non-empty 1-D label array, found shape {y.shape}", where="y")
    if probs.ndim == 0 or probs.shape[0] != y.size:
        raise CxrbenchError(f"expected {y.size} rows of scores (one per label), found shape {probs.shape}",
                            where="probs")
    return y, probs


def point_estimate(stat_fn: StatFn, y, probs) -> dict[str, float]:
    out = stat_fn(y, probs, np.ones((1, np.asarray(y).size)))
    return {k: float(np.asarray(v)[0]) for k, v in out.items()}


def _stack(chunks: Iterator[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    parts: dict[str, list[np.ndarray]] = {}
    for out in chunks:
        for k, v in out.items():
            parts.setdefault(k, []).append(np.asarray(v, dtype=np.float64))
    return {k: np.concatenate(v) for k, v in parts.items()}


# Cells (resamples x images) of one chunk of weights: 4 MB of float64. The kernels make several
# temporaries of that size and some K times larger ([rows, n, K]), so on a large test set this, not
# `config.chunk`, bounds a suite's memory (32,000 images: 16 rows; under 2,600 images: config.chunk).
MAX_CHUNK_CELLS = 1 << 19


def bounded_chunk(config: BootstrapConfig, n_images: int) -> BootstrapConfig:
    """`config` with its chunk cut to MAX_CHUNK_CELLS // n_images rows. The draws do not depend on
    the chunk, so neither do the results, up to rounding (1e-14) and, for a temperature refitted per
    resample, its solver's 1e-10 tolerance (each chunk starts from the fit to its own mean weights)."""
    rows = max(1, min(config.chunk, MAX_CHUNK_CELLS // max(n_images, 1)))
    return config if rows == config.chunk else replace(config, chunk=rows)


def replicate_weights(units: Units, config: BootstrapConfig) -> Iterator[np.ndarray]:
    """Per-image weights float64[rows, n] for each chunk of bootstrap resamples."""
    for counts in draw_counts(units.n_units, bounded_chunk(config, units.codes.size), units.strata):
        if units.kind == "image":  # each image is its own unit, in order
            yield counts.astype(np.float64)
        else:
            # np.take keeps the result C-contiguous (fancy indexing on axis 1 would not), which the
            # kernels' row blocks rely on.
            yield np.take(counts.astype(np.float64), units.codes, axis=1)


def replicate_stats(stat_fn: StatFn, y, probs, units: Units, config: BootstrapConfig) -> dict[str, np.ndarray]:
    return _stack(stat_fn(y, probs, w) for w in replicate_weights(units, config))


def jackknife_stats(stat_fn: StatFn, y, probs, units: Units, config: BootstrapConfig) -> dict[str, np.ndarray]:
    """Delete-one-unit (or delete-group, above `config.jackknife_groups` units) jackknife values."""
    groups = jackknife_groups(units.n_units, max_groups=config.jackknife_groups, seed=config.seed)
    n_groups = int(groups.max()) + 1
    if n_groups < 2:
        raise CxrbenchError("BCa needs at least two resampling units", where="bootstrap.method")
    weights = jackknife_weights(groups[units.codes], n_groups, chunk=bounded_chunk(config, units.codes.size).chunk)
    return _stack(stat_fn(y, probs, w) for w in weights)


def interval(reps: np.ndarray, theta_hat: float, config: BootstrapConfig,
             jack: np.ndarray | None = None) -> tuple[float, float]:
    if config.method == "bca":
        accel = 0.0 if jack is None else jackknife_acceleration(jack)
        return bca_interval(reps, theta_hat, accel, config.level)
    return percentile_interval(reps, config.level)


def bootstrap(stat_fn: StatFn, y, probs, *, clusters=None, strata=None,
              config: BootstrapConfig = DEFAULT_CONFIG) -> BootstrapResult:
    """Point estimate and `config.level` interval of every metric `stat_fn` returns.

    `clusters`: one id per image (patient ids); all images of a cluster are resampled together.
    None resamples images. `strata`: one label per image, constant within a cluster (e.g. site);
    resampling then happens within each stratum, keeping its number of units.
    BCa uses a jackknife over units (leave one patient out), or over `config.jackknife_groups`
    random groups of units when there are more units than that.
    """
    y, probs = check_inputs(y, probs)
    units = make_units(y.size, clusters=clusters, strata=strata)
    point = point_estimate(stat_fn, y, probs)
    if config.point_only:
        none = (math.nan, math.nan)
        return BootstrapResult({k: Estimate(v, none, has_ci=False) for k, v in point.items()}, units.kind,
                               units.n_units, int(y.size), config, {k: np.zeros(0) for k in point})
    reps = replicate_stats(stat_fn, y, probs, units, config)
    jack = jackknife_stats(stat_fn, y, probs, units, config) if config.method == "bca" else {}
    estimates = {k: Estimate(point[k], interval(reps[k], point[k], config, jack.get(k))) for k in point}
    return BootstrapResult(estimates, units.kind, units.n_units, int(y.size), config, reps)
