"""`ricord:PATH`: MIDRC-RICORD-1c chest radiographs with their four appearance labels.

    PATH/<PatientID>/<study folder>/<series folder>/*.dcm      (the TCIA download)
    PATH/*.json     the MD.ai annotation export (labelGroups + datasets[].annotations[])
      or PATH/*.csv with StudyInstanceUID and label (one row per reader, or one per study)

Labels are per study. When several readers labelled a study, the majority wins (each reader's
last appearance label counts once) and the vote is kept in `label_votes`; a study without a
majority is skipped and listed. Patient, study, view and site/scanner come from the DICOM headers
(read without pixels). Labels other than the four appearances (e.g. airspace disease grading) are
not used.
"""
from __future__ import annotations

import json
from collections import Counter
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
from benchmark.core.labels import CLASSES, canonical_class


def ricord_dataset(arg: str | None = None) -> Dataset:
    root = adapter_root(arg, "ricord")
    votes = _votes(root)
    log = SkipLog("ricord", root)
    decided: dict[str, tuple[str, str]] = {}
    for study, by_reader in votes.items():
        counts = Counter(by_reader.values())
        (top, n), *rest = counts.most_common() or [(None, 0)]
        tally = ", ".join(f"{c}:{counts[c]}" for c in CLASSES if counts[c])
        if rest and rest[0][1] == n:
            log.skip("no majority among readers", study, tally)
            continue
        decided[study] = (top, tally)

    paths = find_files(root, (".dcm", ".dicom"))
    rows: list[dict] = []
    studies_with_images: set[str] = set()
    for path, tags in zip(paths, dicom_headers(paths, root)):
        rel = relpath(path, root)
        if isinstance(tags, str):
            log.skip("unreadable DICOM", rel, tags)
            continue
        study = tags.get("StudyInstanceUID", "")
        studies_with_images.add(study)
        if study not in decided:
            if study not in votes:
                log.skip("image with no label", rel, f"study {study or '(none)'} has no appearance label")
            continue  # a study without majority is already listed
        label, tally = decided[study]
        site, scanner = site_and_scanner(tags)
        rows.append({"image_id": tags.get("SOPInstanceUID") or Path(rel).with_suffix("").as_posix(),
                     "path": rel, "label": label, "patient_id": tags.get("PatientID") or study,
                     "study_id": study, "site": site, "scanner": scanner,
                     "view": tags.get("ViewPosition") or None, "label_votes": tally})
    for study in sorted(set(votes) - studies_with_images):
        log.skip("label with no image", study, "no DICOM of this study under the folder")
    log.report(kept=len(rows))
    return build_dataset("ricord", rows, root, description=(
        f"MIDRC-RICORD-1c at {root}: study-level appearance labels (reader majority), study_id = "
        "StudyInstanceUID; patient and site/scanner from the DICOM headers"))


def _votes(root: Path) -> dict[str, dict[str, str]]:
    """StudyInstanceUID -> {reader: canonical class}, from the MD.ai export or a label CSV."""
    exports = [p for p in sorted(root.glob("*.json")) if _is_mdai(p)]
    tables = [p for p in sorted(root.glob("*.csv"))]
    if exports:
        return _mdai_votes(exports[0])
    if tables:
        return _csv_votes(tables[0])
    raise DataError("no label file: expected the MD.ai annotation export (*.json with labelGroups) or a CSV "
                    "with StudyInstanceUID and label", where=str(root))


def _is_mdai(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(1 << 16)
    except OSError:
        return False
    return b'"labelGroups"' in head or b'"datasets"' in head


def _mdai_votes(path: Path) -> dict[str, dict[str, str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        groups = data["labelGroups"]
        datasets = data["datasets"]
    except (OSError, ValueError) as exc:
        raise DataError(f"not a readable MD.ai export ({exc})", where=str(path)) from exc
    except (KeyError, TypeError):
        raise DataError("an MD.ai export needs 'labelGroups' and 'datasets'", where=str(path)) from None
    names = {lab.get("id"): lab.get("name") for g in groups for lab in g.get("labels", [])}
    votes: dict[str, dict[str, tuple[str, str]]] = {}
    for ds in datasets:
        for k, ann in enumerate(ds.get("annotations", [])):
            cls = canonical_class(names.get(ann.get("labelId")))
            if cls is None:
                continue  # other label groups (airspace disease grading, ...)
            study = ann.get("StudyInstanceUID")
            if not study:
                raise DataError(f"annotation {ann.get('id', k)!r} has no StudyInstanceUID", where=str(path))
            reader = str(ann.get("createdById") or ann.get("id") or k)
            when = str(ann.get("updatedAt") or ann.get("createdAt") or "")
            previous = votes.setdefault(study, {}).get(reader)
            if previous is None or when >= previous[1]:
                votes[study][reader] = (cls, when)
    return {s: {r: v[0] for r, v in by.items()} for s, by in votes.items()}


def _csv_votes(path: Path) -> dict[str, dict[str, str]]:
    table = read_table(path, required=("StudyInstanceUID", "label"))
    votes: dict[str, dict[str, str]] = {}
    for k, rec in enumerate(table.to_dict("records")):
        cls = canonical_class(rec["label"])
        if cls is None:
            raise DataError(f"row {k + 2}: unknown label {rec['label']!r} (expected one of "
                            f"{', '.join(CLASSES)} or an alias)", where=str(path))
        reader = str(rec.get("reader", "") or f"row{k}")
        votes.setdefault(str(rec["StudyInstanceUID"]).strip(), {})[reader] = cls
    return votes
