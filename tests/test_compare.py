"""`cxrbench compare`: known answers for the paired table, the correction, ties and refusals."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, roc_auc_score
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from benchmark.reporting.compare import DEFAULT_METRICS, compare_runs
from benchmark.core.errors import CxrbenchError
from benchmark.core.labels import CLASSES, PROB_COLUMNS
from benchmark.stats import BootstrapConfig
from tests.helpers import cli

N = 160
CFG = BootstrapConfig(n_resamples=300, seed=0)


def frame(n: int = N, images_per_patient: int = 1, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    labels = rng.choice(len(CLASSES), size=n, p=[0.3, 0.35, 0.2, 0.15])
    return pd.DataFrame({"image_id": [f"img{i:04d}" for i in range(n)], "view": "clean",
                         "label": [CLASSES[k] for k in labels],
                         "patient_id": [f"p{i // images_per_patient:04d}" for i in range(n)],
                         "site": [f"s{i % 3}" for i in range(n)]})


def with_probs(base: pd.DataFrame, strength: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = base["label"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy()
    logits = rng.normal(size=(len(base), len(CLASSES))) + strength * np.eye(len(CLASSES))[y]
    out = base.copy()
    out[list(PROB_COLUMNS)] = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return out


def make_run(tmp_path, name: str, preds: pd.DataFrame):
    from benchmark import api

    path = tmp_path / f"{name}.csv"
    preds.to_csv(path, index=False)
    return api.run(api.RunRequest(predictions=path, out=tmp_path / "runs", bootstrap=50, progress=False)).run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cmp")
    base = frame()
    strong, weak = with_probs(base, 2.5, 1), with_probs(base, 0.0, 2)
    return {"strong": make_run(tmp, "strong", strong), "weak": make_run(tmp, "weak", weak),
            "twin": make_run(tmp, "twin", strong), "frames": (strong, weak),
            "other": make_run(tmp, "other", with_probs(frame(n=N, seed=9).assign(
                image_id=lambda f: "x" + f["image_id"]), 1.0, 3))}


def test_known_answers_for_values_mcnemar_and_holm(runs):
    comp = compare_runs([runs["strong"], runs["weak"]], config=CFG)
    assert comp.correction == "holm" and comp.unit == "image" and comp.n_images == N
    (pair,) = comp.pairs
    rows = {r.metric: r for r in pair.rows}
    assert list(rows) == list(DEFAULT_METRICS)
    strong, weak = runs["frames"]
    y = strong["label"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy()
    pa, pb = strong[list(PROB_COLUMNS)].to_numpy(), weak[list(PROB_COLUMNS)].to_numpy()
    assert rows["accuracy"].value_a == pytest.approx(accuracy_score(y, pa.argmax(1)))
    assert rows["accuracy"].diff == pytest.approx(accuracy_score(y, pa.argmax(1)) - accuracy_score(y, pb.argmax(1)))
    assert rows["macro_auroc"].value_b == pytest.approx(roc_auc_score(y, pb, multi_class="ovr", average="macro"))
    assert rows["pneumonia_auroc"].value_a == pytest.approx(roc_auc_score(y > 0, pa[:, 1:].sum(1)))
    # one image per patient: accuracy is tested by exact McNemar, the binary AUROC by DeLong
    ca, cb = pa.argmax(1) == y, pb.argmax(1) == y
    table = [[np.sum(ca & cb), np.sum(ca & ~cb)], [np.sum(~ca & cb), np.sum(~ca & ~cb)]]
    assert rows["accuracy"].test == "McNemar exact"
    assert rows["accuracy"].p_value == pytest.approx(mcnemar(table, exact=True).pvalue)
    assert rows["pneumonia_auroc"].test == "DeLong" and rows["map"].test == "paired bootstrap"
    raw = [r.p_value for r in pair.rows]
    assert [r.p_adjusted for r in pair.rows] == pytest.approx(list(multipletests(raw, method="holm")[1]))
    assert all(r.ci[0] <= r.diff <= r.ci[1] for r in pair.rows)
    assert rows["macro_auroc"].verdict == "A better" and not pair.tied  # planted: strong beats noise


def test_identical_predictions_are_tied(runs):
    comp = compare_runs([runs["strong"], runs["twin"]], config=CFG)
    (pair,) = comp.pairs
    assert pair.tied
    for r in pair.rows:
        assert r.diff == 0 and r.p_value == pytest.approx(1.0) and r.verdict == "tied"


def test_bh_correction_on_request_and_family_spans_all_pairs(runs):
    holm = compare_runs([runs["strong"], runs["weak"], runs["twin"]], config=CFG)
    bh = compare_runs([runs["strong"], runs["weak"], runs["twin"]], correction="fdr_bh", config=CFG)
    assert holm.n_tests == 3 * len(DEFAULT_METRICS) and bh.correction_name.startswith("Benjamini-Hochberg")
    raw = [r.p_value for p in holm.pairs for r in p.rows]
    expected = multipletests(raw, method="fdr_bh")[1]
    assert [r.p_adjusted for p in bh.pairs for r in p.rows] == pytest.approx(list(expected))
    assert all(b.p_adjusted <= h.p_adjusted + 1e-12 for hp, bp in zip(holm.pairs, bh.pairs)
               for h, b in zip(hp.rows, bp.rows))
    assert [(p.a, p.b, p.tied) for p in holm.pairs] == [("strong", "weak", False), ("strong", "twin", True),
                                                        ("weak", "twin", False)]


def test_patients_with_several_images_use_the_cluster_aware_tests(tmp_path):
    base = frame(n=120, images_per_patient=2)
    a = make_run(tmp_path, "a", with_probs(base, 2.0, 1))
    b = make_run(tmp_path, "b", with_probs(base, 0.5, 2))
    comp = compare_runs([a, b], config=CFG)
    rows = {r.metric: r for r in comp.pairs[0].rows}
    assert comp.unit == "patient" and comp.n_units == 60
    assert rows["accuracy"].test == "paired bootstrap"  # McNemar would assume independent images


def test_runs_on_different_images_are_refused(runs):
    with pytest.raises(CxrbenchError, match="different images"):
        compare_runs([runs["strong"], runs["other"]], config=CFG)


def test_cli_compare(runs, capsys, tmp_path):
    out_json = tmp_path / "cmp.json"
    code, out, err = cli(capsys, "compare", str(runs["strong"]), str(runs["weak"]), str(runs["twin"]),
                         "--bootstrap", "300", "--json", str(out_json))
    assert code == 0, err
    flat = " ".join(out.split())
    assert "p (Holm)" in out and "adjusted by Holm over 21 tests" in flat
    assert "TIED" in out and "differs on" in out
    data = json.loads(out_json.read_text())
    assert data["correction"] == "holm" and len(data["pairs"]) == 3 and data["pairs"][1]["tied"] is True
    code, out, _ = cli(capsys, "compare", str(runs["strong"]), str(runs["weak"]), "--correction", "fdr_bh",
                       "--bootstrap", "300")
    assert code == 0 and "Benjamini-Hochberg (FDR)" in out


@pytest.mark.parametrize("args, message", [
    (("--correction", "bonferroni"), "unknown correction 'bonferroni'"),
    (("--metrics", "ece"), "cannot compare metric 'ece'"),
])
def test_cli_compare_bad_options(runs, capsys, args, message):
    code, _, err = cli(capsys, "compare", str(runs["strong"]), str(runs["weak"]), *args)
    assert code == 2 and message in err


def test_cli_compare_refuses_other_images_and_single_runs(runs, capsys):
    code, _, err = cli(capsys, "compare", str(runs["strong"]), str(runs["other"]))
    assert code == 2 and "runs are on different images" in err and "manifest sha256" in err
    code, _, err = cli(capsys, "compare", str(runs["strong"]))
    assert code == 2 and "at least two" in err
