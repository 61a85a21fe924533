"""HTML for people: Jinja2 with autoescape, for report.html and the leaderboard alike.

Every value a template prints is escaped unless it is `Markup` this package made (its own CSS and
scripts, plotly.js, HTML rendered by another of its templates), so a string from a result file,
a model card or a policy cannot become markup by someone forgetting to escape it. The shared
macros (templates/macros.html: a value-with-CI cell, a figure block, a collapsed section, tables)
write a metric the way benchmark.reporting.numbers writes it in the terminal.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from benchmark.core.jsonsafe import json_safe
from benchmark.reporting.numbers import ci_text, num, signed, value_ci

SHARED = Path(__file__).parent / "templates"


def script_json(obj: Any) -> Markup:
    """JSON that is safe inside a <script> element (no early `</script>`, no HTML comment)."""
    text = json.dumps(json_safe(obj), allow_nan=False)
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def is_metric(x: Any) -> bool:
    """A result file's {"value", "ci"}."""
    return isinstance(x, dict) and "value" in x and "ci" in x


def is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def sort_key(x: Any) -> str:
    """The data-sort attribute leaderboard.js orders a column by: a number's repr, else empty."""
    return repr(float(x)) if is_number(x) else ""


def columns(rows: list[dict[str, Any]]) -> list[str]:
    """Every key of any row, in the order they first appear."""
    return list(dict.fromkeys(str(c) for r in rows for c in r))


def json_text(x: Any, limit: int = 4000, indent: int | None = None) -> str:
    return json.dumps(x, default=str, indent=indent)[:limit]


def table_view(name: str, table: Any, *, mapping_rows: bool = False) -> dict[str, Any] | None:
    """A suite table in whatever shape it came, as the `table_block` macro shows it: row dicts, a
    labelled matrix (e.g. the confusion matrix), a mapping as key/value rows (`mapping_rows`), else
    its JSON; None for a shape the report leaves out (the leaderboard shows it as JSON)."""
    if isinstance(table, list) and table and all(isinstance(r, dict) for r in table):
        return {"kind": "rows", "name": name, "rows": table}
    if isinstance(table, dict):
        matrix = next((v for k, v in table.items() if k != "classes" and isinstance(v, list) and v
                       and all(isinstance(r, list) for r in v)), None)
        classes = table.get("classes")
        if matrix is not None and (isinstance(classes, list) or not mapping_rows):
            return {"kind": "matrix", "name": name, "classes": classes if isinstance(classes, list) else [],
                    "rows": matrix}
        if mapping_rows:
            return {"kind": "rows", "name": name, "rows": [{"key": k, "value": v} for k, v in table.items()]}
    elif not mapping_rows:
        return None
    return {"kind": "json", "name": name, "text": json_text(table, indent=None if not mapping_rows else 1)}


@lru_cache(maxsize=None)
def environment(folder: str | None = None) -> Environment:
    """Templates of `folder` (a page family's own) with the shared macros beside them."""
    paths = [folder, str(SHARED)] if folder else [str(SHARED)]
    env = Environment(loader=FileSystemLoader(paths), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False)
    env.filters.update(num=num, signed=signed, ci_text=ci_text, value_ci=value_ci, sort_key=sort_key,
                       columns=columns, json_text=json_text, script_json=script_json)
    env.tests.update(metric=is_metric, number_value=is_number)
    return env


def render(template: str, folder: str | Path | None = None, **values: Any) -> Markup:
    """A template rendered to Markup (so that a page including it does not escape it again)."""
    return Markup(environment(str(folder) if folder else None).get_template(template).render(**values))


def macro(name: str, *args: Any, **kwargs: Any) -> Markup:
    """One shared macro of templates/macros.html, called from Python."""
    module = environment(None).get_template("macros.html").module
    return Markup(getattr(module, name)(*args, **kwargs))


__all__ = ["SHARED", "script_json", "is_metric", "environment", "render", "macro"]
