"""Per-row bin sums of a weight matrix: out[r, j] = sum of w[r, i] over images i in bin j.

One `np.bincount` per block of rows, with each row's bins offset so that rows do not collide. It is
single-threaded and makes one pass over the weights, which on a shared machine beats a matrix
product with a one-hot matrix (BLAS threads wait on busy cores).
"""
from __future__ import annotations

import numpy as np

# Weights handled per bincount: large enough to amortize numpy's call overhead, small enough that
# the index array and bin sums stay in the CPU cache.
BLOCK_ELEMENTS = 1 << 18


def block_rows(n: int) -> int:
    """Rows of an [b, n] weight matrix handled per bincount."""
    return max(1, BLOCK_ELEMENTS // max(n, 1))


def block_index(bins: np.ndarray, n_bins: int, rows: int) -> np.ndarray:
    """int64[rows * n]: `bins` repeated for `rows` rows, row r offset by r * n_bins."""
    return (bins[None, :] + (np.arange(rows, dtype=np.int64) * n_bins)[:, None]).reshape(-1)


def bin_sums(w: np.ndarray, index: np.ndarray, n_bins: int, rows: int) -> np.ndarray:
    """float64[b, n_bins] bin sums of the C-contiguous weights `w[b, n]`, with `index` from
    `block_index(bins, n_bins, rows)`."""
    b, n = w.shape
    out = np.empty((b, n_bins))
    for lo in range(0, b, rows):
        hi = min(lo + rows, b)
        out[lo:hi] = np.bincount(index[: (hi - lo) * n], weights=w[lo:hi].reshape(-1),
                                 minlength=(hi - lo) * n_bins).reshape(hi - lo, n_bins)
    return out
