"""The one way a number and its interval are written for people: terminal, Markdown, HTML alike.

`value [lo, hi]` with three decimals; "n/a" where a number is undefined (null, NaN, not a number at
all); "no CI" where the run computed none (`--bootstrap 0`: point estimates only). The HTML pages
use the same functions as Jinja2 filters (benchmark.reporting.templating), so a cell on the
leaderboard reads exactly as the line in the terminal.
"""
from __future__ import annotations

import math
from typing import Any

NO_CI = "no CI"


def num(x: Any, digits: int = 3) -> str:
    """A number with `digits` decimals; "n/a" for null, NaN, infinities; other values as text."""
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        return f"{x:.{digits}f}" if math.isfinite(x) else "n/a"
    return str(x)


def signed(x: Any, digits: int = 3) -> str:
    """A difference, with its sign always shown (`+0.012`)."""
    if isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x):
        return f"{x:+.{digits}f}"
    return num(x, digits)


def ci_bounds(ci: Any) -> tuple[Any, Any] | None:
    """(lo, hi) from a result file's `ci` (a two-item list, a tuple), None when there is no interval."""
    if isinstance(ci, list | tuple) and len(ci) == 2:
        return ci[0], ci[1]
    return None


def ci_text(ci: Any, digits: int = 3) -> str:
    """`[lo, hi]`, or "no CI" where the run computed no interval."""
    bounds = ci_bounds(ci)
    if bounds is None:
        return NO_CI
    return f"[{num(bounds[0], digits)}, {num(bounds[1], digits)}]"


def value_ci(value: Any, ci: Any, digits: int = 3) -> str:
    """`value [lo, hi]`: the way a metric is written everywhere."""
    return f"{num(value, digits)} {ci_text(ci, digits)}"


def estimate_text(estimate: Any, digits: int = 3) -> str:
    """A benchmark.stats.Estimate as `value [lo, hi]` (a suite's notes): "no CI" without resampling."""
    return value_ci(estimate.value, estimate.ci if getattr(estimate, "has_ci", True) else None, digits)


def metric_text(metric: Any, digits: int = 3) -> str:
    """A result file's {"value", "ci"} as `value [lo, hi]`; "n/a" for anything else."""
    if not isinstance(metric, dict) or "value" not in metric:
        return "n/a"
    return value_ci(metric.get("value"), metric.get("ci"), digits)


__all__ = ["NO_CI", "num", "signed", "ci_bounds", "ci_text", "value_ci", "estimate_text", "metric_text"]
