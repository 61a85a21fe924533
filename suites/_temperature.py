"""Temperature scaling: one scalar T, fitted by minimizing the NLL, for many weight rows at once.

Predictions store probabilities, not logits; softmax is shift-invariant, so z = log(p) are the
model's logits up to a per-row constant and softmax(z / T) is the temperature-scaled output. p is
clipped at the stats engine's epsilon first (the same clip its `nll` uses), so a probability
rounded to 0 becomes a very small one instead of an infinite logit.

The fit works in beta = 1 / T, where the mean NLL  sum_i w_i [logsumexp(beta z_i) - beta z_i,y_i] / W
is convex (a log-sum-exp of linear functions minus a linear one). Its derivative is the weighted mean
of E_q[z] - z_y and its second derivative the weighted mean of Var_q[z] (q = softmax(beta z)), so a
safeguarded Newton iteration (bisection whenever a step leaves the bracket) finds it for every
bootstrap row at once.
"""
from __future__ import annotations

import numpy as np

from benchmark.stats.calibration import EPS, equal_width_bins

T_BOUNDS = (0.01, 100.0)  # a fitted T at a bound means "sharper/flatter than this"; reported as is


def logits_from_probs(probs: np.ndarray) -> np.ndarray:
    """log(clip(p, eps, 1)): logits up to a per-row shift."""
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), EPS, 1.0))


def scaled_probs(z: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(z / T) row-wise, float64[n, K]."""
    s = z / float(temperature)
    s = s - s.max(axis=1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(axis=1, keepdims=True)


def _shift(z: np.ndarray) -> np.ndarray:
    """z minus its row maximum: <= 0 with a 0 in every row, so exp(beta * z) never overflows for
    beta > 0, and softmax, E_q[z] - z_y and Var_q[z] are unchanged."""
    return z - z.max(axis=1, keepdims=True)


def _scaled_batch(zs: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """softmax(beta_r * zs) for every row r of beta (zs shifted): float64[b, n, K]."""
    e = np.exp(beta[:, None, None] * zs[None])
    e /= e.sum(axis=2, keepdims=True)
    return e


def _grad_hess(zs: np.ndarray, zsq: np.ndarray, zy: np.ndarray, w: np.ndarray, total: np.ndarray,
               beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    e = np.exp(beta[:, None, None] * zs[None])
    norm = e.sum(axis=2)
    ez = np.einsum("bnk,nk->bn", e, zs) / norm
    ez2 = np.einsum("bnk,nk->bn", e, zsq) / norm
    grad = (w * (ez - zy[None])).sum(axis=1) / total
    hess = (w * np.maximum(ez2 - ez * ez, 0.0)).sum(axis=1) / total
    return grad, hess


def _solve(zs: np.ndarray, zsq: np.ndarray, zy: np.ndarray, w: np.ndarray, total: np.ndarray, beta: np.ndarray,
           bounds: tuple[float, float], tol: float, max_iter: int) -> np.ndarray:
    """Root of the NLL's derivative in beta for every row: Newton steps inside a shrinking bracket,
    a geometric bisection whenever a step would leave it (far from the optimum Newton overshoots)."""
    lo = np.full(len(beta), 1.0 / bounds[1])
    hi = np.full(len(beta), 1.0 / bounds[0])
    beta = np.clip(beta, lo, hi)
    active = np.ones(len(beta), dtype=bool)
    for _ in range(max_iter):
        idx = np.flatnonzero(active)
        if not idx.size:
            break
        bi = beta[idx]
        g, h = _grad_hess(zs, zsq, zy, w[idx], total[idx], bi)
        lo[idx] = np.where(g < 0, bi, lo[idx])
        hi[idx] = np.where(g > 0, bi, hi[idx])
        with np.errstate(divide="ignore", invalid="ignore"):
            step = np.where(g == 0, 0.0, g / h)
        newton = bi - step
        # A converged row is accepted as is: at the optimum rounding can put the step just outside
        # a bracket whose far end never moved.
        small = np.isfinite(step) & (np.abs(step) <= tol * bi)
        inside = np.isfinite(newton) & (newton >= lo[idx]) & (newton <= hi[idx])
        new = np.where(inside | small, newton, np.sqrt(lo[idx] * hi[idx]))
        done = small | (hi[idx] - lo[idx] <= tol * new)
        beta[idx] = new
        active[idx[done]] = False
    return beta


def fit_temperature(z: np.ndarray, y: np.ndarray, w: np.ndarray, *, bounds: tuple[float, float] = T_BOUNDS,
                    tol: float = 1e-10, max_iter: int = 100) -> np.ndarray:
    """T minimizing the w-weighted mean NLL of softmax(z / T) for each weight row: float64[b].

    NaN for a row whose weights are all zero. A row whose optimum lies beyond `bounds` gets the bound.
    Every row starts from the fit to the mean weights, so bootstrap rows need a few Newton steps each.
    """
    z = np.asarray(z, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    w = np.atleast_2d(np.asarray(w, dtype=np.float64))
    total = w.sum(axis=1)
    out = np.full(w.shape[0], np.nan)
    ok = np.flatnonzero(total > 0)
    if not ok.size:
        return out
    zs = _shift(z)
    zsq = zs * zs
    zy = zs[np.arange(len(y)), y]
    w, total = w[ok], total[ok]
    mean_w = w.mean(axis=0, keepdims=True)
    start = _solve(zs, zsq, zy, mean_w, mean_w.sum(axis=1), np.ones(1), bounds, tol, max_iter)
    if len(ok) == 1:
        out[ok] = 1.0 / start
        return out
    beta = _solve(zs, zsq, zy, w, total, np.full(len(ok), start[0]), bounds, tol, max_iter)
    out[ok] = 1.0 / beta
    return out


def _binned_abs_sums(values: np.ndarray, bins: np.ndarray, n_bins: int) -> np.ndarray:
    """sum over bins of |sum of values in the bin|, per row: values and bins float/int[b, n]."""
    b = values.shape[0]
    flat = (bins + (np.arange(b) * n_bins)[:, None]).ravel()
    sums = np.bincount(flat, weights=values.ravel(), minlength=b * n_bins).reshape(b, n_bins)
    return np.abs(sums)


def scaled_metrics(z: np.ndarray, y: np.ndarray, temperature: np.ndarray, w: np.ndarray, n_bins: int,
                   *, only_ece: bool = False) -> dict[str, np.ndarray]:
    """The calibration metrics of softmax(z / T_r) with weights w[r], for every row r at once.

    Same definitions, bins and clips as `benchmark.stats.calibration_stats` (tests check equality);
    only the probabilities differ from row to row. The predicted class does not depend on T > 0.
    """
    from benchmark.stats.calibration import adaptive_ece

    w = np.atleast_2d(np.asarray(w, dtype=np.float64))
    b, n = w.shape
    temperature = np.broadcast_to(np.asarray(temperature, dtype=np.float64), (b,))
    bad = ~np.isfinite(temperature)
    p = _scaled_batch(_shift(z), 1.0 / np.where(bad, 1.0, temperature))
    pred = np.argmax(z, axis=1)
    clipped = np.clip(p, EPS, 1.0 - EPS)
    conf = clipped[:, np.arange(n), pred]
    total = w.sum(axis=1)
    invalid = bad | (total <= 0)
    total = np.where(invalid, 1.0, total)
    correct = (pred == y).astype(np.float64)
    top_bins = equal_width_bins(conf, n_bins)
    top = _binned_abs_sums(w * (correct[None] - conf), top_bins, n_bins)
    out = {"ece": top.sum(axis=1) / total}
    if not only_ece:
        counts = np.bincount((top_bins + (np.arange(b) * n_bins)[:, None]).ravel(), weights=w.ravel(),
                             minlength=b * n_bins).reshape(b, n_bins)
        with np.errstate(invalid="ignore", divide="ignore"):
            gaps = np.where(counts > 0, top / counts, -np.inf)
        out["mce"] = gaps.max(axis=1)
        onehot = np.zeros(z.shape)
        onehot[np.arange(n), y] = 1.0
        k = z.shape[1]
        out["classwise_ece"] = sum(
            _binned_abs_sums(w * (onehot[None, :, c] - clipped[:, :, c]), equal_width_bins(clipped[:, :, c], n_bins),
                             n_bins).sum(axis=1) for c in range(k)) / k / total
        out["brier"] = (w * ((p - onehot[None]) ** 2).sum(axis=2)).sum(axis=1) / total
        nll = -np.log(np.clip(p[:, np.arange(n), y], EPS, 1.0 - EPS))
        out["nll"] = (w * nll).sum(axis=1) / total
        out["ece_adaptive"] = np.array([adaptive_ece(y, p[r], w[r:r + 1], n_bins)[0] for r in range(b)])
    for v in out.values():
        v[invalid] = np.nan
    return out
