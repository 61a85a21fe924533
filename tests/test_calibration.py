"""The `calibration` suite: equal to netcal / scikit-learn, known answers for ECE and temperature
scaling, patient-disjoint calibration parts, and the vectorized refit used inside the bootstrap."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmark.core.labels import CLASSES, PROB_COLUMNS
from benchmark.stats import BootstrapConfig, calibration_stats
from benchmark.core.suite import SuiteConfig
from suites._partition import calibration_partition
from suites._temperature import fit_temperature, logits_from_probs, scaled_metrics, scaled_probs
from suites.calibration import calibration


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def frame_of(y: np.ndarray, probs: np.ndarray, *, per_patient: int = 1, split=None) -> pd.DataFrame:
    n = len(y)
    f = pd.DataFrame({"image_id": [f"i{i}" for i in range(n)], "view": "clean", "label": np.array(CLASSES)[y],
                      "patient_id": [f"p{i // per_patient}" for i in range(n)], "site": "s"})
    if split is not None:
        f["split"] = split
    f[list(PROB_COLUMNS)] = probs
    return f


def run_suite(frame: pd.DataFrame, *, resamples: int = 20, **options: str):
    manifest = frame.drop(columns=list(PROB_COLUMNS))
    config = SuiteConfig(bootstrap=BootstrapConfig(n_resamples=resamples, seed=1), seed=0, options=options)
    return calibration(frame.drop(columns=["split"], errors="ignore"), manifest, config)


def simulated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels drawn from softmax(logits): the probabilities are the true posteriors."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.5, size=(n, 4))
    y = (rng.random(n)[:, None] > np.cumsum(softmax(z), axis=1)).sum(axis=1)
    return z, y


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_equal_netcal_and_sklearn(seed):
    from netcal.metrics import ECE, MCE
    from sklearn.metrics import brier_score_loss, log_loss

    rng = np.random.default_rng(seed)
    n = 400
    y = rng.integers(0, 4, n)
    probs = rng.dirichlet(np.full(4, [0.3, 1.0, 3.0][seed]), n)
    m = run_suite(frame_of(y, probs), resamples=2).metrics
    assert m["ece"].value == pytest.approx(ECE(bins=15, equal_intervals=True).measure(probs, y), abs=1e-9)
    assert m["mce"].value == pytest.approx(MCE(bins=15, equal_intervals=True).measure(probs, y), abs=1e-9)
    assert m["brier"].value == pytest.approx(brier_score_loss(y, probs, labels=range(4)), abs=1e-9)
    assert m["nll"].value == pytest.approx(log_loss(y, probs, labels=range(4)), abs=1e-9)


def test_adaptive_ece_uses_equal_mass_bins():
    # 1500 distinct confidences, 15 equal-mass bins. Edge j is the inverted-CDF quantile j/15, the
    # (100 j)-th smallest confidence, and an image equal to an edge opens the upper bin: the bins
    # start at sorted positions 0, 99, 199, ..., 1399.
    rng = np.random.default_rng(4)
    n = 1500
    top = np.sort(rng.uniform(0.45, 0.99, n))
    y = rng.integers(0, 4, n)
    probs = np.column_stack([top, *(np.outer(1 - top, [0.5, 0.3, 0.2]).T)])
    correct = (y == 0).astype(float)
    starts = [0, *(100 * j - 1 for j in range(1, 15)), n]
    expected = sum(abs(correct[a:b].sum() - top[a:b].sum()) for a, b in zip(starts[:-1], starts[1:])) / n
    measured = run_suite(frame_of(y, probs), resamples=2).metrics["ece_adaptive"].value
    assert measured == pytest.approx(expected, abs=1e-12)


def test_known_answer_true_posteriors_then_overconfident_then_scaled():
    z, y = simulated(20_000, seed=11)
    calibrated = run_suite(frame_of(y, softmax(z), per_patient=2)).metrics
    assert calibrated["ece"].value < 0.02
    assert calibrated["ece"].ci[0] <= calibrated["ece"].value + 1e-12

    sharp = run_suite(frame_of(y, softmax(4.0 * z), per_patient=2)).metrics
    assert sharp["ece"].value > 0.1
    assert sharp["temperature"].value == pytest.approx(4.0, rel=0.10)
    assert sharp["ece_ts"].value < 0.03
    lo, hi = sharp["temperature"].ci
    assert lo < sharp["temperature"].value < hi and hi - lo < 0.8
    for name in ("ece", "ece_adaptive", "classwise_ece", "mce", "brier", "nll"):
        assert sharp[f"{name}_ts"].value <= sharp[name].value + 1e-9, name


def test_val_split_is_the_calibration_part_and_patients_never_straddle():
    z, y = simulated(600, seed=5)
    patient = np.arange(600) // 3
    split = np.where(patient % 5 == 0, "val", "test")
    split[3] = "val"  # patient p1 (images 3, 4, 5) straddles: its two test images belong to neither part
    frame = frame_of(y, softmax(z), per_patient=3, split=split)
    part = calibration_partition(frame, frame, seed=0)
    assert part.source.startswith("manifest split")
    assert part.fit.sum() == (split == "val").sum()
    fit_p, eval_p = set(frame["patient_id"][part.fit]), set(frame["patient_id"][part.evaluate])
    assert not fit_p & eval_p and part.dropped == 2
    table = run_suite(frame).tables["temperature_scaling"]
    assert table[0]["images"] == int(part.fit.sum()) and table[1]["images"] == int(part.evaluate.sum())


def test_stratified_half_without_split_is_seeded_and_balanced():
    z, y = simulated(2000, seed=6)
    frame = frame_of(y, softmax(z), per_patient=2)
    a = calibration_partition(frame, frame.drop(columns=["split"], errors="ignore"), seed=3)
    b = calibration_partition(frame, frame, seed=3)
    c = calibration_partition(frame, frame, seed=4)
    assert np.array_equal(a.fit, b.fit) and not np.array_equal(a.fit, c.fit)
    assert not set(frame["patient_id"][a.fit]) & set(frame["patient_id"][a.evaluate])
    for label in CLASSES:
        share = (frame["label"][a.fit] == label).mean() - (frame["label"][a.evaluate] == label).mean()
        assert abs(share) < 0.03, label


def test_fit_temperature_is_the_nll_minimum_for_every_weight_row():
    from scipy.optimize import minimize_scalar

    z, y = simulated(300, seed=7)
    logits = logits_from_probs(softmax(2.5 * z))
    w = np.vstack([np.ones(300), np.random.default_rng(8).poisson(1.0, size=(4, 300))]).astype(float)
    temps = fit_temperature(logits, y, w)
    for r in range(len(w)):
        def nll(log_t, r=r):
            p = scaled_probs(logits, np.exp(log_t))
            return np.average(-np.log(p[np.arange(300), y]), weights=w[r])
        best = np.exp(minimize_scalar(nll, bounds=(-3, 3), method="bounded", options={"xatol": 1e-10}).x)
        assert temps[r] == pytest.approx(best, rel=1e-6)
    assert np.isnan(fit_temperature(logits, y, np.zeros((1, 300)))[0])


def test_scaled_metrics_equal_the_stats_engine_on_scaled_probabilities():
    z, y = simulated(250, seed=9)
    logits = logits_from_probs(softmax(3 * z))
    w = np.vstack([np.ones(250), np.random.default_rng(10).integers(0, 3, size=(3, 250))]).astype(float)
    temps = np.array([0.7, 1.0, 2.0, 3.3])
    out = scaled_metrics(logits, y, temps, w, 15)
    for r, t in enumerate(temps):
        ref = calibration_stats(y, scaled_probs(logits, t), w[r:r + 1])
        for name, value in ref.items():
            assert out[name][r] == pytest.approx(value[0], abs=1e-12), (name, r)


def test_figures_and_reliability_table():
    z, y = simulated(1000, seed=12)
    result = run_suite(frame_of(y, softmax(3 * z), per_patient=2))
    bins = result.tables["reliability"]
    assert len(bins) == 15 and sum(b["count"] for b in bins) == 1000
    ece = sum(b["count"] * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"]) / 1000
    assert ece == pytest.approx(result.metrics["ece"].value, abs=1e-12)
    diagram = result.figures["reliability_diagram"]
    names = [trace["name"] for trace in diagram["data"]]
    assert names[0] == "perfect calibration" and any(n.startswith("evaluation part, T =") for n in names)
    assert result.figures["confidence_histogram"]["data"][0]["type"] == "bar"


def test_bad_n_bins_option_is_one_clear_error():
    from benchmark.core.errors import CxrbenchError

    z, y = simulated(50, seed=13)
    with pytest.raises(CxrbenchError, match="n_bins"):
        run_suite(frame_of(y, softmax(z)), n_bins="zero")
