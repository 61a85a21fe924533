"""The deploy-readiness gate: a policy of metric bounds checked against one run's result.json.

Policy (YAML):
    name: my-policy            # optional
    description: ...           # optional
    checks:
      - metric: subtype.macro_f1   # <suite>.<metric> in result.json
        bound: lower               # which number to compare: the CI's lower end, its upper end, or the value
        min: 0.40                  # min and/or max
        reason: why this bar       # optional, shown in the summary
      - metric: cross_site.balanced_accuracy   # a metric measured per group (result.json `grouped`)
        group: site_a              # one group's value, or `worst`: the group whose compared number is worst
        bound: lower               # (lowest where the metric's spec says higher is better, else highest)
        min: 0.35
    allow_unreliable_ci: false     # optional: gate on CI bounds of a run with < 30 resampling units
Exit codes (set by the CLI): 0 every check passes, 1 some check fails, 2 the policy or the run is
unusable (bad YAML, unknown bound or key, a metric the run lacks or could not compute, a result file
that claims what no run can produce, a CI bound from too few patients to mean anything).

Policies may come from strangers: YAML aliases are refused (a few hundred bytes of nested aliases
expand to gigabytes) and so are duplicate keys (a second `min:` would silently win).
"""
from __future__ import annotations

import html
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.core.errors import CxrbenchError
from benchmark.reporting.numbers import value_ci

BOUNDS = {"lower": "lower end of CI", "upper": "upper end of CI", "value": "point value"}
CHECK_KEYS = ("metric", "group", "bound", "min", "max", "reason")
WORST = "worst"
POLICY_KEYS = ("name", "description", "checks", "allow_unreliable_ci")


@dataclass(frozen=True)
class Check:
    metric: str
    bound: str
    min: float | None = None
    max: float | None = None
    reason: str | None = None
    group: str | None = None  # a group value of a per-group metric, or WORST

    @property
    def label(self) -> str:
        if self.group is None:
            return self.metric
        return f"{self.metric} for the worst group" if self.group == WORST else f"{self.metric} for group {self.group}"

    @property
    def threshold(self) -> str:
        parts = [f"{op} {x:g}" for op, x in ((">=", self.min), ("<=", self.max)) if x is not None]
        return " and ".join(parts)

    @property
    def title(self) -> str:
        return f"{self.label} ({BOUNDS[self.bound]}) {self.threshold}"


@dataclass(frozen=True)
class Policy:
    name: str
    checks: tuple[Check, ...]
    source: str
    description: str = ""
    allow_unreliable_ci: bool = False  # CI bounds of runs with too few resampling units may be checked


@dataclass(frozen=True)
class CheckResult:
    check: Check
    observed: float          # the number the bound picked
    value: float | None      # the metric's point value and CI, for context
    ci: tuple[float | None, float | None]
    passed: bool
    group: str | None = None  # the group checked (the worst one's value for `group: worst`)

    @property
    def label(self) -> str:
        if self.check.group == WORST and self.group is not None:
            return f"{self.check.metric} for the worst group ({self.group})"
        return self.check.label


@dataclass(frozen=True)
class GateReport:
    policy: Policy
    run_dir: Path
    model: str
    dataset: str
    results: tuple[CheckResult, ...]

    @property
    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if not r.passed]

    @property
    def passed(self) -> bool:
        return not self.failed

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    @property
    def headline(self) -> str:
        n = len(self.results)
        return f"PASSED: {n} of {n} checks" if self.passed else f"FAILED: {len(self.failed)} of {n} checks failed"


# --- policy -----------------------------------------------------------------------------------------

def default_policy_path() -> Path:
    return Path(__file__).parents[1] / "policies" / "default.yaml"  # benchmark/policies/


def _strict_loader():
    """yaml.SafeLoader without aliases and without duplicate keys."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.composer.ComposerError(
                    None, None, f"aliases (*{event.anchor}) are not allowed in a policy; write the value out",
                    event.start_mark)
            return super().compose_node(parent, index)

        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # an unhashable key: SafeLoader reports it below
                    duplicate = False
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (each key may appear once)", key_node.start_mark)
            return super().construct_mapping(node, deep=deep)

    return StrictLoader


def load_policy(spec: str | Path) -> Policy:
    """A policy file, or `default` for the shipped deploy policy."""
    import yaml

    path = default_policy_path() if str(spec) == "default" else Path(spec)
    if not path.is_file():
        raise CxrbenchError("policy file not found (give a YAML file or 'default')", where=str(path))
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_strict_loader())  # noqa: S506 (safe)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise CxrbenchError(f"not valid YAML{at}: {problem}", where=str(path)) from exc
    except UnicodeDecodeError as exc:
        raise CxrbenchError("not a UTF-8 text file", where=str(path)) from exc
    return parse_policy(data, source=str(path))


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CxrbenchError(f"expected a finite number, found {value!r}", where=where)
    return float(value)


def parse_policy(data: Any, *, source: str = "policy") -> Policy:
    if not isinstance(data, dict):
        raise CxrbenchError("expected a mapping with a 'checks' list at the top level", where=source)
    unknown = [k for k in data if k not in POLICY_KEYS]
    if unknown:
        raise CxrbenchError(f"unknown key {unknown[0]!r}; expected {', '.join(POLICY_KEYS)}", where=source)
    checks = data.get("checks")
    if not isinstance(checks, list) or not checks:
        raise CxrbenchError("'checks' must be a non-empty list", where=source)
    out = []
    for i, item in enumerate(checks):
        where = f"{source}: checks[{i}]"
        if not isinstance(item, dict):
            raise CxrbenchError(f"expected a mapping, found {type(item).__name__}", where=where)
        unknown = [k for k in item if k not in CHECK_KEYS]
        if unknown:
            raise CxrbenchError(f"unknown key {unknown[0]!r}; expected {', '.join(CHECK_KEYS)}", where=where)
        metric = item.get("metric")
        if not isinstance(metric, str) or not re.fullmatch(r"[A-Za-z0-9_]+\.[A-Za-z0-9_@.\-]+", metric):
            raise CxrbenchError(f"'metric' must be <suite>.<metric>, found {metric!r}", where=where)
        bound = item.get("bound", "value")
        if bound not in BOUNDS:
            raise CxrbenchError(f"unknown bound {bound!r}; expected one of {', '.join(BOUNDS)}", where=where)
        lo, hi = _number(item.get("min"), f"{where}.min"), _number(item.get("max"), f"{where}.max")
        if lo is None and hi is None:
            raise CxrbenchError("a check needs 'min' or 'max'", where=where)
        if lo is not None and hi is not None and lo > hi:
            raise CxrbenchError(f"min {lo:g} is above max {hi:g}", where=where)
        reason, group = item.get("reason"), item.get("group")
        if group is not None and (not isinstance(group, str | int | float) or isinstance(group, bool)
                                  or not str(group).strip()):
            raise CxrbenchError(f"'group' must be a group value or 'worst', found {group!r}", where=where)
        out.append(Check(metric, bound, lo, hi, None if reason is None else str(reason),
                         None if group is None else str(group)))
    allow = data.get("allow_unreliable_ci", False)
    if not isinstance(allow, bool):
        raise CxrbenchError(f"'allow_unreliable_ci' must be true or false, found {allow!r}", where=source)
    name = data.get("name") or Path(source).stem
    return Policy(str(name), tuple(out), source, str(data.get("description") or ""), allow)


# --- evaluation -------------------------------------------------------------------------------------

def evaluate(result: dict[str, Any], policy: Policy, run_dir: Path) -> GateReport:
    """Check every bound; a metric the run lacks (or could not compute) makes the gate unusable."""
    from benchmark.reporting.result_rules import MIN_BOOTSTRAP_UNITS, ci_computed, ci_reliability
    from benchmark.reporting.result_schema import group_entries
    from benchmark.reporting.results import metric

    units, reliable = ci_reliability(result)
    on_bounds = [c for c in policy.checks if c.bound != "value"]
    if on_bounds and not ci_computed(result):
        raise CxrbenchError(
            f"unusable: the run computed no CIs (--bootstrap 0: point estimates only), so the check on "
            f"{on_bounds[0].metric} ({BOUNDS[on_bounds[0].bound]}) cannot be made; rerun with --bootstrap 1000, "
            "or check the point value", where=str(run_dir))
    if on_bounds and not reliable and not policy.allow_unreliable_ci:
        # A zero-width "95% CI" from one patient would pass any bound: that is no evidence.
        raise CxrbenchError(
            f"unusable: the run's CIs rest on {units if units is not None else 'an unknown number of'} resampling "
            f"units (fewer than {MIN_BOOTSTRAP_UNITS}), so the check on {on_bounds[0].metric} "
            f"({BOUNDS[on_bounds[0].bound]}) proves nothing; evaluate on more patients, or set "
            "allow_unreliable_ci: true in the policy", where=str(run_dir))
    missing = [c.metric for c in policy.checks if c.group is None and metric(result, c.metric) is None
               and not group_entries(result, c.metric)]
    missing += [c.metric for c in policy.checks if c.group is not None and not group_entries(result, c.metric)
                and metric(result, c.metric) is None]
    if missing:
        suites = sorted({m.partition(".")[0] for m in missing})
        raise CxrbenchError(
            f"the run lacks {len(missing)} metric(s) the policy checks: {', '.join(missing)} (run the "
            f"suite(s) {', '.join(suites)}, or fix the metric names)", where=str(run_dir))
    results = []
    for c in policy.checks:
        m, group = _pick(result, c, run_dir)
        ci = tuple(m.get("ci") or (None, None))
        observed = {"lower": ci[0], "upper": ci[1], "value": m.get("value")}[c.bound]
        if observed is None:
            raise CxrbenchError(f"{c.label} has no {BOUNDS[c.bound]} (undefined on this data)", where=str(run_dir))
        ok = (c.min is None or observed >= c.min) and (c.max is None or observed <= c.max)
        results.append(CheckResult(c, float(observed), m.get("value"), (ci[0], ci[1]), ok, group))
    return GateReport(policy, Path(run_dir), str(result["model"]["name"]), str(result["dataset"]["name"]),
                      tuple(results))


def _pick(result: dict[str, Any], c: Check, run_dir: Path) -> tuple[dict[str, Any], str | None]:
    """The {"value", "ci"} a check compares, and the group it belongs to (None for a plain metric)."""
    from benchmark.core.metric_spec import result_spec
    from benchmark.reporting.result_schema import group_entries
    from benchmark.reporting.results import metric

    entries = group_entries(result, c.metric)
    if c.group is None:
        m = metric(result, c.metric)
        if m is None:
            names = ", ".join(sorted(str(g["group"].get("value")) for g in entries))
            raise CxrbenchError(f"unusable: {c.metric} is measured per group; add `group:` with one of {names} "
                                f"or {WORST}", where=str(run_dir))
        return m, None
    if not entries:
        raise CxrbenchError(f"unusable: {c.metric} is not measured per group, so `group: {c.group}` names nothing; "
                            "drop the group", where=str(run_dir))
    if c.group != WORST:
        found = next((g for g in entries if str(g["group"].get("value")) == c.group), None)
        if found is None:
            column = entries[0]["group"].get("column")
            names = ", ".join(sorted(str(g["group"].get("value")) for g in entries))
            raise CxrbenchError(f"unusable: the run has no {column} group {c.group!r} for {c.metric} (groups: "
                                f"{names}, or {WORST})", where=str(run_dir))
        return found, c.group
    spec = result_spec(result, c.metric)
    if spec is None or spec.higher_is_better is None:
        why = "has no metric spec" if spec is None else "has no better direction (its spec says neither)"
        raise CxrbenchError(f"unusable: {c.metric} {why}, so no group is the worst; name a group",
                            where=str(run_dir))
    index = {"lower": 0, "upper": 1}

    def number(g: dict[str, Any]) -> float | None:
        ci = g.get("ci") or (None, None)
        return ci[index[c.bound]] if c.bound in index else g.get("value")

    defined = [g for g in entries if number(g) is not None]
    if not defined:
        raise CxrbenchError(f"{c.label} has no {BOUNDS[c.bound]} in any group (undefined on this data)",
                            where=str(run_dir))
    pick = min if spec.higher_is_better else max
    worst = pick(defined, key=number)
    return worst, str(worst["group"].get("value"))


def run_gate(run_dir: str | Path, policy: str | Path) -> GateReport:
    from benchmark.reporting.results import read_result

    pol = load_policy(policy)  # a bad policy is reported before the run is read
    try:
        result = read_result(run_dir)
    except CxrbenchError as exc:
        raise CxrbenchError(f"unusable run: {exc}") from exc
    return evaluate(result, pol, Path(run_dir))


# --- outputs ----------------------------------------------------------------------------------------

def _xml_text(s: str) -> str:
    """XML 1.0 cannot carry most control characters, whatever the escaping."""
    return re.sub(r"[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]", "?", s)


def junit_xml(report: GateReport) -> str:
    """One testsuite, one testcase per check; failed checks carry a <failure>."""
    n, f = str(len(report.results)), str(len(report.failed))
    root = ET.Element("testsuites", name="cxrbench gate", tests=n, failures=f, errors="0")
    suite = ET.SubElement(root, "testsuite", name=_xml_text(f"cxrbench gate: {report.policy.name}"),
                          tests=n, failures=f, errors="0", skipped="0")
    props = ET.SubElement(suite, "properties")
    for key, val in (("model", report.model), ("dataset", report.dataset), ("run_dir", str(report.run_dir)),
                     ("policy", report.policy.source)):
        ET.SubElement(props, "property", name=key, value=_xml_text(val))
    for r in report.results:
        case = ET.SubElement(suite, "testcase", classname=_xml_text(f"cxrbench.gate.{report.policy.name}"),
                             name=_xml_text(r.check.title), time="0")
        if not r.passed:
            fail = ET.SubElement(case, "failure", type="threshold",
                                 message=_xml_text(f"{r.label}: {BOUNDS[r.check.bound]} is "
                                                   f"{r.observed:.4f}, required {r.check.threshold}"))
            fail.text = _xml_text(r.check.reason or "")
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _md(s: str) -> str:
    """Text safe in a Markdown table cell: no HTML, no formatting, no cell breaks."""
    s = html.escape(s, quote=False).replace("\n", " ")
    return re.sub(r"([\\`*_{}\[\]()#+!|~])", r"\\\1", s)


def markdown_summary(report: GateReport) -> str:
    verdict, detail = report.headline.split(": ", 1)
    where = (f"Model **{_md(report.model)}** on dataset **{_md(report.dataset)}**, policy "
             f"**{_md(report.policy.name)}**, run {_md(str(report.run_dir))}.")
    lines = [f"## cxrbench gate: {verdict} ({detail})", "", where, "",
             "| result | metric | compared | observed | required | value [95% CI] | reason |",
             "|---|---|---|---:|---|---|---|"]
    for r in report.results:
        lines.append(f"| {'pass' if r.passed else '**FAIL**'} | {_md(r.label)} | {BOUNDS[r.check.bound]} | "
                     f"{r.observed:.3f} | {_md(r.check.threshold)} | {value_ci(r.value, r.ci)} | "
                     f"{_md(r.check.reason or '')} |")
    return "\n".join(lines) + "\n"


def gate_table(report: GateReport) -> Any:
    from rich.table import Table
    from rich.text import Text

    from benchmark.core.textsafe import terminal_safe

    table = Table(title=Text(terminal_safe(f"gate: policy {report.policy.name} on {report.model} / {report.dataset}")),
                  caption=Text(report.headline, style="bold green" if report.passed else "bold red"))
    for col, justify in (("result", "left"), ("metric", "left"), ("compared", "left"), ("observed", "right"),
                         ("required", "left"), ("value [95% CI]", "right")):
        table.add_column(col, justify=justify)
    for r in report.results:
        table.add_row(Text("pass", style="green") if r.passed else Text("FAIL", style="bold red"),
                      Text(terminal_safe(r.label)), BOUNDS[r.check.bound], f"{r.observed:.3f}",
                      r.check.threshold,
                      Text(value_ci(r.value, r.ci)))
    return table
