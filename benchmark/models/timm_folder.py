"""A folder written by timm (`save_for_hf`, `push_to_hub`) needs no card: its config.json says it all.

timm writes `config.json` (architecture, num_classes, label_names, model_args, pretrained_cfg with
input_size, mean, std, interpolation) beside `model.safetensors` and/or `pytorch_model.bin`. The card
is derived from it; a `card.json` in the same folder overrides any field (its `input` field by field).
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from benchmark.core.errors import CardError

CONFIG = "config.json"
# Keyword arguments a card may pass to timm.create_model. A fixed list because others, such as
# checkpoint_path or pretrained_cfg, would make timm read (and unpickle) files the card names.
TIMM_ARGS: frozenset[str] = frozenset({"img_size", "patch_size", "global_pool", "drop_rate",
                                       "drop_path_rate"})
# Weights file per card format, in the order preferred when timm wrote both.
WEIGHTS = {"safetensors": "model.safetensors", "state_dict": "pytorch_model.bin"}


def is_timm_folder(folder: Path) -> bool:
    """A folder with timm's config.json (a transformers config has `architectures`, a list)."""
    path = Path(folder) / CONFIG
    if not path.is_file():
        return False
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return True  # let card_from_config name the problem
    return isinstance(data, dict) and "architecture" in data


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise CardError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", where=str(path)) from exc
    except json.JSONDecodeError as exc:
        raise CardError(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
                        where=str(path)) from exc


def _input(cfg: Mapping[str, Any], args: Mapping[str, Any]) -> dict[str, Any]:
    # Evaluation uses timm's test-time size when the model has one, as timm's validate.py does.
    size = cfg.get("test_input_size") or cfg.get("input_size")
    out: dict[str, Any] = {}
    if isinstance(size, list) and len(size) == 3:
        out["size"] = size[1:]
        out["channels"] = args.get("in_chans", size[0])
    elif "in_chans" in args:
        out["channels"] = args["in_chans"]
    for key in ("mean", "std", "interpolation"):
        if key in cfg:
            out[key] = cfg[key]
    return out


def card_from_config(folder: Path) -> dict[str, Any]:
    """The card fields timm's config.json gives, with the card.json beside it (if any) on top."""
    folder = Path(folder)
    config_path = folder / CONFIG
    config = _read_json(config_path)
    where = str(config_path)
    if not isinstance(config, Mapping) or not isinstance(config.get("architecture"), str):
        raise CardError("not a timm config: expected an object with 'architecture'", where=where)
    pretrained = config.get("pretrained_cfg") if isinstance(config.get("pretrained_cfg"), Mapping) else {}
    args = config.get("model_args") if isinstance(config.get("model_args"), Mapping) else {}
    labels = config.get("label_names") or pretrained.get("label_names")
    fmt = next((f for f, name in WEIGHTS.items() if (folder / name).is_file()), "safetensors")
    card: dict[str, Any] = {
        "name": folder.resolve().name,
        "format": fmt,
        "architecture": f"timm:{config['architecture']}",
        "output": "logits",
        "input": _input(pretrained, args),
    }
    if labels is not None:
        card["classes"] = labels
    # Only arguments a card may pass to timm.create_model travel; num_classes and in_chans come
    # from classes and input.channels.
    passed = {k: v for k, v in args.items() if k in TIMM_ARGS}
    if passed:
        card["architecture_args"] = passed
    override_path = folder / "card.json"
    if override_path.is_file():
        override = _read_json(override_path)
        if not isinstance(override, Mapping):
            raise CardError("a model card must be a JSON object", where=str(override_path))
        merged_input = {**card["input"], **(override.get("input") or {})}
        card = {**card, **override, "input": merged_input}
    if "classes" not in card:
        raise CardError("config.json has no 'label_names', so the class of each output is unknown; "
                        "add a card.json beside it with \"classes\": [...] in output order",
                        where=where)
    num_classes = config.get("num_classes")
    if isinstance(num_classes, int) and isinstance(card["classes"], list) \
            and len(card["classes"]) != num_classes:
        raise CardError(f"config.json says num_classes = {num_classes} but names "
                        f"{len(card['classes'])} classes", where=where)
    return card


def weights_for(folder: Path, fmt: str) -> Path:
    from benchmark.core.errors import CheckpointError

    name = WEIGHTS.get(fmt)
    if name is None or not (Path(folder) / name).is_file():
        expected = " or ".join(WEIGHTS.values())
        raise CheckpointError(f"no weights for format '{fmt}' in the timm folder (expected {expected})",
                              where=str(folder))
    return Path(folder) / name
