"""Results that must be possible (issue 14, item 4): a result.json claiming what no run can produce
(Infinity, 1e308 for an AUROC, `true` as a number, a CI upside down or far from its value, a count
that contradicts the data) makes the gate say "unusable" (exit 2, one line) and write nothing; a run
on fewer than 30 patients records and shows that its CIs are unreliable, and a gate on a CI bound
refuses it unless the policy allows it."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from benchmark.core.labels import CLASSES
from benchmark.reporting.result_rules import MIN_BOOTSTRAP_UNITS, metric_range
from tests.helpers import cli, latest_result
from tests.test_gate import GOOD_DEFAULT, result_with, write_policy, write_run
from tests.test_leaderboard import planted_predictions

POLICY = "checks:\n  - metric: subtype.macro_auroc\n    bound: {bound}\n    min: 0.5\n"


def _mutate(result: dict, how: str) -> str:
    """result.json text with one impossible claim."""
    auroc = result["suites"]["subtype"]["metrics"]["macro_auroc"]
    if how == "infinity":
        return json.dumps(result).replace('"value": 0.85', '"value": Infinity', 1)
    if how == "huge":
        auroc["value"] = 1e308
    elif how == "boolean":
        auroc["value"] = True
    elif how == "boolean-ci":
        auroc["ci"] = [0.8, True]
    elif how == "ci-upside-down":
        auroc["ci"] = [0.95, 0.6]
    elif how == "value-far-outside-ci":
        auroc["value"], auroc["ci"] = 0.99, [0.40, 0.45]
    elif how == "ece-negative":
        result["suites"]["calibration"]["metrics"]["ece"]["value"] = -0.2
    elif how == "units-contradict-counts":
        result["provenance"]["bootstrap"] = {"unit": "image", "units": 5000, "min_units": 30, "ci_reliable": True}
    elif how == "reliable-on-one-patient":
        result["dataset"]["counts"]["images"] = 1
        result["provenance"]["bootstrap"] = {"unit": "image", "units": 1, "min_units": 1, "ci_reliable": True}
    return json.dumps(result)


@pytest.mark.parametrize("how, needle", [
    ("infinity", "suites.subtype.metrics.macro_auroc.value must be a finite number"),
    ("huge", "value 1e+308 is outside the metric's range [0, 1]"),
    ("boolean", "macro_auroc.value must be a finite number or null, found True"),
    ("boolean-ci", "macro_auroc.ci must be [lower, upper] of finite numbers"),
    ("ci-upside-down", "lower end 0.95 above its upper end 0.6"),
    ("value-far-outside-ci", "value 0.99 lies far outside its own CI [0.4, 0.45]"),
    ("ece-negative", "calibration.metrics.ece: value -0.2 is outside the metric's range"),
    ("units-contradict-counts", "units is 5000, but dataset.counts says 100 images"),
    ("reliable-on-one-patient", "ci_reliable is true with 1 units"),
])
def test_an_impossible_result_makes_the_gate_unusable_and_writes_nothing(tmp_path, capsys, how, needle):
    run = tmp_path / "run"
    run.mkdir()
    (run / "result.json").write_text(_mutate(result_with(GOOD_DEFAULT), how))
    policy = write_policy(tmp_path, POLICY.format(bound="value"))
    junit, summary = tmp_path / "out" / "gate.xml", tmp_path / "out" / "gate.md"
    code, out, err = cli(capsys, "gate", str(run), "--policy", str(policy), "--junit", str(junit),
                         "--summary", str(summary))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("error: unusable run: ") and needle in lines[0], lines[0]
    assert out == "" and not junit.exists() and not summary.exists()  # no verdict was written


def test_the_known_range_table_covers_the_suites_names():
    for suite, name in (("subtype", "accuracy"), ("subtype", "macro_auroc"), ("subtype", "study_macro_f1"),
                        ("subtype", "auroc_typical"), ("subtype", "f1_negative"), ("subtype", "map"),
                        ("cross_site", "balanced_accuracy"), ("cross_site", "worst_site_ece"),
                        ("cross_site", "op_transfer_worst_sensitivity"), ("calibration", "ece_ts")):
        assert metric_range(suite, name) == (0.0, 1.0), name
    assert metric_range("subtype", "kappa") == metric_range("cross_site", "mcc") == (-1.0, 1.0)
    assert metric_range("calibration", "brier") == (0.0, 2.0)
    for suite, name in (("shortcut", "no_lung_retention"), ("subtype", "new_metric")):
        assert metric_range(suite, name) is None, name  # a ratio, and an undeclared name: only finite


def few_patients_run(tmp: Path, capsys, patients: int, images_each: int = 3) -> tuple[Path, str]:
    table = pd.DataFrame({"image_id": [f"i{k}" for k in range(patients * images_each)],
                          "label": [CLASSES[k % 4] for k in range(patients * images_each)],
                          "patient_id": [f"p{k // images_each}" for k in range(patients * images_each)],
                          "site": ["s"] * (patients * images_each)})
    path = tmp / "preds.csv"
    planted_predictions(table, 2.0, 0).to_csv(path, index=False)
    code, out, err = cli(capsys, "run", "--predictions", str(path), "--suites", "subtype", "--bootstrap", "50",
                         "--out", str(tmp / "runs"))
    assert code == 0, err
    return max((tmp / "runs").iterdir()), out


@pytest.mark.parametrize("patients", [1, 8])
def test_too_few_patients_mark_the_cis_unreliable_everywhere(tmp_path, capsys, patients):
    run, out = few_patients_run(tmp_path, capsys, patients)
    bs = latest_result(tmp_path / "runs")["provenance"]["bootstrap"]
    assert (bs["unit"], bs["units"], bs["min_units"], bs["ci_reliable"]) == ("patient", patients, MIN_BOOTSTRAP_UNITS,
                                                                            False)
    warning = [line for line in out.splitlines() if line.startswith("warning:")]
    assert warning == [f"warning: the 95% CIs rest on {patients} patients, fewer than 30: they are unreliable, "
                       "and a gate on a CI bound refuses this run"]
    assert f"rest on {patients} patients" in (run / "report.html").read_text()  # the report says so too

    lower = write_policy(tmp_path, POLICY.format(bound="lower"), "lower.yaml")
    junit = tmp_path / "gate.xml"
    code, _, err = cli(capsys, "gate", str(run), "--policy", str(lower), "--junit", str(junit))
    assert code == 2 and len(err.strip().splitlines()) == 1 and not junit.exists()
    assert f"unusable: the run's CIs rest on {patients} resampling units (fewer than 30)" in err
    assert "allow_unreliable_ci: true" in err

    allowed = write_policy(tmp_path, "allow_unreliable_ci: true\n" + POLICY.format(bound="lower"), "allowed.yaml")
    code, _, err = cli(capsys, "gate", str(run), "--policy", str(allowed))
    assert code in (0, 1) and err == ""  # decided: the policy asked for it knowingly
    on_value = write_policy(tmp_path, POLICY.format(bound="value"), "value.yaml")
    assert cli(capsys, "gate", str(run), "--policy", str(on_value))[0] in (0, 1)  # a point value is no CI

    from benchmark import api

    site = api.leaderboard([run], tmp_path / "site", bootstrap=20).site_dir
    assert "unreliable CI" in (site / "index.html").read_text()


def test_one_patient_gives_a_zero_width_ci_that_cannot_pass_a_gate(tmp_path, capsys):
    run, _ = few_patients_run(tmp_path, capsys, 1, images_each=8)
    accuracy = latest_result(tmp_path / "runs")["suites"]["subtype"]["metrics"]["accuracy"]
    assert accuracy["ci"][0] == accuracy["ci"][1]  # every resample draws the one patient
    policy = write_policy(tmp_path, "checks:\n  - metric: subtype.accuracy\n    bound: lower\n    min: 0.0\n")
    code, _, err = cli(capsys, "gate", str(run), "--policy", str(policy))
    assert code == 2 and "rest on 1 resampling units" in err


def test_a_policy_key_for_unreliable_cis_must_be_a_boolean(tmp_path, capsys):
    run = write_run(tmp_path, result_with(GOOD_DEFAULT))
    policy = write_policy(tmp_path, "allow_unreliable_ci: yes please\n" + POLICY.format(bound="lower"))
    code, _, err = cli(capsys, "gate", str(run), "--policy", str(policy))
    assert code == 2 and "'allow_unreliable_ci' must be true or false" in err
