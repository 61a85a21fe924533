"""What a metric means: its direction, range and description, declared once by the suite that emits it.

Every suite module has a `METRICS` tuple of MetricSpec. A spec names one metric (`ece_ts`) or a
family through placeholders in braces (`f1_{class}`, `{region}_flip_rate`, `worst_{column}_ece`):
`{class}` is any canonical class, `{task}` any coarse task, `{column}` the grouping column as it
appears in metric names (`--group-by`, `site` by default); other placeholders take their values from
the spec's `choices`. Each emitted name matches exactly one spec of its suite (tests/test_metric_specs.py).

Readers (leaderboard, compare, gate, report, result validation) take direction and range from here,
never from the shape of a name. A result file carries the specs of its metrics too, for plugin suites
this installation does not know; for the built-in suites the code's specs win over the file's.
"""
from __future__ import annotations

import importlib
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from benchmark.core.labels import CLASSES, COARSE_TASKS

_DEFAULT_CHOICES: dict[str, tuple[str, ...]] = {"class": tuple(CLASSES), "task": tuple(COARSE_TASKS)}
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


@dataclass(frozen=True)
class MetricSpec:
    name: str                                      # a metric name, or a family with {placeholders}
    higher_is_better: bool | None                  # None: neither direction is better (descriptive)
    range: tuple[float | None, float | None] = (None, None)  # None for an unbounded end
    description: str = ""
    unit: str | None = None
    grouped: bool = False       # emitted once per group, with a structured `group` field (result.json v2)
    choices: tuple[tuple[str, tuple[str, ...]], ...] = ()  # values of suite-specific placeholders

    @property
    def direction(self) -> str:
        return {True: "higher", False: "lower", None: "neither"}[self.higher_is_better]

    def pattern(self, column: str = "site") -> re.Pattern[str]:
        return _compile(self.name, self.choices, column)

    def matches(self, name: str, column: str = "site") -> bool:
        return self.pattern(column).fullmatch(name) is not None

    def to_json(self) -> dict[str, Any]:
        return {"higher_is_better": self.higher_is_better, "range": list(self.range),
                "description": self.description, "unit": self.unit, "grouped": self.grouped}

    def concrete(self, name: str) -> MetricSpec:
        """This spec for one member of its family (the name a result file records)."""
        return MetricSpec(name, self.higher_is_better, self.range, self.description, self.unit, self.grouped)


@lru_cache(maxsize=4096)
def _compile(name: str, choices: tuple[tuple[str, tuple[str, ...]], ...], column: str) -> re.Pattern[str]:
    table = {**_DEFAULT_CHOICES, **dict(choices), "column": (column,)}
    out, pos = [], 0
    for m in _PLACEHOLDER.finditer(name):
        out.append(re.escape(name[pos:m.start()]))
        values = table.get(m.group(1))
        if values is None:
            raise ValueError(f"metric spec {name!r}: no values for placeholder {{{m.group(1)}}}")
        out.append("(?:" + "|".join(re.escape(v) for v in sorted(values, key=len, reverse=True)) + ")")
        pos = m.end()
    out.append(re.escape(name[pos:]))
    return re.compile("".join(out))


def spec(name: str, higher_is_better: bool | None, lo: float | None = None, hi: float | None = None,
         description: str = "", **kw: Any) -> MetricSpec:
    """Shorthand for a suite's METRICS table."""
    return MetricSpec(name, higher_is_better, (lo, hi), description, **kw)


def column_tag(column: str) -> str:
    """A grouping column as it appears in metric names (`worst_<tag>_...`); suites._groups uses it."""
    return re.sub(r"[^0-9A-Za-z]+", "_", column).strip("_").lower() or "group"


# --- looking specs up ----------------------------------------------------------------------------

def suite_specs(suite: str) -> tuple[MetricSpec, ...] | None:
    """The specs a registered suite declares (its `metrics` registration field, else its module's
    METRICS); None for a suite this installation does not know or that declares none."""
    from benchmark.core.registry import SUITES

    if suite not in SUITES:
        return None
    try:
        meta = SUITES.meta(suite)
        declared = meta.get("metrics") if isinstance(meta, dict) else None
        if declared is None:
            fn = SUITES.get(suite)
            declared = getattr(fn, "metrics", None) or getattr(
                importlib.import_module(fn.__module__), "METRICS", None)
    except Exception:  # noqa: BLE001 - a broken plugin must not break reading results of other suites
        return None
    if not declared or not all(isinstance(s, MetricSpec) for s in declared):
        return None
    return tuple(declared)


def matching(specs: tuple[MetricSpec, ...], name: str, column: str = "site") -> list[MetricSpec]:
    return [s for s in specs if s.matches(name, column)]


def find_spec(suite: str, name: str, column: str = "site") -> MetricSpec | None:
    """The code's spec of `suite.name` (first match), or None when unknown."""
    specs = suite_specs(suite)
    found = matching(specs, name, column_tag(column)) if specs else []
    return found[0].concrete(name) if found else None


def from_json(name: str, data: Any) -> MetricSpec | None:
    """A spec recorded in a result file (untrusted: anything malformed reads as no spec)."""
    if not isinstance(data, dict):
        return None
    hib, rng = data.get("higher_is_better"), data.get("range", [None, None])
    if hib not in (True, False, None) or not (isinstance(rng, list) and len(rng) == 2):
        return None
    if not all(x is None or (isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)) for x in rng):
        return None
    desc, unit = data.get("description", ""), data.get("unit")
    return MetricSpec(name, hib, (rng[0], rng[1]), desc if isinstance(desc, str) else "",
                      unit if isinstance(unit, str) else None, data.get("grouped") is True)


def result_column(result: dict[str, Any]) -> str:
    """The grouping column a result was computed with (provenance.request.group_by; `site` by default)."""
    prov = result.get("provenance") if isinstance(result, dict) else None
    req = prov.get("request") if isinstance(prov, dict) else None
    col = req.get("group_by") if isinstance(req, dict) else None
    return col if isinstance(col, str) and col else "site"


def result_spec(result: dict[str, Any], address: str) -> MetricSpec | None:
    """The spec of `<suite>.<metric>` for a result: the code's for a known suite, else the file's."""
    suite, _, name = address.partition(".")
    found = find_spec(suite, name, result_column(result))
    if found is not None or suite_specs(suite) is not None:
        return found
    body = (result.get("suites") or {}).get(suite)
    recorded = body.get("specs") if isinstance(body, dict) else None
    return from_json(name, recorded.get(name)) if isinstance(recorded, dict) else None


def all_specs() -> dict[str, tuple[MetricSpec, ...]]:
    """{suite: specs} of every registered suite that declares them (imports the suites)."""
    from benchmark.core.registry import SUITES

    return {s: specs for s in SUITES.names() if (specs := suite_specs(s)) is not None}


def range_of(s: MetricSpec | None) -> tuple[float, float] | None:
    """(lo, hi) with infinities for open ends; None when both are open or there is no spec."""
    if s is None or s.range == (None, None):
        return None
    lo, hi = s.range
    return (-math.inf if lo is None else float(lo), math.inf if hi is None else float(hi))


def better(suite: str, name: str, body: Any = None, column: str = "site") -> str:
    """'higher', 'lower', 'neither' or '' (no spec) for a report's metric table: the code's spec, or
    for a suite this installation does not know, the spec the suite's result body records."""
    found = find_spec(suite, name, column)
    if found is None and suite_specs(suite) is None and isinstance(body, dict) and isinstance(body.get("specs"), dict):
        found = from_json(name, body["specs"].get(name))
    return found.direction if found is not None else ""
