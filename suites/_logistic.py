"""The site probe's classifier: standardized features, L2-penalized logistic regression (C = 1).

The same model as scikit-learn's `make_pipeline(StandardScaler(), LogisticRegression())` (binary
for two classes, multinomial for more, unpenalized intercepts), fitted by scipy's L-BFGS-B. Written
out because importing scikit-learn costs about a second of every run, more than the fits; a test
holds it to scikit-learn's probabilities (within 1e-3: both stop at a gradient tolerance).
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, log_expit, softmax

GTOL = 1e-5  # on the mean loss; scikit-learn's default is 1e-4


def fit_predict_proba(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, *, c: float = 1.0,
                      max_iter: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """(classes seen in training, probabilities [len(x_test), len(classes)])."""
    mean, scale = x_train.mean(axis=0), x_train.std(axis=0)
    scale[scale == 0] = 1.0  # a constant feature stays 0, as StandardScaler leaves it
    a, b = (x_train - mean) / scale, (x_test - mean) / scale
    classes, y = np.unique(y_train, return_inverse=True)
    n, d = a.shape
    penalty = 1.0 / (c * n)  # sum of losses + ||w||^2 / (2C), divided by n
    if len(classes) == 2:
        w = _fit(lambda p: _binary_loss(p, a, y, penalty), d + 1, max_iter)
        p1 = expit(b @ w[:d] + w[d])
        return classes, np.column_stack([1.0 - p1, p1])
    k = len(classes)
    w = _fit(lambda p: _multinomial_loss(p, a, y, penalty), k * (d + 1), max_iter).reshape(k, d + 1)
    return classes, softmax(b @ w[:, :d].T + w[:, d], axis=1)


def _fit(loss, size: int, max_iter: int) -> np.ndarray:
    res = minimize(loss, np.zeros(size), jac=True, method="L-BFGS-B",
                   options={"maxiter": max_iter, "gtol": GTOL, "ftol": 64 * np.finfo(float).eps})
    return res.x


def _binary_loss(p: np.ndarray, a: np.ndarray, y: np.ndarray, penalty: float):
    w, b = p[:-1], p[-1]
    z = a @ w + b
    n = len(y)
    loss = -(y * log_expit(z) + (1 - y) * log_expit(-z)).sum() / n + 0.5 * penalty * (w @ w)
    r = (expit(z) - y) / n
    return loss, np.concatenate([a.T @ r + penalty * w, [r.sum()]])


def _multinomial_loss(p: np.ndarray, a: np.ndarray, y: np.ndarray, penalty: float):
    # Plain numpy calls: the fit calls this hundreds of times on small matrices, where per-call
    # overhead (scipy's logsumexp, one-hot products) would be most of the cost.
    n, d = a.shape
    w = p.reshape(-1, d + 1)
    z = a @ w[:, :d].T + w[:, d]
    top = z.max(axis=1, keepdims=True)
    e = np.exp(z - top)
    total = e.sum(axis=1, keepdims=True)
    rows = np.arange(n)
    coef = w[:, :d]
    loss = (top[:, 0] + np.log(total[:, 0]) - z[rows, y]).sum() / n + 0.5 * penalty * np.einsum("ij,ij->", coef, coef)
    r = e / total
    r[rows, y] -= 1.0
    r /= n
    grad = np.empty_like(w)
    grad[:, :d] = r.T @ a + penalty * coef
    grad[:, d] = r.sum(axis=0)
    return loss, grad.ravel()
