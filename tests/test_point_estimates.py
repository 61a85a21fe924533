"""`--bootstrap 0`: point estimates only, `ci: null`, said so; gates on a CI bound unusable."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from benchmark.core.errors import CxrbenchError
from benchmark.core.labels import CLASSES, PROB_COLUMNS
from benchmark.stats import BootstrapConfig, bootstrap
from tests.helpers import cli


def test_zero_resamples_gives_the_point_estimate_and_no_interval():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 50)

    def fn(y, probs, w):
        return {"mean": (w * probs[:, 0]).sum(axis=1) / w.sum(axis=1)}

    probs = rng.random((50, 2))
    none = bootstrap(fn, y, probs, config=BootstrapConfig(n_resamples=0))
    some = bootstrap(fn, y, probs, config=BootstrapConfig(n_resamples=50))
    assert none.estimates["mean"].value == some.estimates["mean"].value
    assert none.estimates["mean"].to_json() == {"value": some.estimates["mean"].value, "ci": None}
    assert not none.estimates["mean"].has_ci and np.isnan(none.estimates["mean"].ci).all()
    with pytest.raises(CxrbenchError, match="0 .point estimates only. or an integer >= 2"):
        BootstrapConfig(n_resamples=1)


@pytest.fixture(scope="module")
def point_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("point")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, size=80)
    probs = np.full((80, 4), 0.1)
    probs[np.arange(80), y] = 0.7
    preds = pd.DataFrame({"image_id": [f"i{i}" for i in range(80)], "label": [CLASSES[k] for k in y],
                          "site": ["a", "b"] * 40})
    preds[list(PROB_COLUMNS)] = probs
    preds.to_csv(tmp / "model.csv", index=False)
    return tmp


def test_a_run_with_bootstrap_zero_says_so_everywhere(point_run, capsys, monkeypatch):
    monkeypatch.setenv("CXRBENCH_CACHE", str(point_run / "cache"))
    code, out, err = cli(capsys, "run", "--predictions", str(point_run / "model.csv"), "--out",
                         str(point_run / "runs"), "--bootstrap", "0", "--suites", "subtype,calibration")
    assert code == 0, err
    assert "point estimates only" in out and "95% CI" not in out
    run = next((point_run / "runs").iterdir())
    result = json.loads((run / "result.json").read_text())
    metrics = [m for s in result["suites"].values() for m in s["metrics"].values()]
    assert metrics and all(m["ci"] is None for m in metrics)
    assert all(m["value"] is not None for m in metrics[:5])
    html = (run / "report.html").read_text()
    assert "point estimates only" in html and "<span class=ci>no CI</span>" in html

    code, out, err = cli(capsys, "gate", str(run), "--policy", "default")
    assert code == 2 and "computed no CIs (--bootstrap 0" in err and len(err.strip().splitlines()) == 1
    policy = point_run / "value.yaml"
    policy.write_text("name: value-only\nchecks:\n  - metric: subtype.accuracy\n    min: 0.5\n")
    code, out, err = cli(capsys, "gate", str(run), "--policy", str(policy))
    assert code == 0, err + out

    code, out, err = cli(capsys, "verify", str(run))
    assert code == 0 and "VERIFIED" in out, out + err
    code, out, err = cli(capsys, "compare", str(run), str(run), "--bootstrap", "0")
    assert code == 2 and "--bootstrap" in err and "needs resamples" in err
