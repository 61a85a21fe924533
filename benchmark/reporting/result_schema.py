"""result.json schema `cxrbench.result/2`: structured per-group metrics, recorded specs, and the upgrade
of `cxrbench.result/1` files.

In v2 each suite body has
    metrics: {name: {"value", "ci"}}            one entry per metric measured once (`suite.name` addresses it)
    grouped: [{"metric", "group": {"column", "value"}, "value", "ci"}]
                                                 a metric measured on each group of a manifest column
    specs:   {name: {"higher_is_better", "range", "description", "unit", "grouped"}}
                                                 the spec of every name above (benchmark.core.metric_spec)
A v1 file packed the group into the name (`balanced_accuracy[site_a]` in `metrics`); `upgrade` moves
those entries to `grouped` (the column is the run's `--group-by`, recorded in its provenance) and adds
the specs, so old runs keep working with the leaderboard, the gate and verify.
"""
from __future__ import annotations

import copy
import re
from typing import Any

from benchmark.core.metric_spec import find_spec, result_column, suite_specs

SCHEMA = "cxrbench.result/2"
OLD_SCHEMAS = ("cxrbench.result/1",)
_PACKED = re.compile(r"(?P<metric>[^\[\]>]+)\[(?P<group>[^\[\]>]+)\]")


def upgrade(data: Any) -> Any:
    """A v1 result as v2 (a new object); anything else unchanged."""
    if not isinstance(data, dict) or data.get("schema") not in OLD_SCHEMAS or not isinstance(data.get("suites"), dict):
        return data
    out = copy.deepcopy(data)
    column = result_column(out)
    for body in out["suites"].values():
        if not isinstance(body, dict) or not isinstance(body.get("metrics"), dict):
            continue
        metrics, grouped = {}, []
        for name, m in body["metrics"].items():
            packed = _PACKED.fullmatch(str(name))
            if packed and isinstance(m, dict):
                grouped.append({"metric": packed["metric"], "group": {"column": column, "value": packed["group"]},
                                **{k: m.get(k) for k in ("value", "ci")}})
            else:
                metrics[name] = m
        body["metrics"], body["grouped"] = metrics, grouped
    out["schema"] = SCHEMA
    return attach_specs(out)


def attach_specs(data: dict[str, Any]) -> dict[str, Any]:
    """Record the code's spec of every metric of every known suite (in place; returns `data`). A suite
    this installation does not know keeps the specs its file carries."""
    column = result_column(data)
    for suite, body in data.get("suites", {}).items():
        if not isinstance(body, dict) or suite_specs(suite) is None:
            continue
        names = [*body.get("metrics", {}), *(g.get("metric") for g in body.get("grouped", []) if isinstance(g, dict))]
        specs = {}
        for name in names:
            found = find_spec(suite, str(name), column)
            if found is not None:
                specs[str(name)] = found.to_json()
        body["specs"] = specs
    return data


def grouped_problems(suite: str, body: dict[str, Any]) -> list[str]:
    """Shape of `grouped` and `specs` (values are checked by result_rules like any metric's)."""
    where = f"suites.{suite}"
    grouped = body.get("grouped", [])
    if not isinstance(grouped, list):
        return [f"{where}.grouped is not a list"]
    seen = set()
    for i, g in enumerate(grouped):
        at = f"{where}.grouped[{i}]"
        if not isinstance(g, dict) or "value" not in g or "ci" not in g or not isinstance(g.get("metric"), str):
            return [f"{at} needs 'metric', 'group', 'value' and 'ci'"]
        grp = g.get("group")
        if not (isinstance(grp, dict) and isinstance(grp.get("column"), str) and isinstance(grp.get("value"), str)):
            return [f"{at}.group must be {{\"column\": ..., \"value\": ...}} with string fields"]
        key = (g["metric"], grp["column"], grp["value"])
        if key in seen:
            return [f"{at}: {g['metric']} for {grp['column']} = {grp['value']!r} appears twice"]
        seen.add(key)
    specs = body.get("specs", {})
    if not isinstance(specs, dict) or not all(isinstance(v, dict) for v in specs.values()):
        return [f"{where}.specs must map metric names to spec objects"]
    return []


def group_entries(result: dict[str, Any], address: str) -> list[dict[str, Any]]:
    """The `grouped` entries of `<suite>.<metric>` (every group it was measured on)."""
    suite, _, name = address.partition(".")
    body = result.get("suites", {}).get(suite, {})
    grouped = body.get("grouped", []) if isinstance(body, dict) else []
    return [g for g in grouped if isinstance(g, dict) and g.get("metric") == name]
