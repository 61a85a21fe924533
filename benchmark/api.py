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
from benchmark.core.errors import CxrbenchError
from benchmark.execution.request import EXECUTORS, RunRequest, model_and_data
from benchmark.core.hashing import sha256_file
from benchmark.core.labels import CLASSES, PROB_COLUMNS

DEFAULT_SUITES = ("subtype", "calibration", "cross_site")




@dataclass
class RunOutcome:
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


def run(req: RunRequest) -> RunOutcome | ShardOutcome:
    """Evaluate a model (or a predictions file) with the chosen suites and write a run folder; with
    `shard`, only compute that slice of the predictions into the store (a ShardOutcome)."""
    from benchmark.core.plugins import load_plugins
    from benchmark.core.registry import SUITES
    from benchmark.core.specs import check_option_keys, parse_options
    from benchmark.stats import BootstrapConfig
    from benchmark.core.suite import SuiteConfig, suite_needs_embeddings, suite_views

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

    embed = any(suite_needs_embeddings(s) for s in suites)  # clean-image features (benchmark.views.embedding)
    _check_writable(req)  # before any forward pass, not after an hour of them
    if req.shard is not None:
        return _run_shard(req, views, embed=embed)
    if req.predictions is not None:
        predictions, manifest, model_info, dataset_info, device, fwd, cached = _from_predictions(req, views)
        from benchmark.views.embedding import read_embeddings

        embeddings = read_embeddings(req.predictions) if embed else None  # beside the file, if any
    else:
        predictions, manifest, model_info, dataset_info, device, fwd, cached, embeddings = _from_model(
            req, views, embed=embed)
    t_predict = time.perf_counter() - t0

    run_dir = _new_run_dir(req.out, model_info["name"], dataset_info["name"], started)
    from benchmark.reporting.results import SCHEMA, write_predictions, write_result
    from benchmark.reporting.report import write_report

    write_predictions(run_dir, predictions)  # saved before any suite runs: nothing computed is lost
    from benchmark.execution.run_manifest import write_run_manifest

    write_run_manifest(run_dir, manifest, req.group_by)  # what suites read beyond predictions (`verify`)
    if embeddings is not None:
        from benchmark.views.embedding import write_embeddings

        write_embeddings(run_dir, embeddings)
    config = SuiteConfig(bootstrap=bcfg, seed=req.seed, group_by=req.group_by, options=dict(req.options),
                         embeddings=embeddings)
    suite_results: dict[str, Any] = {}
    timings: dict[str, float] = {"predict_s": round(t_predict, 3)}
    from benchmark.reporting.result_rules import bootstrap_units  # CIs on < 30 units are marked unreliable
    from benchmark.core.jsonsafe import json_safe
    from benchmark.execution.store import default_cache_dir
    from benchmark.execution.suite_cache import SuiteCache, suite_key

    suite_cache, cached_suites = SuiteCache((req.cache_dir or default_cache_dir()) / "suites"), []
    for s in suites:
        t = time.perf_counter()
        fn = SUITES.get(s)
        key = suite_key(s, fn, predictions, dataset_info["manifest_sha256"], config)
        body = suite_cache.get(key)
        if body is None:
            body = json_safe(fn(predictions, manifest, config).to_json())
            suite_cache.put(key, body)
        else:
            cached_suites.append(s)
        suite_results[s] = body
        timings[f"suite_{s}_s"] = round(time.perf_counter() - t, 3)
    if req.predictions is None:  # one sample through every view, for the report
        from benchmark.views.gallery import attach_galleries

        attach_galleries(suite_results, {s: suite_views(s) for s in suites}, data=req.data,
                         card=model_info["card"], seed=req.seed, cache_dir=req.cache_dir or default_cache_dir())
    result = {
        "schema": SCHEMA,
        "model": model_info,
        "dataset": dataset_info,
        "suites": suite_results,
        "provenance": {
            "version": __version__, "metric_code_version": METRIC_CODE_VERSION, "git_commit": _git_commit(),
            "seed": req.seed, "bootstrap": {**bcfg.to_json(), **bootstrap_units(_unit(manifest), manifest)}, "device": device,
            "timings": timings, "started_at": started.isoformat(timespec="seconds"),
            "request": _request_json(req), "forward_images": fwd, "cached_views": cached,
            "cached_suites": cached_suites,
        },
    }
    write_result(run_dir, result)
    write_report(run_dir, result, shared_plotly=req.shared_plotly)
    return RunOutcome(run_dir, result, forward_images=fwd, cached_views=cached)


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


def _run_shard(req: RunRequest, views: list[str], *, embed: bool) -> ShardOutcome:
    from benchmark.views.embedding import EMBEDDING_VIEW
    from benchmark.execution.runner import fill_views
    from benchmark.execution.shards import parse_shard, shard_rows

    shard = parse_shard(req.shard)
    dataset, model, store = model_and_data(req)
    rows = shard_rows(len(dataset), shard, req.batch_size)
    wanted = views + ([EMBEDDING_VIEW] if embed else [])  # the same views as the run that scores them
    entries, stats = fill_views(model, dataset, wanted, store=store, rows=rows, device=req.device,
                                batch_size=req.batch_size, workers=req.workers, seed=req.seed,
                                progress=req.progress)
    stored = {v: int(e.done_mask().sum()) for v, e in entries.items()}
    return ShardOutcome(str(shard), int(rows[0]) if len(rows) else 0, int(rows[-1]) + 1 if len(rows) else 0,
                        len(dataset), wanted, stats.forward_images, stored, store.root)


def _from_model(req: RunRequest, views: list[str], *, embed: bool = False):
    from benchmark.data.prepared import prepared_info
    from benchmark.views.embedding import EMBEDDING_VIEW, embedding_frame
    from benchmark.execution.runner import predict_views

    dataset, model, store = model_and_data(req)
    # Embeddings are one more view of the same pass (one forward pass for both when the model allows);
    # forward_images and cached_views speak of the prediction views only.
    wanted = views + ([EMBEDDING_VIEW] if embed else [])
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
    embeddings = embedding_frame(table["image_id"], probs.pop(EMBEDDING_VIEW)) if embed else None
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
    return (predictions, table, model_info,
            {**_dataset_info(dataset.name, dataset.manifest.sha256, table), **prepared_info(dataset)},
            stats.device, stats.forward_images, stats.cached_views, embeddings)


def _from_predictions(req: RunRequest, views: list[str]):
    from benchmark.data.manifest import table_sha256
    from benchmark.reporting.results import read_predictions

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
    """This package's own commit, never that of a repository it happens to be installed in."""
    from benchmark.core.source import own_commit

    return own_commit()


def parse_options(items: list[str] | tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    out = []
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise CxrbenchError(f"expected KEY=VALUE, got {item!r}", where="--option")
        out.append((key.strip(), value.strip()))
    return tuple(out)


# --- other commands ---------------------------------------------------------------------------

def list_registry(kind: str, plugins: tuple[str, ...] | list[str] = ()) -> list[tuple[str, str, str]]:
    """(name, origin, description) of each registered `kind`; origin is `builtin` (this distribution),
    `plugin:<distribution>` (entry points) or `in-process` (`--plugin`, CXRBENCH_PLUGINS, code)."""
    from benchmark.core.plugins import load_plugins
    from benchmark.core.registry import REGISTRIES

    load_plugins(plugins)
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


def merge(sources: list[Path], *, cache_dir: Path | None = None):
    """Merge prediction stores filled by sharded runs on other machines into this cache; returns a
    benchmark.execution.merge.MergeOutcome. A later `run` without a shard scores the combined predictions."""
    from benchmark.execution.store import PredictionStore, default_cache_dir
    from benchmark.execution.merge import merge_stores

    return merge_stores([Path(s) for s in sources], PredictionStore((cache_dir or default_cache_dir()) / "predictions"))


def compare(run_dirs: list[Path], *, correction: str = "holm", alpha: float = 0.05, bootstrap: int = 1000,
            seed: int = 0, metrics: tuple[str, ...] | None = None, json_out: Path | None = None):
    """Paired comparison of runs on the same images; returns a benchmark.reporting.compare.Comparison."""
    from benchmark.reporting.compare import DEFAULT_METRICS, compare_runs
    from benchmark.core.files import atomic_write_text
    from benchmark.stats import BootstrapConfig

    _resampling(bootstrap)
    comp = compare_runs(list(run_dirs), metrics=tuple(metrics or DEFAULT_METRICS), correction=correction,
                        alpha=alpha, config=BootstrapConfig(n_resamples=bootstrap, seed=seed))
    if json_out is not None:
        import json

        atomic_write_text(Path(json_out), json.dumps(comp.to_json(), indent=2) + "\n")
    return comp


def _resampling(bootstrap: int) -> None:
    """Paired tests and tie groups are made of resamples: `--bootstrap 0` (point estimates only)
    serves `run`, not a comparison. (Runs made with it compare fine: compare resamples their predictions.)"""
    if bootstrap == 0:
        raise CxrbenchError("0 (point estimates only) computes no test: a comparison needs resamples, "
                            "e.g. --bootstrap 1000", where="--bootstrap")


def gate(run_dir: Path, policy: str, *, junit: Path | None = None, summary: Path | None = None):
    """Check a run against a deploy policy; writes JUnit XML / Markdown on request. Returns a
    benchmark.reporting.gate.GateReport (`.exit_code` 0 pass, 1 fail; unusable inputs raise CxrbenchError)."""
    from benchmark.reporting.gate import junit_xml, markdown_summary, run_gate
    from benchmark.core.files import atomic_write_text

    report = run_gate(run_dir, policy)
    for path, text in ((junit, junit_xml), (summary, markdown_summary)):
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(Path(path), text(report))
    return report


def splits(data: str, leave_out_site: str, out: Path, *, val_fraction: float = 0.2, seed: int = 0):
    """Write patient-disjoint train/val/test manifests holding out one site; returns a
    benchmark.data.splits.SplitsOutcome (paths and counts per split)."""
    from benchmark.data.dataset import resolve_dataset
    from benchmark.data.splits import write_splits

    return write_splits(resolve_dataset(data), leave_out_site, Path(out), val_fraction=val_fraction, seed=seed)


def verify(run_dir: Path, plugins: tuple[str, ...] | list[str] = ()):
    """Recompute every suite of a run folder from its own files and compare with its result.json;
    returns a benchmark.reporting.verify.VerifyReport (`.exit_code` 0 verified, 1 differs, 2 cannot verify)."""
    from benchmark.core.plugins import load_plugins
    from benchmark.reporting.verify import verify_run

    load_plugins(plugins)  # suites from plugins are recomputed too

    return verify_run(run_dir)


def leaderboard(run_dirs: list[Path], out: Path, *, rank_by: str = "subtype.map", correction: str = "holm",
                bootstrap: int = 1000, seed: int = 0, verify: bool = True, require_verified: bool = False,
                jobs: int | None = None, cache_dir: Path | None = None, plugins: tuple[str, ...] | list[str] = ()):
    """Build the static leaderboard site (each entry verified unless `verify` is False, and left out
    unless verified when `require_verified`); returns a leaderboard.BuildOutcome."""
    from benchmark.core.plugins import load_plugins
    from leaderboard import build_site

    load_plugins(plugins)  # verification jobs inherit them through CXRBENCH_PLUGINS

    _resampling(bootstrap)
    return build_site(list(run_dirs), Path(out), rank_by=rank_by, correction=correction, bootstrap=bootstrap,
                      seed=seed, verify=verify, require_verified=require_verified, jobs=jobs, cache_dir=cache_dir)


def train(baseline: str, *, data: str | None = None, out: Path | None = None, **options: Any):
    """Train a built-in baseline (supervised, moco, inpainting, multitask) into a checkpoint folder
    (model.safetensors, card.json, train_log.json) that `run` evaluates; returns a
    baselines.train.TrainOutcome. Options are baselines.config.TrainConfig fields (None = default);
    `out` None = the models directory, where the registered name looks. Under torchrun every process
    calls this; rank 0 writes the checkpoint."""
    from baselines.config import TrainConfig
    from baselines.train import train_baseline

    given = {k: v for k, v in options.items() if v is not None}
    try:
        cfg = TrainConfig(baseline, data=data, out=Path(out) if out is not None else None, **given)
    except TypeError as exc:
        raise CxrbenchError(str(exc), where="train") from exc
    return train_baseline(cfg)


def prepare(data: str, size: int = 512, *, cache_dir: Path | None = None, workers: int = 0,
            progress: bool = False):
    """Decode a dataset once into the prepared-image store that later runs read; returns a
    benchmark.data.prepared.PrepareOutcome. Rows that cannot be decoded are a DataError after the
    others are stored (they are decoded, and reported, again at run time)."""
    from benchmark.data.dataset import resolve_dataset
    from benchmark.data.prepared_build import prepare as prepare_store
    from benchmark.core.errors import DataError
    from benchmark.execution.store import default_cache_dir

    outcome = prepare_store(resolve_dataset(data), size, (cache_dir or default_cache_dir()) / "prepared",
                            workers=workers, progress=progress)
    if outcome.failed:
        raise DataError(f"stored {outcome.images - len(outcome.failed)} of {outcome.images} images; "
                        f"{len(outcome.failed)} could not be decoded (first: {outcome.failed[0]})",
                        where=str(outcome.path))
    return outcome


def audit(data: str, against: str | None = None, *, out: Path = Path("audit"), cache_dir: Path | None = None,
          workers: int = 0, progress: bool = False):
    """Leakage audit of a dataset (and against a second one); writes audit.json and audit.txt under
    `out` and returns a benchmark.audit.leakage.AuditReport (`.exit_code` 1 when leaks are found)."""
    from benchmark.audit.leakage import audit_datasets, write_audit
    from benchmark.data.dataset import resolve_dataset
    from benchmark.execution.store import default_cache_dir

    datasets = [resolve_dataset(data)] + ([resolve_dataset(against)] if against else [])
    report = audit_datasets(datasets, cache_root=cache_dir or default_cache_dir(), workers=workers,
                            progress=progress)
    report.paths = write_audit(report, Path(out))
    return report


def card_init(checkpoint: Path, *, architecture: str | None = None, classes: list[str] | None = None,
              force: bool = False):
    """Write a card skeleton beside a checkpoint from what its bytes reveal; returns a
    benchmark.models.card_init.CardDraft (path, card, fields to fill in, fields to check)."""
    from benchmark.models.card_init import init_card

    return init_card(Path(checkpoint), architecture=architecture, classes=classes, force=force)


def card_check(model: str, *, trust_code: bool = False, device: str | None = None):
    """Load a model, push synth images through the harness's preprocessing and check its card;
    returns a benchmark.models.card_check.CardCheck (`.usable`, `.rows`)."""
    from benchmark.execution.forward import pick_device
    from benchmark.models.card_check import check_card

    return check_card(model, trust_code=trust_code, device=pick_device(device))
