"""The Python API shared by the CLI and notebooks: one function per command."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmark.core.errors import CxrbenchError
from benchmark.execution.evaluate import DEFAULT_SUITES, RunOutcome, ShardOutcome  # noqa: F401 - part of the API
from benchmark.execution.request import RunRequest  # noqa: F401 - re-exported: api.RunRequest(...)


def run(req: RunRequest) -> RunOutcome:
    """Evaluate a model (or a predictions file) with the chosen suites and write a run folder."""
    from benchmark.execution.evaluate import from_model, from_predictions, plan_run
    from benchmark.execution.score import write_run

    if req.shard is not None:
        raise CxrbenchError("a shard only fills the prediction store: call run_shard (the CLI: run --shard)",
                            where="shard")
    plan = plan_run(req)
    got = from_predictions(req, plan) if req.predictions is not None else from_model(req, plan)
    return write_run(req, plan, got)


def run_shard(req: RunRequest) -> ShardOutcome:
    """Compute one slice of a run's predictions (`req.shard`, I/N) into the prediction store; a later
    `run` without a shard (on this cache, or after `merge`) scores them."""
    from benchmark.execution.evaluate import compute_shard, plan_run

    if req.shard is None:
        raise CxrbenchError("run_shard needs a shard I/N, e.g. '1/4'", where="--shard")
    return compute_shard(req, plan_run(req))


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
