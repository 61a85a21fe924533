"""Shared test helpers: run the CLI in-process, build tiny checkpoints with cards."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torch import nn

CANONICAL = ["negative", "typical", "indeterminate", "atypical"]


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run `cxrbench ARGS` in this process; returns (exit code, stdout, stderr)."""
    from benchmark import cli as cli_mod

    argv = sys.argv
    sys.argv = ["cxrbench", *args]
    code = 0
    try:
        cli_mod.main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.argv = argv
    captured = capsys.readouterr()
    return code, captured.out, captured.err


class TinyNet(nn.Module):
    """A small CNN whose outputs depend on the image (so metrics are not trivial)."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(1, 8, 5, stride=4)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3))) * 5.0


class Permuted(nn.Module):
    """The same network with its outputs in another order."""

    def __init__(self, net: nn.Module, order: list[int]):
        super().__init__()
        self.net = net
        self.register_buffer("order", torch.tensor(order))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[:, self.order]


def card(name: str, classes: list[str], *, fmt: str = "export", size: int = 64, **extra) -> dict:
    return {"name": name, "format": fmt, "classes": classes, "output": "logits",
            "input": {"size": [size, size], "channels": 1, "mean": [0.5], "std": [0.25]}, **extra}


def save_model(module: nn.Module, path: Path, card_data: dict) -> Path:
    """A torch.export archive (a format that loads without --trust-code) with its card beside it;
    torch.export wants the .pt2 suffix, so the path returned has it."""
    path = path.with_suffix(".pt2")
    batch = torch.export.Dim("batch", min=1, max=4096)
    spec = card_data.get("input") or {"size": [64, 64]}  # a card may lack it on purpose
    example = torch.zeros(2, spec.get("channels", 1), *spec["size"])
    program = torch.export.export(module.eval(), (example,), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))
    path.with_suffix("").with_suffix(".card.json").write_text(json.dumps(card_data))
    return path


def save_torchscript(module: nn.Module, path: Path, card_data: dict) -> Path:
    """A TorchScript archive: code, so it loads only with --trust-code."""
    module.eval()
    torch.jit.save(torch.jit.script(module), str(path))
    path.with_suffix("").with_suffix(".card.json").write_text(json.dumps({**card_data, "format": "torchscript"}))
    return path


def written_synth(tmp_path_factory, **options) -> Path:
    """A folder of synth PNGs and manifest.csv (`cxrbench synth`) for a module's tests."""
    from benchmark import api

    out = tmp_path_factory.mktemp("synth")
    api.synth(out, **options)
    return out


def latest_result(runs: Path) -> dict:
    """result.json of the newest run folder under `runs`."""
    run = max(runs.iterdir(), key=lambda p: p.stat().st_mtime_ns)
    return json.loads((run / "result.json").read_text())
