"""Paired comparisons: paired bootstrap, DeLong (plain and clustered), McNemar, multiple testing."""
from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm
from sklearn.metrics import roc_auc_score
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from benchmark.core.errors import CxrbenchError
from benchmark.stats import (
    BootstrapConfig,
    adjust_pvalues,
    bootstrap,
    classification_stats,
    delong_test,
    mcnemar_exact,
    paired_bootstrap,
)
from benchmark.stats.paired import bootstrap_p_value

STATS = functools.partial(classification_stats, class_names=["a", "b", "c", "d"])


# ---------------------------------------------------------------- references (slow, O(n^2))

def _psi(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """psi[i, j] = 1 if x_i > y_j, 1/2 on ties, else 0."""
    return (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])


def slow_delong(y01, a, b, clusters=None):
    """DeLong et al. (1988) from the full pair matrix; Obuchowski (1997) sums when clustered."""
    pos, neg = y01 == 1, y01 == 0
    m, n = pos.sum(), neg.sum()
    v10, v01, auc = [], [], []
    for s in (a, b):
        psi = _psi(s[pos], s[neg])
        auc.append(psi.mean())
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
    auc, v10, v01 = np.array(auc), np.array(v10), np.array(v01)
    if clusters is None:
        cov = np.cov(v10) / m + np.cov(v01) / n
    else:
        ids = sorted(set(clusters.tolist()))
        xs = np.array([[v10[r][clusters[pos] == c].sum() for c in ids] for r in range(2)])
        ys = np.array([[v01[r][clusters[neg] == c].sum() for c in ids] for r in range(2)])
        mc = np.array([np.sum(clusters[pos] == c) for c in ids])
        nc = np.array([np.sum(clusters[neg] == c) for c in ids])
        i10, i01, i = np.count_nonzero(mc), np.count_nonzero(nc), len(ids)
        cov = np.zeros((2, 2))
        for r in range(2):
            for s in range(2):
                s10 = i10 / ((i10 - 1) * m) * np.sum((xs[r] - mc * auc[r]) * (xs[s] - mc * auc[s]))
                s01 = i01 / ((i01 - 1) * n) * np.sum((ys[r] - nc * auc[r]) * (ys[s] - nc * auc[s]))
                s11 = i / (i - 1) * np.sum((xs[r] - mc * auc[r]) * (ys[s] - nc * auc[s]))
                s11t = i / (i - 1) * np.sum((xs[s] - mc * auc[s]) * (ys[r] - nc * auc[r]))
                cov[r, s] = s10 / m + s01 / n + (s11 + s11t) / (m * n)
    se = math.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    z = (auc[0] - auc[1]) / se
    return auc, se, 2 * norm.sf(abs(z))


def two_models(seed: int, n_patients: int = 60, per_patient: int = 3):
    rng = np.random.default_rng(seed)
    patients = np.repeat(np.arange(n_patients), per_patient)
    y01 = np.repeat(rng.integers(0, 2, n_patients), per_patient)
    # Each model has its own patient effect, so a patient's images are correlated within a model
    # and the AUC difference is too.
    def effect():
        return np.repeat(rng.normal(0, 1, n_patients), per_patient)
    a = y01 * 1.5 + effect() + rng.normal(0, 0.7, y01.size)
    b = y01 * 1.0 + effect() + rng.normal(0, 0.7, y01.size)
    return y01, np.round(a, 1), np.round(b, 1), patients  # rounding creates ties


# ---------------------------------------------------------------- DeLong

@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.booleans())
def test_delong_equals_slow_reference(seed, clustered):
    y01, a, b, patients = two_models(seed, n_patients=int(np.random.default_rng(seed).integers(8, 40)))
    if y01.sum() < 2 or (1 - y01).sum() < 2 or len(set(patients[y01 == 1])) < 2 or len(set(patients[y01 == 0])) < 2:
        return
    clusters = patients if clustered else None
    ours = delong_test(y01, a, b, clusters=clusters)
    auc, se, p = slow_delong(y01, a, b, patients if clustered else None)
    assert ours.auc_a == pytest.approx(roc_auc_score(y01, a), abs=1e-12)
    assert abs(ours.auc_a - auc[0]) < 1e-12 and abs(ours.auc_b - auc[1]) < 1e-12
    assert abs(ours.se - se) < 1e-10 and abs(ours.p_value - p) < 1e-10
    assert ours.clustered == clustered


def test_delong_worked_example():
    # Positives score (a) 0.9, 0.6, 0.4; negatives 0.7, 0.2. Model b: 0.8, 0.3, 0.5 vs 0.1, 0.6.
    # psi_a = [[1, 1], [0, 1], [0, 1]]: AUC_a = 4/6; V10_a = (1, 1/2, 1/2), V01_a = (1/3, 1).
    # psi_b = [[1, 1], [1, 0], [1, 0]]: AUC_b = 4/6; V10_b = (1, 1/2, 1/2), V01_b = (1, 1/3).
    # S10 = var/cov of V10 over 3 positives = 1/12 each (rows equal); S01 over 2 negatives:
    # var = 2/9 each, cov = -2/9. Var(diff) = (0)/3 + (2/9 + 2/9 + 4/9)/2 = 4/9.
    y01 = np.array([1, 1, 1, 0, 0])
    res = delong_test(y01, [0.9, 0.6, 0.4, 0.7, 0.2], [0.8, 0.3, 0.5, 0.1, 0.6])
    assert res.auc_a == pytest.approx(4 / 6) and res.auc_b == pytest.approx(4 / 6)
    assert res.se == pytest.approx(2 / 3) and res.z == 0.0 and res.p_value == pytest.approx(1.0)


def test_clustered_delong_is_plain_delong_when_every_image_is_its_own_cluster():
    y01, a, b, _ = two_models(3)
    plain = delong_test(y01, a, b)
    single = delong_test(y01, a, b, clusters=np.arange(y01.size))
    assert single.se == pytest.approx(plain.se, rel=1e-12) and not single.clustered


def test_clustered_variance_tracks_the_sampling_variance_of_the_difference():
    # Across simulated test sets the clustered SE should match the spread of the AUC difference,
    # while the plain DeLong SE, which treats a patient's 3 correlated images as independent, is too small.
    diffs, se_cluster, se_plain = [], [], []
    for seed in range(300):
        y01, a, b, patients = two_models(seed, n_patients=80)
        res_c, res_p = delong_test(y01, a, b, clusters=patients), delong_test(y01, a, b)
        diffs.append(res_c.diff)
        se_cluster.append(res_c.se)
        se_plain.append(res_p.se)
    spread = np.std(diffs, ddof=1)
    assert np.mean(se_cluster) == pytest.approx(spread, rel=0.15)
    assert np.mean(se_plain) < 0.8 * spread


def test_delong_input_errors():
    with pytest.raises(CxrbenchError, match="two positives"):
        delong_test([1, 0, 0], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1])
    with pytest.raises(CxrbenchError, match="shape"):
        delong_test([1, 1, 0, 0], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1, 0.0])


# ---------------------------------------------------------------- McNemar, multiple testing

def test_mcnemar_matches_statsmodels():
    rng = np.random.default_rng(0)
    a = rng.random(200) < 0.7
    b = rng.random(200) < 0.6
    res = mcnemar_exact(a, b)
    table = [[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]]
    ref = mcnemar(table, exact=True)
    assert res.p_value == ref.pvalue and res.statistic == ref.statistic
    assert res.b10 == np.sum(a & ~b) and res.b01 == np.sum(~a & b)
    assert mcnemar_exact(a, a).p_value == 1.0
    with pytest.raises(CxrbenchError):
        mcnemar_exact([1, 0, 2], [1, 0, 1])


@pytest.mark.parametrize("method", ["holm", "fdr_bh"])
def test_adjust_pvalues_matches_statsmodels(method):
    p = np.random.default_rng(1).uniform(0, 0.2, 12)
    assert np.allclose(adjust_pvalues(p, method=method), multipletests(p, method=method)[1], rtol=0, atol=0)
    with_nan = np.append(p, np.nan)
    out = adjust_pvalues(with_nan, method=method)
    assert np.isnan(out[-1]) and np.array_equal(out[:-1], multipletests(p, method=method)[1])


def test_adjust_pvalues_rejects_unknown_method_and_bad_values():
    with pytest.raises(CxrbenchError, match="holm"):
        adjust_pvalues([0.1], method="bonferroni")
    with pytest.raises(CxrbenchError, match=r"\[0, 1\]"):
        adjust_pvalues([1.5])


# ---------------------------------------------------------------- paired bootstrap

def four_class(seed: int, n_patients: int = 50):
    rng = np.random.default_rng(seed)
    patients = np.repeat(np.arange(n_patients), 2)
    y = np.repeat(rng.integers(0, 4, n_patients), 2)
    base = rng.normal(size=(y.size, 4))
    def probs(strength):
        logits = base + strength * np.eye(4)[y] + 0.3 * rng.normal(size=base.shape)
        return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, probs(2.0), probs(0.5), patients


def test_paired_bootstrap_uses_the_same_draws_for_both_models():
    y, pa, pb, patients = four_class(0)
    cfg = BootstrapConfig(n_resamples=200, seed=4)
    res = paired_bootstrap(STATS, y, pa, pb, clusters=patients, config=cfg)
    ra = bootstrap(STATS, y, pa, clusters=patients, config=cfg)
    rb = bootstrap(STATS, y, pb, clusters=patients, config=cfg)
    d = ra.replicates("accuracy") - rb.replicates("accuracy")
    est = res["accuracy"]
    assert est.value_a == ra.estimates["accuracy"].value and est.value_b == rb.estimates["accuracy"].value
    assert est.diff == pytest.approx(est.value_a - est.value_b)
    assert est.ci == pytest.approx(tuple(np.percentile(d, [2.5, 97.5])))
    assert est.p_value == bootstrap_p_value(d)
    assert est.p_value < 0.05 and est.ci[0] > 0  # the stronger model is detectably better
    assert set(est.to_json()) == {"value_a", "value_b", "diff", "ci", "p_value"}


def test_paired_bootstrap_of_a_model_with_itself():
    y, pa, _, patients = four_class(1)
    res = paired_bootstrap(STATS, y, pa, pa, clusters=patients, config=BootstrapConfig(n_resamples=50))
    assert res["macro_auroc"].diff == 0 and res["macro_auroc"].ci == (0.0, 0.0)
    assert res["macro_auroc"].p_value == 1.0


def test_paired_bca_runs():
    y, pa, pb, patients = four_class(2)
    res = paired_bootstrap(STATS, y, pa, pb, clusters=patients,
                           config=BootstrapConfig(n_resamples=200, method="bca"))
    est = res["macro_f1"]
    assert est.ci[0] <= est.diff <= est.ci[1]


def test_bootstrap_p_value_formula():
    d = np.array([-1.0, 0.5, 1.0, 2.0, np.nan])
    # 1 of 4 defined replicates <= 0, 3 >= 0: p = 2 * (1 + 1) / (4 + 1)
    assert bootstrap_p_value(d) == pytest.approx(0.8)
    assert bootstrap_p_value(np.ones(999)) == pytest.approx(2 / 1000)
    assert math.isnan(bootstrap_p_value(np.array([np.nan])))


def test_paired_bootstrap_shape_mismatch():
    y, pa, pb, _ = four_class(3)
    with pytest.raises(CxrbenchError, match="same images"):
        paired_bootstrap(STATS, y, pa, pb[:, :3], config=BootstrapConfig(n_resamples=5))
