"""The seed study's systems, trainable with `cxrbench train`: `supervised`, `moco`, `inpainting`, `multitask`.

Each writes a checkpoint folder (`model.safetensors`, `card.json`, `train_log.json`) that
`cxrbench run --model DIR` evaluates through the same loader as any submitted model. Importing this
package imports no torch; the training code lives in the submodules.
"""
from __future__ import annotations

BASELINES: tuple[str, ...] = ("supervised", "moco", "inpainting", "multitask")
