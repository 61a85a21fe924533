"""The `cxrbench` command: parses options, calls `benchmark.api`, prints. Nothing else lives here."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

app = typer.Typer(add_completion=False, no_args_is_help=False, pretty_exceptions_enable=False,
                  help="Evaluation and robustness benchmark for fine-grained COVID-19 chest X-ray models.\n\n"
                       "Pipeline (benchmark/ by role): data (manifests, adapters, decoding) -> models (cards, "
                       "loaders) -> execution (runner, forward passes, prediction store, shards, Ray) -> views "
                       "(image transforms) -> suites (metrics, via stats) -> reporting (result.json, report, "
                       "compare, gate, verify); audit checks data for leakage; core holds the registry and the "
                       "plugin contract (docs/plugins.md).")
out = Console()
err = Console(stderr=True)
STATE = {"debug": False}
PLUGIN_HELP = ("Plugin module to import first: a module name or a .py file (repeatable; also CXRBENCH_PLUGINS, "
               "comma-separated). See docs/plugins.md.")


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors.")) -> None:
    STATE["debug"] = debug


@app.command("run")
def run_cmd(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Registered model name or checkpoint path (default: reference)."),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="Dataset: registered name, NAME:PATH or manifest CSV (default: synth)."),
    suites: Optional[str] = typer.Option(None, "--suites", help="Comma-separated suite names."),
    out_dir: Path = typer.Option(Path("runs"), "--out", "-o", help="Folder for run folders."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:1 (default: auto)."),
    batch_size: int = typer.Option(32, "--batch-size"),
    workers: int = typer.Option(0, "--workers", help="Decode worker processes."),
    seed: int = typer.Option(0, "--seed"),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Bootstrap resamples for confidence intervals."),
    ci_method: str = typer.Option("percentile", "--ci-method", help="percentile or bca."),
    predictions: Optional[Path] = typer.Option(None, "--predictions", help="Score an existing predictions file."),
    trust_code: bool = typer.Option(False, "--trust-code", "--trust-pickle", help="Allow checkpoints that carry code: pickles and TorchScript (runs their code)."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Prediction cache (default: ~/.cache/cxrbench)."),
    group_by: str = typer.Option("site", "--group-by", help="Manifest column for per-group metrics."),
    option: list[str] = typer.Option([], "--option", help="Suite option KEY=VALUE (repeatable)."),
    shard: Optional[str] = typer.Option(None, "--shard", help="I/N: compute only this slice of the predictions into the cache; a run without --shard scores them."),
    executor: str = typer.Option("local", "--executor", help="local, or ray (needs the [ray] extra)."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (default: start a local Ray instance)."),
    shards: Optional[int] = typer.Option(None, "--shards", help="Ray executor: row slices per view (default: one per task slot)."),
    shared_plotly: bool = typer.Option(False, "--shared-plotly", help="report.html loads plotly.js from one copy in --out instead of inlining it."),
    strict_paths: bool = typer.Option(False, "--strict-paths", help="Refuse manifest paths that are absolute or climb out of its folder with ../."),
    plugin: list[str] = typer.Option([], "--plugin", help=PLUGIN_HELP),
) -> None:
    """Evaluate a model on a dataset and write result.json, predictions.parquet and report.html."""
    from benchmark import api
    from benchmark.reporting.summary import print_shard, print_summary

    req = api.RunRequest(
        model=model, data=data, suites=tuple(s.strip() for s in suites.split(",") if s.strip()) if suites else None,
        out=out_dir, device=device, batch_size=batch_size, workers=workers, seed=seed, bootstrap=bootstrap,
        ci_method=ci_method, predictions=predictions, trust_code=trust_code, cache_dir=cache_dir,
        progress=sys.stderr.isatty(), group_by=group_by, options=api.parse_options(option), shard=shard,
        executor=executor, address=address, shards=shards, shared_plotly=shared_plotly, strict_paths=strict_paths,
        plugins=tuple(plugin),
    )
    if shard is not None:  # fills the prediction store only; a run without --shard scores it
        print_shard(out, api.run_shard(req))
    else:
        print_summary(out, api.run(req))


@app.command("merge")
def merge_cmd(
    sources: list[Path] = typer.Argument(..., metavar="CACHE_DIR", help="Caches filled by sharded runs elsewhere."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Cache to merge into (default: ~/.cache/cxrbench)."),
) -> None:
    """Merge prediction stores of sharded runs into this cache; then `run` (without --shard) scores them."""
    from benchmark import api

    outcome = api.merge(sources, cache_dir=cache_dir)
    out.print(f"merged {outcome.pieces} pieces ({outcome.rows} rows) into {outcome.entries} entries of "
              f"{outcome.target}; {outcome.already} already there", markup=False, highlight=False)


@app.command("list")
def list_cmd(kind: str = typer.Argument("suites", help="models, datasets, suites, views or segmenters"),
             plugin: list[str] = typer.Option([], "--plugin", help=PLUGIN_HELP)) -> None:
    """List what is registered, with its origin: builtin, plugin:<distribution> or in-process."""
    from rich.table import Table

    from benchmark import api

    table = Table(title=kind)
    for col in ("name", "origin", "description"):
        table.add_column(col)
    for row in api.list_registry(kind, plugins=plugin):
        table.add_row(*row)
    out.print(table)


@app.command("synth")
def synth_cmd(
    out_dir: Path = typer.Option(..., "--out", "-o", help="Folder to write images, masks and manifest.csv."),
    n_patients: int = typer.Option(300, "--n-patients"),
    n_sites: int = typer.Option(4, "--n-sites"),
    image_size: int = typer.Option(256, "--image-size"),
    confound: float = typer.Option(0.5, "--confound", help="Site/label confounding, 0..1."),
    label_noise: float = typer.Option(0.0, "--label-noise"),
    marker_label_corr: float = typer.Option(0.0, "--marker-label-corr", help="Plant a label-coding marker."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Write a synthetic chest X-ray dataset with known truth."""
    from benchmark import api

    path = api.synth(out_dir, n_patients=n_patients, n_sites=n_sites, image_size=image_size, confound=confound,
                     label_noise=label_noise, marker_label_corr=marker_label_corr, seed=seed)
    out.print(f"wrote {path}")


@app.command("compare")
def compare_cmd(
    runs: list[Path] = typer.Argument(..., metavar="RUN_DIR", help="Two or more run folders on the same images."),
    correction: str = typer.Option("holm", "--correction", help="Multiple-comparison correction: holm or fdr_bh."),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level after correction."),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Paired bootstrap resamples."),
    seed: int = typer.Option(0, "--seed"),
    metrics: Optional[str] = typer.Option(None, "--metrics", help="Comma-separated subtype metrics to compare."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the comparison as JSON."),
) -> None:
    """Paired comparison of runs: differences with CIs, p-values, correction, statistical ties."""
    from benchmark import api
    from benchmark.reporting.compare import comparison_tables

    comp = api.compare(runs, correction=correction, alpha=alpha, bootstrap=bootstrap, seed=seed, json_out=json_out,
                       metrics=tuple(m.strip() for m in metrics.split(",") if m.strip()) if metrics else None)
    console = out if out.is_terminal else Console(width=120)  # a CI log keeps each row on one line
    for part in comparison_tables(comp):
        console.print(part)


@app.command("gate")
def gate_cmd(
    run_dir: Path = typer.Argument(..., help="Run folder (or its result.json)."),
    policy: str = typer.Option(..., "--policy", help="Policy YAML file, or 'default' for the shipped deploy policy."),
    junit: Optional[Path] = typer.Option(None, "--junit", help="Write JUnit XML here."),
    summary: Optional[Path] = typer.Option(None, "--summary", help="Write a Markdown summary here."),
) -> None:
    """Check a run against a deploy policy: exit 0 pass, 1 fail, 2 unusable run or policy."""
    from benchmark import api
    from benchmark.reporting.gate import gate_table

    report = api.gate(run_dir, policy, junit=junit, summary=summary)
    (out if out.is_terminal else Console(width=120)).print(gate_table(report))
    if not report.passed:
        sys.exit(1)  # SystemExit passes through main(); a failed gate is a verdict, not an error


@app.command("verify")
def verify_cmd(run_dir: Path = typer.Argument(..., help="Run folder (or its result.json)."),
               plugin: list[str] = typer.Option([], "--plugin", help=PLUGIN_HELP)) -> None:
    """Recompute every suite from the run's predictions and compare with result.json: exit 0 all match,
    1 some differ (named), 2 cannot verify."""
    from benchmark import api

    report = api.verify(run_dir, plugins=plugin)
    (out if report.exit_code == 0 else err).print(report.headline, markup=False, highlight=False, soft_wrap=True)
    if report.exit_code:
        sys.exit(report.exit_code)  # a difference is a verdict, as for `gate`


@app.command("splits")
def splits_cmd(
    leave_out_site: str = typer.Option(..., "--leave-out-site", help="The site that becomes the test set."),
    data: str = typer.Option(..., "--data", "-d", help="Dataset with image files: manifest CSV or folder."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Folder for train.csv, val.csv, test.csv, splits.json."),
    val_fraction: float = typer.Option(0.2, "--val-fraction", help="Share of the other sites' patients in val."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Write patient-disjoint train/val/test manifests for leave-one-site-out training."""
    from benchmark import api

    outcome = api.splits(data, leave_out_site, out_dir, val_fraction=val_fraction, seed=seed)
    for name, path in outcome.paths.items():
        c = outcome.counts[name]
        out.print(f"{name}: {path} ({c['images']} images, {c['patients']} patients)", markup=False, highlight=False)
    if outcome.dropped:
        out.print(f"left out {outcome.dropped} images (no site, or a held-out-site patient seen elsewhere)",
                  markup=False, highlight=False)


@app.command("train")
def train_cmd(
    baseline: str = typer.Argument(..., help="supervised, moco, inpainting or multitask."),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="Training data: any dataset spec (default: synth)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Checkpoint folder (default: the models "
                                           "directory's <baseline>/, where the registered name looks)."),
    backbone: Optional[str] = typer.Option(None, "--backbone", help="timm model name (default: resnet50)."),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="Square input size (default: 224)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Supervised / fine-tuning / multi-task epochs (default: 20)."),
    pretrain_epochs: Optional[int] = typer.Option(None, "--pretrain-epochs", help="MoCo / inpainting pretext epochs (default: 20)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Run every phase for exactly N optimizer steps instead."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Per process (default: 32)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="AdamW peak learning rate (default: 1e-3)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:1 (default: auto)."),
    amp: Optional[bool] = typer.Option(None, "--amp/--no-amp", help="bf16 autocast (default: on for CUDA)."),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the training module."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Decode workers (default: 0 on CPU, up to 8 on CUDA)."),
    seed: Optional[int] = typer.Option(None, "--seed"),
    leave_out_site: Optional[str] = typer.Option(None, "--leave-out-site", help="Train without this site's patients."),
    finetune: Optional[str] = typer.Option(None, "--finetune", help="After pre-training: full (default) or linear."),
    hflip: bool = typer.Option(False, "--hflip", help="Allow horizontal flips (off: they move the heart)."),
    name: Optional[str] = typer.Option(None, "--name", help="Model name in the card (default: <baseline>-<backbone>)."),
) -> None:
    """Train a baseline of the seed study; writes model.safetensors, card.json and train_log.json."""
    from baselines.summary import print_train_summary
    from benchmark import api

    outcome = api.train(baseline, data=data, out=out_dir, backbone=backbone, image_size=image_size, epochs=epochs,
                        pretrain_epochs=pretrain_epochs, steps=steps, batch_size=batch_size, lr=lr, device=device,
                        amp=amp, compile=compile_, workers=workers, seed=seed, leave_out_site=leave_out_site,
                        finetune=finetune, hflip=hflip, name=name)
    if outcome.is_main:
        print_train_summary(out, outcome)


card_app = typer.Typer(help="Write and check model cards.", no_args_is_help=True)
app.add_typer(card_app, name="card")


@card_app.command("init")
def card_init_cmd(
    checkpoint: Path = typer.Argument(..., help="Checkpoint file or timm folder."),
    architecture: Optional[str] = typer.Option(None, "--architecture", help="timm:NAME (default: guessed among common backbones)."),
    classes: Optional[str] = typer.Option(None, "--classes", help="Comma-separated class names in output order."),
    force: bool = typer.Option(False, "--force", help="Replace an existing card."),
) -> None:
    """Write a card skeleton from what the checkpoint reveals; lists what you must still fill in."""
    from benchmark import api
    from benchmark.core.textsafe import terminal_safe

    names = [c.strip() for c in classes.split(",") if c.strip()] if classes else None
    draft = api.card_init(checkpoint, architecture=architecture, classes=names, force=force)
    lines = [f"wrote {draft.path}", *(f"  {note}" for note in draft.notes)]
    if draft.fill_in:
        lines.append(f"  fill in: {', '.join(draft.fill_in)} (then remove '_fill_in')")
    if draft.check:
        lines.append(f"  check: {', '.join(draft.check)} (assumed; then `cxrbench card check --model ...`)")
    out.print(terminal_safe("\n".join(lines), keep_newlines=True), markup=False, highlight=False)


@card_app.command("check")
def card_check_cmd(
    model: str = typer.Option(..., "--model", "-m", help="Checkpoint path or registered model name."),
    trust_code: bool = typer.Option(False, "--trust-code", "--trust-pickle", help="Allow checkpoints that carry code."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:1 (default: auto)."),
) -> None:
    """Load the model, run a few synth images through the harness and check its card: exit 0 when usable."""
    from rich.table import Table
    from rich.text import Text

    from benchmark import api
    from benchmark.core.errors import CardError
    from benchmark.core.textsafe import terminal_safe

    result = api.card_check(model, trust_code=trust_code, device=device)
    table = Table(title=terminal_safe(f"card check: {result.model}"))
    for col in ("check", "found", "status"):
        table.add_column(col)
    for row in result.rows:
        table.add_row(Text(terminal_safe(row.check)), Text(terminal_safe(row.found)), row.status.upper())
    out.print(table, markup=False, highlight=False)
    if not result.usable:
        raise CardError(f"not usable: {result.reason}", where=model)


leaderboard_app = typer.Typer(help="Build the static leaderboard site.", no_args_is_help=True)
app.add_typer(leaderboard_app, name="leaderboard")


@leaderboard_app.command("build")
def leaderboard_build_cmd(
    run_dirs: list[Path] = typer.Argument(..., metavar="RUN_DIR",
                                          help="Run folders, result.json files or folders of run folders."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Site folder to write (index.html inside)."),
    rank_by: str = typer.Option("subtype.map", "--rank-by", help="<suite>.<metric> that orders each table."),
    correction: str = typer.Option("holm", "--correction", help="Correction for tie groups: holm or fdr_bh."),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Resamples for comparisons and per-site bars."),
    seed: int = typer.Option(0, "--seed"),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Recompute each entry's metrics from its predictions."),
    require_verified: bool = typer.Option(False, "--require-verified", help="Leave out entries that do not verify."),
    jobs: Optional[int] = typer.Option(None, "--jobs", help="Processes for verification (default: one per core)."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Cache root for verifications (default: ~/.cache/cxrbench)."),
    plugin: list[str] = typer.Option([], "--plugin", help=PLUGIN_HELP),
) -> None:
    """Write a static leaderboard that opens from disk (no server, no network)."""
    from benchmark import api
    from benchmark.core.textsafe import terminal_safe  # skipped files are named by what is in them

    outcome = api.leaderboard(run_dirs, out_dir, rank_by=rank_by, correction=correction, bootstrap=bootstrap, seed=seed,
                              verify=verify, require_verified=require_verified, jobs=jobs, cache_dir=cache_dir,
                              plugins=plugin)
    for line in outcome.skipped:
        err.print(terminal_safe(f"skipped {line}"), markup=False, highlight=False, soft_wrap=True)
    for line in outcome.notes:
        err.print(terminal_safe(f"note: {line}"), markup=False, highlight=False, soft_wrap=True)
    out.print(f"wrote {outcome.site_dir / 'index.html'}: {len(outcome.entries)} entries, {len(outcome.pages)} pages",
              markup=False, highlight=False)


@app.command("prepare")
def prepare_cmd(
    data: str = typer.Option(..., "--data", "-d", help="Dataset: NAME:PATH, manifest CSV or folder."),
    size: int = typer.Option(512, "--size", help="Side of the stored letterboxed square (>= the model's input)."),
    workers: int = typer.Option(0, "--workers", help="Decode worker processes."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Cache root (default: ~/.cache/cxrbench)."),
) -> None:
    """Decode a dataset once into a memory-mapped store; later runs on it read the store."""
    from benchmark import api

    o = api.prepare(data, size, cache_dir=cache_dir, workers=workers, progress=sys.stderr.isatty())
    out.print(f"prepared {o.images} images at {o.size}x{o.size} ({o.decoded} decoded, {o.reused} already current) "
              f"in {o.seconds:.1f}s: {o.path} ({o.bytes / 2**20:.0f} MiB)", markup=False, highlight=False)


@app.command("audit")
def audit_cmd(
    data: str = typer.Option(..., "--data", "-d", help="Dataset to audit: NAME:PATH, manifest CSV or folder."),
    against: Optional[str] = typer.Option(None, "--against", help="A second dataset to check for shared images."),
    out_dir: Path = typer.Option(Path("audit"), "--out", "-o", help="Folder for audit.json and audit.txt."),
    workers: int = typer.Option(0, "--workers", help="Decode worker processes."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Cache root (default: ~/.cache/cxrbench)."),
) -> None:
    """Leakage audit: patients across splits, exact and near-duplicate images; exit 1 on leaks."""
    from benchmark import api

    report = api.audit(data, against, out=out_dir, cache_dir=cache_dir, workers=workers,
                       progress=sys.stderr.isatty())
    out.print(report.text(), markup=False, highlight=False, soft_wrap=True)
    out.print(f"wrote {', '.join(str(p) for p in report.paths)}", markup=False, highlight=False)
    if report.exit_code:
        sys.exit(report.exit_code)  # leaks are a verdict, not an error: exit 1, as `gate` does


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2 (tracebacks with --debug)."""
    import warnings

    from benchmark.core.errors import CxrbenchError

    if "--debug" not in sys.argv[1:]:
        # Library chatter (pydicom's VR notes, torch's deprecations) would bury the one line that
        # matters; --debug shows it.
        warnings.simplefilter("ignore")
    from benchmark.data.adapters import show_data_warnings

    show_data_warnings()  # skipped-rows warnings from dataset adapters are for the user
    try:
        app(standalone_mode=False)
    except CxrbenchError as exc:
        if STATE["debug"]:
            raise
        from rich.markup import escape

        from benchmark.core.textsafe import terminal_safe  # names in messages come from users' files

        err.print(f"[bold red]error:[/] {escape(terminal_safe(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted; finished batches are cached and a rerun resumes from them")
        sys.exit(130)
    except Exception as exc:  # click's usage errors and anything unexpected
        import click

        if isinstance(exc, click.exceptions.Exit):
            sys.exit(exc.exit_code)
        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(1)
        if STATE["debug"]:
            raise
        err.print(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
                  markup=False, highlight=False, soft_wrap=True)
        sys.exit(3)


if __name__ == "__main__":
    main()
