"""The result file (`result.json`, schema `cxrbench.result/2`: benchmark.reporting.result_schema): writing,
reading (v1 files are upgraded), validation.

Result files are the only interface between running and presenting (leaderboard, gate, compare).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.core.errors import CxrbenchError
from benchmark.core.files import atomic_path, atomic_write_text
from benchmark.core.jsonsafe import json_safe
from benchmark.core.labels import CLASSES, PROB_COLUMNS
from benchmark.core.metric_spec import result_column
from benchmark.reporting.result_rules import metric_problems, metric_range, units_problems
from benchmark.reporting.result_schema import OLD_SCHEMAS, SCHEMA, attach_specs, grouped_problems, upgrade
TOP_LEVEL = ("schema", "model", "dataset", "suites", "provenance")
PREDICTION_COLUMNS = ("image_id", "view", "label", "patient_id", "site", *PROB_COLUMNS)


def write_result(run_dir: Path, result: dict[str, Any]) -> Path:
    safe = json_safe(result)  # NaN and inf become null (undefined) first, as the file will hold them
    safe = attach_specs({**upgrade(safe), "schema": SCHEMA})  # the specs of every metric travel with it
    problems = validate_result(safe)
    if problems:
        raise CxrbenchError(f"refusing to write an invalid result: {problems[0]}", where=str(run_dir))
    path = run_dir / "result.json"
    atomic_write_text(path, json.dumps(safe, indent=2, allow_nan=False) + "\n")
    return path


def validate_result(data: Any) -> list[str]:
    """Every way `data` departs from the schema, or claims what no run can produce (non-finite or
    boolean numbers, a CI upside down or far from its value, a value outside the metric's known
    range: benchmark.reporting.result_rules), as messages naming the field; empty when valid. A v1
    file is judged as its v2 upgrade."""
    if not isinstance(data, dict):
        return ["top level is not a JSON object"]
    if data.get("schema") in OLD_SCHEMAS:
        data = upgrade(data)
    problems = [f"missing top-level key {k!r}" for k in TOP_LEVEL if k not in data]
    if problems:
        return problems
    if data["schema"] != SCHEMA:
        problems.append(f"schema is {data['schema']!r}, expected {SCHEMA!r}")
    for key, fields in (("model", ("name", "sha256")), ("dataset", ("name", "manifest_sha256", "counts"))):
        if not isinstance(data[key], dict):
            problems.append(f"{key!r} is not an object")
            continue
        problems += [f"missing field {key}.{f}" for f in fields if f not in data[key]]
    if not isinstance(data["suites"], dict):
        return problems + ["'suites' is not an object"]
    for suite, body in data["suites"].items():
        if not isinstance(body, dict) or not isinstance(body.get("metrics"), dict):
            problems.append(f"suites.{suite}.metrics is missing or not an object")
            continue
        shape = grouped_problems(suite, body)
        if shape:
            problems += shape
            continue
        column, specs = result_column(data), body.get("specs", {})
        for name, metric in body["metrics"].items():
            where = f"suites.{suite}.metrics.{name}"
            if not isinstance(metric, dict) or "value" not in metric or "ci" not in metric:
                problems.append(f"{where} needs 'value' and 'ci'")
                continue
            known = metric_range(suite, str(name), column, specs.get(name))
            problems += metric_problems(where, metric, known, ci_reliable=_ci_reliable(data))
        for i, g in enumerate(body.get("grouped", [])):
            known = metric_range(suite, g["metric"], column, specs.get(g["metric"]))
            problems += metric_problems(f"suites.{suite}.grouped[{i}] ({g['metric']}, {g['group']['column']} = "
                                        f"{g['group']['value']})", g, known, ci_reliable=_ci_reliable(data))
    if not isinstance(data["provenance"], dict):
        problems.append("'provenance' is not an object")
    elif not problems:
        problems += units_problems(data)
    return problems


def _ci_reliable(data: dict[str, Any]) -> bool:
    bs = data["provenance"].get("bootstrap") if isinstance(data["provenance"], dict) else None
    return not (isinstance(bs, dict) and bs.get("ci_reliable") is False)


def read_result(path: str | Path) -> dict[str, Any]:
    """A validated result; `path` may be the file or the run folder."""
    path = Path(path)
    if path.is_dir():
        path = path / "result.json"
    if not path.is_file():
        raise CxrbenchError("no result.json here", where=str(path))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CxrbenchError(f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})", where=str(path)) from exc
    problems = validate_result(data)
    if problems:
        raise CxrbenchError(f"invalid result file: {problems[0]}", where=str(path))
    return upgrade(data)


def write_predictions(run_dir: Path, predictions: pd.DataFrame) -> Path:
    path = run_dir / "predictions.parquet"
    with atomic_path(path) as tmp:
        predictions.to_parquet(tmp, index=False)
    return path


def read_predictions(path: str | Path) -> pd.DataFrame:
    """A predictions file (parquet or CSV) with the README's columns, validated; one line per problem."""
    path = Path(path)
    if not path.is_file():
        raise CxrbenchError("predictions file not found", where=str(path))
    try:
        frame = pd.read_parquet(path) if path.suffix.lower() in (".parquet", ".pq") else pd.read_csv(path)
    except Exception as exc:  # pyarrow and pandas raise many types for a bad file
        raise CxrbenchError(f"cannot read predictions ({type(exc).__name__}: {str(exc).splitlines()[0]})",
                            where=str(path)) from exc
    from benchmark.core.labels import canonicalize_labels

    required = ("image_id", "label", *PROB_COLUMNS)
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise CxrbenchError(f"column {missing[0]!r} is missing", where=str(path))
    if "view" not in frame.columns:
        frame["view"] = "clean"
    frame["label"] = canonicalize_labels(frame["label"], where=str(path))
    probs = frame[list(PROB_COLUMNS)].apply(pd.to_numeric, errors="coerce").to_numpy()
    bad = ~np.isfinite(probs).all(axis=1) | (probs < -1e-6).any(axis=1) | (np.abs(probs.sum(axis=1) - 1) > 1e-3)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise CxrbenchError(f"row {row + 2}: probabilities must be finite, >= 0 and sum to 1, got {probs[row].tolist()}",
                            where=str(path))
    frame[list(PROB_COLUMNS)] = probs
    if "patient_id" not in frame.columns:
        frame["patient_id"] = frame["image_id"]
    if "site" not in frame.columns:
        frame["site"] = pd.NA
    dup = frame.duplicated(["image_id", "view"])
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        raise CxrbenchError(f"row {row + 2}: image {frame['image_id'].iloc[row]!r} appears twice for one view",
                            where=str(path))
    frame["image_id"] = frame["image_id"].astype(str)
    frame["patient_id"] = frame["patient_id"].astype(str)
    return frame


def metric(result: dict[str, Any], address: str, group: str | None = None) -> dict[str, Any] | None:
    """`suite.metric` -> {"value", "ci"}, or None when the result has no such metric; with `group`, the
    entry of that metric measured on that group (result.json v2 `grouped`)."""
    suite, _, name = address.partition(".")
    if group is not None:
        from benchmark.reporting.result_schema import group_entries

        return next((g for g in group_entries(result, address) if g["group"].get("value") == group), None)
    return result.get("suites", {}).get(suite, {}).get("metrics", {}).get(name)


__all__ = ["SCHEMA", "CLASSES", "write_result", "read_result", "validate_result", "write_predictions",
           "read_predictions", "metric", "upgrade"]
