"""What one evaluation is (a frozen RunRequest) and the model, data and store it resolves to.

Shared by the API and by executors that resolve the same request again on other machines (Ray).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchmark.core.errors import CxrbenchError


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
    trust_code: bool = False          # allow formats that carry code (pickles, TorchScript)
    cache_dir: Path | None = None
    progress: bool = True
    group_by: str = "site"            # the grouping column for per-group suites
    options: tuple[tuple[str, str], ...] = ()  # suite-specific KEY=VALUE options
    shard: str | None = None          # "I/N": compute one slice into the store, score nothing
    executor: str = "local"           # local | ray
    address: str | None = None        # Ray cluster address (None: a local Ray instance)
    shards: int | None = None         # row slices per view for the Ray executor (None: one per slot)
    strict_paths: bool = False        # refuse manifest paths that are absolute or climb out with ../
    shared_plotly: bool = False       # report.html loads plotly.js from `out`/plotly.min.js, written once
    plugins: tuple[str, ...] = ()     # plugin modules to import first (`--plugin`; benchmark.core.plugins)


EXECUTORS = ("local", "ray")


def model_and_data(req: RunRequest):
    """The dataset (through its prepared store, if any), the model reference and the prediction store."""
    from benchmark.data.dataset import resolve_dataset
    from benchmark.data.prepared import use_prepared  # pixels from `cxrbench prepare`
    from benchmark.models.resolve import resolve_model
    from benchmark.execution.store import PredictionStore, default_cache_dir

    if req.batch_size < 1:
        raise CxrbenchError("must be 1 or more", where="--batch-size")
    if req.workers < 0:
        raise CxrbenchError("must be 0 or more", where="--workers")
    dataset = resolve_dataset(req.data)
    if req.strict_paths:
        from benchmark.data.manifest import check_paths_inside

        check_paths_inside(dataset.manifest)
    model = resolve_model(req.model, trust_code=req.trust_code)
    dataset = use_prepared(dataset, model.card.input, (req.cache_dir or default_cache_dir()) / "prepared")
    return dataset, model, PredictionStore((req.cache_dir or default_cache_dir()) / "predictions")
