"""The Ray executor: a run's forward passes as (model, dataset, view, shard) tasks on a Ray cluster.

`cxrbench run --executor ray [--address ADDR] [--shards N]` plans one task per view and row shard
(benchmark.execution.shards; the embedding view rides with the clean view, whose pass computes it), asks Ray for a GPU per task when the cluster has GPUs (and the run did not ask for
the CPU), and writes each finished task's predictions into the driver's prediction store. The run then
scores from the store exactly as a local run does, so both give the same results.

Each task resolves the model and the dataset on its node from the same specs (checkpoint paths and data
must be reachable there under the same names: a shared file system, or the same layout on every node,
with cxrbench installed), checks that both hash to what the driver saw, and computes its rows through
a prediction store on its node (the run's --cache-dir when one was given, else the node's own default
cache), so a rerun after a failure resumes there too. Predictions travel back through Ray: the driver
needs no storage shared with the workers.
Ray is an optional extra: `pip install "cxrbench[ray]"`.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.core.errors import CxrbenchError
from benchmark.execution.shards import Shard, all_shards, shard_rows


@dataclass(frozen=True)
class Resources:
    """What each task asks Ray for, and the device it then uses."""

    num_cpus: float
    num_gpus: float
    device: str
    shards: int


def plan_resources(device: str | None, cluster: dict[str, float], *, workers: int = 0,
                   shards: int | None = None) -> Resources:
    """GPU-aware planning from the cluster's resources (`ray.cluster_resources()`).

    A GPU per task when the cluster has GPUs, unless the run asked for the CPU; by default as many
    row shards as tasks can run at once, so one view fills the cluster.
    """
    gpus = float(cluster.get("GPU", 0))
    cpus = max(1.0, float(cluster.get("CPU", 1)))
    wanted = (device or "auto").lower()
    if wanted.startswith("cuda") and gpus < 1:
        raise CxrbenchError("CUDA was requested but the Ray cluster has no GPU", where="--device")
    if wanted not in ("auto", "cpu") and not wanted.startswith("cuda"):
        raise CxrbenchError(f"unknown device {device!r} for the Ray executor (auto, cpu or cuda)",
                            where="--device")
    use_gpu = gpus >= 1 and wanted != "cpu"
    num_cpus = float(1 + workers)  # the task's own thread plus its decode workers
    slots = int(gpus) if use_gpu else max(1, int(cpus // num_cpus))
    return Resources(num_cpus=num_cpus, num_gpus=1.0 if use_gpu else 0.0, device="cuda" if use_gpu else "cpu",
                     shards=shards or slots)


@dataclass(frozen=True)
class RayPlan:
    request: Any                 # benchmark.execution.request.RunRequest, with paths made absolute
    views: tuple[str, ...]
    manifest_sha256: str
    model_fingerprint: str

    @classmethod
    def from_request(cls, req, dataset, model, views) -> RayPlan:
        """Paths made absolute, so that a worker in another folder (or on another node) finds them."""

        def absolute(spec: str | None) -> str | None:
            return str(Path(spec).resolve()) if spec and Path(spec).exists() else spec

        req = dataclasses.replace(req, model=absolute(req.model), data=absolute(req.data), progress=False,
                                  cache_dir=Path(req.cache_dir).resolve() if req.cache_dir else None)
        return cls(req, tuple(views), dataset.manifest.sha256, model.fingerprint())


def run_on_ray(plan: RayPlan, store, dataset, model) -> dict[str, int]:
    """Fill the driver's store for every view; returns the images computed per view."""
    from benchmark.core.progress import advance_bar, progress_bar
    from benchmark.execution.runner import view_entries

    ray = _import_ray()
    req = plan.request
    entries = view_entries(model, dataset, plan.views, store)
    done = {v: entries[v].done_mask() for v in plan.views}
    if all(d.all() for d in done.values()):  # all stored: no cluster needed
        return dict.fromkeys(plan.views, 0)
    started_here = _connect(ray, req.address)
    try:
        res = plan_resources(req.device, ray.cluster_resources(), workers=req.workers, shards=req.shards)
        n_batches = -(-len(dataset) // req.batch_size)
        shards = all_shards(max(1, min(res.shards, n_batches)))
        tasks = [(group, s) for group in _view_groups(plan.views) for s in shards
                 if not all(done[v][shard_rows(len(dataset), s, req.batch_size)].all() for v in group)]
        remote = ray.remote(_compute_task).options(num_cpus=res.num_cpus, num_gpus=res.num_gpus)
        pending = [remote.remote(plan, group, s.index, s.count, res.device) for group, s in tasks]
        computed = dict.fromkeys(plan.views, 0)
        failures: list[CxrbenchError] = []
        bar = progress_bar(_interactive(), len(pending), f"{len(pending)} Ray tasks")
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                try:
                    answers = _result(ray, ready[0])
                except CxrbenchError as exc:  # the other tasks go on: their rows are stored for the rerun
                    failures.append(exc)
                    continue
                for view, (rows, probs, n_forward) in answers.items():
                    need = ~entries[view].done_mask()[rows]  # a worker on this node wrote them already
                    if need.any():
                        entries[view].write_chunk(rows[need], probs[need])
                    computed[view] += n_forward
                advance_bar(bar, 1)
        finally:
            if bar:
                bar[0].stop()
            for ref in pending:  # only on an interrupt: stop what is still running
                ray.cancel(ref)
        if failures:
            raise failures[0]
        return computed
    finally:
        if started_here:
            ray.shutdown()


def _view_groups(views: tuple[str, ...]) -> list[tuple[str, ...]]:
    """One task per view, except that the embedding joins the clean view: one pass gives both."""
    from benchmark.views.embedding import EMBEDDING_VIEW

    fused = "clean" in views and EMBEDDING_VIEW in views
    return [(v, EMBEDDING_VIEW) if fused and v == "clean" else (v,)
            for v in views if not (fused and v == EMBEDDING_VIEW)]


def _compute_task(plan: RayPlan, views: tuple[str, ...], shard_index: int, shard_count: int, device: str):
    """On a Ray worker: {view: (rows, probabilities, images computed)} of a view group on one shard."""
    from benchmark.core.errors import DataError
    from benchmark.execution.request import model_and_data
    from benchmark.execution.runner import fill_views

    req = plan.request
    dataset, model, store = model_and_data(req)
    if dataset.manifest.sha256 != plan.manifest_sha256:
        raise DataError("the dataset differs on this Ray node from the driver's (manifest hash)", where=req.data)
    if model.fingerprint() != plan.model_fingerprint:
        raise CxrbenchError("the checkpoint differs on this Ray node from the driver's", where=req.model)
    rows = shard_rows(len(dataset), Shard(shard_index, shard_count), req.batch_size)
    entries, stats = fill_views(model, dataset, list(views), store=store, rows=rows, device=device,
                                batch_size=req.batch_size, workers=req.workers, seed=req.seed, progress=False)
    # forward_images counts prediction views; the group's one prediction view carries the count.
    return {v: (*entries[v].stored(rows), stats.forward_images if v == views[0] else 0) for v in views}


def _result(ray, ref) -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, CxrbenchError):
            raise CxrbenchError(str(cause)) from exc
        raise CxrbenchError(f"a Ray task failed: {type(cause).__name__ if cause else 'error'}: "
                            f"{str(cause or exc).splitlines()[0]}", where="--executor ray") from exc


def _connect(ray, address: str | None) -> bool:
    """Joins the cluster at `address`, or starts a local Ray instance; True when this call started it."""
    if ray.is_initialized():
        return False
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                 configure_logging=True)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise CxrbenchError(f"cannot reach a Ray cluster: {str(exc).splitlines()[0]}",
                            where=f"--address {address}" if address else "--executor ray") from exc
    return True


def _import_ray():
    try:
        import ray
    except ImportError as exc:
        raise CxrbenchError('Ray is not installed; pip install "cxrbench[ray]"', where="--executor ray") from exc
    return ray


def _interactive() -> bool:
    import sys

    return sys.stderr.isatty()
