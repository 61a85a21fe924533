"""`cxrbench card init`: a card skeleton from what a checkpoint reveals, without running any of it.

The format is sniffed from the bytes. A state dict (read weights-only) or a safetensors file tells
the input channels (the first convolution's weight) and the class count (the classifier's weight);
a timm folder's config.json tells nearly everything. What cannot be learned is listed under
`_fill_in` (the card is refused until it is edited) and what was assumed under `_check`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.core.errors import CardError, CheckpointError
from benchmark.models.card import CARD_SUFFIX, FILL_IN, FOLDER_CARD
from benchmark.models.loaders_sniff import EXPORT, PICKLE, SAFETENSORS, TORCHSCRIPT, sniff_format

# Tried, in this order, when no --architecture is given: the backbones CXR papers use most.
GUESS_ARCHITECTURES = ("resnet18", "resnet34", "resnet50", "densenet121", "efficientnet_b0",
                       "convnext_tiny", "resnet10t")
DEFAULT_INPUT = {"size": [224, 224], "mean": [0.5], "std": [0.25]}


@dataclass
class CardDraft:
    path: Path
    card: dict[str, Any]
    fill_in: list[str] = field(default_factory=list)
    check: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _tensor_shapes(weights: Path, kind: str) -> dict[str, tuple[int, ...]]:
    if kind == SAFETENSORS:
        from safetensors import safe_open

        with safe_open(str(weights), framework="pt") as fh:
            return {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
    from benchmark.models.state_dicts import read_state_dict_file, unwrap

    state, _ = unwrap(read_state_dict_file(weights), where=str(weights))
    return {k: tuple(v.shape) for k, v in state.items()}


def _conv_and_classes(shapes: dict[str, tuple[int, ...]]) -> tuple[int | None, int | None]:
    channels = next((s[1] for k, s in shapes.items() if k.endswith("weight") and len(s) == 4), None)
    classes = None
    for key, shape in shapes.items():
        if key.endswith("weight") and len(shape) == 2 and key[:-6] + "bias" in shapes:
            classes = shape[0]
    return channels, classes


def guess_architecture(shapes: dict[str, tuple[int, ...]], classes: int, channels: int) -> str | None:
    """The first common timm backbone whose state dict has exactly these keys and shapes."""
    import timm

    from benchmark.models.state_dicts import match_keys

    for name in GUESS_ARCHITECTURES:
        model = timm.create_model(name, pretrained=False, num_classes=classes, in_chans=channels)
        want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        matched, _ = match_keys(shapes, set(want))  # type: ignore[arg-type]
        if set(matched) == set(want) and all(tuple(matched[k]) == want[k] for k in want):
            return f"timm:{name}"
    return None


def _from_weights(weights: Path, architecture: str | None, draft: CardDraft) -> None:
    kind = sniff_format(weights)
    card = draft.card
    if kind in (TORCHSCRIPT, EXPORT):
        card["format"] = kind
        draft.fill_in.append("classes")
        if kind == TORCHSCRIPT:
            draft.notes.append("TorchScript is code: it runs only with --trust-code")
        return
    if kind not in (PICKLE, SAFETENSORS):
        if weights.suffix.lower() == ".onnx":
            card["format"] = "onnx"
            draft.fill_in.append("classes")
            return
        raise CheckpointError("not a checkpoint this harness reads (state dict, safetensors, "
                              "torch.export, TorchScript or ONNX)", where=str(weights))
    card["format"] = "state_dict" if kind == PICKLE else "safetensors"
    shapes = {k: tuple(int(d) for d in s) for k, s in _tensor_shapes(weights, kind).items()}
    channels, classes = _conv_and_classes(shapes)
    if channels:
        card["input"]["channels"] = channels
        draft.notes.append(f"input.channels = {channels} from the first convolution's weight")
    if classes:
        draft.notes.append(f"{classes} outputs from the classifier's weight")
        card["_outputs"] = classes
    if architecture:
        card["architecture"] = architecture
    elif channels and classes:
        guessed = guess_architecture(shapes, classes, channels)
        if guessed:
            card["architecture"] = guessed
            draft.notes.append(f"architecture {guessed}: its keys and shapes match the weights exactly")
    if "architecture" not in card:
        card["architecture"] = "timm:FILL_IN"
        draft.fill_in.append("architecture")


def init_card(checkpoint: Path, *, architecture: str | None = None, classes: list[str] | None = None,
              force: bool = False) -> CardDraft:
    """Write the card skeleton beside `checkpoint` (X.card.json, or card.json in a folder)."""
    from benchmark.core.labels import map_model_classes
    from benchmark.models import timm_folder

    checkpoint = Path(checkpoint)
    if not checkpoint.exists():
        raise CheckpointError("no such checkpoint file or folder", where=str(checkpoint))
    if checkpoint.is_dir():
        out = checkpoint / FOLDER_CARD
        draft = CardDraft(out, {})
        if not timm_folder.is_timm_folder(checkpoint):
            raise CheckpointError("a folder needs timm's config.json, or a card.json written by hand "
                                  "beside its one weights file", where=str(checkpoint))
        try:
            draft.card = timm_folder.card_from_config(checkpoint)
        except CardError:  # no label_names: the one field the config cannot give
            config = json.loads((checkpoint / timm_folder.CONFIG).read_text(encoding="utf-8"))
            draft.card = {"name": checkpoint.resolve().name, "format": "safetensors",
                          "architecture": f"timm:{config.get('architecture')}", "output": "logits",
                          "input": {}, "_outputs": config.get("num_classes")}
            draft.fill_in.append("classes")
        draft.notes.append("fields from timm's config.json")
    else:
        out = checkpoint.with_name(checkpoint.stem + CARD_SUFFIX)
        draft = CardDraft(out, {"name": checkpoint.stem, "format": "", "output": "logits",
                                "input": {**DEFAULT_INPUT, "channels": 1}})
        _from_weights(checkpoint, architecture, draft)
        draft.check += ["output", "input.size", "input.mean", "input.std"]
    if architecture and checkpoint.is_dir():
        draft.card["architecture"] = architecture
    outputs = draft.card.pop("_outputs", None)
    if classes:
        map_model_classes(classes, where="--classes")  # unknown names fail here, with the list
        if outputs and len(classes) != outputs:
            raise CardError(f"{len(classes)} classes given but the classifier has {outputs} outputs",
                            where="--classes")
        draft.card["classes"] = list(classes)
        draft.fill_in = [f for f in draft.fill_in if f != "classes"]
    elif "classes" not in draft.card:
        draft.card["classes"] = [f"FILL_IN_{i}" for i in range(outputs or 4)]
        if "classes" not in draft.fill_in:
            draft.fill_in.append("classes")
    if draft.fill_in:
        draft.card[FILL_IN] = draft.fill_in
    if draft.check:
        draft.card["_check"] = draft.check
    if out.exists() and not force:
        raise CardError("a card is already there; pass --force to replace it", where=str(out))
    out.write_text(json.dumps(draft.card, indent=2) + "\n", encoding="utf-8")
    return draft
