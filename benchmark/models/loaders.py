"""Turn a checkpoint file into a callable module, per the card's `format`.

Security rule: formats that carry code (a pickle of anything but tensors, TorchScript, a
torch.export archive that would unpickle or execute something) are refused unless the caller passes
`trust_code=True`. The checks read bytes only (see loaders_sniff); nothing from the file runs before
the user has opted in. State dicts are read by torch's weights-only unpickler (see state_dicts).
"""
from __future__ import annotations

import importlib
import pickle
import re
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from benchmark.core.errors import CardError, CheckpointError
from benchmark.models.card import ModelCard
from benchmark.models.loaders_sniff import (
    EXPORT, PICKLE, SAFETENSORS, TORCHSCRIPT, check_zip_members, is_tensor_global,
    pickle_globals_of_file, pt2_unsafe_reason, sniff_format,
)
from benchmark.models.state_dicts import match_keys, read_state_dict_file, unwrap
from benchmark.models.timm_folder import TIMM_ARGS

ModuleLike = Callable[[torch.Tensor], Any]
# Builds an untrained module from the part of `architecture` after "prefix:".
Builder = Callable[[str, ModelCard], torch.nn.Module]

TRUST_HINT = ("pass --trust-code (trust_code=True) only if you trust its author, or re-save the "
              "weights with torch.save(model.state_dict()) or safetensors (format 'state_dict' or "
              "'safetensors' in the card), or the model with torch.export or ONNX")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


# ---------------------------------------------------------------- architectures


def _timm_kwargs(card: ModelCard) -> dict[str, Any]:
    kwargs = card.extra.get("architecture_args", {})
    where = f"card of {card.name!r}"
    if not isinstance(kwargs, Mapping):
        raise CardError("field 'architecture_args' must be an object", where=where)
    for key in kwargs:
        if key not in TIMM_ARGS:
            raise CardError(f"field 'architecture_args.{key}' is not accepted (accepted: "
                            f"{', '.join(sorted(TIMM_ARGS))})", where=where)
    return dict(kwargs)


# A timm model name, optionally with a pretrained tag; never a hub id, URL or folder (timm reads
# those: "hf-hub:...", "local-dir:...").
_TIMM_NAME = re.compile(r"[a-z0-9_]+(\.[a-z0-9_]+)?")


def check_timm_name(name: str, card: ModelCard) -> str:
    import timm

    where = f"card of {card.name!r}"
    if not _TIMM_NAME.fullmatch(name):
        raise CardError(f"field 'architecture' = {card.architecture!r}: expected a timm model name "
                        "such as 'timm:resnet18' (hub ids, URLs and folders are not accepted)",
                        where=where)
    if not timm.is_model(name.split(".", 1)[0]):
        raise CardError(f"field 'architecture' = {card.architecture!r}: timm has no model "
                        f"{name.split('.', 1)[0]!r} (see timm.list_models())", where=where)
    return name


def _build_timm(name: str, card: ModelCard) -> torch.nn.Module:
    import timm

    name = check_timm_name(name, card)
    kwargs = _timm_kwargs(card)
    try:
        return timm.create_model(name, pretrained=False, num_classes=card.num_classes,
                                 in_chans=card.input.channels, **kwargs)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise CardError(f"field 'architecture' = {card.architecture!r}: timm cannot build it "
                        f"({_first_line(exc)})", where=f"card of {card.name!r}") from exc


# "cxrbench:<name>" -> "module:function(num_classes, in_chans)" inside this distribution. A fixed
# table, never an import path taken from the card: cards come from untrusted submitters.
CXRBENCH_ARCHITECTURES: dict[str, str] = {
    "small_cnn": "benchmark.models.small_cnn:build_small_cnn",
    # The multi-task baseline (U-Net + class head), one entry per encoder it is trained with.
    **{f"multitask_{b}": f"baselines.multitask:build_multitask_{b}" for b in (
        "resnet10t", "resnet18", "resnet34", "resnet50", "densenet121", "efficientnet_b0", "convnext_tiny")},
}


def _build_cxrbench(name: str, card: ModelCard) -> torch.nn.Module:
    target = CXRBENCH_ARCHITECTURES.get(name)
    if target is None:
        known = ", ".join(sorted(CXRBENCH_ARCHITECTURES))
        raise CardError(f"field 'architecture' = {card.architecture!r} names no cxrbench "
                        f"architecture (known: {known})", where=f"card of {card.name!r}")
    module_name, _, attr = target.partition(":")
    build = getattr(importlib.import_module(module_name), attr)
    return build(num_classes=card.num_classes, in_chans=card.input.channels)


# Prefix -> builder; other packages (e.g. the baselines) add theirs here.
ARCHITECTURE_BUILDERS: dict[str, Builder] = {"timm": _build_timm, "cxrbench": _build_cxrbench}


def build_architecture(card: ModelCard) -> torch.nn.Module:
    prefix, _, name = (card.architecture or "").partition(":")
    builder = ARCHITECTURE_BUILDERS.get(prefix)
    if builder is None:
        known = ", ".join(sorted(ARCHITECTURE_BUILDERS))
        raise CardError(f"field 'architecture' = {card.architecture!r} uses an unknown builder "
                        f"{prefix!r} (known: {known})", where=f"card of {card.name!r}")
    return builder(name, card)


def load_state_dict_strict(module: torch.nn.Module, state: Mapping[str, torch.Tensor], *,
                           where: str, what: str, notes: dict[str, Any] | None = None) -> torch.nn.Module:
    """Load weights, naming the first missing or unexpected key instead of torch's long list.

    A single key prefix (DDP's `module.`, Lightning's `model.`) is stripped when that makes the keys
    match; `notes` records it.
    """
    order = list(module.state_dict())  # the module's own key order, for the first missing key
    expected = set(order)
    state, prefix = match_keys(state, expected)
    if prefix and notes is not None:
        notes["stripped_prefix"] = prefix
    missing = [k for k in order if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing:
        raise CheckpointError(f"weights do not match {what}: missing key {missing[0]!r} "
                              f"({len(missing)} missing)", where=where)
    if unexpected:
        raise CheckpointError(f"weights do not match {what}: unexpected key {unexpected[0]!r} "
                              f"({len(unexpected)} unexpected)", where=where)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = next((ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln),
                      _first_line(exc))
        raise CheckpointError(f"weights do not match {what}: {detail}", where=where) from exc
    return module


# ---------------------------------------------------------------- per-format loaders
# Each loader: (card, weights, kind sniffed from the bytes, device, trust_code, notes) -> module.
# `notes` collects what loading did to the file (wrappers passed, prefixes stripped) for provenance.


def _mismatch(card: ModelCard, kind: str, where: str) -> CheckpointError:
    if kind in (TORCHSCRIPT, EXPORT, SAFETENSORS):
        hint = f"; set \"format\": \"{kind}\" in the card"
    elif kind == PICKLE:
        hint = "; a file of tensors saved with torch.save is format \"state_dict\""
    else:
        hint = ""
    found = {"zip": "a zip archive of another kind", "unknown": "not a recognised checkpoint"}.get(
        kind, f"a {kind} file")
    return CheckpointError(f"the card says format '{card.format}' but the file is {found}{hint}",
                           where=where)


def _load_torchscript(card: ModelCard, weights: Path, kind: str, device: torch.device,
                      trust: bool, notes: dict[str, Any]) -> ModuleLike:
    if kind != TORCHSCRIPT:
        raise _mismatch(card, kind, str(weights))
    if not trust:
        # TorchScript is code: torch.jit.load runs the archive's scripted __setstate__ methods, and
        # its forward can call any torch op, file-writing ones (torch.from_file(shared=True)) too.
        raise CheckpointError("refusing a TorchScript archive: TorchScript is code that runs when it "
                              f"is loaded and called; {TRUST_HINT}", where=str(weights))
    # torch.jit is deprecated but still how many checkpoints ship; the warning is not the user's.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit")
        try:
            module = torch.jit.load(str(weights), map_location=device)
        except Exception as exc:  # torch raises RuntimeError, ValueError or its own C++ errors
            raise CheckpointError(f"not a loadable TorchScript archive: {_first_line(exc)}",
                                  where=str(weights)) from exc
    return module.eval()


def _load_export(card: ModelCard, weights: Path, kind: str, device: torch.device,
                 trust: bool, notes: dict[str, Any]) -> ModuleLike:
    if kind != EXPORT:
        raise _mismatch(card, kind, str(weights))
    reason = None if trust else pt2_unsafe_reason(weights)
    if reason:
        raise CheckpointError(f"refusing this torch.export archive: {reason}, so loading it could "
                              f"run code from the file; {TRUST_HINT}", where=str(weights))
    try:
        program = torch.export.load(str(weights))
        if device.type != "cpu":
            program = torch.export.passes.move_to_device_pass(program, device)
        return program.module()
    except Exception as exc:
        raise CheckpointError(f"cannot load the torch.export archive: {_first_line(exc)}",
                              where=str(weights)) from exc


def _into_architecture(card: ModelCard, state: Mapping[str, torch.Tensor], weights: Path,
                       device: torch.device, notes: dict[str, Any]) -> torch.nn.Module:
    module = build_architecture(card)
    load_state_dict_strict(module, state, where=str(weights), what=str(card.architecture), notes=notes)
    return module.to(device).eval()


def _load_safetensors(card: ModelCard, weights: Path, kind: str, device: torch.device,
                      trust: bool, notes: dict[str, Any]) -> ModuleLike:
    if kind != SAFETENSORS:
        raise _mismatch(card, kind, str(weights))
    from safetensors.torch import load_file

    try:
        state = load_file(str(weights), device="cpu")
    except Exception as exc:  # safetensors raises its own SafetensorError
        raise CheckpointError(f"cannot read the safetensors file: {_first_line(exc)}",
                              where=str(weights)) from exc
    return _into_architecture(card, state, weights, device, notes)


def _load_state_dict(card: ModelCard, weights: Path, kind: str, device: torch.device,
                     trust: bool, notes: dict[str, Any]) -> ModuleLike:
    if kind != PICKLE:
        raise _mismatch(card, kind, str(weights))
    state, wrappers = unwrap(read_state_dict_file(weights), where=str(weights))
    if wrappers:
        notes["unwrapped"] = "/".join(wrappers)
    return _into_architecture(card, state, weights, device, notes)


def _load_onnx(card: ModelCard, weights: Path, kind: str, device: torch.device,
               trust: bool, notes: dict[str, Any]) -> ModuleLike:
    if kind in (TORCHSCRIPT, EXPORT, SAFETENSORS, "zip"):
        raise _mismatch(card, kind, str(weights))
    from benchmark.models.loaders_onnx import load_onnx

    return load_onnx(weights, device)


def _refuse_pickle(card: ModelCard, weights: Path) -> CheckpointError:
    names = [n for n in pickle_globals_of_file(weights)
             if not is_tensor_global(n) and not n.startswith(("torch.", "<"))]
    if not names and card.format == "pickle":
        return CheckpointError("the file is a pickle of tensors only: set \"format\": \"state_dict\" "
                               "in its card and it loads without --trust-code", where=str(weights))
    named = f" (it names {', '.join(dict.fromkeys(names[:4]))})" if names else ""
    said = f", although its card says '{card.format}'" if card.format != "pickle" else ""
    return CheckpointError(f"the file is a pickled checkpoint{said}; unpickling runs code "
                           f"from the file{named}. Refused: {TRUST_HINT}", where=str(weights))


# torch.save's legacy (non-zip) format opens with this pickled magic number; other raw pickles
# come from pickle.dump and torch.load would reject them after already running their first object.
_TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"


def _unpickle(weights: Path, device: torch.device) -> object:
    with weights.open("rb") as fh:
        head = fh.read(len(_TORCH_LEGACY_MAGIC))
        if head[:4] in (b"PK\x03\x04", b"PK\x05\x06") or head == _TORCH_LEGACY_MAGIC:
            return torch.load(str(weights), map_location=device, weights_only=False)
        fh.seek(0)
        return pickle.load(fh)  # noqa: S301 - the user passed --trust-code


def _load_pickle(card: ModelCard, weights: Path, device: torch.device,
                 notes: dict[str, Any]) -> ModuleLike:
    try:
        obj = _unpickle(weights, device)
    except Exception as exc:
        raise CheckpointError(f"cannot unpickle: {_first_line(exc)}", where=str(weights)) from exc
    if isinstance(obj, torch.nn.Module):
        return obj.to(device).eval()
    if isinstance(obj, Mapping) and card.architecture:
        state, wrappers = unwrap(obj, where=str(weights))
        if wrappers:
            notes["unwrapped"] = "/".join(wrappers)
        return _into_architecture(card, state, weights, device, notes)
    hint = " (a state dict needs an 'architecture' in the card)" if isinstance(obj, Mapping) else ""
    raise CheckpointError(f"unpickled a {type(obj).__name__}, not a torch.nn.Module{hint}",
                          where=str(weights))


_LOADERS = {
    "torchscript": _load_torchscript,
    "export": _load_export,
    "safetensors": _load_safetensors,
    "state_dict": _load_state_dict,
    "onnx": _load_onnx,
}


def load_module(card: ModelCard, weights: Path, *, trust_code: bool = False,
                device: str | torch.device = "cpu", notes: dict[str, Any] | None = None) -> ModuleLike:
    """A module that maps a preprocessed batch [B, C, H, W] to the card's outputs.

    `notes`, when given, receives what loading did (e.g. {"stripped_prefix": "model."})."""
    weights = Path(weights)
    if not weights.is_file():
        raise CheckpointError("no such weights file", where=str(weights))
    notes = {} if notes is None else notes
    device = torch.device(device)
    kind = sniff_format(weights)
    check_zip_members(weights)  # a zip bomb is refused before any reader inflates it
    if card.format == "state_dict" and kind == PICKLE:
        return _load_state_dict(card, weights, kind, device, trust_code, notes)
    # Whatever the card claims, other pickle content follows the pickle rule.
    if card.format == "pickle" or kind == PICKLE:
        if not trust_code:
            raise _refuse_pickle(card, weights)
        return _load_pickle(card, weights, device, notes)
    return _LOADERS[card.format](card, weights, kind, device, trust_code, notes)
