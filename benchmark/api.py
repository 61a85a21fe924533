"""The Python API shared by the CLI and notebooks: one function per command."""
from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark import METRIC_CODE_VERSION, __version__
from benchmark.errors import CxrbenchError
from benchmark.hashing import sha256_file
from benchmark.labels import CLASSES, PROB_COLUMNS

DEFAULT_SUITES = ("subtype",)


@dataclass(frozen=True)
class RunRequest:
    """A frozen description of one evaluation; printed and stored beside its results."""

    model: str | None = None          # registered name or checkpoint path; None = the reference model
    data: str | None = None           # dataset spec; None = synth
    suites: tuple[str, ...] | None = None
    out: Path = Path("runs")
    device: str | None = None
    batch_size: int = 32
    workers: int = 0
    seed: int = 0
    bootstrap: int = 1000
    ci_method: str = "percentile"
    predictions: Path | None = None   # skip the model: score an existing predictions file
    trust_pickle: bool = False
    cache_dir: Path | None = None
    progress: bool = True
    group_by: str = "site"            # the grouping column for per-group suites
    options: tuple[tuple[str, str], ...] = ()  # suite-specific KEY=VALUE options


@dataclass
class RunOutcome:
    run_dir: Path
    result: dict[str, Any]
    forward_images: int = 0
    cached_views: list[str] = field(default_factory=list)


def run(req: RunRequest) -> RunOutcome:
    """Evaluate a model (or a predictions file) with the chosen suites and write a run folder."""
    from benchmark.registry import SUITES
    from benchmark.stats import BootstrapConfig
    from benchmark.suite import SuiteConfig, suite_views

    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    suites = tuple(req.suites or DEFAULT_SUITES)
    for s in suites:
        SUITES.entry(s)  # unknown names fail before any work, with the list of suites
    views = sorted({v for s in suites for v in suite_views(s)}, key=lambda v: (v != "clean", v))
    if req.bootstrap < 0:
        raise CxrbenchError("must be 0 or more", where="--bootstrap")
    bcfg = BootstrapConfig(n_resamples=req.bootstrap, seed=req.seed, method=req.ci_method)

    if req.predictions is not None:
        predictions, manifest, model_info, dataset_info, device, fwd, cached = _from_predictions(req, views)
    else:
        predictions, manifest, model_info, dataset_info, device, fwd, cached = _from_model(req, views)
    t_predict = time.perf_counter() - t0

    run_dir = _new_run_dir(req.out, model_info["name"], dataset_info["name"], started)
    from benchmark.results import write_predictions, write_result
    from benchmark.report import write_report

    write_predictions(run_dir, predictions)  # saved before any suite runs: nothing computed is lost
    config = SuiteConfig(bootstrap=bcfg, seed=req.seed, group_by=req.group_by, options=dict(req.options))
    suite_results: dict[str, Any] = {}
    timings: dict[str, float] = {"predict_s": round(t_predict, 3)}
    for s in suites:
        t = time.perf_counter()
        suite_results[s] = SUITES.get(s)(predictions, manifest, config).to_json()
        timings[f"suite_{s}_s"] = round(time.perf_counter() - t, 3)
    result = {
        "schema": "cxrbench.result/1",
        "model": model_info,
        "dataset": dataset_info,
        "suites": suite_results,
        "provenance": {
            "version": __version__, "metric_code_version": METRIC_CODE_VERSION, "git_commit": _git_commit(),
            "seed": req.seed, "bootstrap": {**bcfg.to_json(), "unit": _unit(manifest)}, "device": device,
            "timings": timings, "started_at": started.isoformat(timespec="seconds"),
            "request": _request_json(req), "forward_images": fwd, "cached_views": cached,
        },
    }
    write_result(run_dir, result)
    write_report(run_dir, result)
    return RunOutcome(run_dir, result, forward_images=fwd, cached_views=cached)


def _from_model(req: RunRequest, views: list[str]):
    from benchmark.data.dataset import resolve_dataset
    from benchmark.models.resolve import resolve_model
    from benchmark.runner import predict_views
    from benchmark.store import PredictionStore, default_cache_dir

    if req.batch_size < 1:
        raise CxrbenchError("must be 1 or more", where="--batch-size")
    if req.workers < 0:
        raise CxrbenchError("must be 0 or more", where="--workers")
    dataset = resolve_dataset(req.data)
    model = resolve_model(req.model, trust_pickle=req.trust_pickle)
    store = PredictionStore((req.cache_dir or default_cache_dir()) / "predictions")
    probs, stats = predict_views(model, dataset, views, store=store, device=req.device,
                                 batch_size=req.batch_size, workers=req.workers, seed=req.seed,
                                 progress=req.progress)
    table = dataset.table
    frames = []
    for view, p in probs.items():
        f = pd.DataFrame({"image_id": table["image_id"], "view": view, "label": table["label"],
                          "patient_id": table["patient_id"], "site": table["site"]})
        f[list(PROB_COLUMNS)] = p
        frames.append(f)
    predictions = pd.concat(frames, ignore_index=True)
    model_info = {"name": model.card.name, "sha256": model.sha256, "card": model.card.to_json(),
                  "spec": req.model or "reference"}
    return (predictions, table, model_info, _dataset_info(dataset.name, dataset.manifest.sha256, table),
            stats.device, stats.forward_images, stats.cached_views)


def _from_predictions(req: RunRequest, views: list[str]):
    from benchmark.data.manifest import table_sha256
    from benchmark.results import read_predictions

    predictions = read_predictions(req.predictions)
    have = set(predictions["view"])
    lacking = [v for v in views if v not in have]
    if lacking:
        raise CxrbenchError(
            f"the chosen suites need view {lacking[0]!r}, which the file does not have (views in it: "
            f"{', '.join(sorted(have))}); run the model or choose other --suites", where=str(req.predictions))
    manifest = predictions[predictions["view"] == "clean"].drop(columns=["view", *PROB_COLUMNS]).reset_index(drop=True)
    if req.data:
        from benchmark.data.dataset import resolve_dataset

        manifest = resolve_dataset(req.data).table
    name = Path(req.predictions).stem
    model_info = {"name": name, "sha256": sha256_file(Path(req.predictions)), "card": None,
                  "spec": f"predictions:{req.predictions}"}
    data_name = Path(req.data).stem if req.data else f"{name}-data"
    return (predictions, manifest, model_info, _dataset_info(data_name, table_sha256(manifest), manifest),
            "none", 0, sorted(have))


def _dataset_info(name: str, sha: str, table: pd.DataFrame) -> dict[str, Any]:
    counts = {"images": int(len(table)), "patients": int(table["patient_id"].nunique()),
              "per_class": {c: int((table["label"] == c).sum()) for c in CLASSES}}
    if "site" in table.columns and table["site"].notna().any():
        counts["per_site"] = {str(k): int(v) for k, v in table["site"].value_counts().sort_index().items()}
    return {"name": name, "manifest_sha256": sha, "counts": counts}


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


def _git_commit() -> str | None:
    import subprocess

    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def parse_options(items: list[str] | tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    out = []
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise CxrbenchError(f"expected KEY=VALUE, got {item!r}", where="--option")
        out.append((key.strip(), value.strip()))
    return tuple(out)


# --- other commands ---------------------------------------------------------------------------

def list_registry(kind: str) -> list[tuple[str, str, str]]:
    from benchmark.registry import REGISTRIES

    if kind not in REGISTRIES:
        raise CxrbenchError(f"unknown kind {kind!r}; choose from {', '.join(REGISTRIES)}", where="list")
    return REGISTRIES[kind].describe()


def synth(out: Path, **options: Any) -> Path:
    """Write a synthetic dataset (PNGs, masks, manifest.csv); returns the manifest's path."""
    from benchmark.data.synth import SynthConfig, write_synth

    try:
        cfg = SynthConfig(**options)
    except TypeError as exc:
        raise CxrbenchError(str(exc), where="synth") from exc
    return write_synth(cfg, Path(out))
