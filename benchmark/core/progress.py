"""A transient rich progress bar shared by the forward pass, `prepare` and the audit."""
from __future__ import annotations


def progress_bar(enabled: bool, total: int, label: str):
    if not enabled or total == 0:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    bar = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                   TimeRemainingColumn(), transient=True)
    task = bar.add_task(label, total=total)
    bar.start()
    return bar, task


def advance_bar(bar, k: int) -> None:
    if bar:
        bar[0].advance(bar[1], k)
