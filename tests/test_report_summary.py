"""The verdict at the top of report.html and at the end of the terminal output (benchmark.reporting.verdict):
the default policy check by check as `cxrbench gate` decides it, the shortcut verdict, headlines and
warnings; every string from the result escaped; the shared-plotly variant of the report.

`failing_run` (also used by the browser test) scores planted predictions that fail the default policy:
a model whose outputs do not change when the lungs are removed (and are over-confident), with lung masks
from the prior."""
from __future__ import annotations

import copy
import json
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from benchmark.core.labels import CLASSES, PROB_COLUMNS

XSS = "<img src=x onerror=alert(1)>"


def planted_frame(n_patients: int = 60, strength: float = 2.5, seed: int = 0) -> pd.DataFrame:
    """Clean predictions of a model on 1-2 images per patient at three sites."""
    rng = np.random.default_rng(seed)
    per = rng.integers(1, 3, n_patients)
    patients = np.repeat([f"p{i:03d}" for i in range(n_patients)], per)
    labels = np.repeat(rng.integers(0, 4, n_patients), per)
    sites = np.repeat(rng.choice(["north", "south", "east"], n_patients), per)
    logits = rng.normal(size=(labels.size, 4)) + strength * np.eye(4)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    frame = pd.DataFrame({"image_id": [f"img{i:04d}" for i in range(labels.size)], "view": "clean",
                          "label": [CLASSES[k] for k in labels], "patient_id": patients, "site": sites,
                          "lung_mask_source": "prior"})
    frame[list(PROB_COLUMNS)] = probs
    return frame


def with_views(clean: pd.DataFrame) -> pd.DataFrame:
    """Every shortcut view answers as the clean image did (the model ignores the lungs); robustness
    views blend towards random probabilities with severity."""
    from suites.robustness import VIEWS as ROBUST
    from suites.shortcut import VIEWS as SHORTCUT

    frames = [clean]
    frames += [clean.assign(view=v) for v in SHORTCUT[1:]]
    probs = clean[list(PROB_COLUMNS)].to_numpy()
    rng = np.random.default_rng(1)
    for i, v in enumerate(ROBUST[1:]):
        mix = 0.25 * (1 + i % 3)
        noise = rng.dirichlet(np.ones(4), size=len(probs))
        f = clean.assign(view=v)
        f[list(PROB_COLUMNS)] = (1 - mix) * probs + mix * noise
        frames.append(f)
    return pd.concat(frames, ignore_index=True)


def failing_run(tmp: Path, *, shared_plotly: bool = False):
    """api.run on planted predictions with the default policy's suites plus robustness."""
    from benchmark import api

    path = tmp / "marker-reader.parquet"
    with_views(planted_frame()).to_parquet(path, index=False)
    req = api.RunRequest(predictions=path, out=tmp / "runs", bootstrap=200, progress=False, shared_plotly=shared_plotly,
                         suites=("subtype", "calibration", "cross_site", "shortcut", "robustness"))
    return api.run(req)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return failing_run(tmp_path_factory.mktemp("report"))


def panel_of(html: str) -> str:
    start = html.index("<body>") + len("<body>")
    return html[start:html.index("</header>", start)]


def test_panel_is_first_and_names_the_checks_the_gate_fails(run):
    from benchmark import api

    gate = api.gate(run.run_dir, "default")
    failed = {r.check.metric for r in gate.failed}
    assert "shortcut.no_lung_retention" in failed and len(failed) < len(gate.results)
    html = (run.run_dir / "report.html").read_text()
    assert html[html.index("<body>"):].startswith("<body><header id=verdict class='verdict fail'>")
    panel = panel_of(html)
    row = "<tr class='check fail'><td><span class='mark fail'>FAIL</span></td><td title='{}'><code>{}</code>"
    reasons = {r.check.metric: r.check.reason for r in gate.results}
    shown = {m for m in failed if row.format(escape(reasons[m], quote=True), m) in panel}
    assert shown == failed
    assert panel.count("class='check fail'") == len(failed)
    assert panel.count("class='check pass'") == len(gate.results) - len(failed)
    assert f"FAIL: {len(failed)} of {len(gate.results)} checks fail" in panel
    assert "outside_lungs" in panel  # the shortcut verdict
    assert "geometric lung prior" in panel  # no lung masks: the warning
    assert "Worst site, balanced accuracy (" in panel and "Calibration error (ECE):" in panel
    # The tables follow, collapsed: each suite in a closed <details>.
    assert html.count("<details id='suite-") == 5 and "<details open" not in html


def test_terminal_output_ends_with_the_same_verdict(run):
    from benchmark import api
    from benchmark.reporting.summary import print_summary

    console = Console(record=True, width=200)
    print_summary(console, run)
    lines = console.export_text().rstrip().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("verdict: "))
    tail = lines[start:]
    assert len(tail) <= 16 and lines[start - 1].startswith("wrote ")
    failed = [r.check.metric for r in api.gate(run.run_dir, "default").failed]
    assert tail[0].startswith(f"verdict: FAIL: {len(failed)} of 7 checks fail")
    assert [line.split()[1].rstrip(":") for line in tail if line.startswith("  FAIL ")] == failed
    assert any(line.startswith("  shortcut: outside_lungs") for line in tail)
    assert any("warning: No lung masks" in line for line in tail)


def _render(result, predictions=None) -> str:
    from benchmark.reporting.report import render_report

    return panel_of(render_report(result, predictions, plotly_src="plotly.min.js"))


def test_strings_from_the_result_are_escaped(run):
    result = copy.deepcopy(run.result)
    result["model"]["name"] = XSS
    result["suites"]["shortcut"]["tables"]["verdict"][0] = {"verdict": XSS, "explanation": XSS}
    result["suites"]["cross_site"]["tables"]["per_group"][0]["site"] = XSS
    html = _render(result)
    assert "<img" not in html and html.count("&lt;img src=x onerror=alert(1)&gt;") >= 2


def test_warnings_few_patients_stale_code_constant_outputs(run):
    result = copy.deepcopy(run.result)
    result["provenance"]["metric_code_version"] = "1"
    result["provenance"]["bootstrap"].update(ci_reliable=False, units=12, min_units=30)
    panel = _render(result)
    assert "Stale metric code: computed with metric code version 1" in panel
    assert "Few patients: the confidence intervals rest on 12 patients, fewer than 30" in panel
    # With too few units every check on a CI bound cannot be decided, as `cxrbench gate` says.
    assert panel.count("class='check unusable'") == 7 and "UNDECIDED: 7 cannot be decided" in panel
    del result["provenance"]["bootstrap"]["ci_reliable"]
    result["dataset"]["counts"]["patients"] = 12  # older results: the patient count decides
    assert "Few patients: 12 (fewer than 30)" in _render(result)
    preds = pd.read_parquet(run.run_dir / "predictions.parquet")
    assert "Constant" not in _render(run.result, preds)
    preds[list(PROB_COLUMNS)] = [0.4, 0.3, 0.2, 0.1]
    assert "Constant outputs: the model gives every image the same probabilities." in _render(run.result, preds)


def test_report_size_inline_and_with_one_shared_plotly(run, tmp_path):
    inline = run.run_dir / "report.html"
    html = inline.read_text()
    assert "<script src" not in html and "Plotly.newPlot" in html  # opens offline on its own
    shared = failing_run(tmp_path, shared_plotly=True)
    small = (shared.run_dir / "report.html").read_text()
    assert "<script src='../plotly.min.js'></script>" in small
    assert (shared.run_dir.parent / "plotly.min.js").stat().st_size > 3_000_000
    assert len(small.encode()) < len(html.encode()) / 5
    assert json.loads((shared.run_dir / "result.json").read_text())["provenance"]["request"]["shared_plotly"] is True
