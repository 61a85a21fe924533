"""The readable terminal summary of a run."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from benchmark.reporting.numbers import ci_text, num, value_ci

if TYPE_CHECKING:
    from benchmark.execution.evaluate import RunOutcome, ShardOutcome

HEADLINES = {
    "subtype": ("accuracy", "balanced_accuracy", "macro_f1", "kappa", "mcc", "macro_auroc", "map",
                "pneumonia_auroc"),
    "calibration": ("ece", "ece_adaptive", "classwise_ece", "mce", "brier", "nll", "temperature", "ece_ts"),
    "cross_site": ("worst_site_balanced_accuracy", "site_gap_balanced_accuracy", "worst_site_macro_f1",
                   "site_gap_macro_f1", "worst_site_ece", "site_auroc", "site_auroc_label_only",
                   "site_auroc_excess", "op_transfer_worst_sensitivity"),
    "shortcut": ("clean_balanced_accuracy", "no_lung_retention", "only_lung_retention", "random_area_retention",
                 "border_retention", "corners_retention"),
    "robustness": ("clean_macro_f1", "robust_macro_f1", "robust_macro_f1_drop"),
}


# Said wherever a run made with --bootstrap 0 is shown (terminal and report).
POINT_ONLY = ("--bootstrap 0: point estimates only, no confidence intervals (every ci is null); a gate on a "
              "CI bound cannot judge this run")


def print_summary(console: Console, outcome: RunOutcome) -> None:
    """A run's headline metrics per suite, where it wrote them, then its verdict."""
    result = outcome.result
    prov = result["provenance"]
    bs = prov["bootstrap"]
    from benchmark.core.textsafe import terminal_safe as safe

    console.print(f"[bold]{escape(safe(result['model']['name']))}[/] on [bold]{escape(safe(result['dataset']['name']))}[/]: "
                  f"{result['dataset']['counts']['images']} images, {result['dataset']['counts']['patients']} patients"
                  f" ({outcome.forward_images} forward passes, cached views: "
                  f"{escape(', '.join(outcome.cached_views) or 'none')}; cached suites: "
                  f"{escape(', '.join(prov.get('cached_suites') or []) or 'none')})", highlight=False)
    from benchmark.reporting.result_rules import ci_computed

    point_only = not ci_computed(result)
    if point_only:
        console.print(f"[bold yellow]note:[/] {POINT_ONLY}", highlight=False, soft_wrap=True)
    elif bs.get("ci_reliable") is False:  # benchmark.reporting.result_rules: too few units for a meaningful CI
        console.print(f"[bold yellow]warning:[/] the 95% CIs rest on {bs.get('units')} {escape(str(bs.get('unit')))}s, "
                      f"fewer than {bs.get('min_units')}: they are unreliable, and a gate on a CI bound "
                      "refuses this run", highlight=False, soft_wrap=True)
    for suite, body in result["suites"].items():
        names = HEADLINES.get(suite) or tuple(body["metrics"])[:12]
        how = ("point estimates, no CIs" if point_only
               else f"95% CI, {bs['method']} bootstrap over {bs['unit']}s, B={bs['n_resamples']}")
        table = Table(title=f"{suite}  ({how})")
        table.add_column("metric")
        table.add_column("value", justify="right")
        if not point_only:
            table.add_column("95% CI", justify="right")
        for name in names:
            m = body["metrics"].get(name)
            if m is not None:
                table.add_row(escape(name), num(m["value"]), *([] if point_only else [escape(ci_text(m["ci"]))]))
        console.print(table)
    console.print(f"wrote {outcome.run_dir}/result.json, predictions.parquet, report.html", markup=False,
                  highlight=False)
    print_verdict(console, result, outcome.run_dir)


def print_verdict(console: Console, result: dict, run_dir=None) -> None:
    """The report's verdict panel in a few lines (benchmark.reporting.verdict): the run's last words."""
    from rich.text import Text

    from benchmark.core.errors import CxrbenchError
    from benchmark.core.textsafe import terminal_safe as safe
    from benchmark.reporting.verdict import build_verdict

    predictions = None
    if run_dir is not None and (Path(run_dir) / "predictions.parquet").is_file():
        import pandas as pd

        predictions = pd.read_parquet(Path(run_dir) / "predictions.parquet")
    try:
        v = build_verdict(result, predictions)
    except CxrbenchError as exc:
        console.print(Text(f"verdict: none ({safe(exc)})"))
        return
    style = {"pass": "bold green", "fail": "bold red", "unusable": "bold yellow"}[v.outcome]
    console.print(Text(f"verdict: {v.summary}", style=style))
    for c in v.failed:
        text = f"{c.compared} {num(c.observed)}, required {c.required}; value {value_ci(c.value, c.ci)}"
        console.print(Text.assemble(("  FAIL ", style), f"{safe(c.metric)}: {text}"))
    # Checks unusable for one reason (e.g. too few patients for any CI) are said once, not per check.
    reasons: dict[str, list] = {}
    for c in v.unusable:
        reasons.setdefault(safe(c.problem).replace(safe(c.metric), "the metric"), []).append(c)
    for reason, checks in reasons.items():
        text = reason if len(checks) > 1 else safe(checks[0].problem)
        console.print(Text.assemble(("  unusable ", style), f"{', '.join(safe(c.metric) for c in checks)}: {text}"))
    passed = [safe(c.metric) for c in v.checks if c.status == "pass"]
    if passed:
        console.print(Text(f"  pass: {', '.join(passed)}"))
    console.print(Text(f"  shortcut: {safe(v.shortcut[0])}: {safe(v.shortcut[1])}" if v.shortcut is not None
                       else "  shortcut: not run (add shortcut to --suites)"))
    for h in v.headlines:
        where = f" ({safe(h.note)})" if h.note else ""
        console.print(Text(f"  {h.label}{where}: {value_ci(h.value, h.ci)}"))
    for w in v.warnings:
        console.print(Text.assemble(("  warning: ", "bold yellow"), safe(w)))


def print_shard(console: Console, shard: ShardOutcome) -> None:
    """A shard run scores nothing: say what it stored and what is still missing."""
    rows = (f"rows {shard.first_row}-{shard.last_row - 1}" if shard.last_row > shard.first_row
            else "no rows (more shards than batches)")
    console.print(f"shard {shard.shard}: {rows} of {shard.n_rows} ({shard.forward_images} forward passes) "
                  f"stored in {shard.store}", markup=False, highlight=False)
    for view, n in shard.stored_rows.items():
        console.print(f"  {view}: {n} of {shard.n_rows} rows stored", markup=False, highlight=False)
    if shard.complete:
        console.print("every shard is in: run the same command without --shard to score", markup=False)
    else:
        console.print("other shards are still missing; run them with the same --cache-dir (or `cxrbench merge` "
                      "their caches), then run without --shard to score", markup=False, highlight=False)
