"""Letterbox geometry: one mapping from original pixels to model-input pixels, shared by the
image, its lung mask and its opacity boxes so that all three stay aligned.

Coordinates are continuous pixel edges: pixel (row i, column j) covers [j, j+1) x [i, i+1).
A point x in the original maps to x * scale_x + pad_left in the destination, and Pillow's
resampling uses the same convention (pixel centres at i + 0.5), so boxes and pixels agree.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from benchmark.core.errors import DataError


@dataclass(frozen=True)
class Letterbox:
    """How an image of `src_hw` is placed into a `dst_hw` canvas: scale, then offset by the pad."""

    src_hw: tuple[int, int]
    dst_hw: tuple[int, int]
    scale_y: float
    scale_x: float
    pad_top: int
    pad_left: int

    @property
    def content_hw(self) -> tuple[int, int]:
        """Size of the resized image inside the canvas (the rest is padding)."""
        return (
            _round_half_up(self.src_hw[0] * self.scale_y),
            _round_half_up(self.src_hw[1] * self.scale_x),
        )


def letterbox(
    src_hw: tuple[int, int], dst_hw: tuple[int, int], *, keep_aspect: bool = True
) -> Letterbox:
    """Fit `src_hw` into `dst_hw`; keep_aspect pads (centred) instead of stretching."""
    sh, sw = _positive_hw(src_hw, "src_hw")
    dh, dw = _positive_hw(dst_hw, "dst_hw")
    if not keep_aspect:
        return Letterbox((sh, sw), (dh, dw), dh / sh, dw / sw, 0, 0)
    scale = min(dh / sh, dw / sw)
    # Whole-pixel content size; the per-axis scale is then exact for that size, so the
    # aspect ratio drifts by less than one pixel and boxes map onto the very pixels resized.
    nh = min(dh, max(1, _round_half_up(sh * scale)))
    nw = min(dw, max(1, _round_half_up(sw * scale)))
    return Letterbox((sh, sw), (dh, dw), nh / sh, nw / sw, (dh - nh) // 2, (dw - nw) // 2)


# Shrinking a full-size radiograph (2,500 x 3,000 into 224) Pillow first box-averages by a whole factor
# of up to 1/REDUCING_GAP of the shrink, then resamples the rest with the model's filter: about 3x
# faster, and the same as one filter pass but for ~1e-3 (smooth content; up to ~1e-2 on pixel noise).
# It only acts on an axis the letterbox shrinks at least 2 * REDUCING_GAP times (the factor is
# int(shrink / gap) > 1), so images under 6x the model input are resized exactly as before.
REDUCING_GAP = 3.0

# Model-card names (timm's) of Pillow's resampling filters.
RESAMPLING = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
              "nearest": Image.Resampling.NEAREST, "lanczos": Image.Resampling.LANCZOS,
              "box": Image.Resampling.BOX, "hamming": Image.Resampling.HAMMING}


def resize_image(img: np.ndarray, lb: Letterbox, interpolation: str = "bilinear") -> np.ndarray:
    """Resize a canonical [H, W] image into the letterbox canvas; padding is 0 (air)."""
    arr = _check_plane(img, lb, "image")
    # Pillow's filters widen their support when shrinking, so downsampling is anti-aliased; bicubic
    # and lanczos overshoot at edges, hence the clip back to [0, 1].
    content = _resize_float(arr.astype(np.float32, copy=False), lb, RESAMPLING[interpolation],
                            reducing_gap=REDUCING_GAP)
    return _paste(np.clip(content, 0.0, 1.0).astype(np.float32), lb, np.float32)


def resize_mask(mask: np.ndarray, lb: Letterbox) -> np.ndarray:
    """Resize a bool mask with the image's geometry: a pixel is set when >= half its area was."""
    arr = _check_plane(mask, lb, "mask")
    # BOX is exact area averaging when shrinking and nearest-neighbour when enlarging.
    content = _resize_float(arr.astype(np.float32), lb, Image.Resampling.BOX) >= 0.5
    return _paste(content, lb, np.bool_)


def transform_boxes(boxes: np.ndarray | list, lb: Letterbox) -> np.ndarray:
    """Map [N, 4] boxes (x1, y1, x2, y2, original pixels) to destination pixels, float32.

    Boxes are clipped to the resized image so none reaches into the padding.
    """
    arr = _as_boxes(boxes)
    scale = np.array([lb.scale_x, lb.scale_y, lb.scale_x, lb.scale_y])
    offset = np.array([lb.pad_left, lb.pad_top, lb.pad_left, lb.pad_top], dtype=np.float64)
    out = arr * scale + offset
    nh, nw = lb.content_hw
    lo = offset
    hi = offset + np.array([nw, nh, nw, nh], dtype=np.float64)
    return np.clip(out, lo, hi).astype(np.float32)


# --- helpers ----------------------------------------------------------------------------------


def _round_half_up(x: float) -> int:
    # Python's round() goes to even, which would make 2.5 -> 2 but 3.5 -> 4.
    return int(math.floor(x + 0.5))


def _positive_hw(hw: tuple[int, int], name: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in hw)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be (height, width), got {hw!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"{name} must be positive, got {hw!r}")
    return h, w


def _check_plane(arr: np.ndarray, lb: Letterbox, what: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 2 or arr.shape != tuple(lb.src_hw):
        raise DataError(
            f"{what} is {_fmt_shape(arr.shape)} but the letterbox expects "
            f"{lb.src_hw[0]}x{lb.src_hw[1]}"
        )
    return arr


def _fmt_shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


def _resize_float(arr: np.ndarray, lb: Letterbox, resample: Image.Resampling,
                  reducing_gap: float | None = None) -> np.ndarray:
    nh, nw = lb.content_hw
    if (nh, nw) == arr.shape:
        return arr.copy()
    img = _float_image(np.ascontiguousarray(arr, dtype=np.float32))
    return np.asarray(img.resize((nw, nh), resample=resample, reducing_gap=reducing_gap), dtype=np.float32)


def _float_image(arr: np.ndarray) -> Image.Image:
    """A Pillow 'F' image over arr's own memory where Pillow can (its Arrow import, Pillow >= 11.2),
    else a copy. Image.fromarray copies float data: 30 MB per full-size radiograph, into fresh pages,
    about as long as the resize itself. Same pixels either way."""
    fromarrow = getattr(Image, "fromarrow", None)
    if fromarrow is not None and arr.size:
        try:
            import pyarrow as pa

            return fromarrow(pa.array(arr.reshape(-1)), "F", (arr.shape[1], arr.shape[0]))
        except (ImportError, ValueError, TypeError):
            pass
    return Image.fromarray(arr)


def _paste(content: np.ndarray, lb: Letterbox, dtype: type) -> np.ndarray:
    canvas = np.zeros(lb.dst_hw, dtype=dtype)
    nh, nw = content.shape
    canvas[lb.pad_top : lb.pad_top + nh, lb.pad_left : lb.pad_left + nw] = content
    return canvas


def _as_boxes(boxes: np.ndarray | list) -> np.ndarray:
    try:
        arr = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"boxes must be numbers [[x1, y1, x2, y2], ...], got {boxes!r}") from None
    if arr.size == 0:
        return np.zeros((0, 4), dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise DataError(f"boxes must have shape [N, 4] (x1, y1, x2, y2), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise DataError("boxes contain NaN or infinite coordinates")
    if (arr[:, 2] < arr[:, 0]).any() or (arr[:, 3] < arr[:, 1]).any():
        raise DataError("boxes must have x2 >= x1 and y2 >= y1")
    return arr
