"""Suite results cached by everything that determines them, so a rerun recomputes nothing.

A suite is a pure function of predictions, manifest and configuration (seeded bootstrap included), so
its JSON result can be reused whenever all of these are unchanged: the predictions and embeddings
(hashed by content), the manifest's hash, the suite's name and configuration, and the code, meaning
the package version, METRIC_CODE_VERSION and a digest of every Python source file of `benchmark/`,
`suites/` and the suite's own module (a plugin's too). Editing any of them recomputes. (A plugin suite
whose helpers live in other modules is keyed by its own module only: clear `$CXRBENCH_CACHE/suites`
after changing those.)
"""
from __future__ import annotations

import hashlib
import inspect
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.core.files import atomic_write_text


def suite_key(name: str, fn: Any, predictions: pd.DataFrame, manifest_sha256: str, config: Any) -> str:
    from benchmark import METRIC_CODE_VERSION, __version__

    h = hashlib.sha256()
    h.update(json.dumps({
        "suite": name, "manifest": manifest_sha256, "version": __version__, "metrics": METRIC_CODE_VERSION,
        "bootstrap": config.bootstrap.to_json(), "seed": config.seed, "group_by": config.group_by,
        "options": sorted(dict(config.options).items()), "code": _code_digest(_module_file(fn)),
        "fn": f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', '')}",
    }, sort_keys=True, default=str).encode())
    h.update(_frame_digest(predictions))
    if config.embeddings is not None:
        h.update("\x1f".join(map(str, config.embeddings.index)).encode())
        h.update(_frame_digest(config.embeddings))
    return h.hexdigest()[:40]


class SuiteCache:
    def __init__(self, root: Path):
        self.root = Path(root)

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads((self.root / f"{key}.json").read_text())
        except (OSError, ValueError):
            return None  # absent or torn: compute

    def put(self, key: str, result: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.root / f"{key}.json", json.dumps(result))


def _frame_digest(frame: pd.DataFrame) -> bytes:
    """Content hash, a column at a time: no copy of the whole frame (32,000 embeddings of 512
    floats would be 130 MB)."""
    h = hashlib.sha256()
    for name in frame.columns:
        values = frame[name].to_numpy()
        h.update(f"\x1e{name}:{values.dtype}".encode())
        if values.dtype == object:
            h.update("\x1f".join(map(str, values)).encode())
        else:
            h.update(np.ascontiguousarray(values).tobytes())
    return h.digest()


def _module_file(fn: Any) -> str | None:
    try:
        return inspect.getsourcefile(fn)
    except TypeError:
        return None


@lru_cache(maxsize=None)
def _code_digest(extra_file: str | None) -> str:
    import benchmark
    import suites

    files: set[Path] = set()
    for package in (benchmark, suites):
        files.update(Path(package.__file__).parent.rglob("*.py"))
    if extra_file:
        files.add(Path(extra_file))
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(str(f.name).encode())
        h.update(f.read_bytes())
    return h.hexdigest()
