"""Grey-level tables: map every possible stored value once instead of every pixel.

A full-size radiograph has 7.5 M pixels but at most 65,536 distinct 16-bit values. The modality
LUT, window or VOI LUT, MONOCHROME1 inversion and the final float32 cast are all per-value
functions, so they run on a table of all values and one gather builds the image; the percentile
window reads a histogram instead of partitioning a float64 copy. Results are bit-identical to the
per-pixel computation (tests/test_images.py checks both paths against each other).
"""
from __future__ import annotations

import numpy as np

_CHUNK = 1 << 18  # pixels per bincount/take call: the chunk stays in cache (faster than one call)


def value_table(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(every value arr's dtype can hold, arr as indices into that table), for 8/16-bit integers;
    None for anything else (floats, 32-bit), which takes the per-pixel path."""
    if arr.dtype.kind not in "ui" or arr.dtype.itemsize > 2 or arr.size == 0:
        return None
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if arr.dtype.kind == "u":  # up to the largest value present: 4,096 entries for 12-bit data
        size = int(arr.max()) + 1
        table, index = np.arange(size, dtype=arr.dtype), arr
    else:  # index by bit pattern: the table holds the values those patterns mean
        unsigned = np.dtype(f"u{arr.dtype.itemsize}")
        table, index = np.arange(1 << (8 * arr.dtype.itemsize), dtype=unsigned).view(arr.dtype), arr.view(unsigned)
    # A table larger than a quarter of the image would cost more than it saves.
    return (table, index) if arr.size >= 4 * table.size else None


def value_counts(index: np.ndarray, size: int) -> np.ndarray:
    flat = index.reshape(-1)
    counts = np.zeros(size, dtype=np.int64)
    for start in range(0, flat.size, _CHUNK):
        counts += np.bincount(flat[start:start + _CHUNK], minlength=size)
    return counts


def weighted_percentiles(values: np.ndarray, counts: np.ndarray, q: tuple[float, ...]) -> list[float] | None:
    """np.percentile(q, method='linear') of the multiset {values[i] repeated counts[i] times},
    finite values only, computed the way NumPy does it so the result is the same float.
    None when no value is finite."""
    keep = (counts > 0) & np.isfinite(values)
    v, c = values[keep], counts[keep]
    n = int(c.sum())
    if n == 0:
        return None
    order = np.argsort(v, kind="stable")
    v, cum = v[order], np.cumsum(c[order])

    def at(rank: int) -> float:  # the rank-th smallest (0-based; -1 is the largest)
        return float(v[-1]) if rank < 0 else float(v[np.searchsorted(cum, rank, side="right")])

    out = []
    for virtual in (n - 1) * (np.true_divide(np.asarray(q, dtype=np.float64), 100)):
        prev = int(np.floor(virtual))
        if virtual >= n - 1:
            prev = nxt = -1
        elif virtual < 0:
            prev = nxt = 0
        else:
            nxt = prev + 1
        gamma = float(virtual - prev)
        a, b = np.float64(at(prev)), np.float64(at(nxt))
        diff = b - a
        # NumPy's _lerp: from the nearer end, so that gamma = 1 gives b exactly.
        out.append(float(b - diff * (1 - gamma)) if gamma >= 0.5 else float(a + diff * gamma))
    return out


def gather(table: np.ndarray, index: np.ndarray) -> np.ndarray:
    """table[index], a cache-sized chunk at a time (about 1.5x faster than one fancy index here)."""
    out = np.empty(index.shape, dtype=table.dtype)
    flat_in, flat_out = index.reshape(-1), out.reshape(-1)
    for start in range(0, flat_in.size, _CHUNK):
        np.take(table, flat_in[start:start + _CHUNK], out=flat_out[start:start + _CHUNK])
    return out
