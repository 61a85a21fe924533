"""timm backbones for one-channel radiographs, always built without downloaded weights."""
from __future__ import annotations

from typing import Any

from torch import nn

from benchmark.core.errors import CxrbenchError

# The multi-task network is rebuilt from its card through a fixed table of architectures
# (benchmark/models/loaders.py: CXRBENCH_ARCHITECTURES), so its encoder is one of these.
MULTITASK_BACKBONES: tuple[str, ...] = (
    "resnet10t", "resnet18", "resnet34", "resnet50", "densenet121", "efficientnet_b0", "convnext_tiny",
)


def check_backbone(name: str, *, multitask: bool = False) -> None:
    import timm

    if not isinstance(name, str) or not timm.is_model(name):
        raise CxrbenchError(f"timm has no model {name!r} (for example resnet18, resnet50, densenet121)",
                            where="--backbone")
    if multitask and name not in MULTITASK_BACKBONES:
        raise CxrbenchError(f"the multitask baseline supports {', '.join(MULTITASK_BACKBONES)}; got {name!r}",
                            where="--backbone")


def create_classifier(name: str, *, num_classes: int, image_size: int) -> tuple[nn.Module, dict[str, Any]]:
    """A timm classifier with in_chans=1, and the card's `architecture_args` that rebuild it.

    Models with a fixed input grid (ViTs) take `img_size`; convolutional ones refuse the keyword, and
    are then built without it.
    """
    import timm

    base = {"pretrained": False, "num_classes": num_classes, "in_chans": 1}
    try:
        return timm.create_model(name, img_size=image_size, **base), {"img_size": image_size}
    except TypeError:
        return timm.create_model(name, **base), {}


def create_features(name: str) -> nn.Module:
    """The backbone as a feature pyramid (timm features_only): a list of maps, shallow to deep."""
    import timm

    return timm.create_model(name, pretrained=False, in_chans=1, features_only=True)


def pooled_features(model: nn.Module, x):
    """Pre-logit features [B, D] of a timm classifier (its own pooling)."""
    return model.forward_head(model.forward_features(x), pre_logits=True)
