"""The reference architecture: a small CNN that trains in minutes on two CPU cores."""
from __future__ import annotations

import torch
from torch import nn


class SmallCNN(nn.Module):
    """Four stride-2 conv blocks, global average pooling, a linear head (about 0.2 M parameters)."""

    def __init__(self, num_classes: int = 4, in_chans: int = 1, width: int = 24):
        super().__init__()
        chans = [in_chans, width, width * 2, width * 4, width * 6]
        blocks = []
        for a, b in zip(chans[:-1], chans[1:]):
            blocks += [nn.Conv2d(a, b, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True),
                       nn.Conv2d(b, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*blocks)
        self.head = nn.Linear(chans[-1], num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))

    def forward_head(self, feats: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        # timm's split: one forward_features pass then gives both the embedding and the logits.
        return feats if pre_logits else self.head(feats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def build_small_cnn(num_classes: int, in_chans: int) -> nn.Module:
    return SmallCNN(num_classes=num_classes, in_chans=in_chans)
