"""Where an image's lung mask (and its lesion boxes) come from.

A lung mask is taken from the first source that has one, per row:
1. the manifest's `lung_mask` column (a mask file; the synth generator always has one);
2. a registered segmenter plugin (`SEGMENTERS` registry, entry-point group `cxrbench.segmenters`):
   a callable `segment(image: float32 [H, W]) -> bool [H, W]` in the original geometry, or a class
   whose instances are such callables; with several registered, the first by name is used;
3. a geometric lung prior fitted to the body outline: two template lung outlines placed between the
   body's left and right skin edges. It is approximate (mean IoU 0.83 with the true masks of synth
   images), and every row that uses it is flagged: the predictions keep the source per row, suites
   report how many rows used it.

`plan_masks` decides the source of every row without decoding anything, so the flag is known even
when every prediction comes from the cache; its `key` enters the cache key of views that use masks,
so installing a segmenter later recomputes them.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from benchmark.core.errors import DataError

PRIOR_VERSION = "1"
SOURCE_MANIFEST = "manifest"
SOURCE_PRIOR = "prior"

# Template lungs in body coordinates (u: 0 = body's left edge in the image .. 1 = right edge;
# v: 0 = top of the image content .. 1 = bottom), traced from the half-occupancy contour of 300
# synth lung masks (whose anatomy follows adult PA proportions). Image-left is the patient's right
# lung; the image-right lung is narrower medially, where the heart is.
_LUNG_IMAGE_LEFT = ((0.31, 0.12), (0.22, 0.18), (0.15, 0.28), (0.10, 0.38), (0.06, 0.45), (0.05, 0.55),
                    (0.05, 0.69), (0.06, 0.75), (0.16, 0.75), (0.37, 0.69), (0.39, 0.63), (0.42, 0.58),
                    (0.44, 0.53), (0.44, 0.24), (0.40, 0.18), (0.35, 0.13))
_LUNG_IMAGE_RIGHT = ((0.68, 0.12), (0.75, 0.17), (0.83, 0.27), (0.89, 0.37), (0.93, 0.45), (0.94, 0.52),
                     (0.94, 0.72), (0.91, 0.77), (0.82, 0.77), (0.77, 0.72), (0.75, 0.67), (0.72, 0.57),
                     (0.66, 0.47), (0.60, 0.38), (0.56, 0.31), (0.56, 0.22), (0.59, 0.17))
# A body narrower than this fraction of the content is a failed outline: use the whole width.
_MIN_BODY_WIDTH = 0.4


@dataclass(frozen=True)
class MaskPlan:
    """The lung-mask source of every row, decided from the manifest and the registered segmenters."""

    sources: np.ndarray        # object[n]: "manifest" | "segmenter:<name>" | "prior"
    segmenter: str | None      # the segmenter rows without a manifest mask use, if any
    key: str                   # what the masks depend on beyond the manifest; part of cache keys


def _has_value(value: object) -> bool:
    if value is None or value is pd.NA:
        return False
    if isinstance(value, float) and np.isnan(value):
        return False
    return str(value).strip() != ""


def chosen_segmenter() -> str | None:
    from benchmark.core.registry import SEGMENTERS

    names = SEGMENTERS.names()
    return names[0] if names else None


def plan_masks(dataset) -> MaskPlan:
    table = dataset.table
    column = table["lung_mask"] if "lung_mask" in table.columns else pd.Series([None] * len(table))
    has = np.array([_has_value(v) for v in column], dtype=bool)
    segmenter = None if has.all() else chosen_segmenter()
    fallback = f"segmenter:{segmenter}" if segmenter else SOURCE_PRIOR
    sources = np.where(has, SOURCE_MANIFEST, fallback).astype(object)
    parts = [SOURCE_MANIFEST]
    if not has.all():
        parts.append(f"{fallback}:{_segmenter_version(segmenter)}" if segmenter else f"prior:{PRIOR_VERSION}")
    key = hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
    return MaskPlan(sources=sources, segmenter=segmenter, key=key)


def _segmenter_version(name: str | None) -> str:
    from benchmark.core.registry import SEGMENTERS

    if name is None:
        return ""
    entry = SEGMENTERS.entry(name)
    return str(entry.meta.get("version") or getattr(SEGMENTERS.get(name), "version", "") or entry.origin)


def _segmenter(name: str):
    from benchmark.core.registry import SEGMENTERS

    obj = SEGMENTERS.get(name)
    return _instance(obj) if isinstance(obj, type) else obj


@lru_cache(maxsize=4)
def _instance(cls: type):
    return cls()  # a segmenter class may load a network: once per process


def lung_mask(dataset, i: int, image: np.ndarray, plan: MaskPlan) -> np.ndarray:
    """The bool lung mask of row i in the original image's geometry, from the planned source.
    Errors name the source; the runner puts the row in front."""
    source = str(plan.sources[i])
    if source == SOURCE_MANIFEST:
        mask = _synth_case(dataset, i).lung_mask if _is_synth(dataset) else dataset.source.lung_mask(i)
        if mask is None:
            raise DataError("the manifest names a lung mask but none could be read", where="lung_mask")
        return np.asarray(mask, dtype=bool)
    if source.startswith("segmenter:"):
        name = source.partition(":")[2]
        try:
            mask = np.asarray(_segmenter(name)(image))
        except Exception as exc:  # a plugin's failure must still name its row and plugin
            raise DataError(f"failed ({type(exc).__name__}: {exc})", where=f"segmenter {name!r}") from exc
        if mask.shape != image.shape:
            raise DataError(f"returned a {mask.shape} mask for a {image.shape} image",
                            where=f"segmenter {name!r}")
        return mask.astype(bool)
    return lung_prior(image)


# --- the geometric prior ----------------------------------------------------------------------

def content_box(image: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right), exclusive ends, of the rows/columns that are not all zero:
    letterbox padding is exact zeros, real image rows almost never are."""
    rows = np.flatnonzero(image.any(axis=1))
    cols = np.flatnonzero(image.any(axis=0))
    if rows.size == 0 or cols.size == 0:
        return 0, image.shape[0], 0, image.shape[1]
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def body_columns(image: np.ndarray, box: tuple[int, int, int, int]) -> tuple[int, int]:
    """The body's left and right skin edges: the outermost columns of the mid-chest band that are
    brighter than air. Without air beside the body (a tight field), the content's own edges."""
    top, bottom, left, right = box
    h = bottom - top
    band = image[top + int(0.3 * h): top + max(int(0.7 * h), int(0.3 * h) + 1), left:right]
    profile = band.mean(axis=0)
    k = max(len(profile) // 64, 1)  # a light smoothing, so one dark pixel column cannot cut the body
    profile = np.convolve(profile, np.ones(2 * k + 1) / (2 * k + 1), mode="same")
    lo, hi = np.percentile(profile, 3), np.percentile(profile, 60)
    inside = np.flatnonzero(profile > lo + 0.35 * (hi - lo))
    if inside.size == 0 or (inside[-1] + 1 - inside[0]) < _MIN_BODY_WIDTH * len(profile):
        return left, right
    return left + int(inside[0]), left + int(inside[-1]) + 1


def lung_prior(image: np.ndarray) -> np.ndarray:
    """Two template lungs placed in the body outline; bool [H, W] like the image."""
    from PIL import Image, ImageDraw

    image = np.asarray(image, dtype=np.float32)
    box = content_box(image)
    top, bottom = box[0], box[1]
    b_left, b_right = body_columns(image, box)
    canvas = Image.new("L", (image.shape[1], image.shape[0]), 0)
    draw = ImageDraw.Draw(canvas)
    for poly in (_LUNG_IMAGE_LEFT, _LUNG_IMAGE_RIGHT):
        draw.polygon([(b_left + u * (b_right - b_left), top + v * (bottom - top)) for u, v in poly], fill=255)
    return np.asarray(canvas) > 0


# --- lesion boxes -------------------------------------------------------------------------------

def lesion_boxes(dataset, i: int) -> np.ndarray:
    """Opacity boxes of row i, [N, 4] (x1, y1, x2, y2) in original pixels; empty when unknown."""
    if _is_synth(dataset):
        return np.asarray(_synth_case(dataset, i).boxes, dtype=np.float32).reshape(-1, 4)
    if "boxes" in dataset.table.columns and _has_value(dataset.table["boxes"].iat[i]):
        return dataset.boxes(i)
    return np.zeros((0, 4), dtype=np.float32)


def _is_synth(dataset) -> bool:
    from benchmark.data.dataset import SynthSource

    return isinstance(dataset.source, SynthSource)


def _synth_case(dataset, i: int):
    return _render(dataset.source.cfg, int(dataset.source.indices[i]))


@lru_cache(maxsize=64)
def _render(cfg, index: int):
    # The embedded generator knows masks and boxes; one render serves both.
    from benchmark.data.synth import render_case

    return render_case(cfg, index)
