"""The trained multitask network as a lung or opacity segmenter.

Two ways in: `segment(batch [B,1,H,W] canonical) -> float probabilities [B,1,H,W]` for batches of any
size, and calling the instance on one canonical image `[H, W] -> bool [H, W]` (the plugin contract of
benchmark/data/lungs.py). Images are letterboxed into the network's input as in training, and the
prediction is mapped back onto the original pixels.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.core.errors import CheckpointError


class MultitaskSegmenter:
    channel = "opacity"
    threshold = 0.5

    def __init__(self, checkpoint: str | Path | None = None, *, device: str | torch.device = "cpu"):
        from baselines.registered import checkpoint_dir, lung_segmenter_version
        from benchmark.models.loaded import load_model_file

        folder = Path(checkpoint) if checkpoint is not None else checkpoint_dir("multitask")
        self.model = load_model_file(folder, device=device)
        seg = self.model.card.extra.get("segmentation") or {}
        if not hasattr(self.model.module, "segment") or not isinstance(seg, dict):
            raise CheckpointError("not a multitask checkpoint (its card has no 'segmentation')", where=str(folder))
        channels, trained = list(seg.get("channels", [])), list(seg.get("trained", []))
        if self.channel not in trained or self.channel not in channels:
            raise CheckpointError(f"its {self.channel} channel was not trained (trained: {', '.join(trained) or 'none'})",
                                  where=str(folder))
        self.index = channels.index(self.channel)
        self.size = tuple(self.model.card.input.size)
        self.version = lung_segmenter_version(folder) or self.model.sha256[:16]

    @torch.no_grad()
    def segment(self, batch: torch.Tensor) -> torch.Tensor:
        """Probabilities [B, 1, H, W] of the channel for canonical images [B, 1, H, W]."""
        from benchmark.data.geometry import letterbox

        if batch.ndim != 4 or batch.shape[1] != 1:
            raise ValueError(f"expected canonical images [B, 1, H, W], got {tuple(batch.shape)}")
        h, w = batch.shape[-2:]
        lb = letterbox((h, w), self.size)
        nh, nw = lb.content_hw
        x = batch.to(self.model.device, torch.float32)
        if (nh, nw) != (h, w):
            x = F.interpolate(x, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
        canvas = torch.zeros((len(x), 1, *self.size), device=x.device)
        canvas[..., lb.pad_top:lb.pad_top + nh, lb.pad_left:lb.pad_left + nw] = x
        probs = self.model.module.segment(self.model.preprocess(canvas))[:, self.index:self.index + 1]
        crop = probs[..., lb.pad_top:lb.pad_top + nh, lb.pad_left:lb.pad_left + nw]
        if (nh, nw) != (h, w):
            crop = F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)
        return crop.float()

    def __call__(self, image: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
        return (self.segment(t)[0, 0] >= self.threshold).cpu().numpy()


class MultitaskLungSegmenter(MultitaskSegmenter):
    channel = "lung"


class MultitaskOpacitySegmenter(MultitaskSegmenter):
    channel = "opacity"
