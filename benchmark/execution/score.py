"""A run folder from a Predicted: predictions first, then every suite (cached), result.json, report.html.

The predictions are written before any suite runs, so nothing computed is lost when one fails.
"""
from __future__ import annotations

import re
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.execution.evaluate import Predicted, RunOutcome, RunPlan
from benchmark.execution.request import RunRequest


def write_run(req: RunRequest, plan: RunPlan, got: Predicted) -> RunOutcome:
    """Score `got` with the plan's suites and write the run folder under `req.out`."""
    from benchmark import METRIC_CODE_VERSION, __version__
    from benchmark.core.suite import SuiteConfig, suite_views
    from benchmark.execution.run_manifest import write_run_manifest
    from benchmark.execution.store import default_cache_dir
    from benchmark.reporting.report import write_report
    from benchmark.reporting.result_rules import bootstrap_units  # CIs on < 30 units are marked unreliable
    from benchmark.reporting.results import SCHEMA, write_predictions, write_result

    t_predict = time.perf_counter() - plan.t0
    run_dir = _new_run_dir(req.out, got.model_info["name"], got.dataset_info["name"], plan.started)
    write_predictions(run_dir, got.predictions)  # saved before any suite runs: nothing computed is lost
    write_run_manifest(run_dir, got.manifest, req.group_by)  # what suites read beyond predictions (`verify`)
    if got.embeddings is not None:
        from benchmark.views.embedding import write_embeddings

        write_embeddings(run_dir, got.embeddings)
    config = SuiteConfig(bootstrap=plan.bootstrap, seed=req.seed, group_by=req.group_by, options=dict(req.options),
                         embeddings=got.embeddings)
    timings: dict[str, float] = {"predict_s": round(t_predict, 3)}
    suite_results, cached_suites = _score_suites(req, plan, got, config, timings)
    if req.predictions is None:  # one sample through every view, for the report
        from benchmark.views.gallery import attach_galleries

        attach_galleries(suite_results, {s: suite_views(s) for s in plan.suites}, data=req.data,
                         card=got.model_info["card"], seed=req.seed, cache_dir=req.cache_dir or default_cache_dir())
    result = {
        "schema": SCHEMA,
        "model": got.model_info,
        "dataset": got.dataset_info,
        "suites": suite_results,
        "provenance": {
            "version": __version__, "metric_code_version": METRIC_CODE_VERSION, "git_commit": git_commit(),
            "seed": req.seed,
            "bootstrap": {**plan.bootstrap.to_json(), **bootstrap_units(_unit(got.manifest), got.manifest)},
            "device": got.device, "timings": timings, "started_at": plan.started.isoformat(timespec="seconds"),
            "request": _request_json(req), "forward_images": got.forward_images, "cached_views": got.cached_views,
            "cached_suites": cached_suites,
        },
    }
    write_result(run_dir, result)
    write_report(run_dir, result, shared_plotly=req.shared_plotly)
    return RunOutcome(run_dir, result, forward_images=got.forward_images, cached_views=got.cached_views)


def _score_suites(req: RunRequest, plan: RunPlan, got: Predicted, config: Any,
                  timings: dict[str, float]) -> tuple[dict[str, Any], list[str]]:
    """Each suite's JSON body, from the suite cache when the same inputs were scored before."""
    from benchmark.core.jsonsafe import json_safe
    from benchmark.core.registry import SUITES
    from benchmark.execution.store import default_cache_dir
    from benchmark.execution.suite_cache import SuiteCache, suite_key

    suite_cache, cached_suites = SuiteCache((req.cache_dir or default_cache_dir()) / "suites"), []
    results: dict[str, Any] = {}
    for s in plan.suites:
        t = time.perf_counter()
        fn = SUITES.get(s)
        key = suite_key(s, fn, got.predictions, got.dataset_info["manifest_sha256"], config)
        body = suite_cache.get(key)
        if body is None:
            body = json_safe(fn(got.predictions, got.manifest, config).to_json())
            suite_cache.put(key, body)
        else:
            cached_suites.append(s)
        results[s] = body
        timings[f"suite_{s}_s"] = round(time.perf_counter() - t, 3)
    return results, cached_suites


def git_commit() -> str | None:
    """This package's own commit, never that of a repository it happens to be installed in."""
    from benchmark.core.source import own_commit

    return own_commit()


def _unit(manifest: pd.DataFrame) -> str:
    ids = manifest["patient_id"].astype(str) if "patient_id" in manifest.columns else None
    return "patient" if ids is not None and ids.nunique() < len(ids) else "image"


def _new_run_dir(out: Path, model: str, data: str, started: datetime) -> Path:
    def safe(s: str) -> str:
        return re.sub(r"[^A-Za-z0-9._-]+", "-", s).strip("-")[:60] or "x"

    stamp = started.strftime("%Y%m%dT%H%M%S")
    base = Path(out) / f"{safe(model)}__{safe(data)}__{stamp}"
    run_dir, k = base, 1
    while run_dir.exists():
        k += 1
        run_dir = base.with_name(f"{base.name}-{k}")
    run_dir.mkdir(parents=True)
    return run_dir


def _request_json(req: RunRequest) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
            for k, v in asdict(req).items() if k not in ("progress",)}
