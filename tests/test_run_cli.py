"""End-to-end: `cxrbench run` on written synth data with TorchScript checkpoints, and the cache."""
from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from benchmark.core.labels import PROB_COLUMNS
from benchmark.reporting.results import SCHEMA, validate_result
from tests.helpers import CANONICAL, Permuted, TinyNet, card, cli, save_model


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    from benchmark import api

    out = tmp_path_factory.mktemp("synth")
    api.synth(out, n_patients=40, image_size=128, seed=5)
    return out


@pytest.fixture()
def ckpt(tmp_path):
    return save_model(TinyNet(), tmp_path / "m.pt", card("tiny", CANONICAL))


def assert_same_metrics(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        for part in ("value", "ci"):
            x, y = a[k][part], b[k][part]
            assert (x is None and y is None) or x == pytest.approx(y, abs=1e-9), (k, part, x, y)


def run_dir_of(out_dir):
    dirs = sorted(p for p in out_dir.iterdir() if p.is_dir())
    assert len(dirs) == 1, dirs
    return dirs[0]


def test_run_writes_result_predictions_and_report(capsys, tmp_path, synth_dir, ckpt):
    code, out, err = cli(capsys, "run", "--model", str(ckpt), "--data", str(synth_dir / "manifest.csv"),
                         "--out", str(tmp_path / "runs"), "--bootstrap", "200")
    assert code == 0, err
    assert "macro_f1" in out and "95% CI" in out
    run_dir = run_dir_of(tmp_path / "runs")
    assert run_dir.name.startswith("tiny__")
    result = json.loads((run_dir / "result.json").read_text())
    assert result["schema"] == SCHEMA and validate_result(result) == []
    m = result["suites"]["subtype"]["metrics"]["macro_f1"]
    assert m["ci"][0] <= m["value"] <= m["ci"][1]
    assert result["provenance"]["bootstrap"]["unit"] == "patient"
    adequacy = {r["metric"]: r for r in result["suites"]["subtype"]["tables"]["sample_size_adequacy"]}
    assert 0 < adequacy["macro_f1"]["ci_half_width"] < adequacy["macro_f1"]["detectable_difference"]
    preds = pd.read_parquet(run_dir / "predictions.parquet")
    assert list(preds.columns) == ["image_id", "view", "label", "patient_id", "site", *PROB_COLUMNS]
    assert set(preds["view"]) == {"clean"} and len(preds) == result["dataset"]["counts"]["images"]
    assert (preds[list(PROB_COLUMNS)].sum(axis=1) - 1).abs().max() < 1e-6
    html = (run_dir / "report.html").read_text()
    assert "Plotly.newPlot" in html
    assert "<script src" not in html  # opens offline: plotly.js is inline, nothing is fetched


def test_permuted_classes_named_by_aliases_give_identical_metrics(capsys, tmp_path, synth_dir):
    net = TinyNet(seed=3)
    a = save_model(net, tmp_path / "a.pt", card("net-a", CANONICAL))
    order = [3, 0, 2, 1]  # atypical, negative, indeterminate, typical
    aliases = ["Atypical Appearance", "Negative for Pneumonia", "Indeterminate Appearance", "Typical Appearance"]
    b = save_model(Permuted(net, order), tmp_path / "b.pt", card("net-b", aliases))
    results = []
    for ck, out in ((a, "ra"), (b, "rb")):
        code, _, err = cli(capsys, "run", "--model", str(ck), "--data", str(synth_dir / "manifest.csv"),
                           "--out", str(tmp_path / out), "--bootstrap", "100")
        assert code == 0, err
        results.append(json.loads((run_dir_of(tmp_path / out) / "result.json").read_text()))
    ma, mb = (r["suites"]["subtype"]["metrics"] for r in results)
    assert_same_metrics(ma, mb)
    assert results[0]["model"]["sha256"] != results[1]["model"]["sha256"]


def test_second_run_does_no_forward_pass(tmp_path, synth_dir, ckpt):
    from benchmark import api

    req = api.RunRequest(model=str(ckpt), data=str(synth_dir / "manifest.csv"), out=tmp_path / "runs",
                         bootstrap=50, progress=False)
    first = api.run(req)
    second = api.run(req)
    assert first.forward_images == len(pd.read_csv(synth_dir / "manifest.csv")) > 0
    assert second.forward_images == 0 and second.cached_views == ["clean"]
    assert first.result["suites"] == second.result["suites"]


def test_predictions_file_reruns_suites_without_model(capsys, tmp_path, synth_dir, ckpt):
    code, _, err = cli(capsys, "run", "--model", str(ckpt), "--data", str(synth_dir / "manifest.csv"),
                       "--out", str(tmp_path / "r1"), "--bootstrap", "100")
    assert code == 0, err
    first = run_dir_of(tmp_path / "r1")
    csv = tmp_path / "preds.csv"
    pd.read_parquet(first / "predictions.parquet").to_csv(csv, index=False)
    code, _, err = cli(capsys, "run", "--predictions", str(csv), "--out", str(tmp_path / "r2"), "--bootstrap", "100")
    assert code == 0, err
    a = json.loads((first / "result.json").read_text())["suites"]["subtype"]["metrics"]
    b = json.loads((run_dir_of(tmp_path / "r2") / "result.json").read_text())["suites"]["subtype"]["metrics"]
    assert_same_metrics(a, b)


def test_list_and_help_through_the_console_script():
    out = subprocess.run([sys.executable, "-m", "benchmark.cli", "list", "models"], capture_output=True, text=True)
    assert out.returncode == 0 and "reference" in out.stdout
    out = subprocess.run([sys.executable, "-m", "benchmark.cli", "list", "suites"], capture_output=True, text=True)
    assert "subtype" in out.stdout


def test_cached_rerun_loads_no_model_and_imports_no_torch(tmp_path, synth_dir, ckpt):
    from benchmark import api

    req = api.RunRequest(model=str(ckpt), data=str(synth_dir / "manifest.csv"), out=tmp_path / "runs",
                         bootstrap=50, progress=False)
    assert api.run(req).forward_images > 0
    code = ("import sys; from pathlib import Path; from benchmark import api; "
            f"o = api.run(api.RunRequest(model={str(ckpt)!r}, data={str(synth_dir / 'manifest.csv')!r}, "
            f"out=Path({str(tmp_path / 'runs')!r}), bootstrap=50, progress=False)); "
            "print(o.forward_images, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", "False"]
