"""`subtype`: fine-grained four-class scores, per-class scores, confusion matrix, study level and
coarse tasks, each metric with a bootstrap confidence interval (patients resampled when known)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from benchmark.core.labels import CLASSES, COARSE_TASKS, PROB_COLUMNS
from benchmark.core.metric_spec import MetricSpec, spec
from benchmark.core.suite import SuiteConfig, SuiteResult, arrays, clusters_of, register_suite, view_frame

HEADLINE = ("accuracy", "balanced_accuracy", "macro_f1", "kappa", "mcc", "macro_auroc", "map")

# Every score here rewards a better classifier: higher is better. Kappa and MCC reach -1 (systematic
# disagreement); the rest lie in [0, 1].
CLASSIFICATION: tuple[MetricSpec, ...] = (
    spec("accuracy", True, 0, 1, "share of images whose argmax is the true class"),
    spec("balanced_accuracy", True, 0, 1, "mean per-class recall (chance: 1 / number of classes)"),
    spec("macro_f1", True, 0, 1, "mean per-class F1 of the argmax decisions"),
    spec("kappa", True, -1, 1, "Cohen's kappa: agreement beyond chance"),
    spec("mcc", True, -1, 1, "multi-class Matthews correlation coefficient"),
    spec("macro_auroc", True, 0, 1, "mean one-vs-rest AUROC over the classes where it is defined"),
    spec("map", True, 0, 1, "mean one-vs-rest average precision"),
    spec("f1_{class}", True, 0, 1, "F1 of one class (one-vs-rest decisions)"),
    spec("recall_{class}", True, 0, 1, "recall (sensitivity) of one class"),
    spec("precision_{class}", True, 0, 1, "precision (PPV) of one class"),
    spec("auroc_{class}", True, 0, 1, "one-vs-rest AUROC of one class"),
    spec("ap_{class}", True, 0, 1, "one-vs-rest average precision of one class"),
)
COARSE: tuple[MetricSpec, ...] = (
    spec("{task}_auroc", True, 0, 1, "AUROC of a coarse binary task (pneumonia: any appearance vs negative)"),
    spec("{task}_ap", True, 0, 1, "average precision of a coarse binary task"),
)
METRICS: tuple[MetricSpec, ...] = (
    *CLASSIFICATION, *COARSE,
    *(MetricSpec(f"study_{s.name}", s.higher_is_better, s.range, f"study level (probabilities averaged per "
                 f"study): {s.description}") for s in CLASSIFICATION),
)


def _stats_fn():
    from benchmark.stats import classification_stats

    def fn(y, probs, w):
        return classification_stats(y, probs, w, class_names=CLASSES)
    return fn


def _coarse_fn(task: str):
    from benchmark.stats import binary_stats

    positive, _ = COARSE_TASKS[task]
    pos_idx = [CLASSES.index(c) for c in positive]

    def fn(y, probs, w):
        y01 = np.isin(y, pos_idx).astype(np.int64)
        score = probs[:, pos_idx].sum(axis=1)
        return {f"{task}_{k}": v for k, v in binary_stats(y01, score, w).items()}
    return fn


def confusion(y: np.ndarray, pred: np.ndarray) -> list[list[int]]:
    k = len(CLASSES)
    return np.bincount(y * k + pred, minlength=k * k).reshape(k, k).tolist()


def study_level(frame: pd.DataFrame, manifest: pd.DataFrame) -> pd.DataFrame | None:
    """Image probabilities averaged per study; None when no study has more than one image."""
    if "study_id" not in manifest.columns or manifest["study_id"].isna().all():
        return None
    studies = manifest.set_index("image_id")["study_id"]
    f = frame.assign(study_id=frame["image_id"].map(studies))
    if f["study_id"].isna().any() or f["study_id"].nunique() == len(f):
        return None
    agg = {c: "mean" for c in PROB_COLUMNS}
    agg.update({"label": "first", "patient_id": "first"})
    return f.groupby("study_id", sort=True).agg(agg).reset_index().rename(columns={"study_id": "image_id"})


@register_suite("subtype", views=("clean",),
                description="4-class accuracy, balanced accuracy, macro-F1, kappa, MCC, AUROC, mAP with CIs")
def subtype(predictions: pd.DataFrame, manifest: pd.DataFrame, config: SuiteConfig) -> SuiteResult:
    from benchmark.stats import bootstrap

    frame = view_frame(predictions, "clean")
    result = SuiteResult()
    metrics, adequacy_rows = _score(frame, config, prefix="")
    result.metrics.update(metrics)
    y, probs = arrays(frame)
    pred = probs.argmax(axis=1)
    result.tables["confusion_matrix"] = {"classes": list(CLASSES), "rows_true_cols_pred": confusion(y, pred)}
    result.tables["per_class"] = [
        {"class": c, "support": int((y == i).sum()), **{
            m: result.metrics[f"{m}_{c}"].to_json() for m in ("f1", "recall", "precision", "auroc", "ap")}}
        for i, c in enumerate(CLASSES)
    ]
    clusters = clusters_of(frame)
    for task in COARSE_TASKS:
        res = bootstrap(_coarse_fn(task), y, probs, clusters=clusters, config=config.bootstrap)
        result.metrics.update(res.estimates)
    studies = study_level(frame, manifest)
    if studies is not None:
        metrics, rows = _score(studies, config, prefix="study_")
        result.metrics.update(metrics)
        adequacy_rows += rows
        result.notes.append(f"study level: {len(studies)} studies, image probabilities averaged per study")
    if adequacy_rows:
        result.tables["sample_size_adequacy"] = adequacy_rows
        result.notes.append(
            "sample-size adequacy: detectable_difference is the smallest difference between two models "
            "that a paired comparison on this test set would detect with 80% power at alpha 0.05 (SE of a "
            "difference taken as the bootstrap SD for models correlated at rho = 0.5)")
    result.figures["confusion_matrix"] = _confusion_figure(result.tables["confusion_matrix"]["rows_true_cols_pred"])
    return result


def _score(frame: pd.DataFrame, config: SuiteConfig, *, prefix: str) -> tuple[dict, list[dict]]:
    """Estimates with CIs, and the sample-size adequacy of the headline metrics."""
    from benchmark.stats import adequacy, bootstrap

    y, probs = arrays(frame)
    res = bootstrap(_stats_fn(), y, probs, clusters=clusters_of(frame), config=config.bootstrap)
    rows = []
    if config.bootstrap.n_resamples >= 2:
        ad = adequacy(res, names=HEADLINE)
        rows = [{"metric": f"{prefix}{m}", "ci_half_width": ad[f"ci_half_width_{m}"],
                 "detectable_difference": ad[f"mdd_{m}"]} for m in HEADLINE]
    return {f"{prefix}{k}": v for k, v in res.estimates.items()}, rows


def _confusion_figure(matrix: list[list[int]]) -> dict:
    return {
        "data": [{"type": "heatmap", "z": matrix, "x": list(CLASSES), "y": list(CLASSES),
                  "colorscale": "Blues", "text": matrix, "texttemplate": "%{text}"}],
        "layout": {"title": {"text": "Confusion matrix (rows: true, columns: predicted)"},
                   "xaxis": {"title": {"text": "predicted"}}, "yaxis": {"title": {"text": "true"}, "autorange": "reversed"},
                   "height": 420, "width": 520},
    }
