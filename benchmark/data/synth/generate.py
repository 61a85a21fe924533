"""Render one image from (config, index), and write a whole dataset in the README's manifest form."""
from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage

from benchmark.core.errors import DataError
from benchmark.core.files import atomic_path
from benchmark.core.labels import CLASSES

from .acquire import expose, overlay
from .anatomy import Anatomy, sample_anatomy
from .canvas import Frame, Pose
from .config import GENERATOR_VERSION, TAG_IMAGE, TAG_PATIENT, SynthCase, SynthConfig
from .lesions import Lesion, render_lesions, sample_lesions
from .sites import site_profile
from .table import image_id, rows, synth_table
from .thorax import render_thorax

# Opacity fragments smaller than this (fraction of the image area) are texture, not findings.
MIN_COMPONENT = 0.0004


def render_case(cfg: SynthConfig, index: int) -> SynthCase:
    """Image `index` of the dataset `cfg` describes; a pure function of the two."""
    r = rows(cfg)
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < len(r):
        raise DataError(f"index must be an integer in 0..{len(r) - 1}, got {index!r}", where="synth")
    index = int(index)
    patient = int(r.patient[index])
    site = site_profile(cfg.seed, int(r.site[index]), float(cfg.confound))
    true_label = CLASSES[int(r.true_label[index])]
    label = CLASSES[int(r.label[index])]
    anat, lesions, pattern = _patient(cfg.seed, patient, true_label)

    irng = np.random.default_rng([cfg.seed, TAG_IMAGE, index])
    pose = Pose(tx=float(irng.normal(0, 0.012)), ty=float(irng.normal(0, 0.01)),
                scale=float(np.clip(irng.normal(1.0, 0.03), 0.92, 1.08)),
                tilt=float(np.clip(irng.normal(0, 0.02), -0.05, 0.05)))
    anat = anat.with_inspiration(float(np.clip(irng.normal(0, 0.008), -0.02, 0.02)))
    frame = Frame(cfg.image_size, pose)
    layers = render_thorax(anat, frame, Frame(cfg.image_size, pose, step=2))
    density = layers.density
    lesion_mask = render_lesions(list(lesions), anat, frame, density, layers.air,
                                 gain=float(irng.uniform(0.88, 1.12)))
    opacity, boxes = _components(lesion_mask & layers.lung_mask, cfg.image_size)

    image = expose(density, site, irng)
    marks = overlay(image, site, irng, label if r.marker[index] else None)
    meta = {
        "image_id": image_id(index),
        "index": index,
        "patient_index": patient,
        "shot": int(r.shot[index]),
        "site": site.name,
        "label": label,
        "true_label": true_label,
        "pattern": pattern,
        # `lung` is the patient's side: the image-left lung is the patient's right.
        "lesions": [{"kind": les.kind, "lung": "right" if les.side < 0 else "left"} for les in lesions],
        "pose": {"tx": pose.tx, "ty": pose.ty, "scale": pose.scale, "tilt": pose.tilt},
        "marker_drawn": marks["marker_class"] is not None,
        **marks,
    }
    return SynthCase(image=image.astype(np.float32, copy=False), lung_mask=layers.lung_mask,
                     opacity_mask=opacity, boxes=boxes, meta=meta)


@lru_cache(maxsize=256)
def _patient(seed: int, patient: int, true_label: str) -> tuple[Anatomy, tuple[Lesion, ...], str]:
    """What every image of a patient shares (cached: a patient's images are usually drawn together)."""
    prng = np.random.default_rng([seed, TAG_PATIENT, patient])
    anat = sample_anatomy(prng)
    anat.vessels.setflags(write=False)
    lesions, pattern = sample_lesions(true_label, prng)
    return anat, tuple(lesions), pattern


def _components(mask: np.ndarray, size: int) -> tuple[np.ndarray, list[list[float]]]:
    """Drop specks; one box [x1, y1, x2, y2] (pixel edges) per remaining connected opacity."""
    rows_any = np.flatnonzero(mask.any(axis=1))
    if rows_any.size == 0:
        return mask, []
    cols_any = np.flatnonzero(mask.any(axis=0))
    r0, c0 = int(rows_any[0]), int(cols_any[0])
    crop = (slice(r0, int(rows_any[-1]) + 1), slice(c0, int(cols_any[-1]) + 1))
    lab, n = ndimage.label(mask[crop])
    counts = np.bincount(lab.ravel(), minlength=n + 1)
    big = counts >= max(MIN_COMPONENT * size * size, 4)
    big[0] = False
    out = np.zeros_like(mask)
    out[crop] = big[lab]
    boxes = []
    for k, sl in enumerate(ndimage.find_objects(lab), start=1):
        if sl is not None and big[k]:
            boxes.append([float(sl[1].start + c0), float(sl[0].start + r0),
                          float(sl[1].stop + c0), float(sl[0].stop + r0)])
    return out, boxes


def write_synth(cfg: SynthConfig, out_dir: Path, *, workers: int = 1) -> Path:
    """Write images, masks and manifest.csv under out_dir; returns the manifest's path.

    The manifest is written last, under a temporary name then renamed, so a folder that has one is
    complete. `workers` > 1 renders in that many processes (the output is identical).
    """
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "masks").mkdir(parents=True, exist_ok=True)
    table = synth_table(cfg)
    indices = table["index"].tolist()
    if workers > 1:
        # Contiguous blocks keep a patient's images in one process (they share its anatomy).
        step = -(-len(indices) // workers)
        chunks = [indices[k:k + step] for k in range(0, len(indices), step)]
        workers = len(chunks)
        with ProcessPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(_write_many, [cfg] * workers, [out_dir] * workers, chunks))
        boxes = dict(kv for part in parts for kv in part)
    else:
        boxes = dict(_write_many(cfg, out_dir, indices))
    ids = table["image_id"]
    manifest = pd.DataFrame({
        "path": "images/" + ids + ".png",
        "label": table["label"],
        "patient_id": table["patient_id"],
        "study_id": table["study_id"],
        "site": table["site"],
        "view": table["view"],
        "lung_mask": "masks/" + ids + "_lung.png",
        "boxes": [boxes[i] for i in indices],
        "split": table["split"],
        "image_id": ids,
        "true_label": table["true_label"],
        "opacity_mask": "masks/" + ids + "_opacity.png",
        "has_marker": table["has_marker"],
    })
    (out_dir / "synth_config.json").write_text(json.dumps(
        {"config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}, "key": cfg.key(),
         "generator_version": GENERATOR_VERSION}, indent=2))
    path = out_dir / "manifest.csv"
    with atomic_path(path) as tmp:
        manifest.to_csv(tmp, index=False)
    return path


def _write_many(cfg: SynthConfig, out_dir: Path, indices: list[int]) -> list[tuple[int, str]]:
    out = []
    for i in indices:
        case = render_case(cfg, i)
        name = case.meta["image_id"]
        pixels = np.round(case.image * 65535.0).astype(np.uint16)
        Image.fromarray(pixels).save(out_dir / "images" / f"{name}.png", compress_level=4)
        for kind, m in (("lung", case.lung_mask), ("opacity", case.opacity_mask)):
            Image.fromarray(m.astype(np.uint8) * 255).save(out_dir / "masks" / f"{name}_{kind}.png")
        out.append((i, json.dumps(case.boxes)))
    return out
