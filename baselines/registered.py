"""The registered names `supervised`, `moco`, `inpainting`, `multitask`: each resolves to the checkpoint
folder trained into the models directory ($CXRBENCH_MODELS, else <cache>/models/<name>/), and says how to
make it when it is not there. Imports no torch: resolving a name only finds a folder."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from baselines.config import models_dir, train_command
from benchmark.core.errors import CheckpointError

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


def register_lung_segmenter(registry) -> None:
    """Offer the multitask network's lung channel as a segmenter, only when one has been trained.

    benchmark/data/lungs.py uses the first registered segmenter for rows without a manifest lung mask; a
    registration that could only fail (no checkpoint yet) would break every such run.
    """
    version = lung_segmenter_version()
    if version is not None:
        registry.register(LUNG_SEGMENTER, "baselines.segmenter:MultitaskLungSegmenter", version=version,
                          description="lung channel of the trained multitask baseline (cxrbench train multitask)")
