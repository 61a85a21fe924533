"""Paired tests on per-image correctness, and multiple-testing corrections (statsmodels)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from benchmark.core.errors import CxrbenchError
from benchmark.core.jsonsafe import finite as json_float

ADJUST_METHODS = ("holm", "fdr_bh")


@dataclass(frozen=True)
class McNemarResult:
    b01: int             # images model a gets wrong and model b gets right
    b10: int             # images model a gets right and model b gets wrong
    statistic: float     # min(b01, b10), the exact binomial test's statistic
    p_value: float       # two-sided exact binomial p-value

    def to_json(self) -> dict:
        return {"b01": self.b01, "b10": self.b10, "statistic": json_float(self.statistic),
                "p_value": json_float(self.p_value)}


def _bool_vector(x, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1 or arr.size == 0:
        raise CxrbenchError(f"expected a non-empty 1-D array, found shape {arr.shape}", where=name)
    if arr.dtype != bool:
        if not np.all(np.isin(arr, (0, 1))):
            raise CxrbenchError("expected booleans or 0/1 values", where=name)
        arr = arr.astype(bool)
    return arr


def mcnemar_exact(correct_a, correct_b) -> McNemarResult:
    """Exact McNemar test of equal accuracy for two models on the same images.

    Images are assumed independent; with several images per patient prefer the paired bootstrap.
    """
    from statsmodels.stats.contingency_tables import mcnemar  # statsmodels is slow to import

    a = _bool_vector(correct_a, "correct_a")
    b = _bool_vector(correct_b, "correct_b")
    if a.shape != b.shape:
        raise CxrbenchError(f"both vectors must cover the same images: {a.shape} vs {b.shape}", where="correct_b")
    table = np.array([[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]])
    res = mcnemar(table, exact=True)
    return McNemarResult(int(table[1, 0]), int(table[0, 1]), float(res.statistic), float(res.pvalue))


def adjust_pvalues(pvalues, method: str = "holm") -> np.ndarray:
    """Family-wise (Holm) or false-discovery-rate (Benjamini-Hochberg, "fdr_bh") adjusted p-values,
    via statsmodels `multipletests`. NaN entries stay NaN and are left out of the family."""
    from statsmodels.stats.multitest import multipletests

    if method not in ADJUST_METHODS:
        raise CxrbenchError(f"expected one of {list(ADJUST_METHODS)}, found {method!r}", where="method")
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1:
        raise CxrbenchError(f"expected a 1-D array of p-values, found shape {p.shape}", where="pvalues")
    ok = ~np.isnan(p)
    if np.any((p[ok] < 0) | (p[ok] > 1)):
        raise CxrbenchError("p-values must lie in [0, 1]", where="pvalues")
    out = np.full(p.shape, math.nan)
    if ok.any():
        out[ok] = multipletests(p[ok], method=method)[1]
    return out
