"""The weighted metric kernels equal scikit-learn / netcal, with unit and with integer weights."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from benchmark.core.errors import CxrbenchError
from benchmark.stats import binary_stats, calibration_stats, classification_stats
from tests.test_stats_reference import (
    NAMES5,
    assert_metrics_close,
    duplicate,
    reference_calibration,
    sklearn_classification,
)

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def labelled_probs(draw, min_n: int = 1, max_n: int = 25):
    """(y, probs): few images, some classes absent from y, and (in tie mode) repeated score rows and
    tied maxima, so that ties in ranking and in argmax both occur."""
    k = draw(st.integers(2, 5))
    n = draw(st.integers(min_n, max_n))
    present = draw(st.lists(st.integers(0, k - 1), min_size=1, max_size=k, unique=True))
    y = np.array(draw(st.lists(st.sampled_from(present), min_size=n, max_size=n)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if draw(st.booleans()):
        pool = rng.integers(1, 4, size=(draw(st.integers(1, 4)), k)).astype(float)
        probs = pool[rng.integers(0, pool.shape[0], n)]
    else:
        probs = rng.uniform(0.01, 1.0, size=(n, k))
    return y, probs / probs.sum(axis=1, keepdims=True)


def _row(out: dict[str, np.ndarray], r: int) -> dict[str, float]:
    return {k: float(v[r]) for k, v in out.items()}


@SETTINGS
@given(labelled_probs())
def test_point_estimates_equal_sklearn(data):
    y, probs = data
    names = NAMES5[: probs.shape[1]]
    ours = _row(classification_stats(y, probs, np.ones((1, y.size)), class_names=names), 0)
    assert_metrics_close(ours, sklearn_classification(y, probs, names))


@SETTINGS
@given(labelled_probs(), st.integers(0, 2**32 - 1))
def test_integer_weights_equal_sklearn_on_the_repeated_sample(data, seed):
    y, probs = data
    names = NAMES5[: probs.shape[1]]
    w = np.random.default_rng(seed).integers(0, 3, size=(3, y.size)).astype(float)
    w[0, 0] = max(w[0, 0], 1.0)  # at least one non-empty resample
    out = classification_stats(y, probs, w, class_names=names)
    for r in range(w.shape[0]):
        idx = duplicate(w[r])
        if idx.size == 0:
            assert all(math.isnan(v) or k == "mcc" for k, v in _row(out, r).items())
            continue
        assert_metrics_close(_row(out, r), sklearn_classification(y[idx], probs[idx], names), where=f"row {r}")


@SETTINGS
@given(labelled_probs(min_n=2), st.integers(0, 2**32 - 1))
def test_binary_stats_equal_sklearn(data, seed):
    y, probs = data
    y01 = (y == y[0]).astype(int)
    score = probs[:, 0]
    w = np.vstack([np.ones(y.size), np.random.default_rng(seed).integers(0, 4, size=(3, y.size))])
    out = binary_stats(y01, score, w)
    for r in range(w.shape[0]):
        idx = duplicate(w[r])
        yy, ss = y01[idx], score[idx]
        auroc = skm.roc_auc_score(yy, ss) if 0 < yy.sum() < yy.size else math.nan
        ap = skm.average_precision_score(yy, ss) if yy.sum() > 0 else math.nan
        assert_metrics_close(_row(out, r), {"auroc": auroc, "ap": ap}, where=f"row {r}")


@st.composite
def calibration_data(draw):
    k = draw(st.integers(3, 5))
    n = draw(st.integers(3, 60))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    y = rng.integers(0, k, n)
    y[:3] = [0, 1, 2]  # netcal's multiclass path needs three distinct labels
    probs = rng.dirichlet(np.full(k, draw(st.sampled_from([0.3, 1.0, 5.0]))), n)
    if draw(st.booleans()):
        probs = np.round(probs, 1) + 1e-3  # repeated confidences: ties at adaptive bin edges
        probs /= probs.sum(axis=1, keepdims=True)
    return y, probs


@SETTINGS
@given(calibration_data(), st.integers(0, 2**32 - 1))
def test_calibration_equals_references_unit_and_integer_weights(data, seed):
    y, probs = data
    w = np.vstack([np.ones(y.size), np.random.default_rng(seed).integers(0, 3, size=(3, y.size))])
    w[1:, 0] = np.maximum(w[1:, 0], 1)
    out = calibration_stats(y, probs, w)
    for r in range(w.shape[0]):
        idx = duplicate(w[r])
        assert_metrics_close(_row(out, r), reference_calibration(y[idx], probs[idx]), where=f"row {r}")


def test_ece_and_mce_equal_netcal():
    netcal = pytest.importorskip("netcal.metrics")
    rng = np.random.default_rng(3)
    for n_bins in (10, 15):
        y = rng.integers(0, 4, 500)
        probs = rng.dirichlet(np.ones(4) * 0.5, 500)
        out = calibration_stats(y, probs, np.ones(y.size), n_bins=n_bins)
        assert abs(out["ece"][0] - netcal.ECE(bins=n_bins).measure(probs, y)) < 1e-12
        assert abs(out["mce"][0] - netcal.MCE(bins=n_bins).measure(probs, y)) < 1e-12


def test_known_answer_ece_of_a_model_with_known_miscalibration():
    # Every image predicted with confidence 0.9 but right 60% of the time: ECE = MCE = 0.3.
    y = np.zeros(10, dtype=int)
    probs = np.tile([0.9, 0.05, 0.05], (10, 1))
    probs[:4] = [0.05, 0.9, 0.05]
    out = calibration_stats(y, probs, np.ones(10))
    assert out["ece"][0] == pytest.approx(0.3)
    assert out["mce"][0] == pytest.approx(0.3)
    assert out["ece_adaptive"][0] == pytest.approx(0.3)


def test_perfect_classifier_and_absent_class_conventions():
    y = np.array([0, 0, 1, 1, 2])
    probs = np.eye(4)[y] * 0.7 + 0.075
    out = _row(classification_stats(y, probs, np.ones(5), class_names=["a", "b", "c", "d"]), 0)
    assert out["accuracy"] == out["balanced_accuracy"] == out["macro_f1"] == 1.0
    assert out["macro_auroc"] == 1.0 and out["map"] == 1.0
    # Class "d": never true, never predicted: every per-class metric is undefined, not 0.
    assert all(math.isnan(out[f"{m}_d"]) for m in ("f1", "recall", "precision", "auroc", "ap"))


@pytest.mark.parametrize("bad, match", [
    ({"y": [0, 5]}, "outside"),
    ({"y": [0.5, 1]}, "integer"),
    ({"probs": [[np.nan, 1.0], [0.5, 0.5]]}, "NaN"),
    ({"probs": [[1.0, 0.0]]}, "shape"),
    ({"w": [[1.0, -1.0]]}, "non-negative"),
    ({"w": [[1.0, 1.0, 1.0]]}, "shape"),
    ({"names": ["a"]}, "class names"),
])
def test_bad_input_is_a_clear_error(bad, match):
    args = {"y": [0, 1], "probs": [[0.6, 0.4], [0.3, 0.7]], "w": [[1.0, 1.0]], "names": ["a", "b"]} | bad
    with pytest.raises(CxrbenchError, match=match):
        classification_stats(args["y"], args["probs"], args["w"], class_names=args["names"])


def test_calibration_rejects_values_outside_unit_interval():
    with pytest.raises(CxrbenchError, match=r"\[0, 1\]"):
        calibration_stats([0, 1], [[1.2, -0.2], [0.5, 0.5]], np.ones(2))
