"""Write a trained baseline as a checkpoint folder the harness loads like any submission:
`model.safetensors` (weights only), `card.json` (how to rebuild and feed it), `train_log.json`."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from baselines.augment import MEAN, STD
from baselines.config import TrainConfig
from benchmark.core.errors import CxrbenchError
from benchmark.core.files import atomic_path
from benchmark.core.labels import CLASSES
from benchmark.models.card import FOLDER_CARD, WEIGHT_SUFFIXES, parse_card

WEIGHTS = "model.safetensors"
LOG = "train_log.json"


def check_out_dir(out: Path) -> None:
    """Refuse, before any training, a folder that could not hold exactly one weights file."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CxrbenchError("exists and is not a folder", where=str(out))
    if out.is_dir():
        other = sorted(p.name for p in out.iterdir() if p.suffix.lower() in WEIGHT_SUFFIXES and p.name != WEIGHTS)
        if other:
            raise CxrbenchError(f"the folder already holds weights ({', '.join(other)}); a checkpoint folder "
                                "has one weights file: choose another --out", where=str(out))


def card_json(cfg: TrainConfig, *, architecture: str, architecture_args: dict[str, Any], log: dict) -> dict:
    from benchmark import __version__

    card: dict[str, Any] = {
        "name": cfg.card_name, "format": "safetensors", "architecture": architecture,
        "classes": list(CLASSES), "output": "logits",
        "input": {"size": [cfg.image_size, cfg.image_size], "channels": 1, "mean": [MEAN], "std": [STD],
                  "keep_aspect": True},
        "baseline": cfg.baseline, "backbone": cfg.backbone, "image_size": cfg.image_size,
        "training": {
            "data": log["data"]["spec"], "dataset": log["data"]["name"],
            "manifest_sha256": log["data"]["manifest_sha256"], "left_out_site": cfg.leave_out_site,
            "train_images": log["data"]["train_images"], "epochs": cfg.epochs,
            "pretrain_epochs": cfg.pretrain_epochs if cfg.baseline in ("moco", "inpainting") else None,
            "steps": cfg.steps, "batch_size": cfg.batch_size, "world_size": log["runtime"]["world_size"],
            "lr": cfg.lr, "seed": cfg.seed, "finetune": cfg.finetune if cfg.baseline in ("moco", "inpainting") else None,
            "cxrbench_version": __version__,
        },
    }
    if architecture_args:
        card["architecture_args"] = dict(architecture_args)
    if cfg.baseline == "multitask":
        card["segmentation"] = {"channels": ["opacity", "lung"], "trained": log["data"].get("seg_trained", [])}
    return card


def export(out: Path, model: nn.Module, *, cfg: TrainConfig, architecture: str, architecture_args: dict[str, Any],
           log: dict) -> Path:
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    card = card_json(cfg, architecture=architecture, architecture_args=architecture_args, log=log)
    parse_card(card, where="card.json")  # what is written must be what the loader accepts
    state = {k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype).contiguous()
             for k, v in model.state_dict().items()}
    _atomic(out / WEIGHTS, lambda p: save_file(state, str(p), metadata={"baseline": cfg.baseline}))
    _atomic(out / FOLDER_CARD, lambda p: p.write_text(json.dumps(card, indent=2) + "\n"))
    _atomic(out / LOG, lambda p: p.write_text(json.dumps(log, indent=2) + "\n"))
    return out


def _atomic(path: Path, write) -> None:
    with atomic_path(path) as tmp:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # safetensors writes owner-only; a checkpoint is meant to be shared
