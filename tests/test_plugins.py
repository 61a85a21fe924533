"""Plugins through the command line: a distribution with real entry points (tests/plugin_example), the
worked examples of docs/plugins.md run as written, `--plugin` / CXRBENCH_PLUGINS, and their errors."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = Path(__file__).resolve().parent / "plugin_example"
DOC = ROOT / "docs" / "plugins.md"


def _install_metadata(site: Path) -> None:
    """acme-cxr's .dist-info, as pip would write it: importlib.metadata reads it like any installed one."""
    sys.path.insert(0, str(EXAMPLE))
    try:
        from acme_cxr import DISTRIBUTION, ENTRY_POINTS
    finally:
        sys.path.remove(str(EXAMPLE))
        sys.modules.pop("acme_cxr", None)
    info = site / "acme_cxr-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {DISTRIBUTION}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in names.items()) + "\n"
        for group, names in ENTRY_POINTS.items()))


def _cxrbench(*args: str, env_extra: dict[str, str] | None = None, cwd: Path | None = None):
    env = {**os.environ, "COLUMNS": "250", "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    env.pop("CXRBENCH_PLUGINS", None) if "CXRBENCH_PLUGINS" not in (env_extra or {}) else None
    return subprocess.run([sys.executable, "-c", "from benchmark.cli import main; main()", *args],
                          capture_output=True, text=True, env=env, cwd=cwd or ROOT, timeout=300)


def _rows(stdout: str) -> dict[str, tuple[str, str]]:
    """name -> (origin, description start) from a `cxrbench list` table."""
    out = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃]", line)[1:-1]]
        if len(cells) == 3 and cells[0] and cells[0] != "name":
            out[cells[0]] = (cells[1], cells[2])
    return out


@pytest.fixture(scope="module")
def acme_env(tmp_path_factory) -> dict[str, str]:
    site = tmp_path_factory.mktemp("site")
    _install_metadata(site)
    return {"PYTHONPATH": os.pathsep.join([str(site), str(EXAMPLE), str(ROOT)])}


def test_entry_point_distribution_is_listed_as_its_plugin(acme_env):
    for kind, name in (("suites", "acme_confidence"), ("views", "acme_flip"), ("models", "acme_reference"),
                       ("datasets", "acme_tiny")):
        res = _cxrbench("list", kind, env_extra=acme_env)
        assert res.returncode == 0, res.stderr
        rows = _rows(res.stdout)
        assert rows[name][0] == "plugin:acme-cxr", rows
        builtin = {"suites": "subtype", "views": "clean", "models": "reference", "datasets": "synth"}[kind]
        assert rows[builtin][0] == "builtin"


def test_entry_point_plugin_runs_through_the_cli(acme_env, tmp_path):
    res = _cxrbench("run", "--model", "acme_reference", "--data", "acme_tiny", "--suites", "acme_confidence",
                    "--bootstrap", "20", "--out", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache"),
                    env_extra=acme_env)
    assert res.returncode == 0, res.stderr
    (result,) = (tmp_path / "runs").glob("*/result.json")
    body = json.loads(result.read_text())
    metrics = body["suites"]["acme_confidence"]["metrics"]
    assert set(metrics) == {"mean_confidence", "flip_agreement"}
    for m in metrics.values():
        assert 0 <= m["ci"][0] <= m["value"] <= m["ci"][1] <= 1
    preds = __import__("pandas").read_parquet(result.parent / "predictions.parquet")
    assert set(preds["view"]) == {"clean", "acme_flip"}  # the plugin's view was computed


def _doc_blocks() -> tuple[str, list[str]]:
    text = DOC.read_text(encoding="utf-8")
    python = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    shell = re.findall(r"```sh\n(.*?)```", text, flags=re.S)
    return "\n\n".join(python), shell


def test_docs_worked_examples_run_as_written(tmp_path):
    code, shell = _doc_blocks()
    assert code.count("register(") >= 4  # a suite, a view, a model and a dataset
    (tmp_path / "my_plugin.py").write_text(code)
    joined = [re.sub(r"\s+#.*$", "", c) for c in "\n".join(shell).replace("\\\n", " ").splitlines()
              if c.startswith("cxrbench")]
    assert len(joined) == 2, joined
    listed = _cxrbench(*joined[0].split()[1:], cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert _rows(listed.stdout)["confident"][0] == "in-process"
    run = _cxrbench(*joined[1].split()[1:], "--out", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "c"),
                    cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    (result,) = (tmp_path / "runs").glob("*/result.json")
    metrics = json.loads(result.read_text())["suites"]["confident"]["metrics"]
    assert set(metrics) == {"confident_share", "confident_accuracy"}
    # `verify` recomputes the plugin's suite only when it is given the plugin too.
    without = _cxrbench("verify", str(result.parent), cwd=tmp_path)
    assert without.returncode == 2 and "confident" in without.stderr, without.stderr
    verified = _cxrbench("verify", str(result.parent), "--plugin", "my_plugin.py", cwd=tmp_path)
    assert verified.returncode == 0 and verified.stdout.startswith("VERIFIED"), verified.stderr + verified.stdout
    # The view and the dataset of the page, used the way the runner uses them.
    check = ("import numpy as np, torch; from benchmark.core.plugins import load_plugins; load_plugins(['my_plugin.py']);"
             "from benchmark.views.base import parse_view; from benchmark.data.dataset import resolve_dataset;"
             "b = torch.rand(2, 1, 8, 8); v = parse_view('darken@0.5').apply(b, None);"
             "assert v.shape == b.shape and v.dtype == b.dtype and torch.allclose(v, b * 0.5);"
             "print(len(resolve_dataset('tiny_synth').manifest.table))")
    res = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert res.returncode == 0 and int(res.stdout.strip()) > 20, res.stderr


def test_plugin_option_and_environment_variable_load_modules(tmp_path):
    (tmp_path / "plug_a.py").write_text(
        "from benchmark.core.registry import MODELS\nfrom benchmark.core.specs import ModelSpec\n"
        "MODELS.register(ModelSpec('model_a', print, 'from a file'))\n")
    pkg = tmp_path / "pkgdir"
    pkg.mkdir()
    (pkg / "plug_b.py").write_text(
        "from benchmark.core.registry import MODELS\nfrom benchmark.core.specs import ModelSpec\n"
        "MODELS.register(ModelSpec('model_b', print, 'from a module'))\n")
    env = {"PYTHONPATH": os.pathsep.join([str(pkg), str(ROOT)]), "CXRBENCH_PLUGINS": "plug_b"}
    res = _cxrbench("list", "models", "--plugin", str(tmp_path / "plug_a.py"), env_extra=env)
    assert res.returncode == 0, res.stderr
    rows = _rows(res.stdout)
    assert rows["model_a"] == ("in-process", "from a file") and rows["model_b"] == ("in-process", "from a module")
    assert rows["reference"][0] == "builtin"


@pytest.mark.parametrize("source,expected", [
    (None, r"--plugin no_such_plugin_mod: no such module"),
    ("raise RuntimeError('boom')", r"--plugin .*bad\.py: failed while importing: RuntimeError: boom"),
    ("from benchmark.core.suite import register_suite\n"
     "@register_suite('broken', views='clean', description='d')\ndef broken(p, m, c):\n    pass\n",
     r"--plugin .*bad\.py: registration failed: .*suite 'broken': field 'views'"),
])
def test_plugin_errors_are_one_line_naming_the_module(tmp_path, source, expected, capsys, monkeypatch):
    from tests.helpers import cli

    monkeypatch.delenv("CXRBENCH_PLUGINS", raising=False)
    name = "no_such_plugin_mod"
    if source is not None:
        name = str(tmp_path / "bad.py")
        (tmp_path / "bad.py").write_text(source)
    code, _, err = cli(capsys, "run", "--plugin", name, "--suites", "subtype", "--out", str(tmp_path))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and re.search(expected, lines[0]), err
    assert not list(tmp_path.glob("*/result.json"))


def test_in_process_registration_is_listed_as_such(monkeypatch):
    from benchmark.api import list_registry
    from benchmark.core.registry import SUITES
    from benchmark.core.metric_spec import MetricSpec
    from benchmark.core.specs import SuiteSpec

    SUITES.names()
    monkeypatch.setattr(SUITES, "_entries", {**SUITES._entries})
    SUITES.register(SuiteSpec("local_suite", print, views=("clean",), description="registered here",
                              metrics=(MetricSpec("x", True),)))
    rows = {r[0]: r for r in list_registry("suites")}
    assert rows["local_suite"][1] == "in-process" and rows["subtype"][1] == "builtin"
