"""The three kinds of page: the index (one sortable table per dataset), an entry, a comparison.

Python gathers what a page shows; leaderboard/templates lays it out (autoescaped Jinja2)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from markupsafe import Markup

from benchmark.core.errors import CxrbenchError
from leaderboard.entries import Entry
from leaderboard.html import Figures, render

HEADLINE = ("subtype.accuracy", "subtype.balanced_accuracy", "subtype.macro_f1", "subtype.kappa",
            "subtype.macro_auroc", "subtype.map", "subtype.pneumonia_auroc", "calibration.ece",
            "calibration.brier", "cross_site.worst_site_balanced_accuracy", "shortcut.no_lung_retention")
# The index is one row per entry: the ranking metric plus these, where any entry has them.
INDEX_COLUMNS = ("subtype.accuracy", "subtype.balanced_accuracy", "subtype.macro_f1", "subtype.macro_auroc",
                 "subtype.map", "subtype.pneumonia_auroc", "calibration.ece", "cross_site.worst_site_balanced_accuracy",
                 "shortcut.no_lung_retention")
# Suites with a place of their own on the entry page, in page order; other suites follow generically.
SECTIONS = (("subtype", "Subtype"), ("calibration", "Calibration"), ("cross_site", "Per site"),
            ("shortcut", "Shortcut views"), ("robustness", "Robustness"))


@dataclass
class Standing:
    """An entry's place in its dataset group."""

    status: str = "not tested"   # leader | tied | behind | not tested
    p_adjusted: float | None = None
    note: str = ""
    compare: dict[str, str] = field(default_factory=dict)  # other slug -> compare page (site-relative)
    rank: Any = None          # benchmark.stats.rank_intervals.RankInterval, when ranks were resampled
    verification: Any = None  # benchmark.reporting.verify.VerifyReport, when the build verified the entry


VERIFY_BADGES = {
    "verified": ("verified", "verified", "every metric recomputed from its predictions matches"),
    "tampered": ("tampered", "tampered", "its result.json does not follow from its predictions"),
    "unverifiable": ("unverifiable", "not verifiable", "its metrics could not be recomputed"),
}


def verify_badge(s: Standing) -> tuple[str, str, str]:
    """(css class, text, title) of the verification badge."""
    if s.verification is None:
        return "untested", "not checked", "the build did not verify entries"
    cls, text, what = VERIFY_BADGES[s.verification.status]
    return cls, text, f"{what}: {s.verification.detail}"


def unreliable(e: Entry) -> tuple[Any, int] | None:
    """(units, minimum) when the entry's CIs rest on fewer resampling units than
    benchmark.reporting.result_rules asks for, else None."""
    from benchmark.reporting.result_rules import MIN_BOOTSTRAP_UNITS, ci_reliability

    units, reliable = ci_reliability(e.result)
    return None if reliable else (units, MIN_BOOTSTRAP_UNITS)


# --- index ------------------------------------------------------------------------------------------

def index_group(i: int, entries: list[Entry], standings: dict[str, Standing], *, rank_by: str, note: str) -> Markup:
    # The ranking metric leads; then the headline metrics any entry of the group has.
    cols = list(dict.fromkeys(m for m in (rank_by, *INDEX_COLUMNS) if any(e.metric(m) for e in entries)))
    headers = [("#", "num"), ("model", "text"), ("tie group", "text"), ("rank [95% CI]", "num"), ("P(best)", "num"),
               ("verified", "text")]
    headers += [((c.split(".", 1)[1] if c.startswith("subtype.") else c) + (" (rank)" if c == rank_by else ""), "num")
                for c in cols]
    headers += [("images", "num"), ("date", "text"), ("metric code", "text")]
    rows = []
    for e in entries:
        s = standings[e.slug]
        images = e.result["dataset"].get("counts", {}).get("images")
        rows.append({"e": e, "s": s, "order": {"leader": "0", "tied": "1", "behind": "2"}.get(s.status, "3"),
                     "unreliable": unreliable(e), "verified": verify_badge(s),
                     "images": "" if images is None else images, "date": str(e.provenance.get("started_at", ""))[:10]})
    slugs = {e.slug for e in entries}
    by_slug = {e.slug: e.model for e in entries}
    compares = sorted({(min(a, b), max(a, b), href) for a, s in standings.items() for b, href in s.compare.items()
                       if a in slugs})
    return render("index_group.html", i=i, names=" / ".join(sorted({e.dataset for e in entries})),
                  key=entries[0].dataset_key[:12], counts=entries[0].result["dataset"].get("counts", {}), note=note,
                  headers=headers, rows=rows, cols=cols,
                  compares=[(href, by_slug[a], by_slug[b]) for a, b, href in compares])


def index_page(groups_html: list[str], skipped: list[str], *, method: str) -> Markup:
    return render("index.html", method=method, groups=Markup("").join(Markup(g) for g in groups_html),
                  skipped=skipped)


# --- entry ------------------------------------------------------------------------------------------

def suite_section(name: str, body: dict[str, Any], figs: Figures) -> Markup:
    from benchmark.core.metric_spec import better  # direction from the metric's spec, never from its name
    from benchmark.reporting.templating import table_view

    metrics = body.get("metrics", {})
    notes, tables, figures = body.get("notes"), body.get("tables", {}), body.get("figures", {})
    return render(
        "suite.html",
        metrics=[{"metric": k, "better": better(name, k, body), "value [95% CI]": v} for k, v in metrics.items()],
        notes=[n for n in (notes if isinstance(notes, list) else []) if isinstance(n, str | int | float)],
        tables=[table_view(k, v, mapping_rows=True) for k, v in (tables.items() if isinstance(tables, dict) else [])],
        figures=[figs.add(v, caption=str(k)) for k, v in (figures.items() if isinstance(figures, dict) else [])])


def _fallback(name: str, clean: pd.DataFrame | None, figs: Figures, config: Any) -> Markup:
    from leaderboard.figures import per_site_figure, reliability_figure

    if clean is None or name in ("shortcut", "robustness"):
        return render("fallback.html", name=name, note="", figure="")
    if name == "calibration":
        return render("fallback.html", name=name, note="Drawn by the leaderboard from the clean predictions (no "
                      "confidence intervals; the calibration suite adds ECE, Brier and NLL with CIs).",
                      figure=figs.add(reliability_figure(clean), caption="reliability diagram"))
    try:
        fig = per_site_figure(clean, config=config)
    except CxrbenchError as exc:  # e.g. a site too small to resample: the page still builds
        return render("fallback.html", name=name, note=f"No per-site figure: {exc}", figure="")
    if fig is None:
        return render("fallback.html", name=name, note="The predictions carry no site.", figure="")
    return render("fallback.html", name=name, note="Drawn by the leaderboard from the clean predictions: balanced "
                  "accuracy per site, patients resampled within each site.",
                  figure=figs.add(fig, caption="per-site balanced accuracy"))


def entry_page(e: Entry, s: Standing, clean: pd.DataFrame | None, *, others: dict[str, str],
               config: Any) -> tuple[Markup, Figures]:
    figs = Figures()
    suites = e.result["suites"]
    sections, toc = [], [("#headline", "headline")]
    for name, title in SECTIONS + tuple((n, n) for n in suites if n not in dict(SECTIONS)):
        body = suites.get(name)
        content = suite_section(name, body, figs) if isinstance(body, dict) else _fallback(name, clean, figs, config)
        sections.append({"name": name, "title": title, "content": content})
        toc.append((f"#suite-{name}", title))
    toc += [("#compare", "compare"), ("#provenance", "provenance")]
    card = e.result["model"].get("card")
    content = render("entry.html", e=e, s=s, unreliable=unreliable(e), verified=verify_badge(s), toc=toc,
                     headline=[{"metric": m, "value [95% CI]": e.metric(m)} for m in HEADLINE if e.metric(m)],
                     sections=sections, compare=[(href, others[slug]) for slug, href in sorted(s.compare.items())],
                     facts=provenance(e), card=json.dumps(card, indent=2, default=str) if card else "")
    return content, figs


def provenance(e: Entry) -> list[tuple[str, Any]]:
    """The facts of the provenance section, in page order."""
    model, data, prov = e.result["model"], e.result["dataset"], e.provenance
    facts = {
        "model": model.get("name"), "weights sha256": model.get("sha256"), "model spec": model.get("spec"),
        "dataset": data.get("name"), "manifest sha256": data.get("manifest_sha256"),
        "counts": json.dumps(data.get("counts"), default=str), "cxrbench version": prov.get("version"),
        "metric code version": f"{e.metric_code_version or 'unknown'}{' (stale)' if e.stale else ''}",
        "git commit": prov.get("git_commit"), "seed": prov.get("seed"),
        "bootstrap": json.dumps(prov.get("bootstrap"), default=str), "device": prov.get("device"),
        "started at": prov.get("started_at"), "run folder": e.run_dir.name,
    }
    return list(facts.items())


# --- compare ----------------------------------------------------------------------------------------

def compare_page(comp: Any, a: Entry, b: Entry) -> Markup:
    pair = comp.pairs[0]
    if pair.tied:
        verdict = f"Statistically tied: no metric differs after {comp.correction_name} correction."
    else:
        verdict = "Differs on " + ", ".join(f"{r.metric} ({r.verdict})" for r in pair.differs) + "."
    method = comp.describe() + (f"; note: {comp.resolution_warning}" if comp.resolution_warning else "")
    return render("compare.html", comp=comp, pair=pair, a=a, b=b, level=round(comp.bootstrap.level * 100),
                  method=method, verdict=verdict)
