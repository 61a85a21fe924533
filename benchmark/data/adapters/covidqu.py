"""`covidqu:PATH`: the COVID-QU-Ex folders (Kaggle download, with or without the doubled folder).

    Lung Segmentation Data/{Train,Val,Test}/{COVID-19,Non-COVID,Normal}/{images,lung masks}/
    Infection Segmentation Data/{Train,Val,Test}/{COVID-19,Non-COVID,Normal}/
        {images,lung masks,infection masks}/

PATH may be the dataset root (the lung segmentation set is used, the larger one) or either set's
folder (`covidqu:/data/Infection Segmentation Data` for lesions). Lung masks become `lung_mask`
(for the shortcut suite); infection masks become `lesion_mask` and, one box per connected region,
`boxes`. Classes: COVID-19 -> typical, Non-COVID (other pneumonia and infections) -> atypical,
Normal -> negative, as for COVIDx. There are no patient ids: each image is its own patient.
"""
from __future__ import annotations

import json
from pathlib import Path

from benchmark.data.adapters._common import (
    SkipLog,
    adapter_root,
    build_dataset,
    find_files,
    mask_boxes_cached,
    relpath,
)
from benchmark.data.dataset import Dataset
from benchmark.core.errors import DataError

CLASS_MAP = {"covid-19": "typical", "non-covid": "atypical", "normal": "negative"}
SPLITS = {"train": "train", "val": "val", "test": "test"}
SETS = ("Lung Segmentation Data", "Infection Segmentation Data")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def covidqu_dataset(arg: str | None = None) -> Dataset:
    set_dir = _set_folder(adapter_root(arg, "covidqu"))
    infection = "infection" in set_dir.name.lower()
    log = SkipLog("covidqu", set_dir)
    rows: list[dict] = []
    for split_dir in sorted(p for p in set_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        split = SPLITS.get(split_dir.name.lower())
        if split is None:
            raise DataError(f"unexpected folder {split_dir.name!r} (expected Train, Val, Test)", where=str(set_dir))
        for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            label = CLASS_MAP.get(class_dir.name.lower())
            if label is None:
                raise DataError(f"unexpected class folder {class_dir.name!r} (expected "
                                "COVID-19, Non-COVID, Normal)", where=str(split_dir))
            rows.extend(_class_rows(set_dir, class_dir, split, label, infection, log))
    if infection:
        with_lesions = [r for r in rows if r.get("lesion_mask")]
        found = mask_boxes_cached([set_dir / r["lesion_mask"] for r in with_lesions], set_dir)
        for row, boxes in zip(with_lesions, found):
            if isinstance(boxes, str):
                log.note("unreadable infection mask (no boxes)", row["lesion_mask"], boxes)
                row["lesion_mask"] = None
            else:
                row["boxes"] = json.dumps(boxes)
    log.report(kept=len(rows))
    return build_dataset("covidqu", rows, set_dir, description=(
        f"COVID-QU-Ex ({set_dir.name}) at {set_dir}: COVID-19 -> typical, Non-COVID -> atypical, Normal -> "
        "negative; lung masks" + ("; infection masks as lesion_mask and boxes" if infection else "")))


def _set_folder(root: Path) -> Path:
    """The folder that holds Train/Val/Test, under the dataset root or given directly."""
    if any((root / s).is_dir() for s in ("Train", "train")):
        return root
    for name in SETS:
        for candidate in (root / name / name, root / name):
            if candidate.is_dir() and any((candidate / s).is_dir() for s in ("Train", "train")):
                return candidate
    raise DataError(f"no COVID-QU-Ex set here (expected '{SETS[0]}/Train/...' or a folder with Train/)",
                    where=str(root))


def _class_rows(set_dir: Path, class_dir: Path, split: str, label: str, infection: bool,
                log: SkipLog) -> list[dict]:
    images_dir = _sub(class_dir, "images")
    if images_dir is None:
        raise DataError("folder images/ is missing", where=str(class_dir))
    images = {p.name: p for p in find_files(images_dir, IMAGE_SUFFIXES)}
    lung = _masks(class_dir, "lung masks")
    lesion = _masks(class_dir, "infection masks") if infection else {}
    for kind, masks in (("lung mask", lung), ("infection mask", lesion)):
        for name, p in masks.items():
            if name not in images:
                log.skip(f"{kind} with no image", relpath(p, set_dir))
    rows = []
    for name, p in images.items():
        rel = relpath(p, set_dir)
        row = {"image_id": f"{split}/{class_dir.name}/{Path(name).stem}", "path": rel, "label": label,
               "split": split, "source_label": class_dir.name, "lung_mask": None}
        if name in lung:
            row["lung_mask"] = relpath(lung[name], set_dir)
        else:
            log.note("image with no lung mask", rel)
        if infection:
            if name in lesion:
                row["lesion_mask"] = relpath(lesion[name], set_dir)
            else:
                # Lesions unknown, not absent: the row gets no boxes rather than an empty list.
                log.note("image with no infection mask", rel)
        rows.append(row)
    return rows


def _sub(folder: Path, name: str) -> Path | None:
    for p in folder.iterdir():
        if p.is_dir() and p.name.lower() == name:
            return p
    return None


def _masks(class_dir: Path, name: str) -> dict[str, Path]:
    folder = _sub(class_dir, name)
    return {p.name: p for p in find_files(folder, IMAGE_SUFFIXES)} if folder else {}
