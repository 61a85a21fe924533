"""What one `cxrbench train` run is asked for (TrainConfig), checked once before any work, and where
trained baselines live (the models directory that the registered names `supervised` ... resolve to)."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from baselines import BASELINES
from benchmark.core.errors import CxrbenchError

FINETUNE_MODES = ("full", "linear")


@dataclass(frozen=True)
class TrainConfig:
    baseline: str
    data: str | None = None             # dataset spec; None = synth
    out: Path | None = None             # checkpoint folder; None = the models directory's <baseline>/
    backbone: str = "resnet50"          # any timm name (multitask: one of MULTITASK_BACKBONES)
    image_size: int = 224               # square model input; images are letterboxed into it
    epochs: int = 20                    # supervised, fine-tuning and multi-task epochs
    pretrain_epochs: int = 20           # MoCo / inpainting pretext epochs
    steps: int | None = None            # if set, every phase runs exactly this many optimizer steps
    batch_size: int = 32                # per process
    lr: float = 1e-3                    # AdamW peak learning rate (warm-up, then cosine decay)
    weight_decay: float = 1e-4
    device: str | None = None           # None = cuda when available (cuda:LOCAL_RANK under torchrun)
    amp: bool | None = None             # bf16 autocast; None = on for CUDA, off on CPU
    channels_last: bool | None = None   # None = on for CUDA
    compile: bool = False               # torch.compile the training module
    workers: int | None = None          # DataLoader workers; None = 0 on CPU, up to 8 on CUDA
    seed: int = 0
    leave_out_site: str | None = None   # train without every patient seen at this site
    finetune: str = "full"              # after pre-training: "full" or "linear" (probe)
    hflip: bool = False                 # off by default: a flip puts the heart on the wrong side
    seg_weight: float = 1.0             # multitask: loss = CE + seg_weight * (BCE + Dice)
    mask_area: float = 0.25             # inpainting: mean fraction of the image hidden
    moco_queue: int = 4096
    moco_temperature: float = 0.2
    moco_momentum: float = 0.99
    moco_dim: int = 128
    val_fraction: float = 0.2           # patients held out for validation (as `cxrbench splits`)
    validate: bool = True               # per-epoch validation (perf runs switch it off)
    name: str | None = None             # card name; None = "<baseline>-<backbone>"

    @property
    def card_name(self) -> str:
        return self.name or f"{self.baseline}-{self.backbone}"

    @property
    def out_dir(self) -> Path:
        return Path(self.out) if self.out is not None else models_dir() / self.baseline

    def to_json(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}

    def check(self) -> TrainConfig:
        """Every bad option as one CxrbenchError naming the flag; returns self."""
        if self.baseline not in BASELINES:
            raise CxrbenchError(f"unknown baseline {self.baseline!r}; choose from {', '.join(BASELINES)}",
                                where="cxrbench train")
        for flag, value, low in (("--image-size", self.image_size, 32), ("--epochs", self.epochs, 1),
                                 ("--pretrain-epochs", self.pretrain_epochs, 1),
                                 ("--batch-size", self.batch_size, 2), ("--seed", self.seed, 0),
                                 ("moco_queue", self.moco_queue, 1), ("moco_dim", self.moco_dim, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise CxrbenchError(f"must be an integer >= {low}, got {value!r}", where=flag)
        if self.steps is not None and (not isinstance(self.steps, int) or self.steps < 1):
            raise CxrbenchError(f"must be an integer >= 1, got {self.steps!r}", where="--steps")
        if self.workers is not None and self.workers < 0:
            raise CxrbenchError(f"must be 0 or more, got {self.workers}", where="--workers")
        for flag, value in (("--lr", self.lr), ("moco_temperature", self.moco_temperature)):
            if not value > 0:
                raise CxrbenchError(f"must be > 0, got {value}", where=flag)
        for flag, value in (("weight_decay", self.weight_decay), ("seg_weight", self.seg_weight)):
            if not value >= 0:
                raise CxrbenchError(f"must be >= 0, got {value}", where=flag)
        for flag, value in (("mask_area", self.mask_area), ("moco_momentum", self.moco_momentum),
                            ("val_fraction", self.val_fraction)):
            if not 0 < value < 1:
                raise CxrbenchError(f"must be between 0 and 1, got {value}", where=flag)
        if self.finetune not in FINETUNE_MODES:
            raise CxrbenchError(f"must be one of {', '.join(FINETUNE_MODES)}, got {self.finetune!r}",
                                where="--finetune")
        from baselines.backbones import check_backbone

        check_backbone(self.backbone, multitask=self.baseline == "multitask")
        return self


def models_dir() -> Path:
    """Where registered baselines are looked up: $CXRBENCH_MODELS, else <cache>/models."""
    env = os.environ.get("CXRBENCH_MODELS")
    if env:
        return Path(env).expanduser()
    from benchmark.execution.store import default_cache_dir

    return default_cache_dir() / "models"


def train_command(baseline: str, out: Path | None = None) -> str:
    """The exact command that makes the checkpoint a registered name resolves to."""
    target = out if out is not None else models_dir() / baseline
    return f"cxrbench train {baseline} --data synth --out {target}"
