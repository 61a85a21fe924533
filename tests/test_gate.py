"""`cxrbench gate`: exit codes 0 / 1 / 2, the bound semantics, JUnit XML and the Markdown summary."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from benchmark.reporting.gate import load_policy
from tests.helpers import cli

XSS = "<img src=x onerror=alert(1)>"


def result_with(metrics: dict[str, tuple[float, float, float]], model: str = "m") -> dict:
    suites: dict = {}
    for address, (value, lo, hi) in metrics.items():
        suite, name = address.split(".", 1)
        suites.setdefault(suite, {"metrics": {}, "tables": {}, "figures": {}, "notes": []})
        suites[suite]["metrics"][name] = {"value": value, "ci": [lo, hi]}
    return {"schema": "cxrbench.result/1", "model": {"name": model, "sha256": "0" * 64},
            "dataset": {"name": "d", "manifest_sha256": "1" * 64, "counts": {"images": 100}},
            "suites": suites, "provenance": {"seed": 0}}


def write_run(tmp_path, result: dict, name: str = "run"):
    run = tmp_path / name
    run.mkdir()
    (run / "result.json").write_text(json.dumps(result))
    return run


def write_policy(tmp_path, text: str, name: str = "policy.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD_DEFAULT = {"subtype.macro_auroc": (0.85, 0.80, 0.90), "subtype.map": (0.55, 0.48, 0.62),
                "subtype.macro_f1": (0.52, 0.45, 0.58), "subtype.pneumonia_auroc": (0.90, 0.86, 0.93),
                "calibration.ece": (0.04, 0.03, 0.07), "cross_site.worst_site_balanced_accuracy": (0.5, 0.42, 0.57),
                "shortcut.no_lung_retention": (0.2, 0.1, 0.3)}


def test_bounds_compare_the_named_end_of_the_interval(tmp_path, capsys):
    run = write_run(tmp_path, result_with({"subtype.macro_f1": (0.5, 0.3, 0.7)}))
    cases = [("value", "min: 0.4", 0), ("lower", "min: 0.4", 1), ("lower", "min: 0.3", 0),
             ("upper", "max: 0.6", 1), ("upper", "max: 0.7", 0), ("value", "min: 0.4\n    max: 0.45", 1)]
    for i, (bound, limit, expected) in enumerate(cases):
        policy = write_policy(tmp_path, f"checks:\n  - metric: subtype.macro_f1\n    bound: {bound}\n    {limit}\n",
                              f"p{i}.yaml")
        code, out, err = cli(capsys, "gate", str(run), "--policy", str(policy))
        assert code == expected, (bound, limit, out, err)


def test_pass_fail_and_junit_counts_failed_checks(tmp_path, capsys):
    run = write_run(tmp_path, result_with({"subtype.macro_f1": (0.5, 0.42, 0.58), "subtype.map": (0.3, 0.2, 0.4),
                                           "calibration.ece": (0.12, 0.08, 0.16)}, model=XSS))
    passing = write_policy(tmp_path, "name: ok\nchecks:\n  - {metric: subtype.macro_f1, bound: lower, min: 0.40}\n",
                           "pass.yaml")
    code, out, err = cli(capsys, "gate", str(run), "--policy", str(passing), "--junit", str(tmp_path / "p.xml"))
    assert code == 0, err
    assert "PASSED: 1 of 1 checks" in out
    assert ET.parse(tmp_path / "p.xml").getroot().get("failures") == "0"

    failing = write_policy(tmp_path, """name: strict
checks:
  - {metric: subtype.macro_f1, bound: lower, min: 0.40, reason: decisions must be useful}
  - {metric: subtype.map, bound: lower, min: 0.40}
  - {metric: calibration.ece, bound: upper, max: 0.10}
""", "fail.yaml")
    junit, summary = tmp_path / "out" / "gate.xml", tmp_path / "out" / "gate.md"
    code, out, err = cli(capsys, "gate", str(run), "--policy", str(failing), "--junit", str(junit),
                         "--summary", str(summary))
    assert code == 1, err
    assert "FAILED: 2 of 3 checks failed" in out
    assert sum(line.startswith("│ FAIL") for line in out.splitlines()) == 2
    root = ET.parse(junit).getroot()
    suite = root.find("testsuite")
    assert root.get("tests") == "3" and root.get("failures") == "2" and suite.get("failures") == "2"
    cases = suite.findall("testcase")
    failed = [c.get("name") for c in cases if c.find("failure") is not None]
    assert len(cases) == 3 and failed == ["subtype.map (lower end of CI) >= 0.4",
                                          "calibration.ece (upper end of CI) <= 0.1"]
    assert {p.get("name"): p.get("value") for p in suite.iter("property")}["model"] == XSS
    md = summary.read_text()
    assert md.startswith("## cxrbench gate: FAILED (2 of 3 checks failed)")
    assert md.count("**FAIL**") == 2 and "decisions must be useful" in md
    assert XSS not in md and "&lt;img src=x onerror=alert\\(1\\)&gt;" in md


@pytest.mark.parametrize("policy, message", [
    ("checks:\n  - metric: calibration.ece\n    bound: upper\n    max: 0.1\n",
     "lacks 1 metric(s) the policy checks: calibration.ece (run the suite(s) calibration"),
    ("checks:\n  - metric: subtype.macro_f1\n    bound: middle\n    min: 0.1\n",
     "checks[0]: unknown bound 'middle'; expected one of lower, upper, value"),
    ("checks:\n  - metric: subtype.macro_f1\n    bound: lower\n    mni: 0.1\n", "checks[0]: unknown key 'mni'"),
    ("checks:\n  - metric: subtype.macro_f1\n    bound: lower\n", "checks[0]: a check needs 'min' or 'max'"),
    ("checks:\n  - metric: subtype.macro_f1\n    min: high\n", "checks[0].min: expected a finite number"),
    ("checks:\n  - metric: macro_f1\n    min: 0.1\n", "'metric' must be <suite>.<metric>"),
    ("checks: [\n  - metric: x\n", "not valid YAML at line"),
    ("checks: []\n", "'checks' must be a non-empty list"),
    ("- 1\n", "expected a mapping with a 'checks' list"),
])
def test_unusable_policies_and_runs_exit_2(tmp_path, capsys, policy, message):
    run = write_run(tmp_path, result_with({"subtype.macro_f1": (0.5, 0.42, 0.58)}))
    path = write_policy(tmp_path, policy)
    code, out, err = cli(capsys, "gate", str(run), "--policy", str(path), "--junit", str(tmp_path / "j.xml"))
    assert code == 2, (out, err)
    flat = " ".join(err.split())
    assert message in flat and f"{run if 'lacks' in message else path}:" in flat  # names the file
    assert not (tmp_path / "j.xml").exists()


def test_undefined_metric_and_missing_run_exit_2(tmp_path, capsys):
    run = write_run(tmp_path, result_with({"subtype.macro_f1": (0.5, None, None)}))
    policy = write_policy(tmp_path, "checks:\n  - {metric: subtype.macro_f1, bound: lower, min: 0.1}\n")
    code, _, err = cli(capsys, "gate", str(run), "--policy", str(policy))
    assert code == 2 and "has no lower end of CI" in err
    code, _, err = cli(capsys, "gate", str(tmp_path / "nope"), "--policy", str(policy))
    assert code == 2 and "no result.json" in err
    code, _, err = cli(capsys, "gate", str(run), "--policy", str(tmp_path / "missing.yaml"))
    assert code == 2 and "policy file not found" in err


def test_default_policy(tmp_path, capsys):
    policy = load_policy("default")
    assert policy.name == "default" and all(c.reason for c in policy.checks)
    assert {c.metric for c in policy.checks} == set(GOOD_DEFAULT)
    good = write_run(tmp_path, result_with(GOOD_DEFAULT), "good")
    code, out, err = cli(capsys, "gate", str(good), "--policy", "default")
    assert code == 0, (out, err)
    shortcut = write_run(tmp_path, result_with({**GOOD_DEFAULT, "shortcut.no_lung_retention": (0.7, 0.55, 0.85)}),
                         "shortcut")
    code, out, _ = cli(capsys, "gate", str(shortcut), "--policy", "default")
    assert code == 1 and "FAILED: 1 of 7 checks failed" in out
    partial = write_run(tmp_path, result_with({k: v for k, v in GOOD_DEFAULT.items() if k.startswith("subtype.")}),
                        "partial")
    code, _, err = cli(capsys, "gate", str(partial), "--policy", "default")
    assert code == 2 and ("calibration.ece, cross_site.worst_site_balanced_accuracy, shortcut.no_lung_retention"
                          in " ".join(err.split()))


def test_gate_on_a_real_run(tmp_path, capsys):
    """End to end: `cxrbench run --predictions` then the gate on its result.json."""
    import numpy as np
    import pandas as pd

    from benchmark.core.labels import CLASSES, PROB_COLUMNS

    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, size=80)
    probs = np.full((80, 4), 0.1)
    probs[np.arange(80), y] = 0.7
    preds = pd.DataFrame({"image_id": [f"i{i}" for i in range(80)], "label": [CLASSES[k] for k in y]})
    preds[list(PROB_COLUMNS)] = probs
    preds.to_csv(tmp_path / "perfect.csv", index=False)
    code, _, err = cli(capsys, "run", "--predictions", str(tmp_path / "perfect.csv"), "--out", str(tmp_path / "runs"),
                       "--bootstrap", "50")
    assert code == 0, err
    run = next((tmp_path / "runs").iterdir())
    policy = write_policy(tmp_path, "checks:\n  - {metric: subtype.accuracy, bound: lower, min: 0.99}\n"
                                    "  - {metric: subtype.macro_auroc, bound: value, min: 0.99}\n")
    code, out, err = cli(capsys, "gate", str(run), "--policy", str(policy))
    assert code == 0 and "PASSED: 2 of 2 checks" in out, (out, err)
