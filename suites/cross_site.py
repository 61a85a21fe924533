"""`cross_site`: does the model work at every hospital, and can its outputs tell hospitals apart?

Per group (`--group-by COL`, `site` by default): every subtype headline metric and ECE with CIs and
counts, worst group and gap (best minus worst); a site-decodability probe on the model's outputs
(and embeddings when the run stored them) next to the same probe fed only the true label;
temperature transfer and operating-point transfer between groups.

Options (`--option KEY=VALUE`): `min_patients` (30: smaller groups are flagged and left out of
worst/gap/transfer when two larger ones exist), `target_sensitivity` (0.9), `probe_folds` (5),
`n_bins` (15), `max_transfer_groups` (12: the largest groups take part in transfer).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from benchmark.core.errors import CxrbenchError
from benchmark.core.jsonsafe import finite
from benchmark.core.labels import CLASSES
from benchmark.core.metric_spec import MetricSpec, spec
from benchmark.core.suite import (GroupedEstimate, SuiteConfig, SuiteResult, arrays, clusters_of, option_class,
                                  register_suite, view_frame)
from suites import _site_figures as figs
from suites._groups import (HEADLINE, PER_GROUP, Groups, composition_rows, group_values, make_groups, per_group_fn,
                            strata_for)
from suites._site_probe import label_features, n_folds, out_of_fold_scores, output_features, patient_folds, probe_fn
from suites._temperature import logits_from_probs
from suites._transfer import operating_point_fn, pairs, temperature_transfer_fn

DEFAULTS = {"min_patients": 30, "target_sensitivity": 0.9, "probe_folds": 5, "n_bins": 15, "max_transfer_groups": 12}
BAR_METRICS = ("balanced_accuracy", "macro_f1", "macro_auroc", "map")


def _gap_range(s: MetricSpec) -> tuple[float | None, float | None]:
    lo, hi = s.range
    return (0, None if lo is None or hi is None else hi - lo)


# `{column}` is the grouping column as it appears in names (`site` by default, `--group-by`).
# Per-group metrics are `grouped`: result.json records them with a structured `group` field.
METRICS: tuple[MetricSpec, ...] = (
    *(MetricSpec(s.name, s.higher_is_better, s.range, f"on one group: {s.description}", s.unit, grouped=True)
      for s in PER_GROUP.values()),
    *(MetricSpec(f"worst_{{column}}_{s.name}", s.higher_is_better, s.range,
                 f"worst group ({'lowest' if s.higher_is_better else 'highest'} value over groups with enough "
                 f"patients): {s.description}", s.unit) for s in PER_GROUP.values()),
    # A gap (best minus worst group) is a disparity: lower is better whatever the metric's direction.
    *(MetricSpec(f"{{column}}_gap_{s.name}", False, _gap_range(s), f"best minus worst group: {s.description}",
                 s.unit) for s in PER_GROUP.values()),
    # The site probe: AUROC of predicting the group from the model's outputs. The raw AUROCs are
    # descriptive (the label mix alone differs between hospitals, and embeddings of any good model
    # carry acquisition detail); the excess over the label-only probe is what a model adds, and less
    # is better (0: its outputs say nothing about the hospital beyond the label).
    spec("{column}_auroc", None, 0, 1, "probe AUROC predicting the group from the model's outputs (descriptive)"),
    spec("{column}_auroc_label_only", None, 0, 1, "probe AUROC from the true label alone: the data's label mix"),
    spec("{column}_auroc_with_label", None, 0, 1, "probe AUROC from outputs plus the true label"),
    spec("{column}_auroc_embedding", None, 0, 1, "probe AUROC from the model's embeddings (descriptive)"),
    spec("{column}_auroc_excess", False, -1, 1, "with_label minus label_only probe AUROC: group information "
         "the outputs carry beyond the label mix"),
    spec("temperature", None, 0, None, "temperature fitted on one group's images (1: calibrated there)",
         grouped=True),
    spec("temperature_transfer_worst_ece", False, 0, 1, "highest ECE on one group at another group's temperature"),
    spec("temperature_transfer_mean_ece", False, 0, 1, "mean ECE on one group at another group's temperature"),
    spec("op_transfer_worst_sensitivity", True, 0, 1, "lowest pneumonia sensitivity on one group at another "
         "group's 90%-sensitivity threshold"),
    spec("op_transfer_worst_specificity", True, 0, 1, "lowest specificity on one group at another group's "
         "threshold"),
)


def options(config: SuiteConfig) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, default in DEFAULTS.items():
        raw = config.options.get(key, str(default))
        try:
            value = float(raw) if isinstance(default, float) else int(raw)
        except ValueError:
            value = -1
        ok = 0 < value < 1 if isinstance(default, float) else value >= (2 if key == "probe_folds" else 1)
        if not ok:
            wanted = "a number in (0, 1)" if isinstance(default, float) else "a positive integer"
            raise CxrbenchError(f"{key} must be {wanted}, got {raw!r}", where=f"--option {key}")
        out[key] = value
    return out


# `--option` keys this suite takes (registration validates them; options() checks the ranges).
CrossSiteOptions = option_class("CrossSiteOptions", DEFAULTS)


@register_suite("cross_site", views=("clean",), needs_embeddings=True, options=CrossSiteOptions,
                description="per-site metrics, worst site and gap, site-decodability probe, calibration and "
                            "operating-point transfer between sites (any --group-by column)")
def cross_site(predictions: pd.DataFrame, manifest: pd.DataFrame, config: SuiteConfig) -> SuiteResult:
    opts = options(config)
    frame = view_frame(predictions, "clean")
    values = group_values(frame, manifest, config.group_by)
    result = SuiteResult()
    known = values.notna().to_numpy()
    if not known.any():
        result.notes.append(f"column {config.group_by!r} has no values: nothing to compare across groups")
        return result
    if not known.all():
        result.notes.append(f"{int((~known).sum())} images without a {config.group_by!r} value are left out")
    frame, values = frame[known].reset_index(drop=True), values[known].reset_index(drop=True)
    groups = make_groups(frame, values, config.group_by, min_patients=int(opts["min_patients"]))
    y, probs = arrays(frame)
    clusters, strata = clusters_of(frame), strata_for(groups, frame)

    _per_group(result, frame, groups, y, probs, clusters, strata, opts, config)
    if len(groups.names) < 2:
        result.notes.append(f"only one {config.group_by!r} value: no gap, probe or transfer")
        return result
    _probe(result, frame, groups, y, probs, clusters, strata, opts, config)
    transfer = _limit_transfer(groups, int(opts["max_transfer_groups"]), result)
    if len(pairs(transfer)) == 0:
        result.notes.append("transfer needs two groups with enough patients; skipped")
        return result
    _temperature_transfer(result, transfer, y, probs, clusters, strata, opts, config)
    _operating_points(result, transfer, y, probs, clusters, strata, opts, config)
    return result


def _bootstrap(fn, y, scores, clusters, strata, config):
    from benchmark.stats import bootstrap

    return bootstrap(fn, y, scores, clusters=clusters, strata=strata, config=config.bootstrap).estimates


def _per_group(result, frame, groups: Groups, y, probs, clusters, strata, opts, config) -> None:
    est = _bootstrap(per_group_fn(groups, int(opts["n_bins"])), y, probs, clusters, strata, config)
    per = {f"{m}[{g}]": (m, g) for g in groups.names for m in (*HEADLINE, "ece")}
    result.metrics.update({k: v for k, v in est.items() if k not in per})
    result.grouped += [GroupedEstimate(m, groups.column, g, est[k]) for k, (m, g) in per.items()]
    min_p = int(opts["min_patients"])
    result.tables["groups"] = composition_rows(frame, groups, min_p)
    result.tables["per_group"] = [
        {groups.column: g, "images": int(groups.mask(j).sum()), "patients": int(groups.patients[j]),
         **{m: est[f"{m}[{g}]"].to_json() for m in (*HEADLINE, "ece")}}
        for j, g in enumerate(groups.names)]
    small = [g for j, g in enumerate(groups.names) if groups.patients[j] < min_p]
    if small:
        left_out = "; they are left out of worst/gap" if not groups.eligible.all() else \
            "; too few larger groups, so worst/gap use every group"
        result.notes.append(f"groups under {min_p} patients (wide intervals): {', '.join(small)}{left_out}")
    names = list(groups.names)
    result.figures["per_group_metrics"] = figs.grouped_bars(
        {m: [est[f"{m}[{g}]"] for g in names] for m in BAR_METRICS}, names,
        title=f"Metrics per {groups.column} (95% CI)", yaxis="score", column=groups.column)
    result.figures["ece_per_group"] = figs.grouped_bars(
        {"ece": [est[f"ece[{g}]"] for g in names]}, names, title=f"ECE per {groups.column} (95% CI)",
        yaxis="ECE (15 bins)", column=groups.column)
    shares = {c: [float((frame["label"][groups.mask(j)] == c).mean()) for j in range(len(names))] for c in CLASSES}
    result.figures["class_mix"] = figs.class_mix(shares, names, groups.column)


def _probe(result, frame, groups: Groups, y, probs, clusters, strata, opts, config) -> None:
    patients = frame["patient_id"].astype(str).to_numpy()
    folds = n_folds(groups.codes, patients, int(opts["probe_folds"]))
    if folds < 2:
        result.notes.append(f"site probe skipped: some {groups.column!r} group has fewer than 2 patients")
        return
    outputs, label = output_features(probs), label_features(y)
    inputs = {"": outputs, "label_only": label, "with_label": np.concatenate([outputs, label], axis=1)}
    embeddings = getattr(config, "embeddings", None)
    if embeddings is not None:
        feats = _aligned_embeddings(embeddings, frame)
        if feats is not None:
            inputs["embedding"] = feats
    fold = patient_folds(groups.codes, patients, folds, config.seed)
    packed = np.concatenate([out_of_fold_scores(f, groups.codes, fold) for f in inputs.values()], axis=1)
    est = _bootstrap(probe_fn(list(inputs), len(groups.names)), groups.codes, packed, clusters, strata, config)
    tag = groups.tag
    for name, e in est.items():
        result.metrics[f"{tag}_auroc" + (f"_{name}" if name else "")] = e
    labels = {"": "model outputs", "label_only": "true label only", "with_label": "outputs + true label",
              "embedding": "model embedding"}
    result.tables["site_probe"] = [
        {"features": labels[n], "metric": f"{tag}_auroc" + (f"_{n}" if n else ""), "auroc": est[n].to_json(),
         "folds": folds} for n in inputs]
    result.figures["site_probe"] = figs.probe_bars({labels[n]: est[n] for n in inputs}, groups.column)
    result.notes.append(
        f"site probe: logistic regression, {folds}-fold cross-validation grouped by patient; {tag}_auroc_excess = "
        f"{tag}_auroc_with_label minus {tag}_auroc_label_only (above 0: the outputs carry {groups.column} beyond "
        "the label mix)")


def _aligned_embeddings(embeddings, frame: pd.DataFrame) -> np.ndarray | None:
    """Embedding rows in the frame's order, from a DataFrame indexed by image_id (None if any lacks one)."""
    ids = frame["image_id"].astype(str)
    if not ids.isin(embeddings.index).all():
        return None
    return embeddings.loc[ids].to_numpy(dtype=np.float64)


def _limit_transfer(groups: Groups, cap: int, result) -> Groups:
    eligible = groups.eligible.copy()
    if eligible.sum() > cap:
        keep = np.argsort(-np.where(eligible, groups.patients, -1), kind="stable")[:cap]
        eligible[:] = False
        eligible[keep] = True
        result.notes.append(f"transfer uses the {cap} largest groups (option max_transfer_groups)")
    return Groups(groups.column, groups.tag, groups.names, groups.codes, groups.patients, eligible)


def _temperature_transfer(result, groups: Groups, y, probs, clusters, strata, opts, config) -> None:
    est = _bootstrap(temperature_transfer_fn(groups, int(opts["n_bins"])), y, logits_from_probs(probs),
                     clusters, strata, config)
    idx = np.flatnonzero(groups.eligible)
    for key in ("temperature_transfer_worst_ece", "temperature_transfer_mean_ece"):
        result.metrics[key] = est[key]
    for a in idx:
        result.grouped.append(GroupedEstimate("temperature", groups.column, groups.names[a],
                                              est[f"temperature[{groups.names[a]}]"]))
    names = groups.names
    result.tables["temperature_transfer"] = [
        {f"T fitted on {groups.column}": names[a], "temperature": est[f"temperature[{names[a]}]"].to_json(),
         **{f"ece on {names[b]}": (est[f"ece[{names[a]}>{names[b]}]"].to_json() if a != b else None) for b in idx}}
        for a in idx]
    result.notes.append("temperature transfer: T fitted (NLL) on one group's images, ECE measured on each other "
                        f"group's; compare with ece[{groups.column}] measured before scaling")


def _operating_points(result, groups: Groups, y, probs, clusters, strata, opts, config) -> None:
    target = float(opts["target_sensitivity"])
    positive = y != CLASSES.index("negative")
    score = 1.0 - probs[:, CLASSES.index("negative")]
    est = _bootstrap(operating_point_fn(groups, positive, score, target), y, probs, clusters, strata, config)
    for m in ("sensitivity", "specificity"):
        result.metrics[f"op_transfer_worst_{m}"] = est[f"op_transfer_worst_{m}"]
    idx = np.flatnonzero(groups.eligible)
    names = [groups.names[i] for i in idx]
    rows, matrix = [], []
    for a in names:
        matrix.append([est[f"sensitivity[{a}>{b}]"].value for b in names])
        for b in names:
            rows.append({"threshold from": a, "applied to": b, "threshold": est[f"threshold[{a}]"].to_json(),
                         "sensitivity": est[f"sensitivity[{a}>{b}]"].to_json(),
                         "specificity": est[f"specificity[{a}>{b}]"].to_json()})
    result.tables["operating_point_transfer"] = rows
    result.figures["operating_point_transfer"] = figs.transfer_heatmap(
        [[finite(v) for v in row] for row in matrix], names,
        title=f"Pneumonia sensitivity at each {groups.column}'s {target:.0%}-sensitivity threshold",
        column=groups.column)
    result.notes.append(f"operating-point transfer (pneumonia vs negative, score 1 - p(negative)): threshold set "
                        f"for {target:.0%} sensitivity on one group, sensitivity and specificity on the others")
