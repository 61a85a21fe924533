"""The terminal summary of `cxrbench train`: one row per phase, with its last validation numbers."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table

SHOWN = ("loss", "macro_f1", "balanced_accuracy", "dice_opacity", "dice_lung", "infonce", "masked_mse")


def print_train_summary(console: Console, outcome) -> None:
    if not console.is_terminal:
        console = Console(width=120)  # a log file keeps each row on one line
    log = outcome.log
    data = log["data"]
    console.print(f"{outcome.config.card_name} on {data['name']}: {data['train_images']} training images, "
                  f"{data['val_images']} validation images ({data['split_rule']}); {log['runtime']['device']} "
                  f"x {log['runtime']['world_size']}, {log['seconds']:.0f} s", markup=False, highlight=False)
    finals = [(ph["epochs_log"][-1] if ph["epochs_log"] else {}) for ph in outcome.phases]
    keys = [k for k in SHOWN if any(k in e.get("val", {}) for e in finals)]
    table = Table(title="training phases (validation after the last epoch)")
    for col in ("phase", "steps", "epochs", "train loss", "images/s", *(f"val {k}" for k in keys)):
        table.add_column(col, justify="left" if col == "phase" else "right")
    for ph, last in zip(outcome.phases, finals):
        val = last.get("val", {})
        rate = ph.get("images_per_s")
        table.add_row(ph["phase"], str(ph["steps"]), str(ph["epochs"]),
                      f"{last.get('train_loss', float('nan')):.4f}", "n/a" if rate is None else f"{rate:.1f}",
                      *(f"{val[k]:.3f}" if k in val else "" for k in keys))
    console.print(table)
    console.print(f"wrote {outcome.out_dir} (model.safetensors, card.json, train_log.json); "
                  f"evaluate it with `cxrbench run --model {outcome.out_dir}`", markup=False, highlight=False)
