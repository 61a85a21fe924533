"""The `cxrbench` command: parses options, calls `benchmark.api`, prints. Nothing else lives here."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

app = typer.Typer(add_completion=False, no_args_is_help=False, pretty_exceptions_enable=False,
                  help="Evaluation and robustness benchmark for fine-grained COVID-19 chest X-ray models.")
out = Console()
err = Console(stderr=True)
STATE = {"debug": False}


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
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="Allow pickled checkpoints (runs their code)."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Prediction cache (default: ~/.cache/cxrbench)."),
    group_by: str = typer.Option("site", "--group-by", help="Manifest column for per-group metrics."),
    option: list[str] = typer.Option([], "--option", help="Suite option KEY=VALUE (repeatable)."),
) -> None:
    """Evaluate a model on a dataset and write result.json, predictions.parquet and report.html."""
    from benchmark import api
    from benchmark.summary import print_summary

    req = api.RunRequest(
        model=model, data=data, suites=tuple(s.strip() for s in suites.split(",") if s.strip()) if suites else None,
        out=out_dir, device=device, batch_size=batch_size, workers=workers, seed=seed, bootstrap=bootstrap,
        ci_method=ci_method, predictions=predictions, trust_pickle=trust_pickle, cache_dir=cache_dir,
        progress=sys.stderr.isatty(), group_by=group_by, options=api.parse_options(option),
    )
    outcome = api.run(req)
    print_summary(out, outcome)


@app.command("list")
def list_cmd(kind: str = typer.Argument("suites", help="models, datasets, suites, views or segmenters")) -> None:
    """List what is registered (built-in and plugins)."""
    from rich.table import Table

    from benchmark import api

    table = Table(title=kind)
    for col in ("name", "origin", "description"):
        table.add_column(col)
    for row in api.list_registry(kind):
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


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2 (tracebacks with --debug)."""
    import warnings

    from benchmark.errors import CxrbenchError

    if "--debug" not in sys.argv[1:]:
        # Library chatter (pydicom's VR notes, torch's deprecations) would bury the one line that
        # matters; --debug shows it.
        warnings.simplefilter("ignore")
    try:
        app(standalone_mode=False)
    except CxrbenchError as exc:
        if STATE["debug"]:
            raise
        from rich.markup import escape

        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
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
