"""A run's plan and its predictions, as typed values between the steps of `api.run`/`api.run_shard`.

`plan_run` checks everything a user can get wrong before any work (suite names and options, the
bootstrap, the executor, writable folders); `from_model` and `from_predictions` give a `Predicted`
(the predictions of every view, the manifest, and how they were obtained); `compute_shard` fills the
prediction store with one slice of rows. benchmark.execution.score turns a Predicted into a run folder.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.core.errors import CxrbenchError
from benchmark.core.hashing import sha256_file
from benchmark.core.labels import CLASSES, PROB_COLUMNS
from benchmark.execution.request import EXECUTORS, RunRequest, model_and_data

DEFAULT_SUITES = ("subtype", "calibration", "cross_site")


@dataclass
class RunOutcome:
    """What `run` wrote: the run folder and its result."""

    run_dir: Path
    result: dict[str, Any]
    forward_images: int = 0
    cached_views: list[str] = field(default_factory=list)


@dataclass
class ShardOutcome:
    """What `run --shard I/N` did: its rows, now in the prediction store, and how far the views are."""

    shard: str
    first_row: int
    last_row: int                 # exclusive
    n_rows: int
    views: list[str]
    forward_images: int
    stored_rows: dict[str, int]   # rows of each view in the store after this shard, all shards together
    store: Path

    @property
    def complete(self) -> bool:
        return all(n == self.n_rows for n in self.stored_rows.values())


@dataclass(frozen=True)
class RunPlan:
    """A checked request: which suites, the views they need, the bootstrap, when it started."""

    suites: tuple[str, ...]
    views: list[str]              # prediction views, clean first
    bootstrap: Any                # benchmark.stats.BootstrapConfig
    embed: bool                   # a suite needs clean-image features (benchmark.views.embedding)
    started: datetime
    t0: float                     # time.perf_counter() at the start, for the timings

    @property
    def wanted(self) -> list[str]:
        """The views to compute: embeddings are one more view of the same pass."""
        from benchmark.views.embedding import EMBEDDING_VIEW

        return self.views + ([EMBEDDING_VIEW] if self.embed else [])


@dataclass
class Predicted:
    """What a run scores: predictions of every view, the manifest, and how they were obtained."""

    predictions: pd.DataFrame
    manifest: pd.DataFrame
    model_info: dict[str, Any]
    dataset_info: dict[str, Any]
    device: str
    forward_images: int           # prediction views only, as a run reports them
    cached_views: list[str]
    embeddings: pd.DataFrame | None = None


def plan_run(req: RunRequest) -> RunPlan:
    """The request checked before any work: unknown suites, options, bootstrap, executor, folders."""
    from benchmark.core.plugins import load_plugins
    from benchmark.core.registry import SUITES
    from benchmark.core.specs import check_option_keys, parse_options
    from benchmark.core.suite import suite_needs_embeddings, suite_views
    from benchmark.stats import BootstrapConfig

    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    load_plugins(req.plugins)
    suites = tuple(req.suites or DEFAULT_SUITES)
    specs = [SUITES.spec(s) for s in suites]  # unknown names fail before any work, with the list of suites
    check_option_keys(specs, dict(req.options))  # and so do option keys no suite takes, or bad values
    for spec in specs:
        parse_options(spec.options, dict(req.options), spec.name)
    views = sorted({v for s in suites for v in suite_views(s)}, key=lambda v: (v != "clean", v))
    if req.bootstrap < 0:
        raise CxrbenchError("must be 0 or more", where="--bootstrap")
    bcfg = BootstrapConfig(n_resamples=req.bootstrap, seed=req.seed, method=req.ci_method)
    _check_distribution(req)
    embed = any(suite_needs_embeddings(s) for s in suites)
    _check_writable(req)  # before any forward pass, not after an hour of them
    return RunPlan(suites, views, bcfg, embed, started, t0)


def _check_writable(req: RunRequest) -> None:
    from benchmark.execution.preflight import ensure_writable
    from benchmark.execution.store import default_cache_dir

    cache = Path(req.cache_dir or default_cache_dir())
    ensure_writable(cache, option="--cache-dir (or CXRBENCH_CACHE)")
    if (cache / "predictions").is_dir():
        ensure_writable(cache / "predictions", option="--cache-dir (or CXRBENCH_CACHE)")
    if req.shard is None:
        ensure_writable(Path(req.out), option="--out")


def _check_distribution(req: RunRequest) -> None:
    if req.executor not in EXECUTORS:
        raise CxrbenchError(f"unknown executor {req.executor!r}; choose from {', '.join(EXECUTORS)}",
                            where="--executor")
    if req.executor != "ray" and (req.address is not None or req.shards is not None):
        raise CxrbenchError("only the Ray executor takes these; add --executor ray",
                            where="--address" if req.address is not None else "--shards")
    if req.shards is not None and req.shards < 1:
        raise CxrbenchError("must be 1 or more", where="--shards")
    if req.shard is not None and req.executor == "ray":
        raise CxrbenchError("the Ray executor makes its own shards (--shards N); drop --shard", where="--shard")
    if req.shard is not None and req.predictions is not None:
        raise CxrbenchError("a predictions file has nothing to compute; drop --shard", where="--shard")


def compute_shard(req: RunRequest, plan: RunPlan) -> ShardOutcome:
    """One slice of rows (`req.shard`, I/N) of every view the plan needs, into the prediction store."""
    from benchmark.execution.runner import fill_views
    from benchmark.execution.shards import parse_shard, shard_rows

    shard = parse_shard(req.shard)
    dataset, model, store = model_and_data(req)
    rows = shard_rows(len(dataset), shard, req.batch_size)
    wanted = plan.wanted  # the same views as the run that scores them
    entries, stats = fill_views(model, dataset, wanted, store=store, rows=rows, device=req.device,
                                batch_size=req.batch_size, workers=req.workers, seed=req.seed,
                                progress=req.progress)
    stored = {v: int(e.done_mask().sum()) for v, e in entries.items()}
    return ShardOutcome(str(shard), int(rows[0]) if len(rows) else 0, int(rows[-1]) + 1 if len(rows) else 0,
                        len(dataset), wanted, stats.forward_images, stored, store.root)


def from_model(req: RunRequest, plan: RunPlan) -> Predicted:
    """Predictions of the plan's views by the request's model, from the store where it has them."""
    from benchmark.data.prepared import prepared_info
    from benchmark.views.embedding import EMBEDDING_VIEW, embedding_frame
    from benchmark.execution.runner import predict_views

    dataset, model, store = model_and_data(req)
    # Embeddings are one more view of the same pass (one forward pass for both when the model allows);
    # forward_images and cached_views speak of the prediction views only.
    views, wanted = plan.views, plan.wanted
    on_ray: dict[str, int] = {}
    if req.executor == "ray":  # fills the store; the pass below then only reads it
        from benchmark.execution.ray import RayPlan, run_on_ray

        on_ray = run_on_ray(RayPlan.from_request(req, dataset, model, wanted), store, dataset, model)
    probs, stats = predict_views(model, dataset, wanted, store=store, device=req.device,
                                 batch_size=req.batch_size, workers=req.workers, seed=req.seed,
                                 progress=req.progress)
    stats.cached_views = [v for v in stats.cached_views if v in views]
    if any(on_ray.values()):
        stats.forward_images += sum(n for v, n in on_ray.items() if v in views)
        stats.cached_views = [v for v in views if not on_ray.get(v)]
        stats.device = f"ray ({req.address or 'local instance'})"
    table = dataset.table
    embeddings = embedding_frame(table["image_id"], probs.pop(EMBEDDING_VIEW)) if plan.embed else None
    frames = []
    for view, p in probs.items():
        f = pd.DataFrame({"image_id": table["image_id"], "view": view, "label": table["label"],
                          "patient_id": table["patient_id"], "site": table["site"]})
        f[list(PROB_COLUMNS)] = p
        if stats.lung_mask_sources is not None:  # manifest | segmenter:NAME | prior (benchmark.data.lungs)
            f["lung_mask_source"] = stats.lung_mask_sources
        frames.append(f)
    predictions = pd.concat(frames, ignore_index=True)
    model_info = {"name": model.card.name, "sha256": model.sha256, "card": model.card.to_json(),
                  "spec": req.model or "reference"}
    if getattr(model.loaded, "loading", None):  # e.g. the key prefix stripped from a state dict
        model_info["loading"] = model.loaded.loading
    return Predicted(predictions, table, model_info,
                     {**dataset_info(dataset.name, dataset.manifest.sha256, table), **prepared_info(dataset)},
                     stats.device, stats.forward_images, stats.cached_views, embeddings)


def from_predictions(req: RunRequest, plan: RunPlan) -> Predicted:
    """A predictions file (and the embeddings beside it, when a suite needs them) as a Predicted."""
    views = plan.views
    from benchmark.data.manifest import table_sha256
    from benchmark.reporting.results import read_predictions
    from benchmark.views.embedding import read_embeddings

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
    embeddings = read_embeddings(req.predictions) if plan.embed else None  # beside the file, if any
    return Predicted(predictions, manifest, model_info, dataset_info(data_name, table_sha256(manifest), manifest),
                     "none", 0, sorted(have), embeddings)


def dataset_info(name: str, sha: str, table: pd.DataFrame) -> dict[str, Any]:
    counts = {"images": int(len(table)), "patients": int(table["patient_id"].nunique()),
              "per_class": {c: int((table["label"] == c).sum()) for c in CLASSES}}
    if "site" in table.columns and table["site"].notna().any():
        counts["per_site"] = {str(k): int(v) for k, v in table["site"].value_counts().sort_index().items()}
    return {"name": name, "manifest_sha256": sha, "counts": counts}
