"""`covidx:PATH`: COVIDx CXR label files and their image folders.

    PATH/{train,val,test}.txt (or train_split.txt, test_COVIDx9A.txt, ...)
        one image per line: patient_id filename class [source]
    PATH/{train,val,test}/<filename>   (or PATH/data/{train,test}/)

COVIDx has no appearance subtypes, only COVID-19 status (and, in the three-class releases, other
pneumonia). Its classes are placed on the canonical label space so that the coarse tasks answer what
COVIDx can: COVID-19 / positive -> typical, (non-COVID) pneumonia -> atypical, normal / negative ->
negative. Then `covid_typical` (typical vs rest) is the COVID-positive vs negative task, and in the
three-class files `pneumonia` (typical+indeterminate+atypical vs negative) is pneumonia vs normal.
The original class is kept in `source_label`. PATH may also be one label file.
"""
from __future__ import annotations

import re
from pathlib import Path

from benchmark.data.adapters._common import SkipLog, adapter_root, build_dataset, find_files, relpath
from benchmark.data.dataset import Dataset
from benchmark.core.errors import DataError

CLASS_MAP = {
    "covid-19": "typical", "covid19": "typical", "covid": "typical", "positive": "typical",
    "pneumonia": "atypical",
    "normal": "negative", "negative": "negative",
}
SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_LABEL_FILE = re.compile(r"^(train|val|valid|validation|test)(?:[_-].*)?\.txt$", re.IGNORECASE)


def covidx_dataset(arg: str | None = None) -> Dataset:
    path = adapter_root(arg, "covidx", files_ok=True)
    root = path.parent if path.is_file() else path
    label_files = {_split_of(path): path} if path.is_file() else _label_files(root)
    log = SkipLog("covidx", root)
    rows: list[dict] = []
    for split, file in sorted(label_files.items(), key=lambda kv: SPLITS.index(kv[0])):
        folder = _image_folder(root, split)
        listed: set[str] = set()
        for line_no, (pid, filename, cls, source) in _parse(file):
            listed.add(filename)
            image = folder / filename
            if not image.is_file():
                log.skip("label with no image", f"{split}/{filename}", f"{file.name} line {line_no}")
                continue
            rows.append({
                "image_id": f"{split}/{Path(filename).with_suffix('').as_posix()}",
                "path": relpath(image, root), "label": CLASS_MAP[cls.lower()],
                # Patient ids are only unique within a source collection.
                "patient_id": f"{source}:{pid}" if source else pid,
                "site": source or None, "split": split, "source_label": cls,
            })
        for image in find_files(folder, IMAGE_SUFFIXES):
            name = relpath(image, folder)
            if name not in listed:
                log.skip("image with no label", f"{split}/{name}", f"not in {file.name}")
    log.report(kept=len(rows))
    return build_dataset("covidx", rows, root, description=(
        f"COVIDx CXR at {root}: COVID-19/positive -> typical, pneumonia -> atypical, normal/negative -> "
        "negative; score it with subtype's covid_typical_* (COVID-positive vs negative); site = source"))


def _label_files(root: Path) -> dict[str, Path]:
    found: dict[str, list[Path]] = {}
    for p in sorted(root.iterdir()):
        m = _LABEL_FILE.match(p.name)
        if m and p.is_file():
            found.setdefault(_split_of(p), []).append(p)
    if not found:
        raise DataError("no COVIDx label file (train.txt, val.txt, test.txt or train_split.txt ...)",
                        where=str(root))
    several = {s: ps for s, ps in found.items() if len(ps) > 1}
    if several:
        split, ps = next(iter(several.items()))
        raise DataError(f"several label files for split {split!r}: {', '.join(p.name for p in ps)}; "
                        f"pass one as --data covidx:{ps[0]}", where=str(root))
    return {s: ps[0] for s, ps in found.items()}


def _split_of(path: Path) -> str:
    m = _LABEL_FILE.match(path.name)
    if not m:
        raise DataError("a COVIDx label file is named train*.txt, val*.txt or test*.txt", where=str(path))
    head = m.group(1).lower()
    return "val" if head.startswith("val") else head


def _image_folder(root: Path, split: str) -> Path:
    for folder in (root / split, root / "data" / split):
        if folder.is_dir():
            return folder
    raise DataError(f"image folder {split}/ for {split} labels not found", where=str(root))


def _parse(file: Path):
    """(line number, patient id, filename, class, source) per line; filenames may contain spaces."""
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read label file ({exc})", where=str(file)) from exc
    seen: dict[str, int] = {}
    for k, line in enumerate(lines, start=1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) >= 4 and tokens[-2].lower() in CLASS_MAP:
            cls, source, name = tokens[-2], tokens[-1], tokens[1:-2]
        elif len(tokens) >= 3 and tokens[-1].lower() in CLASS_MAP:
            cls, source, name = tokens[-1], "", tokens[1:-1]
        else:
            raise DataError(f"line {k}: expected 'patient_id filename class [source]' with class one of "
                            f"{', '.join(sorted(CLASS_MAP))}, got {line[:100]!r}", where=str(file))
        filename = " ".join(name)
        if filename in seen:
            raise DataError(f"line {k}: {filename!r} is listed twice (first on line {seen[filename]})",
                            where=str(file))
        seen[filename] = k
        yield k, (tokens[0], filename, cls, source)
