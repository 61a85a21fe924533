"""`shortcut`: does the model answer from the lungs? Mask-perturbation views, scored against clean.

Per view (benchmark/views/mask.py): balanced accuracy, macro-F1, flip rate (argmax changed from
clean), mean KL(clean || view), and retention = (bacc(view) - 1/K) / (bacc(clean) - 1/K), K the
number of classes present; all with bootstrap CIs from the same resamples as clean. The default fill
is scored for every region, the other fills for `no_lung`, `only_lung` and `random_area` (the fill
sensitivity table), and a plain-language verdict follows the rule in `verdict`.

`view_scores` is shared with the `robustness` suite.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from benchmark.core.jsonsafe import finite
from benchmark.reporting.numbers import estimate_text
from benchmark.core.labels import PROB_COLUMNS
from benchmark.core.metric_spec import MetricSpec, spec
from benchmark.core.suite import SuiteConfig, SuiteResult, arrays, clusters_of, register_suite, view_frame

REGIONS = ("no_lung", "only_lung", "random_area", "lesion", "border", "corners")
DEFAULT_FILL = "inpaint"  # benchmark.views.mask.DEFAULT_FILL (not imported: that module needs torch)
OTHER_FILLS = ("mean", "blur", "noise")
SENSITIVITY_REGIONS = ("no_lung", "only_lung", "random_area")
VIEWS = ("clean", *REGIONS, *(f"{r}@{f}" for r in SENSITIVITY_REGIONS for f in OTHER_FILLS))
PER_VIEW = ("balanced_accuracy", "macro_f1", "flip_rate", "kl", "retention")
REGION_TEXT = {
    "no_lung": "lung fields replaced",
    "only_lung": "everything outside the lungs replaced",
    "random_area": "area-matched random region outside the lungs replaced (control)",
    "lesion": "opacity boxes replaced",
    "border": "outer frame (8% of each side) replaced",
    "corners": "four corner squares (15% of the side) replaced",
}
# Verdict thresholds on retention point estimates (README: the verdict rule).
OUTSIDE, LUNGS_MAX, ONLY_MIN, CONTROL_MIN, REGION_MAX = 0.5, 0.3, 0.7, 0.6, 0.5
_EPS = 1e-12

# Directions, per view, for a model that should read the lungs (README: the verdict rule):
# - no_lung (lungs replaced): such a model must lose its accuracy and change its answers, so
#   balanced accuracy, macro-F1 and retention are lower-is-better, flip rate and KL higher-is-better.
# - only_lung, random_area (the area-matched control), border, corners: what is hidden carries no
#   disease, so keeping accuracy and answers is better: scores higher, flip rate and KL lower.
# - lesion (opacity boxes replaced): neither. Only images with boxes change, a model that reads the
#   opacities should react while one that is merely robust should not, and the fill itself moves
#   outputs: no direction is better in itself.
_NEEDS_LUNGS = {"no_lung": False, "lesion": None}


def _view_specs(region: str, good: bool | None) -> tuple[MetricSpec, ...]:
    harm = None if good is None else not good
    what = REGION_TEXT[region]
    return (
        spec(f"{region}_balanced_accuracy", good, 0, 1, f"balanced accuracy, {what}"),
        spec(f"{region}_macro_f1", good, 0, 1, f"macro-F1, {what}"),
        spec(f"{region}_retention", good, None, None, f"(bacc(view) - chance) / (bacc(clean) - chance), {what}"),
        spec(f"{region}_flip_rate", harm, 0, 1, f"share of images whose argmax changed from clean, {what}"),
        spec(f"{region}_kl", harm, 0, None, f"mean KL(clean || view), {what}", unit="nats"),
    )


METRICS: tuple[MetricSpec, ...] = (
    spec("clean_balanced_accuracy", True, 0, 1, "balanced accuracy on the clean images scored with the views"),
    spec("clean_macro_f1", True, 0, 1, "macro-F1 on the clean images scored with the views"),
    *(s for r in REGIONS for s in _view_specs(r, _NEEDS_LUNGS.get(r, True))),
)


# --- scoring shared with the robustness suite -------------------------------------------------

def aligned(predictions: pd.DataFrame, views: list[str]) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """(labels, probabilities [n, 4 * (1 + V)] as clean then each view, the clean frame), rows in the
    clean frame's order; images missing from a view are dropped everywhere."""
    clean = view_frame(predictions, "clean")
    ids = pd.Index(clean["image_id"].astype(str))
    blocks, keep = [], np.ones(len(clean), dtype=bool)
    for v in views:
        f = view_frame(predictions, v)
        f = f.set_index(f["image_id"].astype(str))[list(PROB_COLUMNS)].reindex(ids)
        keep &= f.notna().all(axis=1).to_numpy()
        blocks.append(f.to_numpy(dtype=np.float64))
    clean = clean[keep].reset_index(drop=True)
    y, p_clean = arrays(clean)
    return y, np.concatenate([p_clean, *[b[keep] for b in blocks]], axis=1), clean


def _bacc_f1(y: np.ndarray, pred: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from benchmark.stats.confusion import confusion_matrices, nanmean_rows, per_class_scores

    c = confusion_matrices(y, pred, w, len(PROB_COLUMNS))
    s = per_class_scores(c)
    present = (c.sum(axis=2) > 0).sum(axis=1)
    return nanmean_rows(s["recall"]), nanmean_rows(s["f1"]), 1.0 / np.maximum(present, 1)


def view_stat_fn(tags: list[str], extra: Callable[[dict], dict] | None = None):
    """A StatFn over aligned probabilities: clean metrics, then per view `<tag>_<metric>`."""
    k = len(PROB_COLUMNS)

    def fn(y, probs, w):
        clean = probs[:, :k]
        pred_c = clean.argmax(axis=1)
        bacc_c, f1_c, chance = _bacc_f1(y, pred_c, w)
        out = {"clean_balanced_accuracy": bacc_c, "clean_macro_f1": f1_c}
        total = w.sum(axis=1)
        log_c = np.log(np.clip(clean, _EPS, 1.0))
        denom = bacc_c - chance
        for j, tag in enumerate(tags):
            pv = probs[:, k * (j + 1): k * (j + 2)]
            pred = pv.argmax(axis=1)
            bacc, f1, _ = _bacc_f1(y, pred, w)
            kl = (clean * (log_c - np.log(np.clip(pv, _EPS, 1.0)))).sum(axis=1)
            out[f"{tag}_balanced_accuracy"] = bacc
            out[f"{tag}_macro_f1"] = f1
            out[f"{tag}_flip_rate"] = (w @ (pred != pred_c).astype(np.float64)) / total
            out[f"{tag}_kl"] = (w @ kl) / total
            ratio = np.full_like(bacc, np.nan)
            np.divide(bacc - chance, denom, out=ratio, where=denom > 0)
            out[f"{tag}_retention"] = ratio
        if extra is not None:
            out.update(extra(out))
        return out
    return fn


def view_scores(predictions: pd.DataFrame, views: dict[str, str], config: SuiteConfig,
                extra: Callable[[dict], dict] | None = None) -> tuple[dict, pd.DataFrame]:
    """Estimates for `views` ({metric tag: view spec}) against clean, and the clean frame used."""
    from benchmark.stats import bootstrap

    tags = list(views)
    y, probs, clean = aligned(predictions, [views[t] for t in tags])
    res = bootstrap(view_stat_fn(tags, extra), y, probs, clusters=clusters_of(clean), config=config.bootstrap)
    return res.estimates, clean


def cell(estimates: dict, name: str) -> dict:
    return estimates[name].to_json()


# --- the suite ----------------------------------------------------------------------------------

def _tag(spec: str) -> str:
    return spec.replace("@", "_")


@register_suite("shortcut", views=VIEWS,
                description="lungs removed / only lungs / area-matched control / lesions / border / corners: "
                            "retention, flip rate, KL, verdict")
def shortcut(predictions: pd.DataFrame, manifest: pd.DataFrame, config: SuiteConfig) -> SuiteResult:
    present = set(predictions["view"])
    specs = [v for v in VIEWS[1:] if v in present]
    est, clean = view_scores(predictions, {_tag(v): v for v in specs}, config)
    result = SuiteResult()
    regions = [r for r in REGIONS if r in present]
    # Metrics (stable names) for the default fill; the other fills are in the sensitivity table.
    result.metrics = {k: est[k] for k in ("clean_balanced_accuracy", "clean_macro_f1")}
    result.metrics.update({f"{r}_{m}": est[f"{r}_{m}"] for r in regions for m in PER_VIEW})
    result.tables["per_view"] = [
        {"view": r, "replaced": REGION_TEXT[r], **{m: cell(est, f"{r}_{m}") for m in PER_VIEW}} for r in regions]
    result.tables["fill_sensitivity"] = [
        {"view": r, "fill": f + (" (default)" if f == DEFAULT_FILL else ""),
         **{m: cell(est, f"{_tag(spec)}_{m}") for m in ("balanced_accuracy", "retention", "flip_rate", "kl")}}
        for r in SENSITIVITY_REGIONS for f, spec in ((DEFAULT_FILL, r), *((f, f"{r}@{f}") for f in OTHER_FILLS))
        if spec in present]
    sources = mask_sources(predictions, manifest, clean)
    result.tables["lung_masks"] = sources
    prior = next((r for r in sources if r["source"] == "prior"), None)
    if prior is not None:
        result.tables["flags"] = [{"flag": "lung_mask_prior", "images": prior["images"],
                                   "detail": "lung masks from the geometric prior fitted to the body outline"}]
        result.notes.append(
            f"FLAG: {prior['images']} of {len(clean)} images have no lung mask in the manifest and no segmenter "
            "is registered, so their lung regions come from a geometric lung prior fitted to the body outline. "
            "It is approximate: lung-based views on these images hide roughly, not exactly, the lungs.")
    code, text = verdict(est, regions, chance=1.0 / max(clean["label"].nunique(), 1))
    result.tables["verdict"] = [{"verdict": code, "explanation": text}]
    result.notes.insert(0, text)
    if "lesion" in regions:
        result.notes.append(lesion_note(predictions, manifest, clean))
    result.figures["retention"] = retention_figure(est, regions)
    if result.tables["fill_sensitivity"]:
        result.figures["fill_sensitivity"] = fill_figure(est, present)
    return result


def lesion_note(predictions: pd.DataFrame, manifest: pd.DataFrame, clean: pd.DataFrame) -> str:
    """How many images the lesion view could change: those with opacity boxes in the manifest."""
    a = view_frame(predictions, "clean").set_index("image_id")[list(PROB_COLUMNS)]
    b = view_frame(predictions, "lesion").set_index("image_id")[list(PROB_COLUMNS)].reindex(a.index)
    moved = int((~np.isclose(a.to_numpy(), b.to_numpy(), atol=1e-9).all(axis=1)).sum())
    known = ""
    if "boxes" in manifest.columns and "image_id" in manifest.columns:
        boxes = manifest.drop_duplicates("image_id").set_index("image_id")["boxes"].reindex(clean["image_id"])
        n = int(boxes.map(lambda v: isinstance(v, str) and v.strip() not in ("", "[]")).sum())
        if n:
            known = f"{n} of {len(clean)} images have opacity boxes in the manifest; "
    return (f"lesion: {known}occluding the boxes changed the probabilities of {moved} of {len(clean)} images "
            "(images without boxes are unchanged by this view).")


def mask_sources(predictions: pd.DataFrame, manifest: pd.DataFrame, clean: pd.DataFrame) -> list[dict]:
    """Images per lung-mask source, from the per-row flag the runner records (unknown without it)."""
    col = "lung_mask_source"
    frame = view_frame(predictions, "clean")
    if col in frame.columns:
        values = frame.set_index("image_id")[col].reindex(clean["image_id"])
    elif col in manifest.columns and "image_id" in manifest.columns:
        values = manifest.drop_duplicates("image_id").set_index("image_id")[col].reindex(clean["image_id"])
    else:
        values = pd.Series(["unknown"] * len(clean))
    counts = values.fillna("unknown").astype(str).value_counts().sort_index()
    return [{"source": str(k), "images": int(v), "fraction": round(int(v) / max(len(clean), 1), 4)}
            for k, v in counts.items()]


def verdict(est: dict, regions: list[str], chance: float = 0.25) -> tuple[str, str]:
    """The plain-language reading of the retentions (point estimates; CIs quoted)."""
    def r(name: str) -> float:
        e = est.get(f"{name}_retention")
        return float("nan") if e is None or e.value is None else float(e.value)

    def fmt(e) -> str:
        return estimate_text(e, digits=2)

    def q(name: str) -> str:
        return fmt(est[f"{name}_retention"])

    clean = est["clean_balanced_accuracy"]
    low = finite(clean.ci[0])
    if not np.isfinite(r("no_lung")) or low is None or low <= chance:
        return "no_verdict", (f"No verdict: clean balanced accuracy {fmt(clean)} is not clearly above chance "
                              f"({chance:.2f}), so retention says nothing.")
    no, only, rand = r("no_lung"), r("only_lung"), r("random_area")
    extra = ""
    for region, what in (("corners", "the image corners"), ("border", "the outer frame")):
        if region in regions and np.isfinite(r(region)) and r(region) < REGION_MAX:
            extra += (f" Hiding only {what} leaves retention {q(region)}: the model reads something there "
                      "(markers, text, collimation).")
    if no >= OUTSIDE:
        return "outside_lungs", (
            f"Shortcut: with the lungs removed the model keeps {q('no_lung')} of its above-chance balanced "
            f"accuracy (retention), so it answers largely from outside the lungs: markers, text, borders or "
            f"body habitus. Its performance is not evidence that it reads the lungs.{extra}")
    if no <= LUNGS_MAX and only >= ONLY_MIN and rand >= CONTROL_MIN:
        return "lungs", (
            f"Looks at the lungs: removing them leaves retention {q('no_lung')}, the lungs alone keep "
            f"{q('only_lung')}, and hiding an equally large region elsewhere keeps {q('random_area')}.{extra}")
    if no <= LUNGS_MAX and rand < CONTROL_MIN:
        return "occlusion_sensitive", (
            f"Inconclusive: removing the lungs leaves retention {q('no_lung')}, but hiding an equally large "
            f"region outside them also drops it to {q('random_area')}; the model reacts to large occlusions "
            f"(or the fill) in general, so the lung drop is not specific evidence.{extra}")
    return "mixed", (
        f"Mixed: removing the lungs leaves retention {q('no_lung')} and the lungs alone keep "
        f"{q('only_lung')}: the model uses both the lungs and what lies outside them.{extra}")


def error_bars(estimates: list) -> dict:
    """Plotly asymmetric error bars from Estimates (0 where an end is undefined)."""
    def gap(a, b):
        d = finite(a - b) if a is not None and b is not None else None
        return 0.0 if d is None else d
    return {"type": "data", "symmetric": False, "array": [gap(e.ci[1], e.value) for e in estimates],
            "arrayminus": [gap(e.value, e.ci[0]) for e in estimates]}


def _bar(est: dict, names: list[str], labels: list[str], name: str) -> dict:
    vals = [est[f"{n}_retention"] for n in names]
    return {"type": "bar", "name": name, "x": labels, "y": [finite(e.value) for e in vals],
            "error_y": error_bars(vals)}


def retention_figure(est: dict, regions: list[str]) -> dict:
    return {"data": [_bar(est, regions, regions, "retention")],
            "layout": {"title": {"text": "Retention of above-chance balanced accuracy per view (95% CI)"},
                       "yaxis": {"title": {"text": "retention"}, "zeroline": True},
                       "shapes": [{"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": 1, "y1": 1,
                                   "line": {"dash": "dot", "color": "#888"}}],
                       "height": 380, "width": 640}}


def fill_figure(est: dict, present: set) -> dict:
    data = []
    for f in (DEFAULT_FILL, *OTHER_FILLS):
        regions = [r for r in SENSITIVITY_REGIONS if (r if f == DEFAULT_FILL else f"{r}@{f}") in present]
        if regions:
            names = [r if f == DEFAULT_FILL else f"{r}_{f}" for r in regions]
            data.append(_bar(est, names, regions, f))
    return {"data": data,
            "layout": {"title": {"text": "Retention by fill (a model can react to the fill itself)"},
                       "barmode": "group", "yaxis": {"title": {"text": "retention"}}, "height": 380, "width": 640}}
