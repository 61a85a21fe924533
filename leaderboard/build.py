"""Build the site: entries -> dataset groups -> tie groups and comparisons -> pages and assets."""
from __future__ import annotations

import json
import math
import re
import shutil
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.core.errors import CxrbenchError
from benchmark.core.jsonsafe import json_safe
from leaderboard.entries import Entry, load_entries
from leaderboard.html import page
from leaderboard.pages import Standing, compare_page, entry_page, index_group, index_page

ASSETS = Path(__file__).parent / "assets"


@dataclass
class BuildOutcome:
    site_dir: Path
    entries: list[Entry]
    skipped: list[str] = field(default_factory=list)  # "FILE: what is wrong", one per skipped input
    notes: list[str] = field(default_factory=list)    # entries shown without comparisons, and why
    pages: list[Path] = field(default_factory=list)


@dataclass
class _Group:
    entries: list[Entry]
    standings: dict[str, Standing]
    note: str
    clean: dict[str, pd.DataFrame]


def _clean_predictions(e: Entry) -> pd.DataFrame | str:
    from benchmark.reporting.results import read_predictions

    if e.predictions is None:
        return "no predictions.parquet beside result.json"
    try:
        preds = read_predictions(e.predictions)
    except CxrbenchError as exc:
        return str(exc)
    clean = preds[preds["view"] == "clean"].reset_index(drop=True)
    return clean if not clean.empty else "predictions have no clean view"


def rank_direction(entries: list[Entry], rank_by: str) -> bool:
    """Whether higher values of `rank_by` rank first, from the metric's spec (benchmark.core.metric_spec:
    the code's for a built-in suite, else the entries' recorded one), never from the metric's name."""
    found = next((s for e in entries if (s := e.spec(rank_by)) is not None), None)
    if found is None:
        raise CxrbenchError(f"no metric spec for {rank_by} (not declared by its suite nor recorded in any entry), "
                            "so whether higher or lower is better is unknown (README: 'Metric directions')",
                            where="--rank-by")
    if found.higher_is_better is None:
        raise CxrbenchError(f"{rank_by} has no better direction (its spec says neither: {found.description}); "
                            "rank by a metric where higher or lower is better", where="--rank-by")
    return found.higher_is_better


def _rank_value(e: Entry, rank_by: str, higher_is_better: bool = True) -> float:
    """Larger ranks first; missing or undefined values last."""
    m = e.metric(rank_by)
    v = m.get("value") if m else None
    if not isinstance(v, int | float) or not math.isfinite(v):
        return float("-inf")
    return float(v) if higher_is_better else -float(v)


def _group(entries: list[Entry], *, rank_by: str, correction: str, alpha: float, config: Any,
           site: Path, notes: list[str], pages: list[Path], built: str, checks: dict[str, Any]) -> _Group:
    from benchmark.reporting.compare import CORRECTIONS, check_same_images, compare_loaded, load_paired_run, tie_group

    higher = rank_direction(entries, rank_by)
    entries = sorted(entries, key=lambda e: (-_rank_value(e, rank_by, higher), e.model.lower(), e.slug))
    standings = {e.slug: Standing(verification=checks.get(e.slug)) for e in entries}
    clean: dict[str, pd.DataFrame] = {}
    paired = []
    for e in entries:
        c = _clean_predictions(e)
        if isinstance(c, str):
            standings[e.slug].note = f"not compared: {c}"
            notes.append(f"{e.run_dir}: {standings[e.slug].note}")
            continue
        clean[e.slug] = c
        try:
            run = load_paired_run(e.run_dir, label=e.slug)
            if paired:
                check_same_images(paired[0], run)
        except CxrbenchError as exc:
            standings[e.slug].note = f"not compared: {exc}"
            notes.append(f"{e.run_dir}: {standings[e.slug].note}")
            continue
        paired.append(run)
    metric = rank_by.split(".", 1)[1] if rank_by.startswith("subtype.") else None
    note = (f"Tie group: entries not significantly different from the leader on {rank_by} (paired "
            f"bootstrap on the same images, {CORRECTIONS[correction]} correction over the comparisons with "
            f"the leader, alpha {alpha:g}).")
    try:
        ties = tie_group(paired, metric, correction=correction, alpha=alpha, config=config, higher_is_better=higher) \
            if len(paired) >= 2 and metric is not None else None
    except CxrbenchError:  # a subtype metric the paired comparison does not compute (e.g. study level)
        ties, metric = None, None
    if ties is not None:
        standings[ties.leader].status = "leader"
        for slug, q in ties.p_adjusted.items():
            standings[slug].status = "tied" if slug in ties.members else "behind"
            standings[slug].p_adjusted = q
    elif metric is None:
        note = f"No tie groups: {rank_by} is not a metric that the paired comparison can test."
    else:
        note = "No tie groups: fewer than two entries with predictions on these images."
    if metric is not None and len(paired) >= 2:
        note += " " + _rank_uncertainty(paired, metric, standings, config, higher)
    by_slug = {e.slug: e for e in entries}
    for i, ra in enumerate(paired):
        for rb in paired[i + 1:]:
            a, b = by_slug[ra.label], by_slug[rb.label]
            labels = (a.model, b.model) if a.model != b.model else (f"{a.model} ({a.slug})", f"{b.model} ({b.slug})")
            comp = compare_loaded([replace(ra, label=labels[0]), replace(rb, label=labels[1])],
                                  correction=correction, alpha=alpha, config=config)
            href = f"compare/{a.slug}--{b.slug}.html"
            path = site / href
            path.write_text(page(title=f"{a.model} vs {b.model}", content=compare_page(comp, a, b), root="../",
                                 built=built), encoding="utf-8")
            pages.append(path)
            standings[a.slug].compare[b.slug] = href
            standings[b.slug].compare[a.slug] = href
    return _Group(entries, standings, note, clean)


def _rank_uncertainty(paired: list[Any], metric: str, standings: dict[str, Standing], config: Any,
                      higher_is_better: bool) -> str:
    """Each entry's bootstrap rank interval and probability of being best (benchmark.stats.rank_intervals);
    returns the sentence that explains them."""
    from benchmark.reporting.compare import _stat_fn  # the paired comparison's metric family: the same numbers
    from benchmark.stats.rank_intervals import rank_intervals

    summary = rank_intervals(_stat_fn, metric, paired[0].y, [r.probs for r in paired], clusters=paired[0].clusters,
                             lower_is_better=not higher_is_better, config=config)
    for run, iv in zip(paired, summary.intervals):
        standings[run.label].rank = iv
    return (f"Rank [{round(summary.level * 100)}% CI]: the entry's rank on {metric} in each of "
            f"{summary.n_resamples} bootstrap resamples of {summary.unit}s, every entry scored on the same "
            "resamples; P(best): the share of resamples in which it ranks first (a tie for first is shared).")


def build_site(paths: list[str | Path], out_dir: str | Path, *, rank_by: str = "subtype.map",
               correction: str = "holm", alpha: float = 0.05, bootstrap: int = 1000, seed: int = 0,
               verify: bool = True, require_verified: bool = False, jobs: int | None = None,
               cache_dir: Path | None = None) -> BuildOutcome:
    """Write the leaderboard for the given run folders into `out_dir`; fails only when no valid entry
    remains (every skipped input is listed in the outcome and on the index page). Each entry is
    verified (its suites recomputed from its predictions, leaderboard.verification) unless `verify` is
    False; `require_verified` leaves out every entry that does not verify."""
    from benchmark.reporting.compare import CORRECTIONS
    from benchmark.stats import BootstrapConfig

    if correction not in CORRECTIONS:
        raise CxrbenchError(f"unknown correction {correction!r}; choose from {', '.join(CORRECTIONS)}",
                            where="--correction")
    if not re.fullmatch(r"[A-Za-z0-9_]+\.\S+", rank_by):
        raise CxrbenchError(f"expected <suite>.<metric>, found {rank_by!r}", where="--rank-by")
    config = BootstrapConfig(n_resamples=bootstrap, seed=seed)
    if require_verified and not verify:
        raise CxrbenchError("--require-verified needs verification; drop --no-verify", where="--require-verified")
    entries, skipped = load_entries(list(paths))
    checks: dict[str, Any] = {}
    if entries and verify:
        from benchmark.execution.store import default_cache_dir
        from leaderboard.verification import LABELS, verify_entries

        checks = verify_entries({e.slug: e.run_dir for e in entries}, cache_dir=cache_dir or default_cache_dir(),
                                jobs=jobs)
        if require_verified:
            skipped += [f"{e.run_dir / 'result.json'}: left out by --require-verified: {LABELS[checks[e.slug].status]} "
                        f"({checks[e.slug].detail})" for e in entries if checks[e.slug].status != "verified"]
            entries = [e for e in entries if checks[e.slug].status == "verified"]
    if not entries:
        first = f"; first problem: {skipped[0]}" if skipped else ""
        what = "verified entry" if require_verified else "valid result file"
        raise CxrbenchError(f"no {what} among the {len(paths)} path(s) given{first}", where="leaderboard")
    site = Path(out_dir)
    for sub in ("assets", "entries", "compare"):
        (site / sub).mkdir(parents=True, exist_ok=True)
    _write_assets(site)
    built = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    outcome = BuildOutcome(site, entries, skipped)
    keys: dict[str, list[Entry]] = {}
    for e in entries:
        keys.setdefault(e.dataset_key, []).append(e)
    groups = [_group(g, rank_by=rank_by, correction=correction, alpha=alpha, config=config, site=site,
                     notes=outcome.notes, pages=outcome.pages, built=built, checks=checks)
              for g in sorted(keys.values(), key=lambda g: (min(e.dataset.lower() for e in g), g[0].dataset_key))]
    for g in groups:
        names = {e.slug: e.model for e in g.entries}
        for e in g.entries:
            s = g.standings[e.slug]
            content, figs = entry_page(e, s, g.clean.get(e.slug), others=names, config=config)
            path = site / "entries" / f"{e.slug}.html"
            path.write_text(page(title=f"{e.model} on {e.dataset}", content=content, root="../", figures=figs,
                                 built=built), encoding="utf-8")
            outcome.pages.append(path)
    method = (f"Ranked by {rank_by}. Values are point estimates with 95% bootstrap confidence intervals "
              f"[lower, upper]; statistical ties use {CORRECTIONS[correction]} correction.")
    body = index_page([index_group(i, g.entries, g.standings, rank_by=rank_by, note=g.note)
                       for i, g in enumerate(groups)], skipped, method=method)
    (site / "index.html").write_text(page(title="cxrbench leaderboard", content=body, root="", built=built),
                                     encoding="utf-8")
    outcome.pages.insert(0, site / "index.html")
    _write_json(site, groups, rank_by, correction, skipped)
    return outcome


def _write_assets(site: Path) -> None:
    from plotly.offline import get_plotlyjs

    # plotly.js comes from the installed plotly package: the site never reaches a CDN.
    (site / "assets" / "plotly.min.js").write_text(get_plotlyjs(), encoding="utf-8")
    for asset in ASSETS.iterdir():
        if asset.is_file():
            shutil.copyfile(asset, site / "assets" / asset.name)


def _write_json(site: Path, groups: list[_Group], rank_by: str, correction: str, skipped: list[str]) -> None:
    """The same standings as data, for scripts and tests."""
    data = {"rank_by": rank_by, "correction": correction, "skipped": skipped, "datasets": [
        {"manifest_sha256": g.entries[0].dataset_key, "note": g.note, "entries": [
            {"slug": e.slug, "model": e.model, "dataset": e.dataset, "run_dir": str(e.run_dir), "stale": e.stale,
             "metric_code_version": e.metric_code_version, "status": g.standings[e.slug].status,
             "p_adjusted": g.standings[e.slug].p_adjusted, "page": f"entries/{e.slug}.html",
             "compare": g.standings[e.slug].compare, "rank_metric": e.metric(rank_by),
             "rank_interval": g.standings[e.slug].rank.to_json() if g.standings[e.slug].rank else None,
             "verification": (g.standings[e.slug].verification.to_json() if g.standings[e.slug].verification
                              else {"status": "not checked"})}
            for e in g.entries]} for g in groups]}
    (site / "leaderboard.json").write_text(json.dumps(json_safe(data), indent=2, default=str, allow_nan=False) + "\n",
                                           encoding="utf-8")
