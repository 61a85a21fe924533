"""Benchmark: the stats engine's cluster bootstrap versus a scikit-learn loop and scipy.

Setup: 10,000 images from 2,500 patients (4 each), 4 classes, B = 2,000 patient-level resamples,
every classification_stats metric (accuracy ... macro AUROC, mAP and the per-class ones).

    python perf/bootstrap.py [--loop-resamples 20]

Prints, from one run on this machine: engine time; a plain Python loop that calls scikit-learn on
each resample (timed on --loop-resamples of the same draws, extrapolated linearly to B, as labelled);
scipy.stats.bootstrap on accuracy (image-level, and patient-level as a paired ratio statistic); the
ratios; and the engine's peak memory (tracemalloc: peak of Python + numpy allocations; plus the
process's max RSS). Each time is given as wall-clock and as this process's CPU time: on a shared
machine the wall clock also counts time spent waiting for a core, so the load average is printed too.
"""
from __future__ import annotations

import argparse
import functools
import os
import resource
import time
import tracemalloc
import warnings
from typing import Self

import numpy as np
from scipy import stats as sps
from sklearn import metrics as skm

from benchmark.stats import (
    BootstrapConfig,
    bootstrap,
    calibration_stats,
    classification_stats,
    draw_counts,
    make_units,
)
from benchmark.stats.confusion import accuracy, confusion_matrices

N_IMAGES, N_PATIENTS, K, B = 10_000, 2_500, 4, 2_000
NAMES = ("negative", "typical", "indeterminate", "atypical")


def make_data(seed: int = 0):
    rng = np.random.default_rng(seed)
    patients = np.repeat(np.arange(N_PATIENTS), N_IMAGES // N_PATIENTS)
    y = np.repeat(rng.integers(0, K, N_PATIENTS), N_IMAGES // N_PATIENTS)
    logits = rng.normal(size=(N_IMAGES, K)) + 1.0 * np.eye(K)[y]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, probs, patients


def sklearn_metrics(y: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """What the engine computes, one scikit-learn call per metric (per-class ones included)."""
    pred = probs.argmax(axis=1)
    out = {
        "accuracy": skm.accuracy_score(y, pred),
        "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
        "macro_f1": skm.f1_score(y, pred, average="macro"),
        "kappa": skm.cohen_kappa_score(y, pred),
        "mcc": skm.matthews_corrcoef(y, pred),
    }
    prec, rec, f1, _ = skm.precision_recall_fscore_support(y, pred, labels=list(range(K)), zero_division=np.nan)
    aurocs = [skm.roc_auc_score(y == c, probs[:, c]) for c in range(K)]
    aps = [skm.average_precision_score(y == c, probs[:, c]) for c in range(K)]
    out["macro_auroc"], out["map"] = float(np.mean(aurocs)), float(np.mean(aps))
    for c, name in enumerate(NAMES):
        out |= {f"precision_{name}": prec[c], f"recall_{name}": rec[c], f"f1_{name}": f1[c],
                f"auroc_{name}": aurocs[c], f"ap_{name}": aps[c]}
    return out


class Clock:
    """Wall-clock and process CPU seconds of a block (CPU time is robust to other jobs' load)."""

    def __enter__(self) -> Self:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu


def best_of(fn, repeats: int) -> tuple[float, float, object]:
    """(best wall, best cpu, last result) over `repeats` runs."""
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        with Clock() as c:
            out = fn()
        walls.append(c.wall)
        cpus.append(c.cpu)
    return min(walls), min(cpus), out


def sklearn_loop(y, probs, patients, cfg, n_loop: int) -> tuple[float, float, list[dict[str, float]]]:
    """Per-resample (wall, cpu) seconds of the scikit-learn loop over the engine's first draws."""
    units = make_units(y.size, clusters=patients)
    counts = next(draw_counts(units.n_units, BootstrapConfig(n_resamples=B, seed=cfg.seed, chunk=n_loop)))
    results = []
    with warnings.catch_warnings(), Clock() as c:
        warnings.simplefilter("ignore")
        for row in counts:
            idx = np.repeat(np.arange(y.size), row[units.codes])
            results.append(sklearn_metrics(y[idx], probs[idx]))
    return c.wall / n_loop, c.cpu / n_loop, results


def scipy_image_level(y, probs):
    correct = (probs.argmax(axis=1) == y).astype(np.float64)
    return sps.bootstrap((correct,), np.mean, n_resamples=B, vectorized=True, method="percentile", random_state=0)


def scipy_patient_level(y, probs, patients):
    correct = (probs.argmax(axis=1) == y).astype(np.float64)
    per_patient = (np.bincount(patients, weights=correct), np.bincount(patients).astype(np.float64))
    return sps.bootstrap(per_patient, lambda c, n, axis: c.sum(axis) / n.sum(axis), paired=True,
                         n_resamples=B, vectorized=True, method="percentile", random_state=0)


def accuracy_only(y, probs, w):
    """The engine's confusion kernel alone: the like-for-like comparison with scipy."""
    return {"accuracy": accuracy(confusion_matrices(y, probs.argmax(axis=1), np.asarray(w, dtype=np.float64), K))}


def row(label: str, wall: float, cpu: float, note: str = "") -> None:
    print(f"  {label:<46} {wall:9.3f} s wall {cpu:9.3f} s cpu  {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loop-resamples", type=int, default=20)
    args = parser.parse_args()
    y, probs, patients = make_data()
    cfg = BootstrapConfig(n_resamples=B, seed=0)
    stats = functools.partial(classification_stats, class_names=NAMES)
    load_before = os.getloadavg()[0]

    def engine(stat_fn=stats, clusters=patients):
        return bootstrap(stat_fn, y, probs, clusters=clusters, config=cfg)

    eng_wall, eng_cpu, result = best_of(engine, 3)
    rss_after_engine = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tracemalloc.start()
    engine()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    per_wall, per_cpu, loop_results = sklearn_loop(y, probs, patients, cfg, args.loop_resamples)
    worst = max(abs(loop_results[r][k] - result.replicates(k)[r]) for r in range(len(loop_results))
                for k in loop_results[r])
    sci_img = best_of(lambda: scipy_image_level(y, probs), 3)
    sci_pat = best_of(lambda: scipy_patient_level(y, probs, patients), 3)
    acc_img = best_of(lambda: engine(accuracy_only, None), 3)
    acc_pat = best_of(lambda: engine(accuracy_only, patients), 3)
    calib = best_of(lambda: engine(calibration_stats), 1)

    print(f"setup: {N_IMAGES} images, {N_PATIENTS} patients, K={K}, B={B} patient resamples, "
          f"{len(result.estimates)} metrics (classification_stats), chunk={cfg.chunk}, "
          f"{os.cpu_count()} CPUs, load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}")
    print("all classification_stats metrics:")
    row("engine (best of 3)", eng_wall, eng_cpu)
    row(f"sklearn loop (extrapolated: {args.loop_resamples} resamples x {B // args.loop_resamples})",
        per_wall * B, per_cpu * B, f"({per_wall * 1e3:.1f} ms per resample)")
    print(f"  speed-up engine vs sklearn loop: {per_wall * B / eng_wall:.0f}x wall, {per_cpu * B / eng_cpu:.0f}x cpu;"
          f" max |engine - sklearn| on those resamples {worst:.1e}")
    print("accuracy only, scipy.stats.bootstrap(vectorized=True, method='percentile') vs the engine's kernel:")
    row("scipy, image-level", *sci_img[:2])
    row("engine, image-level", *acc_img[:2], f"(scipy / engine: {sci_img[0] / acc_img[0]:.1f}x wall)")
    row("scipy, patient-level (paired ratio statistic)", *sci_pat[:2])
    row("engine, patient-level", *acc_pat[:2], f"(scipy / engine: {sci_pat[0] / acc_pat[0]:.1f}x wall)")
    print(f"  all {len(result.estimates)} metrics by the engine: {eng_wall / sci_img[0]:.1f}x the wall time of "
          "scipy's image-level accuracy alone")
    print("other:")
    row("engine, calibration_stats (6 metrics)", *calib[:2])
    print(f"  peak memory of one engine run (tracemalloc):   {peak / 2**20:7.1f} MiB")
    print(f"  process max RSS after the engine runs:         {rss_after_engine:7.1f} MiB")


if __name__ == "__main__":
    main()
