"""The model card: the contract that tells the harness how to feed a checkpoint and read its outputs.

A checkpoint file `X.pt2` has its card beside it as `X.card.json`; a checkpoint folder has `card.json`
plus one weights file. Unknown fields are kept so that a card survives a read/write round trip.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from benchmark.core.errors import CardError, CheckpointError
from benchmark.core.labels import map_model_classes

FORMATS: tuple[str, ...] = ("export", "torchscript", "safetensors", "state_dict", "onnx", "pickle")
OUTPUTS: tuple[str, ...] = ("logits", "probabilities")
CARD_SUFFIX = ".card.json"
FOLDER_CARD = "card.json"
# Extensions a weights file may have inside a checkpoint folder.
WEIGHT_SUFFIXES: tuple[str, ...] = (
    ".pt2", ".pt", ".pth", ".ts", ".jit", ".torchscript", ".safetensors", ".onnx", ".bin", ".pkl",
    ".ckpt",
)

_TOP_FIELDS = ("name", "format", "architecture", "classes", "output", "input")
_INPUT_FIELDS = ("size", "channels", "mean", "std", "keep_aspect", "interpolation")
# How the canonical image is resized to input.size (Pillow's filters; timm's names).
INTERPOLATIONS: tuple[str, ...] = ("bilinear", "bicubic", "nearest", "lanczos", "box", "hamming")
# The largest input a card may ask for: a stranger's card must not make the harness allocate
# gigabytes per image (60000 x 60000 float32 is 14 GB). Real CXR models use 224-1024.
MAX_INPUT_SIDE = 4096
# Fields `cxrbench card init` could not learn from the checkpoint; a card listing any is not usable.
FILL_IN = "_fill_in"


@dataclass(frozen=True)
class InputSpec:
    """What the model expects: `size` is (height, width) after resizing the canonical image."""

    size: tuple[int, int]
    channels: int = 1
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.25,)
    keep_aspect: bool = True
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    interpolation: str = "bilinear"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "size": list(self.size),
            "channels": self.channels,
            "mean": list(self.mean),
            "std": list(self.std),
            "keep_aspect": self.keep_aspect,
        }
        if self.interpolation != "bilinear":  # cards written before the field existed stay as they were
            out["interpolation"] = self.interpolation
        out.update(_plain(self.extra))
        return out


@dataclass(frozen=True)
class ModelCard:
    name: str
    format: str
    classes: tuple[str, ...]
    output: str
    input: InputSpec
    architecture: str | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    # Canonical index (into benchmark.core.labels.CLASSES) of each model output; derived from `classes`.
    class_index: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        if not self.class_index:
            mapped = map_model_classes(self.classes, where=f"card of {self.name!r}")
            object.__setattr__(self, "class_index", tuple(mapped))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "format": self.format}
        if self.architecture is not None:
            out["architecture"] = self.architecture
        out["classes"] = list(self.classes)
        out["output"] = self.output
        out["input"] = self.input.to_json()
        out.update(_plain(self.extra))
        return out


def _plain(extra: Mapping[str, Any]) -> dict[str, Any]:
    # A deep copy through JSON, so that callers can never mutate a card's extras through to_json().
    return json.loads(json.dumps(dict(extra)))


# ---------------------------------------------------------------- parsing


def _require(data: Mapping[str, Any], key: str, prefix: str, where: str) -> Any:
    if key not in data or data[key] is None:
        raise CardError(f"field '{prefix}{key}' is missing", where=where)
    return data[key]


def _type_name(value: object) -> str:
    return type(value).__name__ if value is not None else "null"


def _string(value: object, name: str, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise CardError(f"field '{name}' must be a non-empty string, got {value!r}", where=where)
    return value


def _choice(value: object, name: str, choices: tuple[str, ...], where: str) -> str:
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise CardError(f"field '{name}' must be one of {allowed}, got {value!r}", where=where)
    return str(value)


def _positive_int(value: object, name: str, where: str) -> int:
    # bool is an int subclass; `true` is never a sensible size.
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise CardError(f"field '{name}' must be a positive integer, got {value!r}", where=where)
    return value


def _size(value: object, where: str) -> tuple[int, int]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise CardError(
            f"field 'input.size' must be [height, width], got {value!r}", where=where
        )
    size = (_positive_int(value[0], "input.size", where), _positive_int(value[1], "input.size", where))
    if max(size) > MAX_INPUT_SIDE:
        raise CardError(f"field 'input.size' = {list(size)} exceeds the limit of {MAX_INPUT_SIDE} "
                        "pixels a side", where=where)
    return size


def _floats(value: object, name: str, channels: int, where: str) -> tuple[float, ...]:
    items = value if isinstance(value, (list, tuple)) else [value]
    out = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, float)) or not math.isfinite(item):
            raise CardError(f"field '{name}' must be a number or a list of numbers, got {value!r}",
                            where=where)
        out.append(float(item))
    if len(out) not in (1, channels):
        raise CardError(
            f"field '{name}' has {len(out)} values; expected 1 or input.channels = {channels}",
            where=where,
        )
    return tuple(out)


def _classes(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(c, str) for c in value):
        raise CardError(
            f"field 'classes' must be a list of class names, got {_type_name(value)} {value!r}",
            where=where,
        )
    return tuple(value)


def _architecture(value: object, fmt: str, where: str) -> str | None:
    if value is None:
        if fmt in ("safetensors", "state_dict"):
            raise CardError(
                f"field 'architecture' is missing; a {fmt} checkpoint holds only weights, "
                "so the card must say how to build the module, e.g. \"timm:resnet18\"",
                where=where,
            )
        return None
    arch = _string(value, "architecture", where)
    prefix, sep, rest = arch.partition(":")
    if not sep or not prefix or not rest:
        raise CardError(
            f"field 'architecture' must look like 'builder:name' (e.g. 'timm:resnet18'), got {arch!r}",
            where=where,
        )
    return arch


def _input_spec(value: object, where: str) -> InputSpec:
    if value is None:
        raise CardError("field 'input' is missing", where=where)
    if not isinstance(value, Mapping):
        raise CardError(f"field 'input' must be an object, got {_type_name(value)}", where=where)
    size = _size(_require(value, "size", "input.", where), where)
    channels = _positive_int(value.get("channels", 1), "input.channels", where)
    mean = _floats(value.get("mean", [0.5]), "input.mean", channels, where)
    std = _floats(value.get("std", [0.25]), "input.std", channels, where)
    if any(s <= 0 for s in std):
        raise CardError(f"field 'input.std' must be > 0, got {list(std)}", where=where)
    keep_aspect = value.get("keep_aspect", True)
    if not isinstance(keep_aspect, bool):
        raise CardError(f"field 'input.keep_aspect' must be true or false, got {keep_aspect!r}",
                        where=where)
    interpolation = _choice(value.get("interpolation", "bilinear"), "input.interpolation",
                            INTERPOLATIONS, where)
    extra = {k: v for k, v in value.items() if k not in _INPUT_FIELDS}
    return InputSpec(size, channels, mean, std, keep_aspect, MappingProxyType(extra), interpolation)


def parse_card(data: object, *, where: str) -> ModelCard:
    """Validate a decoded card; every problem is a CardError naming the field."""
    if not isinstance(data, Mapping):
        raise CardError(f"a model card must be a JSON object, got {_type_name(data)}", where=where)
    todo = data.get(FILL_IN)
    if todo:
        fields = ", ".join(str(t) for t in todo) if isinstance(todo, list) else str(todo)
        raise CardError(f"the card still has fields to fill in ({fields}); edit them and remove "
                        f"'{FILL_IN}'", where=where)
    name = _string(_require(data, "name", "", where), "name", where)
    fmt = _choice(_require(data, "format", "", where), "format", FORMATS, where)
    classes = _classes(_require(data, "classes", "", where), where)
    output = _choice(_require(data, "output", "", where), "output", OUTPUTS, where)
    spec = _input_spec(data.get("input"), where)
    architecture = _architecture(data.get("architecture"), fmt, where)
    class_index = tuple(map_model_classes(classes, where=where))
    extra = {k: v for k, v in data.items() if k not in _TOP_FIELDS}
    return ModelCard(name, fmt, classes, output, spec, architecture, MappingProxyType(extra),
                     class_index)


# ---------------------------------------------------------------- finding and reading


def find_weights(folder: Path) -> Path:
    """The single weights file inside a checkpoint folder."""
    found = sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in WEIGHT_SUFFIXES
    )
    if not found:
        raise CheckpointError(
            f"no weights file in the folder (expected one of {', '.join(WEIGHT_SUFFIXES)})",
            where=str(folder),
        )
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise CheckpointError(f"more than one weights file in the folder ({names}); keep one",
                              where=str(folder))
    return found[0]


def _weights_beside(card_path: Path) -> Path:
    stem = card_path.name[: -len(CARD_SUFFIX)]
    found = sorted(
        p for p in card_path.parent.iterdir()
        if p.is_file() and p.suffix.lower() in WEIGHT_SUFFIXES and p.name == stem + p.suffix
    )
    if len(found) != 1:
        what = "no" if not found else "more than one"
        raise CheckpointError(f"{what} weights file named {stem}.<ext> beside the card",
                              where=str(card_path))
    return found[0]


def find_card(checkpoint: Path) -> Path:
    """X.pt -> X.card.json beside it; a folder -> folder/card.json; a card -> itself."""
    checkpoint = Path(checkpoint)
    if checkpoint.is_dir():
        card = checkpoint / FOLDER_CARD
    elif checkpoint.name.endswith(CARD_SUFFIX):
        card = checkpoint
    elif checkpoint.is_file():
        card = checkpoint.with_name(checkpoint.stem + CARD_SUFFIX)
    else:
        raise CheckpointError("no such checkpoint file or folder", where=str(checkpoint))
    if not card.is_file():
        raise CardError(
            f"no model card: expected {card.name} beside the weights (see the 'Model card' section "
            "of the docs for its fields)",
            where=str(checkpoint),
        )
    return card


def read_card(card_path: Path) -> ModelCard:
    where = str(card_path)
    try:
        text = Path(card_path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CardError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", where=where) from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CardError(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
                        where=where) from exc
    return parse_card(data, where=where)


def load_card(checkpoint: Path) -> tuple[ModelCard, Path]:
    """The card and the weights file for a checkpoint file, folder (a timm folder too), or card path."""
    checkpoint = Path(checkpoint)
    if checkpoint.is_dir():
        from benchmark.models import timm_folder

        if timm_folder.is_timm_folder(checkpoint):  # no card needed: timm's config.json has it all
            card = parse_card(timm_folder.card_from_config(checkpoint),
                              where=str(checkpoint / timm_folder.CONFIG))
            return card, timm_folder.weights_for(checkpoint, card.format)
    card_path = find_card(checkpoint)
    if checkpoint.is_dir():
        weights = find_weights(checkpoint)
    elif checkpoint.name.endswith(CARD_SUFFIX):
        weights = _weights_beside(card_path)
    else:
        weights = checkpoint
    return read_card(card_path), weights


def preprocessing_key(card: ModelCard) -> str:
    """Everything that changes what the model is fed; equal keys can share prepared images."""
    spec = card.input
    key = {"size": list(spec.size), "channels": spec.channels, "mean": list(spec.mean),
           "std": list(spec.std), "keep_aspect": spec.keep_aspect}
    if spec.interpolation != "bilinear":
        key["interpolation"] = spec.interpolation
    from benchmark.data.geometry import REDUCING_GAP

    # How images far larger than the input are shrunk (box-averaged first); predictions cached
    # before it was recorded came from a one-pass resize and are recomputed.
    key["reducing_gap"] = REDUCING_GAP
    return json.dumps(key, sort_keys=True, separators=(",", ":"))


def model_fingerprint(card: ModelCard, weights_sha256: str) -> str:
    """Weights and card together: editing the card's classes or input changes predictions too."""
    import hashlib

    text = json.dumps(card.to_json(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{weights_sha256}\n{text}".encode()).hexdigest()
