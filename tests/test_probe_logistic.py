"""The site probe's own logistic regression gives scikit-learn's probabilities."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from suites._logistic import fit_predict_proba


@pytest.mark.parametrize("k, d, n, seed", [(2, 4, 300, 0), (3, 8, 400, 1), (4, 4, 200, 2), (4, 60, 500, 3),
                                           (5, 144, 800, 4)])
def test_probabilities_equal_scikit_learn(k, d, n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    x = rng.normal(size=(n, d)) + 0.7 * np.eye(k, d)[y] * rng.uniform(0.5, 2, d)  # partly separable
    x[:, -1] = 3.0  # a constant column, as one-hot label features have in a fold
    x_test = rng.normal(size=(50, d))
    classes, ours = fit_predict_proba(x[:n - 50], y[:n - 50], x_test)
    ref = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, tol=1e-10)).fit(x[:n - 50], y[:n - 50])
    assert np.array_equal(classes, ref.classes_)
    np.testing.assert_allclose(ours, ref.predict_proba(x_test), atol=1e-3)


def test_classes_missing_from_training_are_left_out():
    rng = np.random.default_rng(9)
    y = np.array([0, 2, 3] * 40)
    classes, probs = fit_predict_proba(rng.normal(size=(120, 3)), y, rng.normal(size=(7, 3)))
    assert list(classes) == [0, 2, 3] and probs.shape == (7, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
