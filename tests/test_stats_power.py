"""Sample-size adequacy: minimum detectable differences and CI half-widths."""
from __future__ import annotations

import functools

import numpy as np
import pytest
from scipy.stats import norm

from benchmark.core.errors import CxrbenchError
from benchmark.stats import (
    BootstrapConfig,
    bootstrap,
    classification_stats,
    detectable_difference,
    units_needed,
)
from benchmark.stats.paired import paired_replicates

STATS = functools.partial(classification_stats, class_names=["a", "b", "c", "d"])
CFG = BootstrapConfig(n_resamples=300, seed=2)
FACTOR = norm.ppf(0.975) + norm.ppf(0.8)


def sample(n_patients: int, seed: int = 0, strength: float = 1.5):
    rng = np.random.default_rng(seed)
    patients = np.repeat(np.arange(n_patients), 2)
    y = np.repeat(rng.integers(0, 4, n_patients), 2)
    logits = rng.normal(size=(y.size, 4)) + strength * np.eye(4)[y]
    return y, np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True), patients


def test_single_model_formula_and_half_width():
    y, probs, patients = sample(100)
    out = detectable_difference(STATS, y, probs, clusters=patients, config=CFG)
    res = bootstrap(STATS, y, probs, clusters=patients, config=CFG)
    sd = np.std(res.replicates("accuracy"), ddof=1)
    # rho = 0.5: sqrt(2 * var * (1 - rho)) = sd
    assert out["mdd_accuracy"] == pytest.approx(FACTOR * sd)
    lo, hi = res.estimates["accuracy"].ci
    assert out["ci_half_width_accuracy"] == pytest.approx((hi - lo) / 2)
    conservative = detectable_difference(STATS, y, probs, clusters=patients, config=CFG, rho=0.0)
    assert conservative["mdd_accuracy"] == pytest.approx(np.sqrt(2) * out["mdd_accuracy"])
    assert {f"mdd_{k}" for k in res.estimates} <= set(out)


def test_paired_version_uses_the_difference_variance():
    y, pa, patients = sample(100, seed=1)
    _, pb, _ = sample(100, seed=1, strength=1.0)
    out = detectable_difference(STATS, y, pa, probs_b=pb, clusters=patients, config=CFG)
    d = paired_replicates(STATS, y, pa, pb, clusters=patients, config=CFG)["macro_f1"]
    assert out["mdd_macro_f1"] == pytest.approx(FACTOR * np.std(d, ddof=1))


def test_larger_test_sets_detect_smaller_differences():
    small = detectable_difference(STATS, *sample(60)[:2], clusters=sample(60)[2], config=CFG)
    large = detectable_difference(STATS, *sample(960)[:2], clusters=sample(960)[2], config=CFG)
    # 16x the patients: about a quarter of the detectable difference.
    assert large["mdd_accuracy"] == pytest.approx(small["mdd_accuracy"] / 4, rel=0.35)
    assert units_needed(0.10, 200, 0.05) == 800


def test_bad_arguments():
    y, probs, _ = sample(20)
    with pytest.raises(CxrbenchError, match="alpha"):
        detectable_difference(STATS, y, probs, config=CFG, power=1.0)
    with pytest.raises(CxrbenchError, match="correlation"):
        detectable_difference(STATS, y, probs, config=CFG, rho=1.0)
    with pytest.raises(CxrbenchError):
        units_needed(float("nan"), 10, 0.1)


def test_adequacy_from_an_existing_bootstrap_equals_detectable_difference():
    from functools import partial

    from benchmark.stats import BootstrapConfig, adequacy, bootstrap, classification_stats, detectable_difference

    rng = np.random.default_rng(4)
    y = rng.integers(0, 4, 300)
    probs = rng.dirichlet(np.ones(4), 300)
    probs[np.arange(300), y] += 0.3
    probs /= probs.sum(1, keepdims=True)
    fn = partial(classification_stats, class_names=("a", "b", "c", "d"))
    cfg = BootstrapConfig(n_resamples=200, seed=1)
    full = detectable_difference(fn, y, probs, config=cfg)
    reused = adequacy(bootstrap(fn, y, probs, config=cfg), names=("accuracy", "macro_auroc"))
    assert set(reused) == {"mdd_accuracy", "ci_half_width_accuracy", "mdd_macro_auroc", "ci_half_width_macro_auroc"}
    for k, v in reused.items():
        assert v == pytest.approx(full[k], rel=1e-12)
    assert 0 < reused["ci_half_width_accuracy"] < reused["mdd_accuracy"]
