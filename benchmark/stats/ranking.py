"""Weighted AUROC and average precision for many weight vectors at once.

Scores are sorted once and cut into tie groups (images with equal scores). Let a "positive group" be a
tie group holding at least one positive, h = 0..H-1 in descending score order. For one weight row:

    P_h      positive weight in group h
    Nin_h    negative weight in group h
    Ncum_h   negative weight in groups scoring >= group h (h included)
    TPcum_h  positive weight in groups scoring >= group h;  Wcum_h = TPcum_h + Ncum_h
    AUROC = sum_h P_h * (N - Ncum_h + Nin_h / 2) / (P * N)
    AP    = sum_h P_h * TPcum_h / Wcum_h / P

with P, N the total positive / negative weight. The first is the Mann-Whitney form of the
trapezoidal ROC area (ties count one half), which is what `roc_auc_score` computes; the second is
`average_precision_score`'s step-wise sum_n (R_n - R_{n-1}) P_n over distinct thresholds (not
interpolated). Both are NaN when the weighted sample has no positive (AP, AUROC) or no negative (AUROC).

Every image falls into one bin per row, fixed by the sort, so the per-row bin sums are one
`np.bincount` over the weights in their original order (no gather), and only H-long cumulative
sums remain. Bins, per row: P_h and AN_h interleaved (AN_h = negatives of group h plus those of the
negative-only groups between positive groups h-1 and h, so that Ncum_h = cumsum(AN)_h), then the
negatives below the last positive group. Interleaving lets the pairs be read as complex numbers
P_h + i AN_h: one complex cumulative sum yields TPcum_h (real part) and Ncum_h (imaginary part) at
once. The cumulative sum is the slow step, and this halves it. Nin_h, needed only when a positive
shares its score with a negative, comes from a second bincount over just those negatives.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from benchmark.stats.binsum import block_index, block_rows

_TINY = np.finfo(np.float64).tiny


@dataclass(frozen=True)
class RankPlan:
    """Everything about one (labels, scores) pair that does not depend on the weights."""

    n: int
    n_groups: int            # H, the number of positive groups
    n_bins: int              # 2H + 2 bins per row: P_0, AN_0, ..., P_{H-1}, AN_{H-1}, tail, (unused)
    rows: int                # rows per block
    index: np.ndarray        # int64[rows * n]: each image's bin offset by its row, for one full block
    tied_images: np.ndarray  # int64[t]: negatives inside a positive group
    tied_index: np.ndarray   # int64[rows * t]: their group h offset by row (H bins per row)


_PLAN_CACHE: OrderedDict[bytes, RankPlan] = OrderedDict()
_PLAN_CACHE_SIZE = 16  # a few models x classes; a bootstrap calls the StatFn once per chunk


def cached_rank_plan(y01: np.ndarray, score: np.ndarray) -> RankPlan:
    """`rank_plan`, memoized on the content of its inputs: a bootstrap evaluates the same labels and
    scores chunk after chunk, and the sort is the costliest part of a small chunk."""
    digest = hashlib.blake2b(np.ascontiguousarray(y01, dtype=np.int64).tobytes(), digest_size=16)
    digest.update(np.ascontiguousarray(score, dtype=np.float64).tobytes())
    key = digest.digest()
    plan = _PLAN_CACHE.get(key)
    if plan is None:
        plan = _PLAN_CACHE[key] = rank_plan(y01, score)
        while len(_PLAN_CACHE) > _PLAN_CACHE_SIZE:
            _PLAN_CACHE.popitem(last=False)
    else:
        _PLAN_CACHE.move_to_end(key)
    return plan


def rank_plan(y01: np.ndarray, score: np.ndarray) -> RankPlan:
    """Sort once and assign bins. `y01` int 0/1, `score` float, both [n]."""
    n = score.size
    order = np.argsort(-score, kind="stable")
    s = score[order]
    pos = y01[order] == 1
    group = np.cumsum(np.concatenate([[True], s[1:] != s[:-1]])) - 1
    group_has_pos = np.zeros(group[-1] + 1, dtype=bool)
    group_has_pos[group[pos]] = True
    hh = int(group_has_pos.sum())
    # Positive groups strictly above each image's group; for an image of a positive group, its h.
    h = (np.cumsum(group_has_pos) - group_has_pos)[group]
    sorted_bins = np.where(pos, 2 * h, np.where(h < hh, 2 * h + 1, 2 * hh))
    bins = np.empty(n, dtype=np.int64)
    bins[order] = sorted_bins
    tied = ~pos & group_has_pos[group]
    tied_images = order[tied]
    n_bins = 2 * hh + 2  # even, so every row's complex view starts 16-byte aligned
    rows = block_rows(n)
    index = block_index(bins, n_bins, rows)
    tied_index = block_index(h[tied], hh, rows)
    return RankPlan(n, hh, n_bins, rows, index, tied_images, tied_index)


def rank_metrics(plan: RankPlan, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(auroc[b], ap[b]) for C-contiguous weights `w[b, n]`."""
    b = w.shape[0]
    auroc = np.full(b, np.nan)
    ap = np.full(b, np.nan)
    if plan.n_groups == 0:
        return auroc, ap
    for lo in range(0, b, plan.rows):
        hi = min(lo + plan.rows, b)
        auroc[lo:hi], ap[lo:hi] = _rank_block(plan, w[lo:hi])
    return auroc, ap


def _rank_block(plan: RankPlan, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows = w.shape[0]
    hh, nb = plan.n_groups, plan.n_bins
    sums = np.bincount(plan.index[: rows * plan.n], weights=w.reshape(-1), minlength=rows * nb)
    sums = sums.reshape(rows, nb)
    cum = np.cumsum(sums[:, : 2 * hh].view(np.complex128), axis=1)
    p_in = sums[:, 0 : 2 * hh : 2]
    tp_cum, n_cum = cum.real, cum.imag
    pos = tp_cum[:, -1]
    neg = n_cum[:, -1] + sums[:, 2 * hh]
    auc_num = neg * pos - np.einsum("bi,bi->b", p_in, n_cum)
    if plan.tied_images.size:
        t = plan.tied_images.size
        n_in = np.bincount(plan.tied_index[: rows * t], weights=np.take(w, plan.tied_images, axis=1).reshape(-1),
                           minlength=rows * hh).reshape(rows, hh)
        auc_num += 0.5 * np.einsum("bi,bi->b", p_in, n_in)
    # precision_h = TPcum_h / Wcum_h, in place to spare allocations. Where Wcum == 0 nothing at or
    # above carries weight, so TPcum == 0 too and the term is 0.
    precision = np.add(tp_cum, n_cum)
    np.maximum(precision, _TINY, out=precision)
    np.divide(tp_cum, precision, out=precision)
    ap_num = np.einsum("bi,bi->b", p_in, precision)

    auroc = np.full(rows, np.nan)
    ok = (pos > 0) & (neg > 0)
    auroc[ok] = auc_num[ok] / (pos[ok] * neg[ok])
    ap = np.full(rows, np.nan)
    ok = pos > 0
    ap[ok] = ap_num[ok] / pos[ok]
    return auroc, ap
