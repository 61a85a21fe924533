"""Bootstrap rank intervals (benchmark.stats.rank_intervals): paired resampling of patients across
entries, so identical models share their interval and a clearly better model is first every time."""
from __future__ import annotations

import numpy as np
import pytest

from benchmark.reporting.compare import _stat_fn
from benchmark.stats import BootstrapConfig
from benchmark.stats.rank_intervals import rank_intervals, ranks_of

N_PATIENTS = 120
CONFIG = BootstrapConfig(n_resamples=300, seed=4)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    clusters = np.repeat(np.arange(N_PATIENTS), 2)
    y = np.repeat(rng.integers(0, 4, N_PATIENTS), 2)

    def model(strength: float, seed: int) -> np.ndarray:
        logits = np.random.default_rng(seed).normal(size=(y.size, 4)) + strength * np.eye(4)[y]
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)
    return y, clusters, model


def test_competition_ranks_share_the_better_place():
    assert ranks_of(np.array([0.5, 0.9, 0.5, 0.1])).tolist() == [2, 1, 2, 4]
    assert ranks_of(np.array([[1.0, 1.0], [0.0, 2.0]])).tolist() == [[1, 1], [2, 1]]


def test_identical_models_overlap_fully_and_a_clearly_better_one_excludes_them(data):
    y, clusters, model = data
    weak = model(0.4, 1)
    s = rank_intervals(_stat_fn, "macro_f1", y, [weak, weak.copy(), model(3.0, 2)], clusters=clusters, config=CONFIG)
    a, b, best = s.intervals
    assert s.unit == "patient" and s.n_resamples == CONFIG.n_resamples
    assert a.ci == b.ci and a.p_best == b.p_best and a.rank == b.rank == 2
    assert best.ci == (1, 1) and best.p_best == 1.0 and best.rank == 1
    assert min(a.ci[0], b.ci[0]) >= 2  # the others' intervals exclude first place
    assert sum(iv.p_best for iv in s.intervals) == pytest.approx(1.0)


def test_close_models_have_overlapping_intervals_and_split_p_best(data):
    y, clusters, model = data
    a = model(1.0, 3)
    b = a * np.exp(0.3 * np.random.default_rng(5).normal(size=a.shape))  # the same model, slightly perturbed
    b /= b.sum(axis=1, keepdims=True)
    s = rank_intervals(_stat_fn, "macro_auroc", y, [a, b], clusters=clusters, config=CONFIG)
    a, b = s.intervals
    assert a.ci == (1, 2) and b.ci == (1, 2)
    assert 0.05 < a.p_best < 0.95 and a.p_best + b.p_best == pytest.approx(1.0)


def test_lower_is_better_reverses_the_order(data):
    y, clusters, model = data
    good, bad = model(3.0, 6), model(0.2, 7)
    s = rank_intervals(_stat_fn, "accuracy", y, [good, bad], clusters=clusters, config=CONFIG)
    flipped = rank_intervals(_stat_fn, "accuracy", y, [good, bad], clusters=clusters, config=CONFIG,
                             lower_is_better=True)
    assert [iv.rank for iv in s.intervals] == [1, 2] and [iv.rank for iv in flipped.intervals] == [2, 1]
    assert flipped.intervals[1].p_best == 1.0
