"""Metric specs (issue 15, item 1): every metric a built-in suite emits matches exactly one spec its
module declares, result.json v2 carries structured groups and the specs, a v1 file still reads, the
shipped JSON Schema accepts every suite's output, and ranges come from the specs alone."""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

import jsonschema
import numpy as np
import pandas as pd
import pytest

from benchmark.core.labels import CLASSES, PROB_COLUMNS
from benchmark.core.metric_spec import MetricSpec, column_tag, find_spec, matching
from benchmark.core.suite import SuiteConfig
from benchmark.reporting.result_rules import metric_range
from benchmark.reporting.results import SCHEMA, read_result, validate_result, write_result
from benchmark.stats import BootstrapConfig
from suites import calibration, cross_site, robustness, shortcut, subtype

MODULES = {"subtype": subtype, "calibration": calibration, "cross_site": cross_site, "shortcut": shortcut,
           "robustness": robustness}


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@lru_cache(maxsize=None)
def predictions(group_by: str = "site") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Small data with every view of every suite: 90 patients, 2 images each (study = patient), 3 sites."""
    rng = np.random.default_rng(0)
    n_pat = 90
    pid = np.repeat(np.arange(n_pat), 2)
    y = rng.integers(0, 4, n_pat)[pid]
    base = pd.DataFrame({"image_id": [f"i{k}" for k in range(len(pid))], "label": np.array(CLASSES)[y],
                         "patient_id": [f"p{p}" for p in pid], "site": [f"s{p % 3}" for p in pid],
                         "scanner": [f"Scanner {p % 2}" for p in pid]})
    views = sorted(set(shortcut.VIEWS) | set(robustness.VIEWS))
    frames = []
    for v in views:
        z = rng.normal(0, 1, (len(pid), 4))
        z[np.arange(len(pid)), y] += 2.0 if v == "clean" else 1.0
        f = base.assign(view=v)
        f[list(PROB_COLUMNS)] = _softmax(z)
        frames.append(f)
    manifest = base.assign(study_id=[f"st{p}" for p in pid])
    return pd.concat(frames, ignore_index=True), manifest


@lru_cache(maxsize=None)
def suite_json(name: str, group_by: str = "site") -> dict:
    from benchmark.core.jsonsafe import json_safe

    preds, manifest = predictions()
    config = SuiteConfig(bootstrap=BootstrapConfig(n_resamples=20, seed=1), seed=0, group_by=group_by,
                         options={"min_patients": "5"})
    fn = getattr(MODULES[name], name)
    return json_safe(fn(preds, manifest, config).to_json())


def result_of(names: tuple[str, ...], group_by: str = "site") -> dict:
    return {"schema": SCHEMA, "model": {"name": "m", "sha256": "0" * 64},
            "dataset": {"name": "d", "manifest_sha256": "1" * 64, "counts": {"images": 180, "patients": 90}},
            "suites": {n: suite_json(n, group_by) for n in names},
            "provenance": {"seed": 0, "request": {"group_by": group_by},
                           "bootstrap": {"unit": "patient", "units": 90, "min_units": 30, "ci_reliable": True}}}


@pytest.mark.parametrize("name, group_by", [*((n, "site") for n in MODULES), ("cross_site", "scanner")])
def test_every_emitted_metric_matches_exactly_one_declared_spec(name, group_by):
    body = suite_json(name, group_by)
    specs: tuple[MetricSpec, ...] = MODULES[name].METRICS
    tag = column_tag(group_by)
    plain = [s for s in specs if not s.grouped]
    grouped = [s for s in specs if s.grouped]
    assert body["metrics"], name
    for metric in body["metrics"]:
        assert "[" not in metric, metric  # groups are structured, not packed into names
        found = matching(tuple(plain), metric, tag)
        assert len(found) == 1, (metric, [s.name for s in found])
    for entry in body["grouped"]:
        assert entry["group"]["column"] == group_by
        found = matching(tuple(grouped), entry["metric"], tag)
        assert len(found) == 1, (entry["metric"], [s.name for s in found])
    if name == "cross_site":
        assert {e["group"]["value"] for e in body["grouped"]} == {"s0", "s1", "s2"} or group_by != "site"
        assert f"worst_{tag}_ece" in body["metrics"] and f"{tag}_gap_macro_f1" in body["metrics"]


def test_directions_are_the_ones_the_issue_names():
    lower = ["calibration.ece", "calibration.ece_ts", "calibration.brier", "calibration.brier_ts", "calibration.nll",
             "calibration.nll_ts", "calibration.mce", "cross_site.worst_site_ece", "robustness.noise_s2_flip_rate",
             "robustness.jpeg_s3_kl", "robustness.robust_macro_f1_drop", "cross_site.site_auroc_excess",
             "cross_site.site_gap_balanced_accuracy", "cross_site.site_gap_ece", "shortcut.no_lung_retention",
             "shortcut.corners_flip_rate", "shortcut.border_kl", "cross_site.temperature_transfer_worst_ece"]
    higher = ["subtype.map", "subtype.study_macro_f1", "subtype.pneumonia_auroc", "subtype.f1_typical",
              "cross_site.worst_site_balanced_accuracy", "shortcut.only_lung_retention",
              "shortcut.no_lung_flip_rate", "robustness.robust_macro_f1", "cross_site.op_transfer_worst_sensitivity"]
    neither = ["calibration.temperature", "cross_site.site_auroc_label_only", "shortcut.lesion_retention"]
    for addresses, want in ((lower, False), (higher, True), (neither, None)):
        for address in addresses:
            spec = find_spec(*address.split(".", 1))
            assert spec is not None and spec.higher_is_better is want, address


def test_result_v2_records_groups_and_specs_and_validates_against_the_json_schema(tmp_path):
    result = result_of(tuple(MODULES))
    write_result(tmp_path, result)
    data = json.loads((tmp_path / "result.json").read_text())
    assert data["schema"] == "cxrbench.result/2" and validate_result(data) == []
    schema = json.loads(resources.files("benchmark").joinpath("schemas/result.schema.json").read_text())
    jsonschema.validate(data, schema)
    cs = data["suites"]["cross_site"]
    entry = next(g for g in cs["grouped"] if g["metric"] == "balanced_accuracy" and g["group"]["value"] == "s1")
    assert entry["group"] == {"column": "site", "value": "s1"} and len(entry["ci"]) == 2
    assert cs["specs"]["balanced_accuracy"]["grouped"] is True
    assert data["suites"]["calibration"]["specs"]["ece_ts"]["higher_is_better"] is False
    for suite, body in data["suites"].items():  # every metric's spec travels with the file
        names = set(body["metrics"]) | {g["metric"] for g in body["grouped"]}
        assert names == set(body["specs"]), suite
    broken = json.loads(json.dumps(data))
    broken["suites"]["cross_site"]["grouped"][0]["group"] = "s1"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)
    assert "group must be" in validate_result(broken)[0]


def test_a_v1_file_with_bracket_names_reads_as_v2(tmp_path):
    body = suite_json("cross_site")
    v1 = result_of(("cross_site",))
    v1["schema"] = "cxrbench.result/1"
    metrics = dict(body["metrics"])
    for g in body["grouped"]:
        metrics[f"{g['metric']}[{g['group']['value']}]"] = {"value": g["value"], "ci": g["ci"]}
    v1["suites"]["cross_site"] = {"metrics": metrics, "tables": body["tables"], "figures": {}, "notes": []}
    (tmp_path / "result.json").write_text(json.dumps(v1))
    data = read_result(tmp_path)
    assert data["schema"] == SCHEMA
    cs = data["suites"]["cross_site"]
    assert not any("[" in k for k in cs["metrics"])
    assert sorted(map(json.dumps, cs["grouped"])) == sorted(map(json.dumps, body["grouped"]))
    assert cs["specs"]["worst_site_ece"]["higher_is_better"] is False


def test_known_ranges_come_from_the_specs():
    for suite, name in (("subtype", "accuracy"), ("subtype", "study_macro_f1"), ("subtype", "auroc_typical"),
                        ("cross_site", "balanced_accuracy"), ("cross_site", "worst_site_ece"),
                        ("cross_site", "op_transfer_worst_sensitivity"), ("calibration", "ece_ts")):
        assert metric_range(suite, name) == (0.0, 1.0), name
    assert metric_range("subtype", "kappa") == metric_range("cross_site", "mcc") == (-1.0, 1.0)
    assert metric_range("calibration", "brier") == (0.0, 2.0)
    assert metric_range("cross_site", "worst_sex_ece", column="sex") == (0.0, 1.0)
    assert metric_range("cross_site", "site_gap_macro_f1") == (0.0, 1.0)  # best minus worst group
    assert metric_range("cross_site", "site_gap_kappa") == (0.0, 2.0)
    assert metric_range("calibration", "nll") == (0.0, float("inf"))
    for suite, name in (("shortcut", "no_lung_retention"), ("subtype", "new_metric")):
        assert metric_range(suite, name) is None, name  # a ratio, and an undeclared name: only finite
    # A suite this installation does not know is held to the range its file records.
    assert metric_range("plugin_suite", "score", recorded={"higher_is_better": True, "range": [0, 1]}) == (0.0, 1.0)
    assert metric_range("plugin_suite", "score", recorded={"range": "huge"}) is None
