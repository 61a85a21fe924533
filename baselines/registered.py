"""The registered names `supervised`, `moco`, `inpainting`, `multitask`: each resolves to the checkpoint
folder trained into the models directory ($CXRBENCH_MODELS, else <cache>/models/<name>/), and says how to
make it when it is not there. Imports no torch: resolving a name only finds a folder.

They register through this distribution's `cxrbench.models` entry points (pyproject.toml), and the lung
segmenter through a `cxrbench.plugins` hook, exactly as a third-party package would."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from baselines.config import models_dir, train_command
from benchmark.core.errors import CheckpointError
from benchmark.core.specs import ModelSpec

LUNG_SEGMENTER = "multitask-lungs"


def checkpoint_dir(name: str) -> Path:
    """The trained checkpoint of baseline `name`, or a CheckpointError naming the command that makes it."""
    folder = models_dir() / name
    if not (folder / "card.json").is_file():
        raise CheckpointError(f"no trained {name!r} baseline here; train it with `{train_command(name)}` "
                              f"(or on your data: --data siim:/path/to/siim --device cuda)", where=str(folder))
    return folder


def supervised(**_: object) -> Path:
    return checkpoint_dir("supervised")


def moco(**_: object) -> Path:
    return checkpoint_dir("moco")


def inpainting(**_: object) -> Path:
    return checkpoint_dir("inpainting")


def multitask(**_: object) -> Path:
    return checkpoint_dir("multitask")


def _spec(name: str, what: str) -> ModelSpec:
    return ModelSpec(name, globals()[name], f"seed-study baseline ({what}); made by `cxrbench train {name}`")


SUPERVISED = _spec("supervised", "timm backbone, class-weighted cross-entropy")
MOCO = _spec("moco", "MoCo v2 pre-training, then fine-tuning")
INPAINTING = _spec("inpainting", "inpainting-CXR pretext task, then fine-tuning")
MULTITASK = _spec("multitask", "U-Net: class head + opacity/lung segmentation head")


def lung_segmenter_version(folder: Path | None = None) -> str | None:
    """A version string for the multitask lung segmenter when a checkpoint with a trained lung channel
    is in the models directory, else None. Cheap (reads card.json, stats the weights) so the registry
    can ask on every listing; the version changes whenever the checkpoint is retrained."""
    folder = folder or models_dir() / "multitask"
    try:
        card = json.loads((folder / "card.json").read_text(encoding="utf-8"))
        trained = card.get("segmentation", {}).get("trained", [])
        st = (folder / "model.safetensors").stat()
    except (OSError, ValueError, AttributeError):
        return None
    if "lung" not in trained:
        return None
    return hashlib.sha256(f"{card.get('name')}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]


def register_lung_segmenter(registry=None) -> None:
    """Offer the multitask network's lung channel as a segmenter, only when one has been trained.

    benchmark/data/lungs.py uses the first registered segmenter for rows without a manifest lung mask; a
    registration that could only fail (no checkpoint yet) would break every such run.
    """
    if registry is None:  # called as the `cxrbench.plugins` hook
        from benchmark.core.registry import SEGMENTERS as registry
    version = lung_segmenter_version()
    if version is not None and LUNG_SEGMENTER not in registry.names():
        registry.register(LUNG_SEGMENTER, "baselines.segmenter:MultitaskLungSegmenter", version=version,
                          description="lung channel of the trained multitask baseline (cxrbench train multitask)")
