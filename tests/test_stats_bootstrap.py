"""The bootstrap engine: draws, equality with a plain scikit-learn loop, intervals, configuration."""
from __future__ import annotations

import functools
import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from benchmark.core.errors import CxrbenchError
from benchmark.stats import (
    BootstrapConfig,
    Estimate,
    bootstrap,
    classification_stats,
    draw_counts,
    make_units,
)
from benchmark.stats.intervals import jackknife_acceleration
from benchmark.stats.resample import jackknife_groups
from tests.test_stats_reference import (
    NAMES5,
    assert_metrics_close,
    duplicate,
    sklearn_classification,
)

NAMES = NAMES5[:4]
STATS = functools.partial(classification_stats, class_names=NAMES)


def clustered_sample(seed: int = 0, n_patients: int = 40, k: int = 4):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 6, n_patients)
    patients = np.repeat(np.array([f"p{i:03d}" for i in range(n_patients)]), sizes)
    y = np.repeat(rng.integers(0, k, n_patients), sizes)  # one label per patient
    logits = rng.normal(size=(y.size, k)) + 1.2 * np.eye(k)[y]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, np.round(probs, 2), patients  # rounding creates ties


def mean_stat(y, probs, w):
    return {"mean": (w @ probs[:, 0]) / w.sum(axis=1)}


def test_draw_counts_rows_stream_and_strata():
    cfg = BootstrapConfig(n_resamples=103, seed=7, chunk=10)
    counts = np.vstack(list(draw_counts(30, cfg)))
    assert counts.shape == (103, 30) and np.all(counts.sum(axis=1) == 30)
    # The chunk only bounds memory: same draws with another chunk size.
    other = np.vstack(list(draw_counts(30, BootstrapConfig(n_resamples=103, seed=7, chunk=64))))
    assert np.array_equal(counts, other)
    assert not np.array_equal(counts, np.vstack(list(draw_counts(30, BootstrapConfig(n_resamples=103, seed=8)))))
    strata = np.array([0] * 5 + [1] * 20 + [2] * 5)
    counts = np.vstack(list(draw_counts(30, cfg, strata)))
    for s in range(3):
        assert np.all(counts[:, strata == s].sum(axis=1) == np.sum(strata == s))
    # A single stratum is the unstratified bootstrap.
    same = np.vstack(list(draw_counts(30, cfg, np.zeros(30, dtype=int))))
    assert np.array_equal(same, np.vstack(list(draw_counts(30, cfg))))


@pytest.mark.parametrize("with_strata", [False, True])
def test_vectorized_bootstrap_equals_a_sklearn_loop_over_the_same_draws(with_strata):
    y, probs, patients = clustered_sample()
    site = np.array([int(p[1:]) % 3 for p in patients]) if with_strata else None
    cfg = BootstrapConfig(n_resamples=50, seed=11, chunk=7)
    result = bootstrap(STATS, y, probs, clusters=patients, strata=site, config=cfg)
    assert result.unit == "patient" and result.n_units == 40 and result.n_images == y.size

    units = make_units(y.size, clusters=patients, strata=site)
    r = 0
    for counts in draw_counts(units.n_units, cfg, units.strata):
        for row in counts:
            idx = duplicate(row[units.codes])
            ours = {k: float(result.replicates(k)[r]) for k in result.samples}
            assert_metrics_close(ours, sklearn_classification(y[idx], probs[idx], NAMES), where=f"resample {r}")
            r += 1
    assert r == 50
    point = sklearn_classification(y, probs, NAMES)
    assert_metrics_close({k: e.value for k, e in result.estimates.items()}, point)


def test_percentile_interval_is_the_replicate_quantiles():
    y, probs, patients = clustered_sample(1)
    res = bootstrap(STATS, y, probs, clusters=patients, config=BootstrapConfig(n_resamples=200, level=0.9))
    reps = res.replicates("accuracy")
    assert res.estimates["accuracy"].ci == pytest.approx(tuple(np.percentile(reps, [5, 95])))
    # Undefined replicates (a class missing from the resample) are dropped, not counted as 0.
    y = y.copy()
    y[patients == patients[0]] = 3
    y[(y == 3) & (patients != patients[0])] = 2
    y[patients == patients[1]] = 3
    res = bootstrap(STATS, y, probs, clusters=patients, config=BootstrapConfig(n_resamples=200, level=0.9))
    reps = res.replicates("recall_c3")
    finite = reps[np.isfinite(reps)]
    assert 0 < finite.size < reps.size
    assert res.estimates["recall_c3"].ci == pytest.approx(tuple(np.percentile(finite, [5, 95])))


def test_image_unit_without_clusters():
    y, probs, _ = clustered_sample(2)
    res = bootstrap(STATS, y, probs, config=BootstrapConfig(n_resamples=20))
    assert res.unit == "image" and res.n_units == y.size


def test_bca_close_to_scipy_on_a_mean():
    data = np.random.default_rng(5).exponential(size=80)
    cfg = BootstrapConfig(n_resamples=20000, method="bca", seed=1, chunk=5000)
    ours = bootstrap(mean_stat, np.zeros(80, dtype=int), data[:, None], config=cfg).estimates["mean"]
    ref = sps.bootstrap((data,), np.mean, method="BCa", n_resamples=20000, random_state=0).confidence_interval
    width = ref.high - ref.low
    assert ours.value == pytest.approx(data.mean())
    assert abs(ours.ci[0] - ref.low) < 0.05 * width and abs(ours.ci[1] - ref.high) < 0.05 * width
    # Right-skewed data: BCa shifts the interval right of the percentile one.
    pct = bootstrap(mean_stat, np.zeros(80, dtype=int), data[:, None],
                    config=BootstrapConfig(n_resamples=20000, seed=1, chunk=5000)).estimates["mean"]
    assert ours.ci[0] > pct.ci[0] and ours.ci[1] > pct.ci[1]


def test_delete_group_jackknife_estimates_the_same_acceleration():
    data = np.random.default_rng(6).exponential(size=2000)
    w_full = 1.0 - np.eye(2000)
    full = jackknife_acceleration((w_full @ data) / w_full.sum(axis=1))
    groups = jackknife_groups(2000, max_groups=200, seed=0)
    assert np.bincount(groups).min() == np.bincount(groups).max() == 10
    w_group = (groups[None, :] != np.arange(200)[:, None]).astype(float)
    grouped = jackknife_acceleration((w_group @ data) / w_group.sum(axis=1))
    assert grouped == pytest.approx(full, rel=0.35)


def test_bca_runs_with_clusters_and_groups():
    y, probs, patients = clustered_sample(3, n_patients=60)
    cfg = BootstrapConfig(n_resamples=100, method="bca", jackknife_groups=25)
    res = bootstrap(STATS, y, probs, clusters=patients, config=cfg)
    est = res.estimates["accuracy"]
    assert est.ci[0] <= est.value <= est.ci[1]


def test_results_serialize_with_nan_as_null():
    assert Estimate(float("nan"), (0.1, float("nan"))).to_json() == {"value": None, "ci": [0.1, None]}
    y, probs, patients = clustered_sample(4)
    res = bootstrap(STATS, y, probs, clusters=patients, config=BootstrapConfig(n_resamples=10))
    doc = json.loads(json.dumps(res.to_json(), allow_nan=False))
    assert doc["unit"] == "patient" and doc["bootstrap"]["n_resamples"] == 10
    assert set(doc["metrics"]) == set(res.estimates)
    with pytest.raises(CxrbenchError, match="unknown metric"):
        res.replicates("nope")


@pytest.mark.parametrize("kwargs, match", [
    ({"n_resamples": 1}, "n_resamples"),
    ({"level": 1.0}, "level"),
    ({"method": "basic"}, "method"),
    ({"chunk": 0}, "chunk"),
    ({"seed": -1}, "seed"),
])
def test_config_is_validated(kwargs, match):
    with pytest.raises(CxrbenchError, match=match):
        BootstrapConfig(**kwargs)


def test_strata_must_be_constant_within_a_cluster():
    y, probs, patients = clustered_sample(5)
    strata = np.arange(y.size) % 2
    with pytest.raises(CxrbenchError, match="constant within each cluster"):
        bootstrap(STATS, y, probs, clusters=patients, strata=strata, config=BootstrapConfig(n_resamples=5))


def test_cluster_ids_of_mixed_types_and_length_mismatch():
    y, probs, patients = clustered_sample(6)
    mixed = np.array([1 if p.endswith("1") else p for p in patients], dtype=object)
    res = bootstrap(STATS, y, probs, clusters=mixed, config=BootstrapConfig(n_resamples=5))
    assert res.n_units == len(set(mixed.tolist()))
    with pytest.raises(CxrbenchError, match="one id per image"):
        bootstrap(STATS, y, probs, clusters=patients[:-1], config=BootstrapConfig(n_resamples=5))
    assert math.isfinite(res.estimates["accuracy"].value)


def test_the_memory_cap_on_chunks_changes_no_result(monkeypatch):
    """Above about 2,600 images the chunk of resamples is cut to bound memory; the draws, and so the
    replicates, must not change (here 6,000 images: 87 resamples a chunk instead of 200)."""
    import importlib

    bs = importlib.import_module("benchmark.stats.bootstrap")  # the package re-exports a function of that name

    rng = np.random.default_rng(5)
    n = 6000
    y = rng.integers(0, 4, n)
    probs = rng.dirichlet(np.ones(4), n)
    patients = np.repeat(np.arange(n // 2), 2)
    cfg = BootstrapConfig(n_resamples=300, seed=3)
    assert bs.bounded_chunk(cfg, n).chunk < cfg.chunk  # the cap is active
    capped = bootstrap(STATS, y, probs, clusters=patients, config=cfg)
    monkeypatch.setattr(bs, "MAX_CHUNK_CELLS", 1 << 40)
    assert bs.bounded_chunk(cfg, n).chunk == cfg.chunk
    uncapped = bootstrap(STATS, y, probs, clusters=patients, config=cfg)
    for name in ("accuracy", "macro_auroc", "macro_f1", "map"):
        np.testing.assert_allclose(capped.replicates(name), uncapped.replicates(name), rtol=0, atol=1e-12)
