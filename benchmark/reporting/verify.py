"""`cxrbench verify RUN`: recompute every suite from the run's own files and compare with result.json.

A suite is a pure function of the predictions, the manifest and its configuration (seeded bootstrap
included), so a run folder holds everything needed to recompute it exactly: `predictions.parquet`
(every view the suites used), `embeddings.npz` (when a suite probed them), `manifest.parquet` (the
manifest columns suites read, benchmark.execution.run_manifest) and the configuration recorded in provenance
(seed, bootstrap settings, `--group-by`, `--option`s). Nothing is taken from the suite cache: a
number in result.json is verified only by computing it again. Figures are not compared (the view
galleries are pictures of the inputs, added after the suites); metrics, tables and notes are.

Outcomes: verified (exit 0), tampered (exit 1: a recomputed number differs by more than 1e-9), not
verifiable (exit 2: a file is missing or unreadable, the metric code version is not this one, a suite
is unknown or its views are not in the predictions).
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark import METRIC_CODE_VERSION
from benchmark.core.errors import CxrbenchError
from benchmark.reporting.numbers import metric_text

TOLERANCE = 1e-9
MAX_RESAMPLES = 100_000
STATUS_EXIT = {"verified": 0, "tampered": 1, "unverifiable": 2}


@dataclass(frozen=True)
class Difference:
    name: str       # suite.metric, or suite.tables.<name> / suite.notes for the other parts
    recorded: Any
    recomputed: Any

    def describe(self) -> str:
        return f"{self.name}: recorded {_short(self.recorded)}, recomputed {_short(self.recomputed)}"


@dataclass(frozen=True)
class VerifyReport:
    run_dir: Path
    status: str                          # verified | tampered | unverifiable
    detail: str                          # one line for people
    differences: tuple[Difference, ...] = ()
    metrics_checked: int = 0
    suites: tuple[str, ...] = ()

    @property
    def exit_code(self) -> int:
        return STATUS_EXIT[self.status]

    @property
    def headline(self) -> str:
        word = {"verified": "VERIFIED", "tampered": "DIFFERS", "unverifiable": "CANNOT VERIFY"}[self.status]
        return f"{word}: {self.detail}"

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "detail": self.detail, "metrics_checked": self.metrics_checked,
                "suites": list(self.suites),
                "differences": [{"name": d.name, "recorded": _jsonable(d.recorded),
                                 "recomputed": _jsonable(d.recomputed)} for d in self.differences[:20]]}

    @classmethod
    def from_json(cls, run_dir: Path, data: dict[str, Any]) -> VerifyReport:
        diffs = tuple(Difference(d["name"], d.get("recorded"), d.get("recomputed"))
                      for d in data.get("differences", []))
        return cls(Path(run_dir), data["status"], data["detail"], diffs, int(data.get("metrics_checked", 0)),
                   tuple(data.get("suites", ())))


class _Unverifiable(CxrbenchError):
    """Something needed for an exact recomputation is missing or unusable."""


def verify_run(run_dir: str | Path, *, tolerance: float = TOLERANCE) -> VerifyReport:
    """Recompute the run's suites and compare; never raises for a bad run (that is 'unverifiable')."""
    run_dir = Path(run_dir)
    if run_dir.name == "result.json":
        run_dir = run_dir.parent
    try:
        return _verify(run_dir, tolerance)
    except CxrbenchError as exc:
        return VerifyReport(run_dir, "unverifiable", str(exc))


def _verify(run_dir: Path, tol: float) -> VerifyReport:
    from benchmark.core.jsonsafe import json_safe
    from benchmark.reporting.results import read_predictions, read_result

    result = read_result(run_dir)
    prov = result["provenance"]
    version = prov.get("metric_code_version")
    if str(version) != METRIC_CODE_VERSION:
        raise _Unverifiable(f"computed with metric code version {version!r}; this cxrbench has version "
                            f"{METRIC_CODE_VERSION!r} and cannot recompute other versions' numbers",
                            where=str(run_dir / "result.json"))
    pred_path = run_dir / "predictions.parquet"
    if not pred_path.is_file():
        raise _Unverifiable("no predictions.parquet: nothing to recompute from", where=str(run_dir))
    config = _config(prov, run_dir)
    predictions = read_predictions(pred_path)
    manifest = _manifest(run_dir, prov, predictions)
    suites = list(result["suites"])
    embeddings = _embeddings(run_dir, result, suites)
    config = dataclasses.replace(config, embeddings=embeddings)

    diffs: list[Difference] = []
    later: list[Difference] = []  # tables and notes: reported after every metric
    checked = 0
    for name in suites:
        fn = _suite_fn(name, predictions, run_dir)
        try:
            body = json_safe(fn(predictions, manifest, config).to_json())
        except Exception as exc:  # noqa: BLE001 - a hostile configuration may break a suite any way it likes
            raise _Unverifiable(f"recomputing suite {name!r} failed: {type(exc).__name__}: {exc}",
                                where=str(run_dir)) from exc
        recorded = result["suites"][name]
        grouped = _by_group(recorded.get("grouped", [])), _by_group(body.get("grouped", []))
        checked += len(recorded.get("metrics", {})) + len(grouped[0])
        diffs += _compare_metrics(name, recorded.get("metrics", {}), body["metrics"], tol)
        diffs += _compare_metrics(name, *grouped, tol)  # per-group metrics (result.json v2)
        for part in ("tables", "notes"):
            if not _same(recorded.get(part, {} if part == "tables" else []), body[part], tol):
                later.append(Difference(f"{name}.{part}", recorded.get(part), body[part]))
    all_diffs = tuple(diffs + later)
    where = f"{len(suites)} suite{'s' if len(suites) != 1 else ''} ({', '.join(suites)})"
    if all_diffs:
        first = "; ".join(d.describe() for d in all_diffs[:3])
        more = f" (and {len(all_diffs) - 3} more)" if len(all_diffs) > 3 else ""
        return VerifyReport(run_dir, "tampered", f"{len(diffs)} of {checked} metrics and {len(later)} other "
                            f"parts of {where} differ from a recomputation: {first}{more}", all_diffs, checked,
                            tuple(suites))
    return VerifyReport(run_dir, "verified", f"all {checked} metrics of {where} match a recomputation from "
                        f"the run's predictions to {tol:g}", (), checked, tuple(suites))


def _config(prov: dict[str, Any], run_dir: Path):
    from benchmark.stats import BootstrapConfig
    from benchmark.core.suite import SuiteConfig

    where = str(run_dir / "result.json")
    bs, request = prov.get("bootstrap"), prov.get("request")
    if not isinstance(bs, dict) or not isinstance(request, dict):
        raise _Unverifiable("provenance lacks the bootstrap settings or the request", where=where)
    known = {f.name for f in dataclasses.fields(BootstrapConfig)}
    missing = [k for k in ("n_resamples", "seed", "method") if k not in bs]
    if missing:
        raise _Unverifiable(f"provenance.bootstrap lacks {missing[0]!r}", where=where)
    bcfg = BootstrapConfig(**{k: v for k, v in bs.items() if k in known})
    if bcfg.n_resamples > MAX_RESAMPLES:  # a stranger's file must not buy unbounded CPU time
        raise _Unverifiable(f"{bcfg.n_resamples} bootstrap resamples; verify recomputes at most {MAX_RESAMPLES}",
                            where=where)
    options = request.get("options") or []
    if not (isinstance(options, list) and all(isinstance(o, list | tuple) and len(o) == 2 for o in options)):
        raise _Unverifiable("provenance.request.options is not a list of [key, value] pairs", where=where)
    seed = prov.get("seed", bs["seed"])
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise _Unverifiable(f"provenance.seed is not an integer: {seed!r}", where=where)
    return SuiteConfig(bootstrap=bcfg, seed=seed, group_by=str(request.get("group_by") or "site"),
                       options={str(k): str(v) for k, v in options})


def _manifest(run_dir: Path, prov: dict[str, Any], predictions):
    """manifest.parquet; runs scored from a predictions file alone used the file's own clean rows."""
    from benchmark.core.labels import PROB_COLUMNS
    from benchmark.execution.run_manifest import FILE_NAME, read_run_manifest

    manifest = read_run_manifest(run_dir)
    if manifest is not None:
        return manifest
    request = prov.get("request") or {}
    if request.get("predictions") and not request.get("data"):
        clean = predictions[predictions["view"] == "clean"]
        return clean.drop(columns=["view", *PROB_COLUMNS]).reset_index(drop=True)
    raise _Unverifiable(f"no {FILE_NAME}: the manifest columns the suites read (split, study_id, ...) are not in "
                        "the run folder (runs made before cxrbench wrote it cannot be verified)", where=str(run_dir))


def _embeddings(run_dir: Path, result: dict[str, Any], suites: list[str]):
    from benchmark.views.embedding import FILE_NAME, read_embeddings
    from benchmark.core.registry import SUITES
    from benchmark.core.suite import suite_needs_embeddings

    wanted = [s for s in suites if s in SUITES.names() and suite_needs_embeddings(s)]
    if not wanted:
        return None
    emb = read_embeddings(run_dir)
    used = any("embedding" in m for s in wanted for m in result["suites"][s].get("metrics", {}))
    if emb is None and used:
        raise _Unverifiable(f"the result has embedding metrics but {FILE_NAME} is missing or unreadable",
                            where=str(run_dir))
    return emb


def _suite_fn(name: str, predictions, run_dir: Path):
    from benchmark.core.registry import SUITES
    from benchmark.core.suite import suite_views

    if name not in SUITES.names():
        raise _Unverifiable(f"suite {name!r} is not installed here (known: {', '.join(SUITES.names())})",
                            where=str(run_dir))
    have = set(predictions["view"])
    lacking = [v for v in suite_views(name) if v != "embedding" and v not in have]
    if lacking:
        raise _Unverifiable(f"suite {name!r} needs view {lacking[0]!r}, which predictions.parquet lacks",
                            where=str(run_dir))
    return SUITES.get(name)


def _by_group(entries: Any) -> dict[str, Any]:
    """Per-group entries keyed `metric (column = value)`, for a difference that names its group."""
    out = {}
    for g in entries if isinstance(entries, list) else []:
        group = g.get("group") if isinstance(g, dict) else None
        if isinstance(group, dict):
            out[f"{g.get('metric')} ({group.get('column')} = {group.get('value')})"] = \
                {k: g.get(k) for k in ("value", "ci")}
    return out


def _compare_metrics(suite: str, recorded: dict[str, Any], recomputed: dict[str, Any], tol: float) -> list[Difference]:
    out = []
    for name in list(recorded) + [k for k in recomputed if k not in recorded]:
        a, b = recorded.get(name), recomputed.get(name)
        if not _same(a, b, tol):
            out.append(Difference(f"{suite}.{name}", a, b))
    return out


def _same(a: Any, b: Any, tol: float) -> bool:
    """Equal structure, equal strings, numbers within `tol` (relative above 1); None only equals None."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        if not (math.isfinite(a) and math.isfinite(b)):
            return a == b
        return math.isclose(a, b, rel_tol=tol, abs_tol=tol)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k], tol) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y, tol) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _jsonable(x: Any) -> Any:
    try:
        json.dumps(x, allow_nan=False)
        return x
    except (TypeError, ValueError):
        return repr(x)


def _short(x: Any) -> str:
    if isinstance(x, dict) and "value" in x and "ci" in x:
        return metric_text(x, digits=6)  # a difference may lie in the fourth decimal
    text = _num(x) if isinstance(x, int | float) or x is None else json.dumps(_jsonable(x))
    return text if len(text) <= 60 else text[:57] + "..."


def _num(x: Any) -> str:
    if x is None:
        return "null"
    return f"{x:.6g}" if isinstance(x, float) else str(x)
