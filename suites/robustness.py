"""`robustness`: acquisition shifts at three severities each (benchmark/views/acquisition.py).

Per shift and severity: balanced accuracy, macro-F1, flip rate and KL(clean || view) with bootstrap
CIs (the same resamples as clean). `robust_macro_f1` is the mean over shift kinds of the mean
macro-F1 over that kind's severities (each kind weighs the same; `invert` has one severity), with
`robust_balanced_accuracy` likewise and `robust_macro_f1_drop` = clean macro-F1 - robust_macro_f1.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from benchmark.stats import Estimate
from benchmark.core.metric_spec import MetricSpec, spec as metric
from benchmark.core.suite import SuiteConfig, SuiteResult, register_suite
from benchmark.reporting.numbers import estimate_text
from suites.shortcut import cell, error_bars, finite, view_scores

# Three severities (mild, moderate, severe) per shift, as view parameters.
SEVERITIES: dict[str, tuple[str, ...]] = {
    "gamma": ("1.25", "1.6", "2.2"),
    "contrast": ("0.75", "0.5", "0.3"),
    "noise": ("0.02", "0.05", "0.1"),
    "blur": ("1", "2", "4"),
    "resample": ("2", "4", "8"),
    "jpeg": ("50", "20", "5"),
    "invert": ("",),
    "marker": ("1", "2", "4"),
    "rotate": ("5", "10", "15"),
    "crop": ("1.1", "1.25", "1.5"),
}
PER_VIEW = ("balanced_accuracy", "macro_f1", "flip_rate", "kl")
MEANING = {
    "gamma": "display curve x^g or x^(1/g)", "contrast": "contrast around the mean scaled by c",
    "noise": "Gaussian noise, sd", "blur": "Gaussian blur, sigma px at 256", "resample": "down/up-sampling factor",
    "jpeg": "JPEG quality", "invert": "inverted photometry (MONOCHROME1 read as MONOCHROME2)",
    "marker": "burned-in marks (letters, text)", "rotate": "rotation, degrees", "crop": "zoom factor",
}


def spec(kind: str, param: str) -> str:
    return f"{kind}@{param}" if param else kind


def tag(kind: str, level: int) -> str:
    """Metric prefix: `noise_s2`; single-severity kinds are just `invert`."""
    return kind if len(SEVERITIES[kind]) == 1 else f"{kind}_s{level}"


SHIFTS = [(kind, level, param) for kind, params in SEVERITIES.items() for level, param in enumerate(params, 1)]
VIEWS = ("clean", *(spec(k, p) for k, _, p in SHIFTS))
TAGS = tuple(tag(k, lv) for k, lv, _ in SHIFTS)

# An acquisition shift carries no disease: keeping accuracy is better, changing answers (flip rate)
# or output distributions (KL) is worse, and so is the drop from clean to shifted macro-F1.
METRICS: tuple[MetricSpec, ...] = (
    metric("robust_macro_f1", True, 0, 1, "mean over shift kinds of the mean macro-F1 over its severities"),
    metric("robust_balanced_accuracy", True, 0, 1, "the same mean of balanced accuracy"),
    metric("robust_macro_f1_drop", False, -1, 1, "clean macro-F1 minus robust_macro_f1"),
    metric("clean_macro_f1", True, 0, 1, "macro-F1 on the clean images scored with the shifts"),
    metric("clean_balanced_accuracy", True, 0, 1, "balanced accuracy on the clean images scored with the shifts"),
    metric("{shift}_balanced_accuracy", True, 0, 1, "balanced accuracy under one shift and severity",
           choices=(("shift", TAGS),)),
    metric("{shift}_macro_f1", True, 0, 1, "macro-F1 under one shift and severity", choices=(("shift", TAGS),)),
    metric("{shift}_flip_rate", False, 0, 1, "share of images whose argmax changed from clean",
           choices=(("shift", TAGS),)),
    metric("{shift}_kl", False, 0, None, "mean KL(clean || shifted)", unit="nats", choices=(("shift", TAGS),)),
)


def _summary(kinds: dict[str, list[str]]):
    def extra(out: dict) -> dict:
        res = {}
        for metric in ("macro_f1", "balanced_accuracy"):
            per_kind = [np.mean([out[f"{t}_{metric}"] for t in tags], axis=0) for tags in kinds.values()]
            res[f"robust_{metric}"] = np.mean(per_kind, axis=0)
        res["robust_macro_f1_drop"] = out["clean_macro_f1"] - res["robust_macro_f1"]
        return res
    return extra


@register_suite("robustness", views=VIEWS,
                description="acquisition shifts (gamma, contrast, noise, blur, resampling, JPEG, inversion, "
                            "burned-in marks, rotation, crop) at 3 severities: metrics, degradation curves, "
                            "robust_macro_f1")
def robustness(predictions: pd.DataFrame, manifest: pd.DataFrame, config: SuiteConfig) -> SuiteResult:
    present = set(predictions["view"])
    shifts = [(k, lv, p) for k, lv, p in SHIFTS if spec(k, p) in present]
    kinds: dict[str, list[str]] = {}
    for k, lv, _ in shifts:
        kinds.setdefault(k, []).append(tag(k, lv))
    est, _ = view_scores(predictions, {tag(k, lv): spec(k, p) for k, lv, p in shifts}, config, _summary(kinds))
    result = SuiteResult()
    for name in ("robust_macro_f1", "robust_balanced_accuracy", "robust_macro_f1_drop", "clean_macro_f1",
                 "clean_balanced_accuracy"):
        result.metrics[name] = est[name]
    for k, lv, _ in shifts:
        for m in PER_VIEW:
            result.metrics[f"{tag(k, lv)}_{m}"] = est[f"{tag(k, lv)}_{m}"]
    result.tables["per_view"] = [
        {"shift": k, "severity": lv, "parameter": p or "-", "meaning": MEANING[k],
         **{m: cell(est, f"{tag(k, lv)}_{m}") for m in PER_VIEW}} for k, lv, p in shifts]
    worst = min(shifts, key=lambda s: est[f"{tag(s[0], s[1])}_macro_f1"].value, default=None)
    r = est["robust_macro_f1"]
    c = est["clean_macro_f1"]
    text = (f"Macro-F1 {c.value:.3f} on clean images, {estimate_text(r)} on average "
            "over acquisition shifts and severities")
    if worst is not None:
        w = est[f"{tag(worst[0], worst[1])}_macro_f1"]
        text += f"; the hardest is {spec(worst[0], worst[2])} ({w.value:.3f})."
    result.notes.append(text)
    result.figures["degradation_macro_f1"] = curves(est, kinds, "macro_f1", "Macro-F1")
    result.figures["degradation_flip_rate"] = curves(est, kinds, "flip_rate", "Flip rate (argmax changed)")
    return result


def curves(est: dict, kinds: dict[str, list[str]], metric: str, title: str) -> dict:
    """One line per shift kind: the metric against severity (0 = clean), with CI error bars."""
    data = []
    for kind, tags in kinds.items():
        base = est[f"clean_{metric}"] if metric != "flip_rate" else None
        points = ([base] if base is not None else [None]) + [est[f"{t}_{metric}"] for t in tags]
        xs = list(range(len(points))) if len(tags) > 1 else [0, 3]
        zero = Estimate(0.0, (0.0, 0.0))  # flip rate on clean images
        points = [zero if p is None else p for p in points]
        data.append({"type": "scatter", "mode": "lines+markers", "name": kind, "x": xs,
                     "y": [finite(p.value) for p in points], "error_y": error_bars(points)})
    return {"data": data,
            "layout": {"title": {"text": f"{title} against severity (0 = clean; invert has one level, drawn at 3)"},
                       "xaxis": {"title": {"text": "severity"}, "tickvals": [0, 1, 2, 3]},
                       "yaxis": {"title": {"text": metric}}, "height": 440, "width": 720}}
