"""Helpers for the model tests: tiny networks, cards, checkpoint writers and a pickle payload."""
from __future__ import annotations

import copy
import json
import os
import pickle
import zipfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmark.core.labels import CLASSES

KAGGLE = {
    "negative": "Negative for Pneumonia",
    "typical": "Typical Appearance",
    "indeterminate": "Indeterminate Appearance",
    "atypical": "Atypical Appearance",
}
# Output j of the permuted network predicts canonical class PERM[j].
PERM = (3, 0, 2, 1)
SIZE = (16, 16)


class TinyNet(nn.Module):
    """Two convolutions, average pooling and a linear head."""

    def __init__(self, num_classes: int = 4, in_chans: int = 1, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv2d(in_chans, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 3, stride=2, padding=1)
        self.head = nn.Linear(8, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv2(torch.relu(self.conv1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x).mean(dim=(2, 3)))


class Lambda(nn.Module):
    """A module whose forward is any function (for output-validation tests)."""

    def __init__(self, fn: Any):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> Any:
        return self.fn(x)


class Payload:
    """Unpickling this creates the folder `marker`: proof that code from the file ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        # os.mkdir leaves no open file behind, unlike the classic (open, (path, "w")).
        return (os.mkdir, (self.marker,))


def permute_head(model: nn.Module, head: str, perm: tuple[int, ...] = PERM) -> nn.Module:
    """The same network with its output rows reordered: output j becomes old output perm[j]."""
    out = copy.deepcopy(model)
    layer = getattr(out, head)
    with torch.no_grad():
        layer.weight.copy_(layer.weight[list(perm)])
        layer.bias.copy_(layer.bias[list(perm)])
    return out


def card_dict(fmt: str, *, classes: tuple[str, ...] | list[str] = CLASSES, size: tuple[int, int] = SIZE,
              **extra: Any) -> dict[str, Any]:
    card = {"name": f"tiny-{fmt}", "format": fmt, "classes": list(classes), "output": "logits",
            "input": {"size": list(size), "channels": 1, "mean": [0.5], "std": [0.25]}}
    card.update(extra)
    return card


def write_card(weights: Path, card: dict[str, Any]) -> Path:
    path = weights.with_name(weights.stem + ".card.json")
    path.write_text(json.dumps(card))
    return path


def example(batch: int = 2, size: tuple[int, int] = SIZE, channels: int = 1) -> torch.Tensor:
    return torch.rand(batch, channels, *size, generator=torch.Generator().manual_seed(1))


def save_torchscript(model: nn.Module, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(model.eval(), example()), str(path))
    return path


def save_export(model: nn.Module, path: Path) -> Path:
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(model.eval(), (example(),), dynamic_shapes={"x": {0: batch}})
    torch.export.save(program, str(path))
    return path


def save_onnx(model: nn.Module, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (example(),), str(path), dynamo=False, input_names=["x"],
                          output_names=["logits"], dynamic_axes={"x": {0: "batch"}})
    return path


def save_safetensors(model: nn.Module, path: Path) -> Path:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def timm_resnet18(seed: int = 0) -> nn.Module:
    import timm

    torch.manual_seed(seed)
    return timm.create_model("resnet18", pretrained=False, num_classes=4, in_chans=1).eval()


def zip_pickle(obj: object, path: Path) -> Path:
    torch.save(obj, str(path))
    return path


def raw_pickle(obj: object, path: Path) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=2))
    return path


def rewrite_pt2(src: Path, dst: Path, edit: Callable[[str, bytes], bytes | None]) -> Path:
    """Copy a zip archive member by member through `edit` (None drops the member)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = edit(info.filename, zin.read(info))
            if data is not None:
                zout.writestr(info, data)
    return dst


def edit_json(suffix: str, change: Callable[[Any], Any]) -> Callable[[str, bytes], bytes]:
    """An edit for rewrite_pt2 that changes the JSON member ending in `suffix`."""
    def edit(name: str, data: bytes) -> bytes:
        return json.dumps(change(json.loads(data))).encode() if name.endswith(suffix) else data
    return edit
