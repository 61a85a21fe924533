"""The verdict a reader wants first: is this model usable, where does it fail, can the numbers be trusted?

One pure function of a result (and, when at hand, its predictions) gives what the top of report.html
and the end of the terminal output show: the default deploy policy checked one check at a time through
the gate's own `evaluate` (so each check is pass, fail or unusable on its own), the shortcut suite's
verdict, headline numbers with their CIs, and plain warnings.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.core.errors import CxrbenchError

FEW_PATIENTS = 30  # fallback when provenance does not say whether the CIs are reliable


@dataclass(frozen=True)
class CheckLine:
    metric: str
    compared: str                 # "lower end of CI", "upper end of CI", "point value"
    required: str                 # ">= 0.7"
    status: str                   # pass | fail | unusable
    observed: float | None = None
    value: float | None = None
    ci: tuple[float | None, float | None] = (None, None)
    reason: str = ""              # the policy's reason for the bar
    problem: str = ""             # why an unusable check could not be decided


@dataclass(frozen=True)
class Headline:
    label: str
    metric: str                   # suite.metric
    value: float | None
    ci: tuple[float | None, float | None] | None  # None: the run computed no CIs (--bootstrap 0)
    note: str = ""


@dataclass(frozen=True)
class Verdict:
    policy: str
    checks: tuple[CheckLine, ...]
    shortcut: tuple[str, str] | None       # (code, explanation) when the shortcut suite ran
    headlines: tuple[Headline, ...]
    warnings: tuple[str, ...]

    @property
    def failed(self) -> list[CheckLine]:
        return [c for c in self.checks if c.status == "fail"]

    @property
    def unusable(self) -> list[CheckLine]:
        return [c for c in self.checks if c.status == "unusable"]

    @property
    def outcome(self) -> str:
        """As `cxrbench gate` would end: unusable before fail before pass."""
        return "unusable" if self.unusable else "fail" if self.failed else "pass"

    @property
    def summary(self) -> str:
        n = len(self.checks)
        if self.outcome == "pass":
            return f"PASS: all {n} checks of the {self.policy} deploy policy pass"
        parts = [f"{len(self.failed)} of {n} checks fail"] if self.failed else []
        if self.unusable:
            parts.append(f"{len(self.unusable)} cannot be decided")
        word = "FAIL" if self.outcome == "fail" else "UNDECIDED"
        return f"{word}: {', '.join(parts)} ({self.policy} deploy policy)"


def build_verdict(result: dict[str, Any], predictions: Any = None, *, policy: str | Path = "default") -> Verdict:
    from benchmark.reporting.gate import load_policy

    pol = load_policy(policy)
    checks = tuple(_check(result, pol, c) for c in pol.checks)
    return Verdict(pol.name, checks, _shortcut(result), _headlines(result), tuple(_warnings(result, predictions)))


def _check(result: dict[str, Any], policy: Any, check: Any) -> CheckLine:
    from benchmark.reporting.gate import BOUNDS, evaluate

    line = CheckLine(check.label, BOUNDS[check.bound], check.threshold, "unusable", reason=check.reason or "")
    try:
        r = evaluate(result, dataclasses.replace(policy, checks=(check,)), Path("run")).results[0]
    except CxrbenchError as exc:
        text = str(exc)
        text = text[len(exc.where) + 2:] if exc.where and text.startswith(f"{exc.where}: ") else text
        return dataclasses.replace(line, problem=text)
    return dataclasses.replace(line, metric=r.label, status="pass" if r.passed else "fail", observed=r.observed,
                               value=r.value, ci=r.ci)


def _metric(result: dict[str, Any], address: str) -> dict[str, Any] | None:
    from benchmark.reporting.results import metric

    m = metric(result, address)
    return m if isinstance(m, dict) else None


def _shortcut(result: dict[str, Any]) -> tuple[str, str] | None:
    rows = result["suites"].get("shortcut", {}).get("tables", {}).get("verdict")
    if isinstance(rows, list) and rows and isinstance(rows[0], dict):
        return str(rows[0].get("verdict", "")), str(rows[0].get("explanation", ""))
    return None


def _headlines(result: dict[str, Any]) -> tuple[Headline, ...]:
    out = []
    for label, address in (("Macro-F1 (all images)", "subtype.macro_f1"),
                           ("Calibration error (ECE)", "calibration.ece")):
        m = _metric(result, address)
        if m is not None:
            out.append(Headline(label, address, m.get("value"), _ci(m)))
    worst = next(((k, m) for k, m in result["suites"].get("cross_site", {}).get("metrics", {}).items()
                  if k.startswith("worst_") and k.endswith("_balanced_accuracy")), None)
    if worst is not None:
        name, m = worst
        group = _worst_group(result, name)
        out.append(Headline("Worst site, balanced accuracy", f"cross_site.{name}", m.get("value"), _ci(m),
                            f"{group}" if group else ""))
    return tuple(out)


def _ci(m: dict[str, Any]) -> tuple[float | None, float | None] | None:
    ci = m.get("ci")
    if ci is None:
        return None
    return (ci[0], ci[1]) if isinstance(ci, list) and len(ci) == 2 else (None, None)


def _worst_group(result: dict[str, Any], worst_name: str) -> str | None:
    """The group whose balanced accuracy is the worst value, read from the per-group table."""
    body = result["suites"].get("cross_site", {})
    target = (body.get("metrics", {}).get(worst_name) or {}).get("value")
    rows = body.get("tables", {}).get("per_group")
    if not isinstance(rows, list) or not isinstance(target, int | float):
        return None
    for row in rows:
        if not isinstance(row, dict):
            continue
        cell = row.get("balanced_accuracy")
        v = cell.get("value") if isinstance(cell, dict) else None
        if isinstance(v, int | float) and math.isclose(v, target, abs_tol=1e-12):
            key = next((k for k in row if k not in ("images", "patients") and not isinstance(row[k], dict)), None)
            return None if key is None else str(row[key])
    return None


def _warnings(result: dict[str, Any], predictions: Any) -> list[str]:
    from benchmark import METRIC_CODE_VERSION

    out = []
    prov, counts = result["provenance"], result["dataset"].get("counts", {})
    bs = prov.get("bootstrap") if isinstance(prov.get("bootstrap"), dict) else {}
    unit = str(bs.get("unit") or "patient")
    if "ci_reliable" in bs:
        if bs["ci_reliable"] is False:
            out.append(f"Few {unit}s: the confidence intervals rest on {bs.get('units')} {unit}s, fewer than "
                       f"{bs.get('min_units')}; they are rough, and checks on a CI bound cannot be decided.")
    elif isinstance(counts.get("patients"), int) and counts["patients"] < FEW_PATIENTS:
        out.append(f"Few patients: {counts['patients']} (fewer than {FEW_PATIENTS}); the confidence intervals are "
                   "rough.")
    for flag in result["suites"].get("shortcut", {}).get("tables", {}).get("flags", []) or []:
        if isinstance(flag, dict) and flag.get("flag") == "lung_mask_prior":
            out.append(f"No lung masks for {flag.get('images')} images: a geometric lung prior stood in for them, so "
                       "the lung-based shortcut views hide the lungs only roughly.")
    version = prov.get("metric_code_version")
    if str(version) != METRIC_CODE_VERSION:
        out.append(f"Stale metric code: computed with metric code version {version}, this cxrbench has "
                   f"{METRIC_CODE_VERSION}; a rerun may give other numbers.")
    constant = _constant_outputs(result, predictions)
    if constant:
        out.append(constant)
    return out


def _constant_outputs(result: dict[str, Any], predictions: Any) -> str | None:
    """Outputs that do not depend on the image: every image gets the same probabilities, or one class."""
    import numpy as np

    from benchmark.core.labels import CLASSES, PROB_COLUMNS

    if predictions is not None and {"view", *PROB_COLUMNS} <= set(predictions.columns):
        clean = predictions[predictions["view"] == "clean"]
        probs = clean[list(PROB_COLUMNS)].to_numpy(dtype=np.float64)
        if len(probs) >= 2:
            from benchmark.models.output_checks import CONSTANT_SPREAD, output_spread

            spread = output_spread(probs)  # the measure `cxrbench card check` and the runner use
            if spread < 1e-6:
                return "Constant outputs: the model gives every image the same probabilities."
            if spread < CONSTANT_SPREAD:
                return (f"Nearly constant outputs: no class probability moves by more than {spread:.2g} "
                        "across images (a wrong input normalisation looks like this).")
            top = np.bincount(probs.argmax(axis=1), minlength=len(CLASSES))
            if top.max() == len(probs):
                return f"Constant-looking outputs: the model predicts {CLASSES[int(top.argmax())]} for every image."
        return None
    cm = result["suites"].get("subtype", {}).get("tables", {}).get("confusion_matrix")
    matrix = cm.get("rows_true_cols_pred") if isinstance(cm, dict) else None
    try:
        cols = np.asarray(matrix, dtype=np.float64).sum(axis=0)
    except (TypeError, ValueError):
        return None
    if cols.ndim == 1 and cols.size == len(CLASSES) and cols.sum() > 1 and (cols > 0).sum() == 1:
        return f"Constant-looking outputs: the model predicts {CLASSES[int(cols.argmax())]} for every image."
    return None
