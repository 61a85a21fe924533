"""Finding, validating and describing leaderboard entries (one run folder each)."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark import METRIC_CODE_VERSION


@dataclass(frozen=True)
class Entry:
    slug: str                 # file-name-safe, unique within the site
    run_dir: Path
    result: dict[str, Any]
    predictions: Path | None  # predictions.parquet beside result.json, when present

    @property
    def model(self) -> str:
        return str(self.result["model"].get("name"))

    @property
    def dataset(self) -> str:
        return str(self.result["dataset"].get("name"))

    @property
    def dataset_key(self) -> str:
        """What makes two entries comparable: the manifest they were scored on."""
        return str(self.result["dataset"].get("manifest_sha256"))

    @property
    def provenance(self) -> dict[str, Any]:
        return self.result["provenance"]

    @property
    def metric_code_version(self) -> str | None:
        v = self.provenance.get("metric_code_version")
        return None if v is None else str(v)

    @property
    def stale(self) -> bool:
        return is_stale(self.metric_code_version)

    def spec(self, address: str) -> Any:
        """The MetricSpec of `<suite>.<metric>` for this entry (benchmark.core.metric_spec.result_spec)."""
        from benchmark.core.metric_spec import result_spec

        return result_spec(self.result, address)

    def metric(self, address: str) -> dict[str, Any] | None:
        from benchmark.reporting.results import metric

        m = metric(self.result, address)
        return m if isinstance(m, dict) else None


def is_stale(version: str | None, current: str = METRIC_CODE_VERSION) -> bool:
    """Older than the current metric code (or unrecorded, which only older code did)."""
    if version is None:
        return True
    try:
        return int(version) < int(current)
    except ValueError:
        return version != current


def expand_paths(paths: list[str | Path]) -> tuple[list[Path], list[str]]:
    """result.json files named by the arguments: a run folder, a result file, or a folder of run
    folders (one level down). Returns (files, problems)."""
    files: list[Path] = []
    problems: list[str] = []
    for p in map(Path, paths):
        if p.is_file():
            files.append(p)
        elif (p / "result.json").is_file():
            files.append(p / "result.json")
        elif p.is_dir() and (found := sorted(c / "result.json" for c in p.iterdir() if (c / "result.json").is_file())):
            files.extend(found)
        else:
            problems.append(f"{p}: no result.json here")
    seen: set[Path] = set()
    unique = []
    for f in files:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique, problems


def load_entry(path: Path, taken: set[str]) -> Entry | str:
    """An Entry, or a message naming the file and what is wrong with it."""
    from benchmark.reporting.results import upgrade, validate_result

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        return f"{path}: cannot read ({exc})"
    except json.JSONDecodeError as exc:
        return f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
    problems = validate_result(data)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return f"{path}: invalid result file: {problems[0]}{more}"
    data = upgrade(data)  # a cxrbench.result/1 file reads as v2: per-group metrics structured
    run_dir = path.parent
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", run_dir.name).strip("-.")[:80] or "entry"
    slug, k = base, 1
    while slug in taken:
        k += 1
        slug = f"{base}-{k}"
    taken.add(slug)
    preds = run_dir / "predictions.parquet"
    return Entry(slug, run_dir, data, preds if preds.is_file() else None)


def load_entries(paths: list[str | Path]) -> tuple[list[Entry], list[str]]:
    files, skipped = expand_paths(paths)
    taken: set[str] = set()
    entries = []
    for f in files:
        e = load_entry(f, taken)
        if isinstance(e, str):
            skipped.append(e)
        else:
            entries.append(e)
    return entries, skipped
