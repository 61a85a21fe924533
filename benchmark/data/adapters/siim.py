"""`siim:PATH`: the SIIM-FISABIO-RSNA COVID-19 Detection (Kaggle) layout.

    PATH/train_study_level.csv   id = <StudyInstanceUID>_study, one-hot appearance columns
    PATH/train_image_level.csv   id = <SOPInstanceUID>_image, boxes, label, StudyInstanceUID
    PATH/train/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm

Labels are per study, so every image takes its study's label and `study_id` is the study: the
subtype suite then also scores at study level (image probabilities averaged per study), the
competition's unit. Patient, site/scanner and view come from each DICOM header (read without
pixels); boxes from `boxes` ({x, y, width, height} -> [x1, y1, x2, y2]), or from `label` when
`boxes` is empty.
"""
from __future__ import annotations

import ast
import json
import math
from pathlib import Path

from benchmark.data.adapters._common import (
    SkipLog,
    adapter_root,
    build_dataset,
    dicom_headers,
    find_files,
    read_table,
    relpath,
    site_and_scanner,
)
from benchmark.data.dataset import Dataset
from benchmark.core.errors import DataError
from benchmark.core.labels import canonical_class

STUDY_CSV = "train_study_level.csv"
IMAGE_CSV = "train_image_level.csv"
IMAGES_DIR = "train"
ONE_HOT = ("Negative for Pneumonia", "Typical Appearance", "Indeterminate Appearance", "Atypical Appearance")


def siim_dataset(arg: str | None = None) -> Dataset:
    root = adapter_root(arg, "siim")
    study_labels = _study_labels(root / STUDY_CSV)
    image_rows = read_table(root / IMAGE_CSV, required=("id", "boxes", "label", "StudyInstanceUID"))
    if not (root / IMAGES_DIR).is_dir():
        raise DataError(f"folder {IMAGES_DIR}/ with the DICOM files is missing", where=str(root))
    log = SkipLog("siim", root)

    files: dict[str, Path] = {}
    for p in find_files(root / IMAGES_DIR, (".dcm", ".dicom")):
        files.setdefault(p.stem, p)
    listed: dict[str, tuple[str, list[list[float]]]] = {}
    where = str(root / IMAGE_CSV)
    for k, rec in enumerate(image_rows.itertuples(index=False)):
        line = k + 2
        sop = str(rec.id).strip().removesuffix("_image")
        if not sop:
            raise DataError(f"row {line}: column 'id' is empty", where=where)
        if sop in listed:
            raise DataError(f"row {line}: image {sop!r} is listed twice", where=where)
        listed[sop] = (str(rec.StudyInstanceUID).strip(), _boxes(rec.boxes, rec.label, line=line, where=where))

    usable: list[tuple[str, str, Path, list[list[float]]]] = []  # (sop, study, file, boxes)
    studies_with_rows: set[str] = set()
    for sop, (study, boxes) in listed.items():
        studies_with_rows.add(study)
        if sop not in files:
            log.skip("label with no image", f"{sop}_image", f"no {sop}.dcm under {IMAGES_DIR}/")
        elif study not in study_labels:
            log.skip("image with no study label", relpath(files[sop], root), f"study {study} not in {STUDY_CSV}")
        else:
            usable.append((sop, study, files[sop], boxes))
    for sop, p in files.items():
        if sop not in listed:
            log.skip("image with no label", relpath(p, root), f"not in {IMAGE_CSV}")
    for study in study_labels:
        if study not in studies_with_rows:
            log.skip("study with no image", f"{study}_study", f"no row in {IMAGE_CSV}")

    rows = []
    headers = dicom_headers([u[2] for u in usable], root)
    for (sop, study, path, boxes), tags in zip(usable, headers):
        if isinstance(tags, str):
            log.skip("unreadable DICOM", relpath(path, root), tags)
            continue
        site, scanner = site_and_scanner(tags)
        label, column = study_labels[study]
        rows.append({
            "image_id": sop, "path": relpath(path, root), "label": label,
            # A study belongs to one patient, so it is the unit when the header has no PatientID.
            "patient_id": tags.get("PatientID") or study, "study_id": study, "site": site,
            "scanner": scanner, "view": tags.get("ViewPosition") or None, "boxes": json.dumps(boxes),
            "source_label": column,
        })
    log.report(kept=len(rows))
    return build_dataset("siim", rows, root, description=(
        f"SIIM-FISABIO-RSNA COVID-19 at {root}: study labels on every image of the study; study_id = "
        "StudyInstanceUID (study-level scores); patient and site/scanner from the DICOM headers"))


def _study_labels(path: Path) -> dict[str, tuple[str, str]]:
    """StudyInstanceUID -> (canonical label, the Kaggle column it came from)."""
    table = read_table(path, required=("id", *ONE_HOT))
    out: dict[str, tuple[str, str]] = {}
    for k, rec in enumerate(table.to_dict("records")):
        line = k + 2
        study = str(rec["id"]).strip().removesuffix("_study")
        flags = []
        for col in ONE_HOT:
            value = str(rec[col]).strip()
            if value in ("1", "1.0", "True", "true"):
                flags.append(col)
            elif value not in ("0", "0.0", "False", "false"):
                raise DataError(f"row {line}: column {col!r} must be 0 or 1, got {value!r}", where=str(path))
        if len(flags) != 1:
            raise DataError(f"row {line}: study {study!r} has {len(flags)} appearance columns set "
                            "(expected exactly one)", where=str(path))
        if study in out:
            raise DataError(f"row {line}: study {study!r} is listed twice", where=str(path))
        out[study] = (canonical_class(flags[0]), flags[0])
    return out


def _boxes(boxes: str, label: str, *, line: int, where: str) -> list[list[float]]:
    """[[x1, y1, x2, y2], ...] from `boxes` (dicts), else from `label` ("opacity 1 x1 y1 x2 y2 ...")."""
    text = str(boxes).strip()
    if text and text.lower() not in ("nan", "none", "[]"):
        try:
            items = ast.literal_eval(text)
            out = [[float(b["x"]), float(b["y"]), float(b["x"]) + float(b["width"]),
                    float(b["y"]) + float(b["height"])] for b in items]
        except (ValueError, SyntaxError, TypeError, KeyError):
            raise DataError(f"row {line}: column 'boxes' is not a list of {{x, y, width, height}}: "
                            f"{text[:80]!r}", where=where) from None
        if not all(math.isfinite(v) for b in out for v in b):
            raise DataError(f"row {line}: column 'boxes' has a non-finite coordinate", where=where)
        return out
    tokens = str(label).split()
    if len(tokens) % 6:
        raise DataError(f"row {line}: column 'label' is not groups of 'name confidence x1 y1 x2 y2': "
                        f"{str(label)[:80]!r}", where=where)
    out = []
    for k in range(0, len(tokens), 6):
        if tokens[k].lower() == "opacity":
            try:
                out.append([float(v) for v in tokens[k + 2:k + 6]])
            except ValueError:
                raise DataError(f"row {line}: column 'label' has a non-numeric box: {str(label)[:80]!r}",
                                where=where) from None
    return out
