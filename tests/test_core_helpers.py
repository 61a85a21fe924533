"""The single helpers: atomic writes, the JSON sanitiser, the value-[CI] formatter."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from benchmark.core.files import atomic_path, atomic_write_bytes, atomic_write_text
from benchmark.core.jsonsafe import finite, json_safe
from benchmark.reporting.numbers import ci_text, estimate_text, metric_text, num, signed, value_ci


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "a.json"
    atomic_write_text(path, "old")
    atomic_write_text(path, "n\u00e9w")
    assert path.read_text(encoding="utf-8") == "n\u00e9w"
    atomic_write_bytes(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_a_failed_writer_keeps_the_old_file(tmp_path):
    path = tmp_path / "rows.npz"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer died")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.npz"]


def test_json_safe_turns_numpy_and_non_finite_into_json():
    obj = {1: np.float32(0.5), "a": [np.nan, np.inf, (np.int64(3), -math.inf)], "b": np.array([1.0, np.nan])}
    out = json_safe(obj)
    assert out == {"1": 0.5, "a": [None, None, [3, None]], "b": [1.0, None]}
    json.dumps(out, allow_nan=False)
    assert [finite(x) for x in (None, np.nan, np.float64(2), "x", 1)] == [None, None, 2.0, None, 1.0]


def test_one_way_to_write_a_value_and_its_interval():
    assert value_ci(0.81234, [0.7, 0.9]) == "0.812 [0.700, 0.900]"
    assert value_ci(None, [None, math.nan]) == "n/a [n/a, n/a]"
    assert value_ci(0.5, None) == "0.500 no CI"  # --bootstrap 0: point estimates only
    assert metric_text({"value": 1, "ci": [1, 2]}) == "1 [1, 2]"
    assert metric_text("junk") == "n/a"
    assert ci_text((0.1, 0.2), digits=1) == "[0.1, 0.2]"
    assert signed(0.01) == "+0.010" and signed(math.nan) == "n/a"
    assert num(True) == "true" and num("<b>") == "<b>"  # escaping is the template's job
    from benchmark.stats import Estimate

    assert estimate_text(Estimate(0.5, (0.4, 0.6)), digits=2) == "0.50 [0.40, 0.60]"
    assert estimate_text(Estimate(0.5, (math.nan, math.nan), has_ci=False)) == "0.500 no CI"


def test_templates_escape_by_default_and_all_compile():
    from pathlib import Path

    from benchmark.reporting.templating import SHARED, environment, macro, render

    hostile = "<img src=x onerror=alert(1)>'"
    cell = macro("rows_table", [{hostile: {"value": 0.5, "ci": None}, "b": hostile}], sortable=True, sorting=True)
    assert "<img" not in cell and cell.count("&lt;img src=x onerror=alert(1)&gt;&#39;") == 3
    assert "0.500 <span class=ci>no CI</span>" in cell
    board = Path(__file__).resolve().parent.parent / "leaderboard" / "templates"
    for folder in (SHARED, board):
        env = environment(str(folder))
        assert env.autoescape is True
        for t in folder.glob("*.html"):
            env.get_template(t.name)  # a syntax error in any template fails here, not in a user's run
    assert "&lt;b&gt;" in render("index.html", board, method="<b>", groups="", skipped=[])
