"""PyTorch state dicts as people save them, loaded without running anything from the file.

`torch.save(model.state_dict())`, Lightning's `.ckpt`, timm's training checkpoints and
`pytorch_model.bin` are pickles, but pickles of tensors only. They are read with
`torch.load(weights_only=True)`, PyTorch's restricted unpickler, after our own opcode scan (which
reads bytes only) has found no import outside the few modules a state dict needs. The wrappers that
training code puts around the weights are then peeled off, and a single key prefix is stripped when
that makes the keys match the module (Lightning's `model.`, DDP's `module.`, ...).
"""
from __future__ import annotations

import argparse
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from benchmark.core.errors import CheckpointError
from benchmark.models.loaders_sniff import pickle_globals_of_file

RESAVE_HINT = ("re-save only the weights: torch.save(model.state_dict(), PATH) or "
               "safetensors.torch.save_file(model.state_dict(), PATH)")
# Modules whose names a pickle of tensors (plus the metadata trainers keep beside them) may import.
# torch's own restricted unpickler then decides, name by name, what it will construct.
_STATE_DICT_MODULES = ("torch", "collections", "builtins", "_codecs", "argparse", "copyreg")
# timm's training script stores its argparse.Namespace next to the weights; it only holds attributes.
_EXTRA_SAFE_GLOBALS = [argparse.Namespace]
_WRAPPERS = ("state_dict", "model_state_dict", "model", "module", "net", "network")


def _refused(weights: Path, wanted: str) -> CheckpointError:
    return CheckpointError(
        f"not a plain state dict: loading it would import {wanted}, which a file of weights does not "
        f"need, so it is refused and nothing from it ran; {RESAVE_HINT}, or pass --trust-code if "
        "you trust its author", where=str(weights))


def read_state_dict_file(weights: Path) -> Any:
    """The object inside a weights-only pickle, or a CheckpointError naming the global it wanted."""
    foreign = [g for g in pickle_globals_of_file(weights)
               if g.split(".", 1)[0] not in _STATE_DICT_MODULES]
    if foreign:
        raise _refused(weights, foreign[0])
    try:
        with torch.serialization.safe_globals(_EXTRA_SAFE_GLOBALS):
            return torch.load(str(weights), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        raise _refused(weights, found.group(1) if found else "an object that is not a tensor") from exc
    except Exception as exc:  # truncated zips, bad storages: torch raises RuntimeError and others
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise CheckpointError(f"cannot read the state dict: {text}", where=str(weights)) from exc


def _is_state(obj: object) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def unwrap(obj: object, *, where: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The tensors of a checkpoint, and the wrapper keys passed through to reach them."""
    path: list[str] = []
    for _ in range(4):  # e.g. {"model": {"state_dict": {...}}}
        if _is_state(obj):
            return dict(obj), path  # type: ignore[arg-type]
        if not isinstance(obj, Mapping):
            break
        key = next((k for k in _WRAPPERS if isinstance(obj.get(k), Mapping)), None)
        if key is None:
            break
        path.append(key)
        obj = obj[key]
    if isinstance(obj, Mapping) and obj:
        # A state dict with a few non-tensor entries (e.g. `_metadata`) still loads; others cannot.
        tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
        if tensors:
            return tensors, path
    kind = type(obj).__name__
    raise CheckpointError(f"found no tensors to load (the checkpoint holds a {kind}"
                          f"{' under ' + '/'.join(path) if path else ''}; expected a state dict, "
                          f"or one under one of {', '.join(_WRAPPERS)})", where=where)


def match_keys(state: Mapping[str, torch.Tensor], expected: set[str]) -> tuple[dict[str, torch.Tensor], str]:
    """`state` with one key prefix stripped when that makes its keys those of the module.

    Returns the state and the prefix taken off ("" when the keys matched as they were, or when no
    prefix makes them match: the caller then names the first missing key). Keys outside the prefix
    (a loss module's buffers beside Lightning's `model.`) are dropped only when the rest matches.
    """
    state = dict(state)
    if set(state) == expected:
        return state, ""
    prefix, current = "", state
    for _ in range(3):  # "module.model." from DDP around Lightning, for instance
        heads = sorted({k.split(".", 1)[0] + "." for k in current if "." in k})
        for head in heads:
            sub = {k[len(head):]: v for k, v in current.items() if k.startswith(head)}
            if set(sub) == expected:
                return sub, prefix + head
        if len(heads) != 1 or not all(k.startswith(heads[0]) for k in current):
            break
        prefix += heads[0]  # one prefix on every key: peel it and look again
        current = {k[len(heads[0]):]: v for k, v in current.items()}
    return state, ""
