"""Paired comparison of runs scored on the same images: `cxrbench compare`, and the leaderboard's
compare pages and tie groups.

For every pair of runs and every metric: both values, the difference a - b with a paired bootstrap
interval (both models on the same resamples of patients, or of images when each patient has one),
and a p-value from the test that suits the metric: DeLong (Obuchowski's cluster variance when
patients have several images) for a binary AUROC, exact McNemar for accuracy when images are
independent, the paired bootstrap otherwise. The p-values of every test in the table form one family
and are adjusted together (Holm by default, Benjamini-Hochberg on request); a test whose adjusted
p-value is at least alpha is a statistical tie.

Pure: reads each run folder's result.json and predictions.parquet (clean view), writes nothing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.core.errors import CxrbenchError
from benchmark.core.jsonsafe import finite
from benchmark.reporting.numbers import ci_text, num, signed
from benchmark.core.labels import CLASSES, COARSE_TASKS, PROB_COLUMNS
from benchmark.stats import BootstrapConfig

DEFAULT_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "kappa", "macro_auroc", "map", "pneumonia_auroc")
CORRECTIONS = {"holm": "Holm", "fdr_bh": "Benjamini-Hochberg (FDR)"}
DEFAULT_BOOTSTRAP = BootstrapConfig()
BINARY_AUROCS = {**{f"{t}_auroc": t for t in COARSE_TASKS}, **{f"auroc_{c}": c for c in CLASSES}}


@dataclass(frozen=True)
class PairedRun:
    """One run's clean-view predictions, sorted by image id, ready to pair with another run's."""

    label: str
    run_dir: Path
    result: dict[str, Any]
    image_ids: np.ndarray
    y: np.ndarray
    probs: np.ndarray
    clusters: np.ndarray | None  # patient codes, None when every patient has one image

    @property
    def manifest_sha256(self) -> str:
        return str(self.result["dataset"].get("manifest_sha256"))


@dataclass(frozen=True)
class MetricTest:
    metric: str
    value_a: float
    value_b: float
    diff: float                  # value_a - value_b
    ci: tuple[float, float]      # paired bootstrap interval of the difference
    test: str                    # where p_value comes from
    p_value: float
    p_adjusted: float = math.nan
    significant: bool | None = None  # None: the test was undefined on this data
    higher_is_better: bool | None = True  # from the metric's spec (benchmark.core.metric_spec)

    @property
    def verdict(self) -> str:
        if self.significant is None:
            return "n/a"
        if not self.significant:
            return "tied"
        if self.higher_is_better is None:
            return "differ"
        return "A better" if (self.diff > 0) == self.higher_is_better else "B better"

    def to_json(self) -> dict[str, Any]:
        f = finite
        return {"metric": self.metric, "value_a": f(self.value_a), "value_b": f(self.value_b),
                "diff": f(self.diff), "ci": [f(self.ci[0]), f(self.ci[1])], "test": self.test,
                "p_value": f(self.p_value), "p_adjusted": f(self.p_adjusted), "verdict": self.verdict}


@dataclass(frozen=True)
class PairComparison:
    a: str
    b: str
    run_a: Path
    run_b: Path
    rows: tuple[MetricTest, ...]

    @property
    def differs(self) -> list[MetricTest]:
        return [r for r in self.rows if r.significant]

    @property
    def tied(self) -> bool:
        """No metric differs significantly after correction."""
        return not self.differs


@dataclass(frozen=True)
class Comparison:
    runs: tuple[str, ...]
    pairs: tuple[PairComparison, ...]
    correction: str
    alpha: float
    n_tests: int
    n_images: int
    n_units: int
    unit: str
    bootstrap: BootstrapConfig

    @property
    def correction_name(self) -> str:
        return CORRECTIONS[self.correction]

    def describe(self) -> str:
        level = round(self.bootstrap.level * 100)
        return (f"diff = A - B with a {level}% paired {self.bootstrap.method} bootstrap interval over "
                f"{self.n_units} {self.unit}s (B={self.bootstrap.n_resamples}); p-values adjusted by "
                f"{self.correction_name} over {self.n_tests} tests; tied = adjusted p >= {self.alpha:g}")

    @property
    def resolution_warning(self) -> str | None:
        """Bootstrap p-values cannot go below 2 / (B + 1); after correction that floor may sit above alpha."""
        floor = 2.0 / (self.bootstrap.n_resamples + 1)
        if self.n_tests and floor * self.n_tests >= self.alpha:
            return (f"with B={self.bootstrap.n_resamples} the smallest bootstrap p-value is {floor:.4f}; over "
                    f"{self.n_tests} tests the correction may keep every bootstrap test above alpha "
                    f"(use --bootstrap {int(2 * self.n_tests / self.alpha) + 1} or more)")
        return None

    def to_json(self) -> dict[str, Any]:
        return {"runs": list(self.runs), "correction": self.correction, "alpha": self.alpha,
                "n_tests": self.n_tests, "n_images": self.n_images, "n_units": self.n_units, "unit": self.unit,
                "bootstrap": self.bootstrap.to_json(), "description": self.describe(),
                "warning": self.resolution_warning,
                "pairs": [{"a": p.a, "b": p.b, "run_a": str(p.run_a), "run_b": str(p.run_b), "tied": p.tied,
                           "rows": [r.to_json() for r in p.rows]} for p in self.pairs]}


# --- loading --------------------------------------------------------------------------------------

def load_paired_run(run_dir: str | Path, label: str | None = None) -> PairedRun:
    """A run folder (or its result.json) with its predictions; errors name the file."""
    from benchmark.reporting.results import read_predictions, read_result

    run_dir = Path(run_dir)
    if run_dir.name == "result.json":
        run_dir = run_dir.parent
    result = read_result(run_dir)
    path = run_dir / "predictions.parquet"
    if not path.is_file():
        raise CxrbenchError("no predictions.parquet: a paired comparison needs per-image predictions",
                            where=str(run_dir))
    preds = read_predictions(path)
    clean = preds[preds["view"] == "clean"].sort_values("image_id", kind="stable")
    if clean.empty:
        raise CxrbenchError("no rows for the clean view", where=str(path))
    patients = clean["patient_id"].astype(str).to_numpy()
    uniq, codes = np.unique(patients, return_inverse=True)
    return PairedRun(
        label=label or str(result["model"]["name"]), run_dir=run_dir, result=result,
        image_ids=clean["image_id"].astype(str).to_numpy(),
        y=clean["label"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy(dtype=np.int64),
        probs=clean[list(PROB_COLUMNS)].to_numpy(dtype=np.float64),
        clusters=codes if uniq.size < patients.size else None,
    )


def load_runs(run_dirs: list[str | Path]) -> list[PairedRun]:
    """Runs to compare, all on the same images; labels are model names, made unique by run folder."""
    runs = [load_paired_run(d) for d in run_dirs]
    names = [r.label for r in runs]
    runs = [replace(r, label=f"{r.label} ({r.run_dir.name})") if names.count(r.label) > 1 else r for r in runs]
    for other in runs[1:]:
        check_same_images(runs[0], other)
    return runs


def check_same_images(a: PairedRun, b: PairedRun) -> None:
    """Refuse a pair not scored on the same images with the same labels."""
    if a.manifest_sha256 != b.manifest_sha256:
        raise CxrbenchError(
            f"runs are on different images: {a.run_dir} used dataset {a.result['dataset'].get('name')!r} "
            f"(manifest sha256 {a.manifest_sha256[:12]}), {b.run_dir} used "
            f"{b.result['dataset'].get('name')!r} (manifest sha256 {b.manifest_sha256[:12]}); a paired "
            "comparison needs both models scored on the same images", where="compare")
    if a.image_ids.shape != b.image_ids.shape or not np.array_equal(a.image_ids, b.image_ids):
        common = np.intersect1d(a.image_ids, b.image_ids).size
        raise CxrbenchError(
            f"predictions cover different images ({a.image_ids.size} in {a.run_dir}, {b.image_ids.size} in "
            f"{b.run_dir}, {common} in common); a paired comparison needs the same images", where="compare")
    if not np.array_equal(a.y, b.y):
        i = int(np.flatnonzero(a.y != b.y)[0])
        raise CxrbenchError(f"image {a.image_ids[i]!r} has label {CLASSES[a.y[i]]} in {a.run_dir} but "
                            f"{CLASSES[b.y[i]]} in {b.run_dir}", where="compare")


# --- tests ----------------------------------------------------------------------------------------

def _stat_fn(y: np.ndarray, probs: np.ndarray, w: np.ndarray) -> dict[str, np.ndarray]:
    """The subtype suite's metric names: 4-class scores, per-class scores and the coarse tasks."""
    from benchmark.stats import binary_stats, classification_stats

    out = classification_stats(y, probs, w, class_names=CLASSES)
    for task, (positive, _) in COARSE_TASKS.items():
        idx = [CLASSES.index(c) for c in positive]
        y01 = np.isin(y, idx).astype(np.int64)
        out.update({f"{task}_{k}": v for k, v in binary_stats(y01, probs[:, idx].sum(axis=1), w).items()})
    return out


def _higher_is_better(metric: str) -> bool | None:
    """Direction of a compared metric from the subtype suite's spec (the family `_stat_fn` computes)."""
    from benchmark.core.metric_spec import find_spec

    found = find_spec("subtype", metric)
    if found is None:
        raise CxrbenchError(f"no metric spec for subtype.{metric}", where="--metrics")
    return found.higher_is_better


def check_metrics(metrics: tuple[str, ...], run: PairedRun) -> None:
    known = _stat_fn(run.y, run.probs, np.ones((1, run.y.size)))
    unknown = [m for m in metrics if m not in known]
    if unknown:
        raise CxrbenchError(f"cannot compare metric {unknown[0]!r}; choose from {', '.join(sorted(known))}",
                            where="--metrics")


def _binary_auroc_inputs(metric: str, y: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    name = BINARY_AUROCS[metric]
    idx = [CLASSES.index(c) for c in COARSE_TASKS[name][0]] if name in COARSE_TASKS else [CLASSES.index(name)]
    return np.isin(y, idx).astype(np.int64), probs[:, idx].sum(axis=1)


def pair_tests(a: PairedRun, b: PairedRun, metrics: tuple[str, ...], config: BootstrapConfig) -> list[MetricTest]:
    """Unadjusted tests of a against b, one per metric."""
    from benchmark.stats import delong_test, mcnemar_exact, paired_bootstrap

    boot = paired_bootstrap(_stat_fn, a.y, a.probs, b.probs, clusters=a.clusters, config=config)
    rows = []
    for m in metrics:
        est = boot[m]
        test, p = "paired bootstrap", est.p_value
        if m in BINARY_AUROCS:
            y01, sa = _binary_auroc_inputs(m, a.y, a.probs)
            _, sb = _binary_auroc_inputs(m, b.y, b.probs)
            try:
                test, p = "DeLong", delong_test(y01, sa, sb, clusters=a.clusters).p_value
            except CxrbenchError:  # too few positives or negatives: DeLong is undefined here
                test, p = "DeLong (undefined)", math.nan
        elif m == "accuracy" and a.clusters is None:
            # McNemar assumes independent images; with several per patient the bootstrap stays.
            test, p = "McNemar exact", mcnemar_exact(a.probs.argmax(1) == a.y, b.probs.argmax(1) == b.y).p_value
        rows.append(MetricTest(m, est.value_a, est.value_b, est.diff, est.ci, test, p,
                               higher_is_better=_higher_is_better(m)))
    return rows


def adjust(rows: list[MetricTest], correction: str, alpha: float) -> list[MetricTest]:
    """The same tests with adjusted p-values and verdicts, the whole list being one family."""
    from benchmark.stats import adjust_pvalues

    if correction not in CORRECTIONS:
        raise CxrbenchError(f"unknown correction {correction!r}; choose from {', '.join(CORRECTIONS)}",
                            where="--correction")
    if not 0 < alpha < 1:
        raise CxrbenchError(f"expected a level in (0, 1), found {alpha}", where="--alpha")
    adj = adjust_pvalues(np.array([r.p_value for r in rows], dtype=np.float64), method=correction) if rows else []
    return [replace(r, p_adjusted=float(q), significant=None if math.isnan(q) else bool(q < alpha))
            for r, q in zip(rows, adj)]


def compare_loaded(runs: list[PairedRun], *, metrics: tuple[str, ...] = DEFAULT_METRICS,
                   correction: str = "holm", alpha: float = 0.05,
                   config: BootstrapConfig = DEFAULT_BOOTSTRAP) -> Comparison:
    if len(runs) < 2:
        raise CxrbenchError(f"need at least two runs to compare, found {len(runs)}", where="compare")
    if not metrics:
        raise CxrbenchError("no metrics to compare", where="--metrics")
    check_metrics(metrics, runs[0])
    pairs = list(combinations(runs, 2))
    raw = [pair_tests(a, b, metrics, config) for a, b in pairs]
    flat = adjust([r for rows in raw for r in rows], correction, alpha)
    k = len(metrics)
    out = tuple(PairComparison(a.label, b.label, a.run_dir, b.run_dir, tuple(flat[i * k:(i + 1) * k]))
                for i, (a, b) in enumerate(pairs))
    first = runs[0]
    n_units = int(first.clusters.max()) + 1 if first.clusters is not None else int(first.y.size)
    return Comparison(tuple(r.label for r in runs), out, correction, alpha,
                      sum(r.significant is not None for r in flat), int(first.y.size), n_units,
                      "patient" if first.clusters is not None else "image", config)


def compare_runs(run_dirs: list[str | Path], **kwargs: Any) -> Comparison:
    """Every pair of the given runs (all on the same images), each metric tested and corrected."""
    if len(run_dirs) < 2:
        raise CxrbenchError(f"need at least two run folders to compare, found {len(run_dirs)}", where="compare")
    return compare_loaded(load_runs(run_dirs), **kwargs)


@dataclass(frozen=True)
class TieGroup:
    """Entries not significantly different from the leader on one metric."""

    metric: str
    leader: str
    p_adjusted: dict[str, float]  # every other entry's adjusted p-value against the leader
    correction: str
    alpha: float

    @property
    def members(self) -> list[str]:
        # `not q < alpha` keeps NaN (an undefined test) in the group: the data cannot separate them.
        return [self.leader] + [k for k, q in self.p_adjusted.items() if not q < self.alpha]


def tie_group(runs: list[PairedRun], metric: str, *, correction: str = "holm", alpha: float = 0.05,
              config: BootstrapConfig = DEFAULT_BOOTSTRAP, higher_is_better: bool | None = None) -> TieGroup:
    """The leader on `metric` (best value: highest, or lowest where the spec says lower is better) and,
    for every other run, the corrected p-value of the leader against it; runs with adjusted p >= alpha
    are tied with the leader."""
    if not runs:
        raise CxrbenchError("no runs", where="tie_group")
    check_metrics((metric,), runs[0])
    ones = np.ones((1, runs[0].y.size))
    values = [float(_stat_fn(r.y, r.probs, ones)[metric][0]) for r in runs]
    higher = _higher_is_better(metric) if higher_is_better is None else higher_is_better
    best = np.nanargmax if higher is not False else np.nanargmin
    lead = int(best(values)) if np.isfinite(values).any() else 0
    others = [r for i, r in enumerate(runs) if i != lead]
    rows = adjust([pair_tests(runs[lead], r, (metric,), config)[0] for r in others], correction, alpha)
    p_adj = {r.label: q.p_adjusted for r, q in zip(others, rows)}
    return TieGroup(metric, runs[lead].label, p_adj, correction, alpha)


# --- terminal rendering ---------------------------------------------------------------------------

def _p(x: float) -> str:
    return "n/a" if not math.isfinite(x) else "<0.001" if x < 0.001 else f"{x:.3f}"


def comparison_tables(comp: Comparison) -> list[Any]:
    """Rich renderables: one paired table per pair, then which pairs are statistically tied."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from benchmark.core.textsafe import terminal_safe as safe

    level = round(comp.bootstrap.level * 100)
    parts: list[Any] = []
    for pair in comp.pairs:
        # Model names come from submissions: Text objects keep rich from reading markup in them, and
        # terminal_safe keeps escape sequences in them from reaching the terminal.
        title = Text(safe(f"A = {pair.a}   vs   B = {pair.b}"))
        table = Table(title=title, caption=Text(comp.describe()), caption_justify="left", box=box.SIMPLE_HEAD)
        for col, justify in (("metric", "left"), ("A", "right"), ("B", "right"),
                             (f"A - B [{level}% CI]", "right"), ("test", "left"), ("p", "right"),
                             (f"p ({comp.correction_name})", "right"), ("verdict", "left")):
            table.add_column(col, justify=justify)
        for r in pair.rows:
            style = "bold" if r.significant else None
            table.add_row(Text(safe(r.metric)), num(r.value_a), num(r.value_b),
                          Text(f"{signed(r.diff)} {ci_text(r.ci)}"), r.test, _p(r.p_value),
                          _p(r.p_adjusted), Text(r.verdict, style=style))
        parts.append(table)
    summary = Table(title=Text(f"Statistical ties ({comp.correction_name}, alpha={comp.alpha:g})"), box=box.SIMPLE_HEAD)
    for col in ("A", "B", "status"):
        summary.add_column(col)
    for pair in comp.pairs:
        if pair.tied:
            status = f"TIED: no metric differs after {comp.correction_name} correction"
        else:
            status = "differs on " + ", ".join(f"{r.metric} ({r.verdict})" for r in pair.differs)
        summary.add_row(Text(safe(pair.a)), Text(safe(pair.b)), Text(safe(status), style=None if pair.tied else "bold"))
    parts.append(summary)
    if comp.resolution_warning:
        parts.append(Text(safe(f"note: {comp.resolution_warning}"), style="yellow"))
    return parts
