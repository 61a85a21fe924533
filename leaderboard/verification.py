"""Verify every leaderboard entry (`cxrbench verify`), in parallel processes, cached by content.

A verification recomputes every suite of a run, so it is cached under a hash of the files it reads
(result.json, predictions.parquet, manifest.parquet, embeddings.npz) and of the code that recomputes
(package version, metric code version, the sources of benchmark/ and suites/): a rebuild verifies
only new or changed entries. Entries run in spawned processes (no fork of a process that may hold
threads), one per core by default when there are more than a few.
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path

from benchmark.reporting.verify import VerifyReport, verify_run
from benchmark.core.files import atomic_write_text

FILES = ("result.json", "predictions.parquet", "manifest.parquet", "embeddings.npz")
SMALL = 3  # entries verified in this process when no job count is given
LABELS = {"verified": "verified", "tampered": "tampered", "unverifiable": "not verifiable"}


def content_key(run_dir: Path) -> str:
    from benchmark import METRIC_CODE_VERSION, __version__
    from benchmark.execution.suite_cache import _code_digest

    h = hashlib.sha256(json.dumps({"version": __version__, "metrics": METRIC_CODE_VERSION,
                                   "code": _code_digest(None)}).encode())
    for name in FILES:
        path = Path(run_dir) / name
        h.update(f"\x1e{name}:".encode())
        if path.is_file():
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
        else:
            h.update(b"\x00absent")
    return h.hexdigest()[:40]


def _cached(root: Path, key: str, run_dir: Path) -> VerifyReport | None:
    try:
        return VerifyReport.from_json(run_dir, json.loads((root / f"{key}.json").read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent or torn: verify again


def _store(root: Path, key: str, report: VerifyReport) -> None:
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(root / f"{key}.json", json.dumps(report.to_json()))


def verify_entries(run_dirs: dict[str, Path], *, cache_dir: Path, jobs: int | None = None) -> dict[str, VerifyReport]:
    """slug -> VerifyReport for each run folder; cached results are reused."""
    root = Path(cache_dir) / "verify"
    keys = {slug: content_key(d) for slug, d in run_dirs.items()}
    out: dict[str, VerifyReport] = {}
    todo = []
    for slug, d in run_dirs.items():
        hit = _cached(root, keys[slug], d)
        if hit is None:
            todo.append(slug)
        else:
            out[slug] = hit
    # A spawned process costs about 2 s of imports, more than verifying a small run: by default a few
    # entries are verified here, more in one process per core.
    workers = min(len(todo), jobs if jobs is not None else (os.cpu_count() or 1) if len(todo) > SMALL else 1)
    done: dict[str, VerifyReport] = {}
    if workers > 1:
        try:
            with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
                done = dict(zip(todo, pool.map(verify_run, [run_dirs[s] for s in todo])))
        except (BrokenProcessPool, OSError):
            done = {}  # no importable __main__ to spawn from (a script on stdin, say): verify here instead
    done = done or {s: verify_run(run_dirs[s]) for s in todo}
    for slug, report in done.items():
        _store(root, keys[slug], report)
        out[slug] = report
    return {slug: out[slug] for slug in run_dirs}
