"""`bimcv:PATH`: BIMCV-COVID19+ in its BIDS-like (MIDS) layout.

    PATH/participants.tsv                                  participant, age, gender, ...
    PATH/sub-<S>/sub-<S>_sessions.tsv                      session_id, study_date, ...
    PATH/sub-<S>/ses-<E>/mod-rx/sub-<S>_ses-<E>_..._vp-<pa|ap|ll>_<cr|dx>.png (+ .json sidecar)
    PATH/derivatives/labels/labels_covid_posi.tsv          ReportID (= session), Labels, ...

Every subject is COVID-19 positive, so the appearance has to come from the radiology report's
labels (UMLS terms mined from the Spanish reports), mapped as far as they allow:
'COVID 19' -> typical, 'COVID 19 uncertain' -> indeterminate, other pneumonia-type findings
(pneumonia, consolidation, ground glass, infiltrates, interstitial or alveolar pattern) without a
COVID term -> atypical, 'normal' alone -> negative. Sessions whose labels say none of these
(other findings only, or 'exclude') are skipped and listed, as are lateral views (vp-ll).
patient_id = subject, study_id = session, view from vp-, site/scanner from the JSON sidecar when it
carries InstitutionName / Manufacturer.
"""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from benchmark.data.adapters._common import (
    SkipLog,
    adapter_root,
    build_dataset,
    find_files,
    read_table,
    relpath,
    site_and_scanner,
)
from benchmark.data.dataset import Dataset
from benchmark.core.errors import DataError

COVID = {"covid 19"}
COVID_UNCERTAIN = {"covid 19 uncertain"}
PNEUMONIA = {"pneumonia", "viral pneumonia", "atypical pneumonia", "bacterial pneumonia", "consolidation",
             "ground glass pattern", "infiltrates", "interstitial pattern", "alveolar pattern",
             "reticular interstitial pattern", "reticulonodular interstitial pattern", "air bronchogram"}
NORMAL = {"normal"}
SIDECAR_TAGS = {"00080080": "InstitutionName", "00080070": "Manufacturer", "00081090": "ManufacturerModelName"}
_NAME = re.compile(r"^(sub-[^_/]+)_(ses-[^_/]+)(?:_|$)", re.IGNORECASE)
_VIEW = re.compile(r"(?:^|_)vp-([a-z]+)(?:_|$)", re.IGNORECASE)


def label_from_report(terms: list[str]) -> str | None:
    """The canonical class the report's labels support, or None when they support none."""
    folded = {" ".join(t.lower().split()) for t in terms}
    if folded & COVID:
        return "typical"
    if folded & COVID_UNCERTAIN:
        return "indeterminate"
    if folded & PNEUMONIA:
        return "atypical"
    if folded and folded <= NORMAL:
        return "negative"
    return None


def bimcv_dataset(arg: str | None = None) -> Dataset:
    root = _data_root(adapter_root(arg, "bimcv"))
    reports = _report_labels(root)
    demographics = _participants(root / "participants.tsv")
    log = SkipLog("bimcv", root)
    rows: list[dict] = []
    sessions_seen: set[str] = set()
    for image in find_files(root, (".png",)):
        rel = relpath(image, root)
        parts = image.relative_to(root).parts
        if parts[0] == "derivatives" or "mod-rx" not in parts:
            continue
        subject, session, view = _entities(image)
        if subject is None:
            log.skip("unrecognised file name", rel, "expected sub-<S>_ses-<E>_..._vp-<view>_<cr|dx>.png")
            continue
        sessions_seen.add(session)
        if view == "LL":
            log.skip("lateral view", rel)
            continue
        terms = reports.get(session)
        if terms is None:
            log.skip("image with no label", rel, f"session {session} not in the labels file")
            continue
        label = label_from_report(terms)
        if label is None:
            log.skip("no appearance in the report labels", rel, "; ".join(terms))
            continue
        site, scanner = site_and_scanner(_sidecar_tags(image.with_suffix(".json")))
        rows.append({"image_id": image.stem, "path": rel, "label": label, "patient_id": subject,
                     "study_id": session, "view": view, "site": site, "scanner": scanner,
                     "source_label": "; ".join(terms), **demographics.get(subject, {})})
    for session in sorted(set(reports) - sessions_seen):
        log.skip("label with no radiograph", session, "no mod-rx image for this session (CT-only sessions land here)")
    log.report(kept=len(rows))
    return build_dataset("bimcv", rows, root, description=(
        f"BIMCV-COVID19+ at {root}: labels from report terms (COVID 19 -> typical, COVID 19 uncertain -> "
        "indeterminate, other pneumonia findings -> atypical, normal -> negative); frontal views only"))


def _data_root(path: Path) -> Path:
    """The folder with the sub-* folders (the archive unpacks into covid19_posi/)."""
    if any(p.name.startswith("sub-") for p in path.iterdir()):
        return path
    for inner in sorted(path.iterdir()):
        if inner.is_dir() and any(p.name.startswith("sub-") for p in inner.iterdir()):
            return inner
    raise DataError("no sub-* subject folders here (expected the BIMCV-COVID19+ MIDS layout)", where=str(path))


def _report_labels(root: Path) -> dict[str, list[str]]:
    """session id -> report label terms, from derivatives/labels/*.tsv."""
    folder = root / "derivatives" / "labels"
    files = sorted(folder.glob("*abels*.tsv")) if folder.is_dir() else []
    if not files:
        raise DataError("no labels file (expected derivatives/labels/labels_covid_posi.tsv)", where=str(root))
    table = read_table(files[0], required=("ReportID", "Labels"), sep="\t")
    out: dict[str, list[str]] = {}
    for k, rec in enumerate(table.itertuples(index=False)):
        session = str(rec.ReportID).strip()
        if not session:
            raise DataError(f"row {k + 2}: column 'ReportID' is empty", where=str(files[0]))
        session = session if session.startswith("ses-") else f"ses-{session}"
        out[session] = _terms(str(rec.Labels), line=k + 2, where=str(files[0]))
    return out


def _terms(text: str, *, line: int, where: str) -> list[str]:
    text = text.strip()
    if not text:
        return []
    if text.startswith("["):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise DataError(f"row {line}: column 'Labels' is not a list of terms: {text[:80]!r}",
                            where=where) from None
        return [str(v).strip() for v in value if str(v).strip()]
    return [t.strip() for t in text.split(",") if t.strip()]


def _participants(path: Path) -> dict[str, dict[str, str]]:
    """Subject -> sex and age (groupings for the cross-site suite) when participants.tsv has them."""
    if not path.is_file():
        return {}
    table = read_table(path, required=("participant",), sep="\t")
    out = {}
    for rec in table.to_dict("records"):
        extra = {}
        if rec.get("gender", "") not in ("", "None"):
            extra["sex"] = rec["gender"]
        age = re.findall(r"\d+(?:\.\d+)?", str(rec.get("age", "")))
        if age:
            extra["age"] = age[0]
        out[str(rec["participant"]).strip()] = extra
    return out


def _entities(image: Path) -> tuple[str | None, str | None, str | None]:
    """(subject, session, view) from a BIDS-style name such as sub-S1_ses-E1_run-1_bp-chest_vp-pa_cr."""
    m = _NAME.match(image.stem)
    if not m:
        return None, None, None
    view = _VIEW.search(image.stem)
    return m.group(1), m.group(2), view.group(1).upper() if view else None


def _sidecar_tags(path: Path) -> dict[str, str]:
    """InstitutionName / Manufacturer / ManufacturerModelName from a DICOM-JSON sidecar."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    out = {}
    for tag, name in SIDECAR_TAGS.items():
        element = data.get(tag) if isinstance(data, dict) else None
        value = element.get("Value") if isinstance(element, dict) else None
        if isinstance(value, list) and value:
            out[name] = " ".join(str(value[0]).split())
    return out
