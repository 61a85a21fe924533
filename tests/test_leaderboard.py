"""The static leaderboard: tie groups, stale entries, skipped result files, escaping, offline assets,
generic suite rendering. `three_runs` is shared with the browser test."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.core.errors import CxrbenchError
from benchmark.core.labels import CLASSES, PROB_COLUMNS
from tests.helpers import CANONICAL, TinyNet, card, cli, save_model

XSS = "<img src=x onerror=alert(1)>"
CARD_XSS = "</script><script>alert(2)</script>"


def planted_predictions(table: pd.DataFrame, strength: float, seed: int) -> pd.DataFrame:
    """Probabilities that favour the true class by `strength` (0 = noise only)."""
    rng = np.random.default_rng(seed)
    y = table["label"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy()
    logits = rng.normal(size=(len(table), len(CLASSES))) + strength * np.eye(len(CLASSES))[y]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    out = pd.DataFrame({"image_id": table["image_id"], "view": "clean", "label": table["label"],
                        "patient_id": table["patient_id"], "site": table["site"]})
    out[list(PROB_COLUMNS)] = probs
    return out


def predictions_run(tmp: Path, name: str, table: pd.DataFrame, strength: float, seed: int, data: Path | None,
                    out: Path) -> Path:
    from benchmark import api

    path = tmp / f"{name}.csv"
    planted_predictions(table, strength, seed).to_csv(path, index=False)
    req = api.RunRequest(predictions=path, data=str(data) if data else None, out=out, bootstrap=100, progress=False)
    return api.run(req).run_dir


def three_runs(tmp: Path) -> dict[str, Path]:
    """alpha (informative) and beta (noise) from planted predictions, and a TinyNet whose card name is an
    HTML payload, all three on the same synth images."""
    from benchmark import api
    from benchmark.data.dataset import resolve_dataset

    data = tmp / "synth"
    api.synth(data, n_patients=30, image_size=64, seed=3)
    table = resolve_dataset(str(data)).table
    out = tmp / "runs"
    runs = {"alpha": predictions_run(tmp, "alpha", table, 1.5, 0, data, out),
            "beta": predictions_run(tmp, "beta", table, 0.0, 1, data, out)}
    ckpt = save_model(TinyNet(seed=2), tmp / "xss.pt", card(XSS, CANONICAL, description=CARD_XSS))
    runs["xss"] = api.run(api.RunRequest(model=str(ckpt), data=str(data), out=out, bootstrap=100,
                                         progress=False)).run_dir
    return runs


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Three runs on one dataset, one on another, a stale copy, a run with extra suites, two bad files."""
    from benchmark import api

    tmp = tmp_path_factory.mktemp("lb")
    runs = three_runs(tmp)
    other = pd.DataFrame({"image_id": [f"o{i}" for i in range(24)], "label": [CLASSES[i % 4] for i in range(24)],
                          "patient_id": [f"q{i}" for i in range(24)], "site": ["x"] * 24})
    runs["gamma"] = predictions_run(tmp, "gamma", other, 2.0, 5, None, tmp / "runs2")
    stale = tmp / "stale_run"
    shutil.copytree(runs["alpha"], stale)
    res = json.loads((stale / "result.json").read_text())
    res["model"]["name"] = "alpha-old"
    res["provenance"]["metric_code_version"] = "0"
    (stale / "result.json").write_text(json.dumps(res))
    extra = tmp / "extra_run"
    shutil.copytree(runs["beta"], extra)
    res = json.loads((extra / "result.json").read_text())
    res["model"]["name"] = "beta-extra"
    res["suites"]["robustness"] = {
        "metrics": {"auc_drop": {"value": 0.1, "ci": [0.05, 0.2]}},
        "tables": {"curve": [{"view": "noise@0.1", "balanced_accuracy": {"value": 0.4, "ci": [0.3, 0.5]}}]},
        "figures": {"degradation": {"data": [{"type": "scatter", "x": [0, 1], "y": [0.5, 0.4]}],
                                    "layout": {"title": {"text": "robustness-curve-title"}}}},
        "notes": ["<b>note from a suite</b>"]}
    (extra / "result.json").write_text(json.dumps(res))
    bad = tmp / "bad_run"
    bad.mkdir()
    (bad / "result.json").write_text(json.dumps({"schema": "cxrbench.result/1", "model": {"name": "m"}}))
    broken = tmp / "broken_run"
    broken.mkdir()
    (broken / "result.json").write_text("{not json")
    outcome = api.leaderboard([*runs.values(), stale, extra, bad, broken], tmp / "site", bootstrap=1000)
    return outcome, runs, json.loads((tmp / "site" / "leaderboard.json").read_text())


def entries_of(data: dict) -> dict[str, dict]:
    return {e["model"]: e for group in data["datasets"] for e in group["entries"]}


def test_invalid_results_are_skipped_with_file_and_problem(site):
    outcome, _, _ = site
    assert len(outcome.entries) == 6 and len(outcome.skipped) == 2
    bad = next(s for s in outcome.skipped if "bad_run" in s)
    assert "result.json" in bad and "missing top-level key 'dataset'" in bad
    assert any("broken_run" in s and "not valid JSON" in s for s in outcome.skipped)
    index = (outcome.site_dir / "index.html").read_text()
    assert "Skipped result files" in index and "missing top-level key" in index


def test_entries_grouped_by_images_with_tie_group_from_paired_tests(site):
    _, _, data = site
    assert len(data["datasets"]) == 2
    e = entries_of(data)
    assert e["alpha"]["status"] == "leader"
    assert e["alpha-old"]["status"] == "tied"      # identical predictions: p = 1
    assert e["alpha-old"]["p_adjusted"] == pytest.approx(1.0)
    assert e["beta"]["status"] == "behind"         # planted signal 1.5 vs none on 48 images
    assert e["beta"]["p_adjusted"] < 0.05
    assert e["gamma"]["status"] == "not tested"    # alone on its images
    assert e["alpha"]["compare"][e["beta"]["slug"]].startswith("compare/")


def test_stale_entries_are_marked(site):
    outcome, _, data = site
    e = entries_of(data)
    assert e["alpha-old"]["stale"] and not e["alpha"]["stale"]
    index = (outcome.site_dir / "index.html").read_text()
    row = re.search(rf"<tr data-slug='{re.escape(e['alpha-old']['slug'])}'[^>]*>.*?</tr>", index, re.DOTALL).group(0)
    assert "is-stale" in row and "badge stale" in row
    assert "badge stale" not in re.search(rf"<tr data-slug='{re.escape(e['alpha']['slug'])}'[^>]*>.*?</tr>",
                                          index, re.DOTALL).group(0)


def test_submitted_strings_are_escaped_everywhere(site):
    outcome, _, _ = site
    for page in outcome.pages:
        html = page.read_text()
        assert XSS not in html, page
        assert "<script>alert(2)" not in html, page
        assert "<b>note from a suite</b>" not in html, page
    entry = next(p for p in outcome.pages if p.parent.name == "entries" and "img-src" in p.name)
    html = entry.read_text()
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&lt;/script&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in html  # the card, shown as text


def test_site_is_offline(site):
    outcome, _, _ = site
    assets = outcome.site_dir / "assets"
    assert (assets / "plotly.min.js").stat().st_size > 1_000_000
    for page in outcome.pages:
        html = page.read_text()
        srcs = re.findall(r"(?:src|href)=['\"]([^'\"]+)['\"]", html)
        assert srcs and not [s for s in srcs if re.match(r"[a-z]+:", s) or s.startswith("//")], (page, srcs)
        for s in srcs:  # every local reference resolves
            assert (page.parent / s.split("#")[0]).exists() or s.startswith("#"), (page, s)


def test_entry_page_sections(site):
    outcome, _, data = site
    e = entries_of(data)
    alpha = (outcome.site_dir / e["alpha"]["page"]).read_text()
    figs = json.loads(re.search(r"id='cxr-figures'>(.*?)</script>", alpha, re.DOTALL).group(1))
    titles = [f["layout"].get("title", {}).get("text", "") for f in figs]
    assert any("Confusion matrix" in t for t in titles)
    assert any(t.startswith("Reliability diagram") for t in titles)  # the suite's, or drawn from predictions
    assert any("per site" in t for t in titles)
    assert "<h4>per_class</h4>" in alpha and "true \\ predicted" in alpha
    assert "The shortcut suite was not run" in alpha and "The robustness suite was not run" in alpha
    for fact in ("weights sha256", "manifest sha256", "cxrbench version", "seed", "started at"):
        assert f"<dt>{fact}</dt>" in alpha
    extra = (outcome.site_dir / e["beta-extra"]["page"]).read_text()
    assert "robustness-curve-title" in extra and "<h4>curve</h4>" in extra and "noise@0.1" in extra
    assert "The robustness suite was not run" not in extra


def test_compare_page_holds_the_paired_table(site):
    outcome, _, data = site
    e = entries_of(data)
    html = (outcome.site_dir / e["alpha"]["compare"][e["beta"]["slug"]]).read_text()
    for col in ("A - B [95% CI]", "p (Holm)", "verdict", "macro_auroc", "DeLong"):
        assert col in html
    assert "A better" in html


def test_lower_is_better_metrics_rank_ascending():
    from leaderboard.build import _rank_value, rank_direction
    from leaderboard.entries import Entry

    def entry(ece):
        return Entry("e", Path("r"), {"suites": {"calibration": {"metrics": {"ece": {"value": ece, "ci": [0, 1]}}}}}, None)

    entries = [entry(0.2), entry(None), entry(0.05)]
    higher = rank_direction(entries, "calibration.ece")  # from the spec: False
    ranked = sorted(entries, key=lambda e: -_rank_value(e, "calibration.ece", higher))
    assert [e.metric("calibration.ece")["value"] for e in ranked] == [0.05, 0.2, None]


def test_build_fails_only_without_valid_entries(tmp_path, capsys):
    bad = tmp_path / "r"
    bad.mkdir()
    (bad / "result.json").write_text("[]")
    from leaderboard import build_site

    with pytest.raises(CxrbenchError, match="no valid result file.*top level is not a JSON object"):
        build_site([bad], tmp_path / "site")
    code, _, err = cli(capsys, "leaderboard", "build", str(bad), "-o", str(tmp_path / "site"))
    assert code == 2 and "no valid result file" in err


def test_cli_build(site, capsys, tmp_path):
    _, runs, _ = site
    # a folder of run folders counts as its runs; a path without a result is skipped and named
    code, out, err = cli(capsys, "leaderboard", "build", str(runs["alpha"].parent), str(tmp_path / "missing"),
                         "--rank-by", "subtype.macro_auroc", "-o", str(tmp_path / "s"), "--bootstrap", "50")
    assert code == 0, err
    assert "3 entries" in " ".join(out.split())  # rich wraps long paths wherever the width falls
    assert f"{tmp_path / 'missing'}: no result.json here" in err
    assert (tmp_path / "s" / "index.html").is_file()


def test_rank_intervals_beside_the_tie_groups(site):
    _, _, data = site
    e = entries_of(data)
    alpha, old, beta = (e[k]["rank_interval"] for k in ("alpha", "alpha-old", "beta"))
    assert alpha == old and alpha["ci"][0] == 1  # identical predictions: the same interval, P(best) shared
    assert beta["ci"][0] > alpha["ci"][1] and beta["p_best"] == 0.0  # far behind: its interval excludes theirs
    assert e["gamma"]["rank_interval"] is None  # alone on its images: nothing to rank against
    index = (site[0].site_dir / "index.html").read_text()
    assert "rank [95% CI]" in index and "P(best)" in index and "bootstrap resamples of patients" in index


def test_stale_entry_is_not_verifiable(site):
    _, _, data = site
    e = entries_of(data)
    assert e["alpha"]["verification"]["status"] == "verified"
    assert e["alpha-old"]["verification"]["status"] == "unverifiable"
    assert "metric code version '0'" in e["alpha-old"]["verification"]["detail"]


def test_a_tampered_entry_is_marked_and_require_verified_drops_it(site, tmp_path, monkeypatch):
    from benchmark import api
    from leaderboard import verification

    _, runs, _ = site
    tampered = tmp_path / "tampered_run"
    shutil.copytree(runs["alpha"], tampered)
    res = json.loads((tampered / "result.json").read_text())
    res["model"]["name"] = "alpha-tampered"
    res["suites"]["subtype"]["metrics"]["map"]["value"] -= 0.01  # still a number a run could give
    (tampered / "result.json").write_text(json.dumps(res))
    paths, cache = [runs["alpha"], runs["beta"], tampered], tmp_path / "cache"
    api.leaderboard(paths, tmp_path / "site", bootstrap=100, cache_dir=cache, jobs=2)
    data = json.loads((tmp_path / "site" / "leaderboard.json").read_text())
    e = entries_of(data)
    assert [e[k]["verification"]["status"] for k in ("alpha", "beta", "alpha-tampered")] == \
        ["verified", "verified", "tampered"]
    assert [d["name"] for d in e["alpha-tampered"]["verification"]["differences"]] == ["subtype.map"]
    index = (tmp_path / "site" / "index.html").read_text()
    assert index.count("class='badge tampered'") == 1 and index.count("class='badge verified'") == 2
    page = (tmp_path / "site" / e["alpha-tampered"]["page"]).read_text()
    assert "Verification: 1 of " in page and "subtype.map: recorded" in page
    assert len(list((cache / "verify").glob("*.json"))) == 3

    # A rebuild takes every verification from the cache, and --require-verified leaves the tampered out.
    monkeypatch.setattr(verification, "verify_run", lambda d: pytest.fail(f"verified {d} again"))
    outcome = api.leaderboard(paths, tmp_path / "site2", bootstrap=100, cache_dir=cache, jobs=1,
                              require_verified=True)
    assert sorted(x.model for x in outcome.entries) == ["alpha", "beta"]
    assert any("tampered_run" in s and "left out by --require-verified: tampered" in s for s in outcome.skipped)
