"""Suite results are reused only when everything that determines them is unchanged."""
from __future__ import annotations

import json

import pytest

from benchmark import api
from benchmark.execution.suite_cache import SuiteCache

pytestmark = pytest.mark.usefixtures("torch_one_thread")

DATA = "synth:n_patients=40,seed=9"


def _run(tmp_path, **kw):
    kw = {"data": DATA, "suites": ("subtype", "calibration"), "bootstrap": 60, "out": tmp_path / "runs",
          "progress": False, **kw}
    req = api.RunRequest(**kw)
    outcome = api.run(req)
    return json.loads((outcome.run_dir / "result.json").read_text())


def test_a_rerun_reuses_suites_and_gives_the_same_result(tmp_path):
    first = _run(tmp_path)
    assert first["provenance"]["cached_suites"] == []
    again = _run(tmp_path)
    assert again["provenance"]["cached_suites"] == ["subtype", "calibration"]
    assert again["suites"] == first["suites"]


@pytest.mark.parametrize("change", [{"bootstrap": 61}, {"seed": 1}, {"ci_method": "bca"},
                                    {"options": (("n_bins", "10"),)}])
def test_any_change_of_configuration_recomputes(tmp_path, change):
    _run(tmp_path)
    assert _run(tmp_path, **change)["provenance"]["cached_suites"] == []


def test_other_predictions_recompute(tmp_path):
    """Same data, same configuration, another model: the predictions differ, so nothing is reused."""
    from tests.helpers import CANONICAL, TinyNet, card, save_model

    _run(tmp_path)
    ckpt = save_model(TinyNet(), tmp_path / "m.pt", card("tiny", CANONICAL, size=64))
    assert _run(tmp_path, model=str(ckpt))["provenance"]["cached_suites"] == []


def test_a_torn_cache_file_is_recomputed(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = _run(tmp_path, cache_dir=cache)
    files = sorted((cache / "suites").glob("*.json"))
    assert len(files) == 2
    for f in files:
        f.write_text("{not json")
    again = _run(tmp_path, cache_dir=cache)
    assert again["provenance"]["cached_suites"] == [] and again["suites"] == first["suites"]
    assert SuiteCache(cache / "suites").get(files[0].stem) is not None  # rewritten


def test_a_changed_suite_source_recomputes(tmp_path, monkeypatch):
    from benchmark.execution import suite_cache as suite_cache

    _run(tmp_path)
    monkeypatch.setattr(suite_cache, "_code_digest", lambda extra: "edited")
    assert _run(tmp_path)["provenance"]["cached_suites"] == []
