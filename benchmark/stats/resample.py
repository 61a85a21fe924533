"""What gets resampled: cluster draws for the bootstrap and deletes for the jackknife.

Both are exposed as generators of chunks so that a plain reference loop can reuse exactly the draws
the vectorized engine used (tests/test_stats_bootstrap.py does).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from benchmark.core.errors import CxrbenchError
from benchmark.stats import _validate as v


@dataclass(frozen=True)
class Units:
    """Resampling units of a test set: image -> unit code, and each unit's stratum code."""

    codes: np.ndarray          # int64[n_images], unit index in [0, n_units)
    n_units: int
    strata: np.ndarray | None  # int64[n_units] stratum code per unit, or None
    kind: str                  # "patient" when clusters were given, else "image"


def make_units(n_images: int, *, clusters=None, strata=None) -> Units:
    """Encode cluster ids (one per image) and per-image strata that must be constant within a cluster."""
    if clusters is None:
        codes, n_units, kind = np.arange(n_images, dtype=np.int64), n_images, "image"
    else:
        codes, n_units = v.group_codes(clusters, n=n_images, name="clusters")
        kind = "patient"
    unit_strata = None
    if strata is not None:
        s_codes, _ = v.group_codes(strata, n=n_images, name="strata")
        unit_strata = np.full(n_units, -1, dtype=np.int64)
        unit_strata[codes] = s_codes
        if np.any(unit_strata[codes] != s_codes):
            bad = int(np.flatnonzero(unit_strata[codes] != s_codes)[0])
            raise CxrbenchError(
                f"a stratum must be constant within each cluster; image {bad} differs from another image "
                "of its cluster (stratify by a per-patient attribute, e.g. site)", where="strata")
    return Units(codes, n_units, unit_strata, kind)


def draw_counts(n_units: int, config, strata: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """Bootstrap draws as multinomial counts, int64[rows, n_units] per chunk, `config.n_resamples` rows.

    Each row draws n_units units with replacement (within each stratum, keeping its size when
    `strata`, an int code per unit, is given). The stream depends only on `config.seed`,
    `config.n_resamples`, `n_units` and `strata`, not on `config.chunk`.
    """
    if n_units < 1:
        raise CxrbenchError("cannot resample an empty test set", where="bootstrap")
    if strata is None:
        perm, high, offset = None, n_units, None
    else:
        strata = np.asarray(strata, dtype=np.int64)
        if strata.shape != (n_units,):
            raise CxrbenchError(f"expected one stratum per unit, shape ({n_units},), found {strata.shape}",
                                where="strata")
        # Columns grouped by stratum: column j draws uniformly among the units of its own stratum.
        perm = np.argsort(strata, kind="stable")
        _, start, size = np.unique(strata[perm], return_index=True, return_counts=True)
        which = np.repeat(np.arange(size.size), size)
        high = size[which].astype(np.int32)
        offset = start[which]
    rng = np.random.default_rng(config.seed)
    done = 0
    while done < config.n_resamples:
        rows = min(config.chunk, config.n_resamples - done)
        # int32 draws are twice as fast as int64; a constant `high` array and the scalar draw the
        # same stream, so one stratum and no strata agree.
        picks = rng.integers(0, high, size=(rows, n_units), dtype=np.int32)
        if perm is not None:
            picks = perm[offset + picks]
        flat = (picks + (np.arange(rows) * n_units)[:, None]).reshape(-1)
        yield np.bincount(flat, minlength=rows * n_units).reshape(rows, n_units)
        done += rows


def jackknife_groups(n_units: int, *, max_groups: int, seed: int) -> np.ndarray:
    """Jackknife group of each unit: itself when n_units <= max_groups, else one of `max_groups`
    near-equal random groups (the delete-group jackknife)."""
    if n_units <= max_groups:
        return np.arange(n_units, dtype=np.int64)
    rng = np.random.default_rng([seed, 0x6A61636B])  # a stream separate from the bootstrap draws
    groups = np.empty(n_units, dtype=np.int64)
    groups[rng.permutation(n_units)] = np.arange(n_units) % max_groups
    return groups


def jackknife_weights(image_groups: np.ndarray, n_groups: int, *, chunk: int) -> Iterator[np.ndarray]:
    """Rows of per-image weights, float64[rows, n]: row g deletes group g (weight 0), keeps the rest."""
    for lo in range(0, n_groups, chunk):
        g = np.arange(lo, min(lo + chunk, n_groups))
        yield (image_groups[None, :] != g[:, None]).astype(np.float64)
