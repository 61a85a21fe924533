"""Direction read from metric specs (issue 15, "Must show"): the leaderboard ranks the best model first
for every lower-is-better metric it can rank by, and a policy can gate a per-site metric."""
from __future__ import annotations

import json
import re

import pytest

from benchmark.core.metric_spec import MetricSpec, all_specs
from tests.helpers import cli


def _example(spec: MetricSpec) -> str:
    """One concrete member of a spec's family (first choice of each placeholder, `site` for the column)."""
    choices = {"class": "negative", "task": "pneumonia", "column": "site", **{k: v[0] for k, v in spec.choices}}
    return re.sub(r"\{([a-z_]+)\}", lambda m: choices[m.group(1)], spec.name)


def rankable(higher: bool | None) -> list[str]:
    """Addresses of every declared metric the leaderboard can rank by (not per-group) with this direction."""
    return sorted(f"{suite}.{_example(s)}" for suite, specs in all_specs().items() for s in specs
                  if not s.grouped and s.higher_is_better is higher)


LOWER = rankable(False)


def _result(model: str, suites: dict) -> dict:
    return {"schema": "cxrbench.result/2", "model": {"name": model, "sha256": "0" * 64},
            "dataset": {"name": "d", "manifest_sha256": "1" * 64, "counts": {"images": 100}},
            "suites": suites, "provenance": {"seed": 0, "metric_code_version": "9999"}}


def _runs(tmp_path, address: str, values: dict[str, float]) -> list[str]:
    suite, name = address.split(".", 1)
    dirs = []
    for model, v in values.items():
        run = tmp_path / model
        run.mkdir()
        body = {"metrics": {name: {"value": v, "ci": [v - 0.05, v + 0.05]}}, "grouped": [], "tables": {},
                "figures": {}, "notes": []}
        (run / "result.json").write_text(json.dumps(_result(model, {suite: body})))
        dirs.append(str(run))
    return dirs


def _order(capsys, tmp_path, address: str, values: dict[str, float]) -> list[str]:
    runs = _runs(tmp_path, address, values)
    site = tmp_path / "site"
    code, _, err = cli(capsys, "leaderboard", "build", *runs, "-o", str(site), "--rank-by", address, "--no-verify")
    assert code == 0, err
    data = json.loads((site / "leaderboard.json").read_text())
    return [e["model"] for e in data["datasets"][0]["entries"]]


def test_rank_by_ece_ts_puts_the_best_calibrated_model_first(tmp_path, capsys):
    order = _order(capsys, tmp_path, "calibration.ece_ts", {"worst": 0.30, "best": 0.10, "middle": 0.20})
    assert order == ["best", "middle", "worst"]


def test_every_lower_is_better_metric_ranks_its_smallest_value_first(tmp_path, monkeypatch):
    """All of them in one pass of the ranking the site is built from (a whole site per metric would be slow)."""
    from leaderboard.build import _rank_value, rank_direction
    from leaderboard.entries import load_entries

    assert {"calibration.ece_ts", "calibration.brier_ts", "calibration.nll_ts", "cross_site.worst_site_ece",
            "robustness.robust_macro_f1_drop", "cross_site.site_auroc_excess", "shortcut.no_lung_retention",
            "robustness.gamma_s1_flip_rate", "robustness.gamma_s1_kl", "cross_site.site_gap_balanced_accuracy"} \
        <= set(LOWER)
    for i, address in enumerate(LOWER):
        folder = tmp_path / str(i)
        folder.mkdir()
        entries, skipped = load_entries(_runs(folder, address, {"worst": 0.30, "best": 0.10, "middle": 0.20}))
        assert not skipped, skipped
        assert rank_direction(entries, address) is False, address
        ranked = sorted(entries, key=lambda e: -_rank_value(e, address, False))
        assert [e.model for e in ranked] == ["best", "middle", "worst"], address


@pytest.mark.parametrize("address", ["calibration.ece", "shortcut.no_lung_retention", "cross_site.site_gap_ece"])
def test_lower_is_better_through_the_cli(tmp_path, capsys, address):
    assert _order(capsys, tmp_path, address, {"b": 0.2, "a": 0.1, "c": 0.3}) == ["a", "b", "c"]


def test_higher_is_better_still_ranks_the_largest_first_and_neither_is_refused(tmp_path, capsys):
    assert "shortcut.no_lung_flip_rate" in rankable(True)  # a model that needs the lungs changes its answer
    assert _order(capsys, tmp_path, "subtype.map", {"b": 0.5, "a": 0.7, "c": 0.3}) == ["a", "b", "c"]
    (tmp_path / "t").mkdir()
    runs = _runs(tmp_path / "t", "calibration.temperature", {"x": 1.2, "y": 0.9})
    code, _, err = cli(capsys, "leaderboard", "build", *runs, "-o", str(tmp_path / "s2"), "--rank-by",
                       "calibration.temperature", "--no-verify")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "no better direction" in err


# --- the gate on a per-group metric -----------------------------------------------------------------

def _grouped_run(tmp_path) -> str:
    groups = {"site_a": (0.62, 0.55, 0.69), "site_b": (0.41, 0.33, 0.49), "site_c": (0.55, 0.47, 0.63)}
    body = {"metrics": {"worst_site_balanced_accuracy": {"value": 0.41, "ci": [0.33, 0.49]}},
            "grouped": [{"metric": "balanced_accuracy", "group": {"column": "site", "value": g},
                         "value": v, "ci": [lo, hi]} for g, (v, lo, hi) in groups.items()]
            + [{"metric": "ece", "group": {"column": "site", "value": g}, "value": v, "ci": [v - 0.02, v + 0.02]}
               for g, v in (("site_a", 0.05), ("site_b", 0.04), ("site_c", 0.12))],
            "tables": {}, "figures": {}, "notes": []}
    run = tmp_path / "run"
    run.mkdir()
    result = _result("m", {"cross_site": body})
    result["dataset"]["counts"]["patients"] = 100
    result["provenance"]["bootstrap"] = {"unit": "patient", "units": 100, "min_units": 30, "ci_reliable": True}
    (run / "result.json").write_text(json.dumps(result))
    return str(run)


@pytest.mark.parametrize("metric, group, bound, limit, code, shown", [
    ("balanced_accuracy", "site_a", "lower", "min: 0.5", 0, "site_a"),
    ("balanced_accuracy", "site_b", "lower", "min: 0.5", 1, "site_b"),
    ("balanced_accuracy", "site_b", "value", "min: 0.4", 0, "site_b"),
    ("balanced_accuracy", "worst", "lower", "min: 0.3", 0, "site_b"),
    ("balanced_accuracy", "worst", "lower", "min: 0.4", 1, "site_b"),   # site_b's lower end is 0.33
    # Higher is better: the worst upper end is the lowest (site_b's 0.49), not site_a's 0.69.
    ("balanced_accuracy", "worst", "upper", "max: 0.65", 0, "site_b"),
    # ECE: lower is better, so the worst group is the one with the highest ECE (site_c).
    ("ece", "worst", "value", "max: 0.10", 1, "site_c"),
    ("ece", "worst", "value", "max: 0.15", 0, "site_c"),
])
def test_a_policy_gates_a_per_site_metric(tmp_path, capsys, metric, group, bound, limit, code, shown):
    run = _grouped_run(tmp_path)
    policy = tmp_path / "p.yaml"
    policy.write_text(f"checks:\n  - metric: cross_site.{metric}\n    group: {group}\n    bound: {bound}\n"
                      f"    {limit}\n")
    summary = tmp_path / "gate.md"
    got, out, err = cli(capsys, "gate", run, "--policy", str(policy), "--summary", str(summary))
    assert got == code, (out, err)
    text = summary.read_text().replace("\\_", "_")  # Markdown escapes the underscores
    assert f"cross_site.{metric} for" in text and f"{shown}" in text, text


@pytest.mark.parametrize("check, needle", [
    ("group: site_z\n    min: 0.5", "the run has no site group 'site_z' for cross_site.balanced_accuracy "
                                    "(groups: site_a, site_b, site_c, or worst)"),
    ("min: 0.5", "cross_site.balanced_accuracy is measured per group; add `group:`"),
])
def test_an_unknown_or_missing_group_is_unusable_in_one_line(tmp_path, capsys, check, needle):
    run = _grouped_run(tmp_path)
    policy = tmp_path / "p.yaml"
    policy.write_text(f"checks:\n  - metric: cross_site.balanced_accuracy\n    {check}\n")
    code, out, err = cli(capsys, "gate", run, "--policy", str(policy))
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert needle in err, err
