"""The built-in reference model: a small CNN trained on synth, shipped with the package.

`cxrbench run` with no arguments evaluates it. The shipped weights are made by
`python -m benchmark.models.reference_train --out benchmark/assets/reference`; they are trained on
a synth draw with another seed than the evaluation default, so no evaluation image was seen in
training. This module imports no torch: resolving the model for a cached rerun stays light.
"""
from __future__ import annotations

from pathlib import Path

from benchmark.core.specs import ModelSpec

ASSET_DIR = Path(__file__).resolve().parent.parent / "assets" / "reference"
ARCHITECTURE = "cxrbench:small_cnn"
INPUT_SIZE = (128, 128)
TRAIN_SYNTH = "n_patients=1200,seed=1001"


def card_json(name: str = "reference") -> dict:
    return {
        "name": name, "format": "safetensors", "architecture": ARCHITECTURE,
        "classes": ["negative", "typical", "indeterminate", "atypical"], "output": "logits",
        "input": {"size": list(INPUT_SIZE), "channels": 1, "mean": [0.5], "std": [0.25]},
        "trained_on": f"synth:{TRAIN_SYNTH}",
    }


def reference_checkpoint(**_: object) -> Path:
    """The registered `reference` model: a checkpoint folder loaded like any submitted one."""
    from benchmark.core.errors import CheckpointError

    if not (ASSET_DIR / "card.json").is_file():
        raise CheckpointError("the shipped reference checkpoint is missing; recreate it with "
                              "`python -m benchmark.models.reference_train --out benchmark/assets/reference`",
                              where=str(ASSET_DIR))
    return ASSET_DIR


# Registered through this distribution's `cxrbench.models` entry point (pyproject.toml).
REFERENCE = ModelSpec("reference", reference_checkpoint,
                      "small CNN trained on synth, shipped with the package (the default model)")
