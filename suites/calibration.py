"""`calibration`: does the model know when it is unsure? ECE (equal-width and equal-mass), class-wise
ECE, MCE, Brier and NLL with bootstrap CIs; the same after temperature scaling fitted on a
patient-disjoint calibration part; reliability diagram and confidence histogram.

Options (`--option KEY=VALUE`): `n_bins` (default 15).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from benchmark.core.errors import CxrbenchError
from benchmark.core.metric_spec import MetricSpec, spec
from benchmark.core.suite import (SuiteConfig, SuiteResult, arrays, clusters_of, option_class, register_suite,
                                  view_frame)
from suites._partition import Partition, calibration_partition
from suites._reliability import confidence_histogram, reliability_bins, reliability_figure
from suites._temperature import fit_temperature, logits_from_probs, scaled_metrics, scaled_probs

SCORES = ("ece", "ece_adaptive", "classwise_ece", "mce", "brier", "nll")
N_BINS = 15

# Every calibration score is an error: lower is better, before and after temperature scaling alike.
# The fitted temperature is neither: T = 1 means the model was already calibrated in NLL, T > 1 that
# it was over-confident, T < 1 under-confident; no value is better than another in itself.
_ERRORS: tuple[MetricSpec, ...] = (
    spec("ece", False, 0, 1, "expected calibration error: top-label confidence vs accuracy, equal-width bins"),
    spec("ece_adaptive", False, 0, 1, "ECE with equal-mass bins"),
    spec("classwise_ece", False, 0, 1, "mean over classes of the one-vs-rest ECE"),
    spec("mce", False, 0, 1, "maximum calibration error over the occupied bins"),
    spec("brier", False, 0, 2, "multi-class Brier score (squared error of the probability vector)"),
    spec("nll", False, 0, None, "negative log-likelihood of the true class", unit="nats"),
)
METRICS: tuple[MetricSpec, ...] = (
    *_ERRORS,
    *(MetricSpec(f"{s.name}_ts", False, s.range, f"after temperature scaling, on the evaluation part: "
                 f"{s.description}", s.unit) for s in _ERRORS),
    spec("temperature", None, 0, None, "temperature T fitted by NLL on the calibration part (1: already "
         "calibrated; above 1: over-confident); neither direction is better"),
)


def n_bins_option(config: SuiteConfig) -> int:
    raw = config.options.get("n_bins", str(N_BINS))
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise CxrbenchError(f"n_bins must be a positive integer, got {raw!r}", where="--option n_bins")
    return value


def _calibration_fn(n_bins: int):
    from benchmark.stats import calibration_stats

    def fn(y, probs, w):
        return calibration_stats(y, probs, w, n_bins=n_bins)
    return fn


def _scaled_fn(fit: np.ndarray, n_bins: int):
    """StatFn on logits: refit T on the calibration rows of each resample, then score the other rows.

    Refitting inside every resample makes the intervals of `*_ts` and `temperature` include the
    uncertainty of the fit itself, not only of the evaluation sample.
    """
    evaluate = ~fit

    def fn(y, z, w):
        w = np.atleast_2d(w)
        temps = fit_temperature(z[fit], y[fit], w[:, fit])
        out = scaled_metrics(z[evaluate], y[evaluate], temps, w[:, evaluate], n_bins)
        return {**{f"{m}_ts": out[m] for m in SCORES}, "temperature": temps}
    return fn


# `--option` keys this suite takes (registration validates them; n_bins_option checks the range).
CalibrationOptions = option_class("CalibrationOptions", {"n_bins": N_BINS})


@register_suite("calibration", views=("clean",), options=CalibrationOptions,
                description="ECE, adaptive ECE, class-wise ECE, MCE, Brier, NLL; temperature scaling; reliability")
def calibration(predictions: pd.DataFrame, manifest: pd.DataFrame, config: SuiteConfig) -> SuiteResult:
    from benchmark.stats import bootstrap

    n_bins = n_bins_option(config)
    frame = view_frame(predictions, "clean")
    y, probs = arrays(frame)
    clusters = clusters_of(frame)
    result = SuiteResult()
    res = bootstrap(_calibration_fn(n_bins), y, probs, clusters=clusters, config=config.bootstrap)
    result.metrics.update(res.estimates)
    before = reliability_bins(y, probs, n_bins)
    result.tables["reliability"] = before
    curves = {"all images, as predicted": before}

    part = calibration_partition(frame, manifest, seed=config.seed)
    if _usable(part, frame, result):
        after = _temperature_scaling(frame, y, probs, part, n_bins, config, result)
        curves = {"all images, as predicted": before, **after}
    result.figures["reliability_diagram"] = reliability_figure(curves, f"Reliability diagram ({n_bins} equal-width bins)")
    result.figures["confidence_histogram"] = confidence_histogram(curves, "Top-label confidence")
    return result


def _usable(part: Partition, frame: pd.DataFrame, result: SuiteResult) -> bool:
    patients = frame["patient_id"].astype(str)
    n_fit, n_eval = patients[part.fit].nunique(), patients[part.evaluate].nunique()
    if min(n_fit, n_eval) < 2:
        result.notes.append(f"temperature scaling skipped: the calibration part ({part.source}) has {n_fit} "
                            f"patients and the evaluation part {n_eval}; each needs at least 2")
        return False
    return True


def _temperature_scaling(frame, y, probs, part: Partition, n_bins: int, config: SuiteConfig,
                         result: SuiteResult) -> dict[str, list[dict]]:
    from benchmark.stats import bootstrap

    keep = part.fit | part.evaluate
    z = logits_from_probs(probs)
    clusters = clusters_of(frame)
    res = bootstrap(_scaled_fn(part.fit[keep], n_bins), y[keep], z[keep],
                    clusters=None if clusters is None else clusters[keep],
                    strata=part.fit[keep].astype(np.int64), config=config.bootstrap)
    result.metrics.update(res.estimates)
    temp = result.metrics["temperature"].value
    ev = part.evaluate
    base = _calibration_fn(n_bins)(y[ev], probs[ev], np.ones((1, int(ev.sum()))))
    patients = frame["patient_id"].astype(str)
    result.tables["temperature_scaling"] = [
        {"part": "calibration (T fitted here)", "chosen by": part.source, "images": int(part.fit.sum()),
         "patients": int(patients[part.fit].nunique())},
        {"part": "evaluation (*_ts measured here)", "chosen by": "the other patients", "images": int(ev.sum()),
         "patients": int(patients[ev].nunique())},
    ]
    result.tables["evaluation_part_before_after"] = [
        {"metric": m, "as predicted": float(base[m][0]), "temperature-scaled": result.metrics[f"{m}_ts"].to_json()}
        for m in SCORES
    ]
    result.notes.append(
        f"temperature scaling: T = {temp:.3f} fitted by minimizing NLL on {part.source} "
        f"({int(part.fit.sum())} images); *_ts metrics on the other {int(ev.sum())} images; T is refitted in every "
        "bootstrap resample")
    if part.dropped:
        result.notes.append(f"{part.dropped} non-val images of patients who also have val images are in neither part")
    scaled = scaled_probs(z[ev], temp)
    return {"evaluation part, as predicted": reliability_bins(y[ev], probs[ev], n_bins),
            f"evaluation part, T = {temp:.2f}": reliability_bins(y[ev], scaled, n_bins)}
