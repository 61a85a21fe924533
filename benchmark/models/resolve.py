"""Turn a model spec (a registered name or a checkpoint path) into a LoadedModel."""
from __future__ import annotations

from pathlib import Path

import torch

from benchmark.errors import CheckpointError
from benchmark.registry import MODELS


def resolve_model(spec: str | None, *, trust_pickle: bool = False, device: torch.device | str = "cpu"):
    spec = spec or "reference"
    path = Path(spec)
    if path.exists():
        from benchmark.models.loaded import load_model_file

        return load_model_file(path, trust_pickle=trust_pickle, device=device)
    if spec in MODELS:
        return MODELS.get(spec)(device=device, trust_pickle=trust_pickle)
    if path.suffix or "/" in spec:
        raise CheckpointError("checkpoint not found", where=spec)
    raise CheckpointError(
        f"no registered model {spec!r} and no such checkpoint; registered models: {', '.join(MODELS.names())}",
        where="--model")
