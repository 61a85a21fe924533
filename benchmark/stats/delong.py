"""DeLong's test for two correlated AUROCs, with a cluster-aware variance.

Structural components (DeLong, DeLong & Clarke-Pearson 1988): for positive i and negative j,
psi(x, y) = 1[x > y] + 1/2 1[x == y];  V10_i = mean_j psi(x_i, y_j),  V01_j = mean_i psi(x_i, y_j);
AUC = mean of V10 = mean of V01. They are computed in O(n log n) from midranks (Sun & Xu 2014):
V10_i = (T_z(i) - T_x(i)) / N and V01_j = 1 - (T_z(j) - T_y(j)) / M, with T_z the midrank in the
pooled sample, T_x / T_y the midrank among positives / negatives, M positives, N negatives.

Unclustered: Cov(AUC_r, AUC_s) = S10[r, s] / M + S01[r, s] / N, with S10, S01 the sample covariances
(ddof=1) of the components.

Clustered (Obuchowski 1997, Biometrics 53:567): components are summed within each cluster (patient),
V10_c = sum of V10_i over the cluster's positives (m_c of them), V01_c likewise (n_c negatives); with
I clusters, I10 of them holding a positive and I01 a negative,
  S10[r, s] = I10 / ((I10 - 1) M) * sum_c (V10_c^r - m_c AUC_r)(V10_c^s - m_c AUC_s)
  S01[r, s] = I01 / ((I01 - 1) N) * sum_c (V01_c^r - n_c AUC_r)(V01_c^s - n_c AUC_s)
  S11[r, s] = I / (I - 1)         * sum_c (V10_c^r - m_c AUC_r)(V01_c^s - n_c AUC_s)
  Cov(AUC_r, AUC_s) = S10[r, s] / M + S01[r, s] / N + (S11[r, s] + S11[s, r]) / (M N).
With one image per cluster this reduces exactly to the unclustered formula.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr  # the normal CDF; lighter to import than scipy.stats

from benchmark.core.errors import CxrbenchError
from benchmark.stats import _validate as v
from benchmark.core.jsonsafe import finite as json_float


@dataclass(frozen=True)
class DeLongResult:
    auc_a: float
    auc_b: float
    diff: float          # auc_a - auc_b
    se: float            # standard error of the difference
    z: float
    p_value: float       # two-sided, normal approximation
    clustered: bool      # whether the Obuchowski cluster variance was used

    def to_json(self) -> dict:
        return {k: (json_float(val) if isinstance(val, float) else val) for k, val in self.__dict__.items()}


def midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank (scipy.stats.rankdata(method="average"))."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return (ends - (counts - 1) / 2.0)[inverse.reshape(-1)]


def structural_components(y01: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(auc[R], V10[R, M], V01[R, N]) for score rows `scores[R, n]` against binary `y01[n]`."""
    pos, neg = y01 == 1, y01 == 0
    m, n = int(pos.sum()), int(neg.sum())
    v10 = np.empty((scores.shape[0], m))
    v01 = np.empty((scores.shape[0], n))
    for r, s in enumerate(scores):
        x, yv = s[pos], s[neg]
        tz = midranks(np.concatenate([x, yv]))
        v10[r] = (tz[:m] - midranks(x)) / n
        v01[r] = 1.0 - (tz[m:] - midranks(yv)) / m
    return v10.mean(axis=1), v10, v01


def _covariance(y01: np.ndarray, auc: np.ndarray, v10: np.ndarray, v01: np.ndarray,
                codes: np.ndarray | None) -> np.ndarray:
    m, n = v10.shape[1], v01.shape[1]
    if codes is None:
        return np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    pos_codes, neg_codes = codes[y01 == 1], codes[y01 == 0]
    n_clusters = int(codes.max()) + 1
    m_c = np.bincount(pos_codes, minlength=n_clusters).astype(np.float64)
    n_c = np.bincount(neg_codes, minlength=n_clusters).astype(np.float64)
    x_dev = np.stack([np.bincount(pos_codes, weights=row, minlength=n_clusters) for row in v10]) - auc[:, None] * m_c
    y_dev = np.stack([np.bincount(neg_codes, weights=row, minlength=n_clusters) for row in v01]) - auc[:, None] * n_c
    i10, i01, i_all = np.count_nonzero(m_c), np.count_nonzero(n_c), n_clusters
    if min(i10, i01) < 2:
        raise CxrbenchError("the cluster variance needs at least two clusters with positives and two with "
                            f"negatives; found {i10} and {i01}", where="clusters")
    s10 = i10 / ((i10 - 1) * m) * (x_dev @ x_dev.T)
    s01 = i01 / ((i01 - 1) * n) * (y_dev @ y_dev.T)
    s11 = i_all / (i_all - 1) * (x_dev @ y_dev.T)
    return s10 / m + s01 / n + (s11 + s11.T) / (m * n)


def auc_covariance(y01, scores, *, clusters=None) -> tuple[np.ndarray, np.ndarray]:
    """(auc[R], covariance[R, R]) of the AUROCs of score rows `scores[R, n]` (DeLong / Obuchowski)."""
    y01 = v.binary_array(y01)
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    if scores.shape[1] != y01.size or not np.all(np.isfinite(scores)):
        raise CxrbenchError(f"expected finite scores of shape (R, {y01.size}), found {scores.shape}", where="scores")
    m = int(y01.sum())
    if m < 2 or y01.size - m < 2:
        raise CxrbenchError(f"DeLong needs at least two positives and two negatives; found {m} and "
                            f"{y01.size - m}", where="y01")
    codes = None
    if clusters is not None:
        codes, n_clusters = v.group_codes(clusters, n=y01.size, name="clusters")
        if n_clusters == y01.size:
            codes = None  # every image its own cluster: the formulas coincide; use the plain one
    auc, v10, v01 = structural_components(y01, scores)
    return auc, _covariance(y01, auc, v10, v01, codes)


def delong_test(y01, score_a, score_b, *, clusters=None) -> DeLongResult:
    """Two-sided test of AUROC(a) = AUROC(b) for two scores of the same images.

    `clusters` (patient ids): when some patient has several images, the Obuchowski (1997) cluster
    variance replaces DeLong's, which assumes independent images. A zero standard error (identical
    scores) gives z = 0, p = 1 when the AUCs agree.
    """
    y01 = v.binary_array(y01)
    a = v.score_array(score_a, n=y01.size, name="score_a")
    b = v.score_array(score_b, n=y01.size, name="score_b")
    auc, cov = auc_covariance(y01, np.stack([a, b]), clusters=clusters)
    diff = float(auc[0] - auc[1])
    var = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    se = math.sqrt(max(var, 0.0))
    if se > 0:
        z = diff / se
    else:
        z = 0.0 if diff == 0 else math.copysign(math.inf, diff)
    p = float(2.0 * ndtr(-abs(z)))
    clustered = clusters is not None and v.group_codes(clusters, n=y01.size, name="clusters")[1] < y01.size
    return DeLongResult(float(auc[0]), float(auc[1]), diff, se, float(z), p, clustered)
