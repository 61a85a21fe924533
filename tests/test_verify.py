"""`cxrbench verify`: an untouched run verifies; an edited metric, table or note is named (exit 1); a run
that cannot be recomputed exactly is refused (exit 2) rather than called tampered."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import cli, written_synth


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """The reference model (it has embeddings, which cross_site probes) on written synth data, whose
    manifest has a `split` column that the calibration suite reads."""
    from benchmark import api

    data = written_synth(tmp_path_factory, n_patients=30, image_size=64, seed=3)
    out = tmp_path_factory.mktemp("runs")
    return api.run(api.RunRequest(data=str(data / "manifest.csv"), out=out, bootstrap=200, progress=False)).run_dir


def copy_run(run_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(run_dir, dst)
    return dst


def edit(run: Path, fn) -> None:
    res = json.loads((run / "result.json").read_text())
    fn(res)
    (run / "result.json").write_text(json.dumps(res))


def test_an_untouched_run_verifies(run_dir, capsys):
    assert {"manifest.parquet", "embeddings.npz"} <= {p.name for p in run_dir.iterdir()}
    result = json.loads((run_dir / "result.json").read_text())
    assert "site_auroc_embedding" in result["suites"]["cross_site"]["metrics"]  # embeddings are checked too
    assert "manifest split == 'val'" in " ".join(result["suites"]["calibration"]["notes"])
    code, out, err = cli(capsys, "verify", str(run_dir))
    assert code == 0, err
    n = sum(len(b["metrics"]) + len(b["grouped"]) for b in result["suites"].values())  # per-group ones too
    assert out.startswith(f"VERIFIED: all {n} metrics of 3 suites")


def test_an_edited_per_group_metric_is_named(run_dir, tmp_path, capsys):
    run = copy_run(run_dir, tmp_path)

    def nudge(res):
        g = next(g for g in res["suites"]["cross_site"]["grouped"] if g["metric"] == "macro_f1")
        g["value"] = g["value"] - 0.004
    edit(run, nudge)
    code, out, err = cli(capsys, "verify", str(run))
    assert code == 1 and err.startswith("DIFFERS: 1 of ") and "cross_site.macro_f1 (site = " in err, err


def test_one_edited_metric_is_named_and_exits_1(run_dir, tmp_path, capsys):
    run = copy_run(run_dir, tmp_path)

    def nudge(res):
        m = res["suites"]["calibration"]["metrics"]["brier"]
        m["value"] = m["value"] - 0.004  # a plausible number, inside what result validation accepts
    edit(run, nudge)
    code, out, err = cli(capsys, "verify", str(run))
    assert code == 1 and out == ""
    assert err.startswith("DIFFERS: 1 of ") and "calibration.brier: recorded" in err
    assert err.count("recorded") == 1  # only the edited metric


def test_an_edited_verdict_table_is_named(run_dir, tmp_path, capsys):
    run = copy_run(run_dir, tmp_path)
    edit(run, lambda res: res["suites"]["subtype"]["tables"]["confusion_matrix"]["rows_true_cols_pred"][0]
         .__setitem__(0, 99))
    code, _, err = cli(capsys, "verify", str(run))
    assert code == 1 and "0 of " in err and "subtype.tables" in err


@pytest.mark.parametrize("damage, message", [
    (lambda run: (run / "predictions.parquet").unlink(), "no predictions.parquet"),
    (lambda run: (run / "manifest.parquet").unlink(), "no manifest.parquet"),
    (lambda run: (run / "embeddings.npz").unlink(), "embeddings.npz is missing"),
    (lambda run: edit(run, lambda r: r["provenance"].__setitem__("metric_code_version", "1")),
     "metric code version '1'"),
    (lambda run: edit(run, lambda r: r["suites"].__setitem__("mystery", {"metrics": {}})),
     "suite 'mystery' is not installed"),
    (lambda run: edit(run, lambda r: r["provenance"]["request"].__setitem__("options", [["n_bins", "many"]])),
     "recomputing suite 'calibration' failed"),
])
def test_what_cannot_be_recomputed_exits_2(run_dir, tmp_path, capsys, damage, message):
    run = copy_run(run_dir, tmp_path)
    damage(run)
    code, _, err = cli(capsys, "verify", str(run))
    assert code == 2 and err.startswith("CANNOT VERIFY: ") and message in err, err


def test_recorded_grouping_and_options_are_used(run_dir, tmp_path, capsys):
    """Scored from the predictions file again, grouped by a manifest column that the predictions lack and
    with a suite option: verify must take both from provenance (and the column from manifest.parquet)."""
    from benchmark import api

    data = json.loads((run_dir / "result.json").read_text())["provenance"]["request"]["data"]
    run = api.run(api.RunRequest(predictions=run_dir / "predictions.parquet", data=data, out=tmp_path,
                                 suites=("calibration", "cross_site"), group_by="split", bootstrap=50,
                                 options=(("n_bins", "10"),), progress=False)).run_dir
    metrics = json.loads((run / "result.json").read_text())["suites"]["cross_site"]["metrics"]
    assert "worst_split_balanced_accuracy" in metrics
    code, out, err = cli(capsys, "verify", str(run))
    assert code == 0 and out.startswith("VERIFIED: "), err
    edit(run, lambda r: r["provenance"]["request"].__setitem__("options", []))  # 15 bins instead of 10
    code, _, err = cli(capsys, "verify", str(run))
    assert code == 1 and "calibration.ece: recorded" in err
