"""What a result file may claim: the known range of each metric, how a value relates to its CI, and
how many resampling units a run needs before its bootstrap intervals mean anything.

Result files come from strangers (leaderboard submissions, a CI artifact), so `validate_result`
(benchmark.reporting.results) refuses numbers no run can produce; the gate then says "unusable" instead of
passing a check on them. A metric's known range comes from its spec (benchmark.core.metric_spec), the
one source of truth: the code's spec for a built-in suite, the file's own for a suite this
installation does not know.
"""
from __future__ import annotations

import math
from typing import Any

from benchmark.core.metric_spec import find_spec, from_json, range_of, suite_specs

# Fewer resampling units than this and a bootstrap CI is too rough to gate on (one patient gives a
# zero-width "95% CI"). Units are patients when the data has patient ids, images otherwise.
MIN_BOOTSTRAP_UNITS = 30

# A percentile interval need not contain its own point estimate (ECE, MCE and worst-group scores are
# biased, so their resamples sit to one side): a value may lie outside its CI by up to the CI's width
# plus this share of the metric's range. Seen on real runs: MCE 0.250 with CI [0.305, 0.622]. Only
# metrics with a bounded range are held to it (a fitted temperature clamps at its bounds in
# resamples), and only when the CI rests on enough units (tiny data gives lopsided resamples).
CI_SLACK = 0.05
_EPS = 1e-9


def metric_range(suite: str, name: str, column: str = "site", recorded: Any = None) -> tuple[float, float] | None:
    """(lo, hi) of `suite.name` from its spec (infinite for an open end); None when both ends are open
    or no spec is known. `recorded` is the file's own spec, used only for suites the code does not know."""
    if suite_specs(suite) is not None:
        return range_of(find_spec(suite, name, column))
    return range_of(from_json(name, recorded))


def is_number(x: Any) -> bool:
    """A JSON number that is a number: not a boolean, not NaN or infinite."""
    return not isinstance(x, bool) and isinstance(x, int | float) and math.isfinite(x)


def metric_problems(where: str, metric: dict[str, Any], known: tuple[float, float] | None, *,
                    ci_reliable: bool = True) -> list[str]:
    """What is impossible about one metric's {"value", "ci"} given its known range (metric_range);
    None stands for "undefined here"; a `ci` of null, for "not computed" (`--bootstrap 0`)."""
    value, ci = metric["value"], metric["ci"]
    if ci is None:  # point estimates only: no interval is claimed, so none can be wrong
        ci = [None, None]
    if value is not None and not is_number(value):
        return [f"{where}.value must be a finite number or null, found {value!r}"]
    if not (isinstance(ci, list) and len(ci) == 2 and all(c is None or is_number(c) for c in ci)):
        return [f"{where}.ci must be [lower, upper] of finite numbers or nulls, found {ci!r}"]
    lo, hi = ci
    if lo is not None and hi is not None and lo > hi + _EPS:
        return [f"{where}.ci has its lower end {lo:g} above its upper end {hi:g}"]
    if known is not None:
        for label, x in (("value", value), ("ci lower end", lo), ("ci upper end", hi)):
            if x is not None and not known[0] - _EPS <= x <= known[1] + _EPS:
                return [f"{where}: {label} {x:g} is outside the metric's range [{known[0]:g}, {known[1]:g}]"]
    if value is not None and lo is not None and hi is not None and known is not None and ci_reliable \
            and math.isfinite(known[1] - known[0]):
        slack = (hi - lo) + CI_SLACK * (known[1] - known[0])
        if value < lo - slack or value > hi + slack:
            return [f"{where}: value {value:g} lies far outside its own CI [{lo:g}, {hi:g}]"]
    return []


def bootstrap_units(unit: str, table: Any) -> dict[str, Any]:
    """provenance.bootstrap's unit count: patients when the data has patient ids, images otherwise."""
    units = int(table["patient_id"].nunique()) if unit == "patient" else int(len(table))
    return {"unit": unit, "units": units, "min_units": MIN_BOOTSTRAP_UNITS,
            "ci_reliable": units >= MIN_BOOTSTRAP_UNITS}


def units_problems(data: dict[str, Any]) -> list[str]:
    """provenance.bootstrap's units, when present, must be well typed and agree with the counts."""
    bs = data["provenance"].get("bootstrap")
    if not isinstance(bs, dict) or not any(k in bs for k in ("units", "min_units", "ci_reliable")):
        return []
    where = "provenance.bootstrap"
    units, min_units, reliable = bs.get("units"), bs.get("min_units"), bs.get("ci_reliable")
    for key, x in (("units", units), ("min_units", min_units)):
        if isinstance(x, bool) or not isinstance(x, int) or x < 0:
            return [f"{where}.{key} must be a whole number, found {x!r}"]
    if not isinstance(reliable, bool):
        return [f"{where}.ci_reliable must be true or false, found {reliable!r}"]
    if reliable != (units >= min_units and units >= MIN_BOOTSTRAP_UNITS):
        return [f"{where}.ci_reliable is {str(reliable).lower()} with {units} units (at least "
                f"{max(min_units, MIN_BOOTSTRAP_UNITS)} needed)"]
    counts = data["dataset"].get("counts") if isinstance(data["dataset"], dict) else None
    if isinstance(counts, dict):
        expected = counts.get("patients" if bs.get("unit") == "patient" else "images")
        if is_number(expected) and units != expected:
            return [f"{where}.units is {units}, but dataset.counts says {expected} {bs.get('unit')}s"]
    return []


def ci_computed(result: dict[str, Any]) -> bool:
    """False for a run made with `--bootstrap 0`: point estimates only, every `ci` null."""
    bs = result.get("provenance", {}).get("bootstrap")
    return not (isinstance(bs, dict) and bs.get("n_resamples") == 0)


def ci_reliability(result: dict[str, Any]) -> tuple[int | None, bool]:
    """(units, reliable) of a validated result. Older files without the keys are judged by their
    dataset counts, against this version's minimum (never a smaller one written in the file)."""
    bs = result.get("provenance", {}).get("bootstrap") or {}
    units = bs.get("units")
    if not is_number(units):
        counts = result.get("dataset", {}).get("counts") or {}
        units = counts.get("patients" if bs.get("unit") == "patient" else "images")
    if not is_number(units):
        return None, False
    return int(units), int(units) >= MIN_BOOTSTRAP_UNITS
