"""`run` returns one type, `run_shard` the other; the steps between them pass typed values."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmark import api
from benchmark.core.errors import CxrbenchError
from benchmark.core.labels import CLASSES, PROB_COLUMNS
from benchmark.execution.evaluate import Predicted, RunPlan, from_predictions, plan_run


def _csv(tmp_path):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, size=40)
    probs = rng.dirichlet(np.ones(4), size=40)
    frame = pd.DataFrame({"image_id": [f"i{i}" for i in range(40)], "label": [CLASSES[k] for k in y]})
    frame[list(PROB_COLUMNS)] = probs
    frame.to_csv(tmp_path / "m.csv", index=False)
    return tmp_path / "m.csv"


def test_run_and_run_shard_each_return_their_own_type(tmp_path):
    path = _csv(tmp_path)
    req = api.RunRequest(predictions=path, out=tmp_path / "runs", suites=("subtype",), bootstrap=0, progress=False)
    outcome = api.run(req)
    assert isinstance(outcome, api.RunOutcome) and (outcome.run_dir / "result.json").is_file()
    with pytest.raises(CxrbenchError, match="run_shard"):
        api.run(api.RunRequest(data="synth:n_patients=4", shard="1/2", out=tmp_path / "r", progress=False))
    with pytest.raises(CxrbenchError, match="needs a shard"):
        api.run_shard(req)


def test_a_predictions_file_becomes_a_typed_value(tmp_path):
    req = api.RunRequest(predictions=_csv(tmp_path), out=tmp_path / "runs", suites=("subtype", "calibration"),
                         bootstrap=0, progress=False)
    plan = plan_run(req)
    assert isinstance(plan, RunPlan) and plan.views == ["clean"] and plan.bootstrap.point_only
    got = from_predictions(req, plan)
    assert isinstance(got, Predicted)
    assert got.device == "none" and got.forward_images == 0 and got.cached_views == ["clean"]
    assert got.dataset_info["counts"]["images"] == 40 and len(got.manifest) == 40 and got.embeddings is None
