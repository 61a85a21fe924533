"""The three kinds of page: the index (one sortable table per dataset), an entry, a comparison."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from benchmark.core.errors import CxrbenchError
from leaderboard.entries import Entry
from leaderboard.html import Figures, any_table, esc, fmt, header, metric_cell, render, rows_table

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


def status_badge(s: Standing) -> str:
    if s.status == "leader":
        return "<span class='badge leader' title='first on the ranking metric'>leader</span>"
    if s.status == "tied":
        return (f"<span class='badge tied' title='not significantly different from the leader (adjusted p = "
                f"{fmt(s.p_adjusted)})'>tied with leader</span>")
    if s.status == "behind":
        return (f"<span class=sub title='significantly behind the leader'>behind<br>p<sub>adj</sub> "
                f"{fmt(s.p_adjusted)}</span>")
    return f"<span class='badge untested' title='{esc(s.note)}'>not tested</span>"


VERIFY_BADGES = {
    "verified": ("verified", "verified", "every metric recomputed from its predictions matches"),
    "tampered": ("tampered", "tampered", "its result.json does not follow from its predictions"),
    "unverifiable": ("unverifiable", "not verifiable", "its metrics could not be recomputed"),
}


def verify_badge(s: Standing) -> str:
    if s.verification is None:
        return "<span class='badge untested' title='the build did not verify entries'>not checked</span>"
    cls, text, what = VERIFY_BADGES[s.verification.status]
    return f"<span class='badge {cls}' title='{esc(what)}: {esc(s.verification.detail)}'>{text}</span>"


def rank_cells(s: Standing) -> str:
    """Rank interval and probability of being best; n/a where ranks were not resampled."""
    if s.rank is None or not s.rank.ci[0]:
        return "<td class=num data-sort=''>n/a</td><td class=num data-sort=''>n/a</td>"
    lo, hi = s.rank.ci
    return (f"<td class=num data-sort='{lo + hi / 1000:.3f}'>{s.rank.rank} <span class=ci>[{lo}, {hi}]</span></td>"
            f"<td class=num data-sort='{s.rank.p_best:.6f}'>{s.rank.p_best:.2f}</td>")


def stale_badge(e: Entry) -> str:
    if not e.stale:
        return ""
    return (f"<span class='badge stale' title='computed with metric code version {esc(e.metric_code_version)}'>"
            "stale</span>")


def unreliable_badge(e: Entry) -> str:
    """Marks an entry whose CIs rest on fewer resampling units than benchmark.reporting.result_rules asks for."""
    from benchmark.reporting.result_rules import MIN_BOOTSTRAP_UNITS, ci_reliability

    units, reliable = ci_reliability(e.result)
    if reliable:
        return ""
    return (f"<span class='badge unreliable' title='95% CIs from {esc(units)} resampling units, fewer than "
            f"{MIN_BOOTSTRAP_UNITS}: too few to trust'>unreliable CI</span>")


# --- index ------------------------------------------------------------------------------------------

def index_group(i: int, entries: list[Entry], standings: dict[str, Standing], *, rank_by: str, note: str) -> str:
    # The ranking metric leads; then the headline metrics any entry of the group has.
    cols = [m for m in (rank_by, *INDEX_COLUMNS) if any(e.metric(m) for e in entries)]
    cols = list(dict.fromkeys(cols))
    head = (header("#", sortable=True) + header("model", sortable=True, kind="text")
            + header("tie group", sortable=True, kind="text") + header("rank [95% CI]", sortable=True)
            + header("P(best)", sortable=True) + header("verified", sortable=True, kind="text")
            + "".join(header((c.split(".", 1)[1] if c.startswith("subtype.") else c)
                             + (" (rank)" if c == rank_by else ""), sortable=True) for c in cols)
            + header("images", sortable=True) + header("date", sortable=True, kind="text")
            + header("metric code", sortable=True, kind="text"))
    rows = []
    for rank, e in enumerate(entries, 1):
        s = standings[e.slug]
        order = {"leader": "0", "tied": "1", "behind": "2"}.get(s.status, "3")
        rows.append(
            f"<tr data-slug='{esc(e.slug)}'{' class=is-stale' if e.stale else ''}>"
            f"<td class=num data-sort='{rank}'>{rank}</td>"
            f"<td data-sort='{esc(e.model.lower())}'><a href='entries/{esc(e.slug)}.html'>{esc(e.model)}</a></td>"
            f"<td class=status data-sort='{order}'>{status_badge(s)}{unreliable_badge(e)}</td>{rank_cells(s)}"
            f"<td class=status data-sort='{esc(s.verification.status if s.verification else 'z')}'>"
            f"{verify_badge(s)}</td>"
            + "".join(metric_cell(e.metric(c)) for c in cols)
            + f"<td class=num data-sort='{esc(e.result['dataset'].get('counts', {}).get('images', ''))}'>"
            f"{fmt(e.result['dataset'].get('counts', {}).get('images'))}</td>"
            f"<td class=date>{esc(str(e.provenance.get('started_at', ''))[:10])}</td>"
            f"<td>{esc(e.metric_code_version or 'unknown')}{stale_badge(e)}</td></tr>")
    names = sorted({e.dataset for e in entries})
    counts = entries[0].result["dataset"].get("counts", {})
    compares = sorted({(min(a, b), max(a, b), href) for a, s in standings.items() for b, href in s.compare.items()
                       if a in {e.slug for e in entries}})
    by_slug = {e.slug: e.model for e in entries}
    links = ", ".join(f"<a href='{esc(href)}'>{esc(by_slug[a])} vs {esc(by_slug[b])}</a>" for a, b, href in compares)
    return (f"<section class=dataset id='dataset-{i}'><h2>{esc(' / '.join(names))} "
            f"<span class=sub>manifest {esc(entries[0].dataset_key[:12])}</span></h2>"
            f"<p>{fmt(counts.get('images'))} images, {fmt(counts.get('patients'))} patients; "
            f"{len(entries)} {'entry' if len(entries) == 1 else 'entries'}.</p><p class=note>{esc(note)}</p>"
            f"<div class=scroll><table class='sortable board' id='board-{i}'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></div>"
            + (f"<p>Compare: {links}</p>" if links else "") + "</section>")


def index_page(groups_html: list[str], skipped: list[str], *, method: str) -> str:
    skipped_html = ""
    if skipped:
        items = "".join(f"<li>{esc(s)}</li>" for s in skipped)
        skipped_html = f"<section class=skipped><h2>Skipped result files</h2><ul>{items}</ul></section>"
    return render("index.html", method=esc(method), groups="".join(groups_html), skipped=skipped_html)


# --- entry ------------------------------------------------------------------------------------------

def suite_section(name: str, body: dict[str, Any], figs: Figures) -> str:
    metrics = body.get("metrics", {})
    from benchmark.core.metric_spec import better  # direction from the metric's spec, never from its name

    table = rows_table([{"metric": k, "better": better(name, k, body), "value [95% CI]": v}
                        for k, v in metrics.items()])
    if len(metrics) > 12:
        table = f"<details><summary>all {len(metrics)} metrics</summary>{table}</details>"
    parts = [table]
    notes = body.get("notes")
    parts += [f"<p class=note>{esc(n)}</p>" for n in (notes if isinstance(notes, list) else [])
              if isinstance(n, str | int | float)]
    tables = body.get("tables", {})
    parts += [any_table(k, v) for k, v in (tables.items() if isinstance(tables, dict) else [])]
    figures = body.get("figures", {})
    parts += [figs.add(v, caption=str(k)) for k, v in (figures.items() if isinstance(figures, dict) else [])]
    return "".join(parts)


def _fallback(name: str, clean: pd.DataFrame | None, figs: Figures, config: Any) -> str:
    from leaderboard.figures import per_site_figure, reliability_figure

    not_run = f"<p class=notrun>The {esc(name)} suite was not run (add {esc(name)} to <code>--suites</code>).</p>"
    if clean is None or name in ("shortcut", "robustness"):
        return not_run
    if name == "calibration":
        return (not_run + "<p class=note>Drawn by the leaderboard from the clean predictions (no confidence "
                "intervals; the calibration suite adds ECE, Brier and NLL with CIs).</p>"
                + figs.add(reliability_figure(clean), caption="reliability diagram"))
    try:
        fig = per_site_figure(clean, config=config)
    except CxrbenchError as exc:  # e.g. a site too small to resample: the page still builds
        return not_run + f"<p class=note>No per-site figure: {esc(exc)}</p>"
    if fig is None:
        return not_run + "<p class=note>The predictions carry no site.</p>"
    return (not_run + "<p class=note>Drawn by the leaderboard from the clean predictions: balanced accuracy "
            "per site, patients resampled within each site.</p>" + figs.add(fig, caption="per-site balanced accuracy"))


def entry_page(e: Entry, s: Standing, clean: pd.DataFrame | None, *, others: dict[str, str],
               config: Any) -> tuple[str, Figures]:
    figs = Figures()
    suites = e.result["suites"]
    sections, toc = [], ["<a href='#headline'>headline</a>"]
    for name, title in SECTIONS + tuple((n, n) for n in suites if n not in dict(SECTIONS)):
        body = suites.get(name)
        content = suite_section(name, body, figs) if isinstance(body, dict) else _fallback(name, clean, figs, config)
        sections.append(f"<section id='suite-{esc(name)}'><h2>{esc(title)}</h2>{content}</section>")
        toc.append(f"<a href='#suite-{esc(name)}'>{esc(title)}</a>")
    toc += ["<a href='#compare'>compare</a>", "<a href='#provenance'>provenance</a>"]
    headline = rows_table([{"metric": m, "value [95% CI]": e.metric(m)} for m in HEADLINE if e.metric(m)])
    links = "".join(f"<li><a href='../{esc(href)}'>vs {esc(others[slug])}</a></li>"
                    for slug, href in sorted(s.compare.items()))
    compare = f"<ul>{links}</ul>" if links else "<p class=note>No other entry was scored on the same images.</p>"
    badges = (f"<p>{status_badge(s)}{stale_badge(e)}{unreliable_badge(e)}{verify_badge(s)}</p>"
              + (f"<p class=note>{esc(s.note)}</p>" if s.note else "")
              + (f"<p class='verify-detail {esc(s.verification.status)}'>Verification: {esc(s.verification.detail)}</p>"
                 if s.verification else "")
              + (f"<p>Rank {s.rank.rank} (95% CI {s.rank.ci[0]} to {s.rank.ci[1]}), probability of being best "
                 f"{s.rank.p_best:.2f}.</p>" if s.rank is not None and s.rank.ci[0] else ""))
    content = render("entry.html", model=esc(e.model), dataset=esc(e.dataset), badges=badges, toc=" ".join(toc),
                     headline=headline, sections="".join(sections), compare=compare, provenance=provenance(e))
    return content, figs


def provenance(e: Entry) -> str:
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
    dl = "".join(f"<dt>{esc(k)}</dt><dd>{esc('n/a' if v is None else v)}</dd>" for k, v in facts.items())
    card = model.get("card")
    card_html = (f"<details><summary>model card</summary><pre>{esc(json.dumps(card, indent=2, default=str))}</pre>"
                 "</details>") if card else ""
    return f"<dl>{dl}</dl>{card_html}"


# --- compare ----------------------------------------------------------------------------------------

def _signed(x: float) -> str:
    return f"{x:+.3f}" if isinstance(x, float) and math.isfinite(x) else fmt(x)


def compare_page(comp: Any, a: Entry, b: Entry) -> str:
    pair = comp.pairs[0]
    level = round(comp.bootstrap.level * 100)
    rows = "".join(
        f"<tr><td>{esc(r.metric)}</td><td class=num>{fmt(r.value_a)}</td><td class=num>{fmt(r.value_b)}</td>"
        f"<td class=num>{_signed(r.diff)} <span class=ci>[{fmt(r.ci[0])}, {fmt(r.ci[1])}]</span></td>"
        f"<td>{esc(r.test)}</td><td class=num>{fmt(r.p_value)}</td><td class=num>{fmt(r.p_adjusted)}</td>"
        f"<td>{esc(r.verdict)}</td></tr>" for r in pair.rows)
    table = (f"<table class=paired><thead><tr><th>metric</th><th>A</th><th>B</th><th>A - B [{level}% CI]</th>"
             f"<th>test</th><th>p</th><th>p ({esc(comp.correction_name)})</th><th>verdict</th></tr></thead>"
             f"<tbody>{rows}</tbody></table>")
    if pair.tied:
        verdict = f"Statistically tied: no metric differs after {comp.correction_name} correction."
    else:
        verdict = "Differs on " + ", ".join(f"{r.metric} ({r.verdict})" for r in pair.differs) + "."
    return render("compare.html", a=esc(a.model), b=esc(b.model), dataset=esc(a.dataset),
                  n_images=esc(comp.n_images), n_units=esc(comp.n_units), unit=esc(comp.unit),
                  href_a=f"../entries/{esc(a.slug)}.html", href_b=f"../entries/{esc(b.slug)}.html",
                  method=esc(comp.describe() + (f"; note: {comp.resolution_warning}" if comp.resolution_warning
                                                else "")),
                  table=table, verdict=esc(verdict))
