"""What every adapter shares: finding its folder, reading label tables, the skipped-rows report,
cached DICOM header reads, the site/scanner grouping, and turning rows into a Dataset.

Nothing is dropped silently. A row or file an adapter cannot use is recorded with its reason; the
adapter then warns once (DataWarning) with the counts per reason and the path of a CSV that lists
every skipped name. A layout so broken that nothing sensible can be built (a missing label file or
column, a malformed value, no usable image at all) is a DataError naming the file and row.
"""
from __future__ import annotations

import hashlib
import json
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from benchmark.data.adapters import DataWarning
from benchmark.data.dataset import Dataset, FileSource
from benchmark.data.manifest import Manifest, table_sha256, validate_table
from benchmark.core.errors import DataError
from benchmark.core.files import atomic_path, atomic_write_text


def adapter_root(arg: str | None, adapter: str, *, files_ok: bool = False) -> Path:
    """The folder (or, where allowed, file) named by `NAME:PATH`."""
    if not arg:
        raise DataError(f"needs a path: --data {adapter}:/path/to/{adapter}", where=f"--data {adapter}")
    path = Path(arg).expanduser()
    if not path.exists():
        raise DataError("no such folder", where=str(path))
    if not path.is_dir() and not (files_ok and path.is_file()):
        raise DataError(f"not a folder (the {adapter} adapter reads a dataset folder)", where=str(path))
    return path.resolve()


def read_table(path: Path, *, required: Sequence[str], sep: str = ",") -> pd.DataFrame:
    """A label table read as strings; a missing file or column is a DataError naming both."""
    if not path.is_file():
        raise DataError("label file not found", where=str(path))
    try:
        table = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"not a readable table ({str(exc).splitlines()[0]})", where=str(path)) from exc
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise DataError(f"required column {missing[0]!r} is missing (columns found: "
                        f"{', '.join(table.columns)})", where=str(path))
    return table


@dataclass
class SkipLog:
    """Skipped (and kept-with-a-caveat) names, with reasons, for one adapter run."""

    adapter: str
    root: Path
    rows: list[tuple[str, str, str]] = field(default_factory=list)  # (reason, name, detail)
    kept_notes: list[tuple[str, str, str]] = field(default_factory=list)

    def skip(self, reason: str, name: str, detail: str = "") -> None:
        self.rows.append((reason, name, detail))

    def note(self, reason: str, name: str, detail: str = "") -> None:
        """A row that is kept but lacks something (e.g. a lung mask)."""
        self.kept_notes.append((reason, name, detail))

    def report(self, *, kept: int, unit: str = "images") -> Path | None:
        """Write the list and warn with counts; an error when nothing is left."""
        entries = [(r, n, d, "skipped") for r, n, d in self.rows] + \
                  [(r, n, d, "kept") for r, n, d in self.kept_notes]
        if not entries and kept > 0:
            return None
        path = _report_path(self.adapter, self.root)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            pd.DataFrame(entries, columns=["reason", "name", "detail", "outcome"]).to_csv(tmp, index=False)
        parts = []
        if self.rows:
            counts = Counter(r for r, _, _ in self.rows)
            parts.append(f"skipped {len(self.rows)} ({_counts(counts)})")
        if self.kept_notes:
            parts.append(f"kept {len(self.kept_notes)} with a caveat ({_counts(Counter(r for r, _, _ in self.kept_notes))})")
        message = f"{self.adapter} at {self.root}: {kept} {unit} usable; {'; '.join(parts)}; names listed in {path}"
        if kept == 0:
            raise DataError(f"no usable {unit}: {'; '.join(parts)}; names listed in {path}", where=str(self.root))
        warnings.warn(message, DataWarning, stacklevel=3)
        return path


def _counts(counts: Counter) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in counts.most_common())


def _report_path(adapter: str, root: Path) -> Path:
    from benchmark.execution.store import default_cache_dir

    digest = hashlib.sha256(str(root).encode()).hexdigest()[:12]
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", root.name).strip("-") or "root"
    return default_cache_dir() / "skipped" / f"{adapter}-{name}-{digest}.csv"


def relpath(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def find_files(folder: Path, suffixes: Iterable[str]) -> list[Path]:
    """Regular files below `folder` with one of the suffixes (any case), sorted; hidden ones left out."""
    wanted = {s.lower() for s in suffixes}
    out = [p for p in folder.rglob("*") if p.suffix.lower() in wanted and p.is_file()
           and not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    return sorted(out)


# --- DICOM headers -------------------------------------------------------------------------------

HEADER_TAGS = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "InstitutionName",
               "Manufacturer", "ManufacturerModelName", "ViewPosition", "Modality")
_HEADER_CACHE_VERSION = "1"


def _cached_per_file(paths: Sequence[Path], root: Path, cache_file: Path, compute) -> list:
    """`compute(path)` for each file, or the error text of its DataError, cached per file (size and
    modification time) in one JSON file, so a large folder is read once."""
    cache = _load_json(cache_file)
    changed = False
    out: list = []
    for p in paths:
        key = relpath(p, root)
        st = p.stat()
        stamp = f"{st.st_size}:{st.st_mtime_ns}"
        hit = cache.get(key)
        if hit is not None and hit[0] == stamp:
            out.append(hit[1])
            continue
        try:
            value = compute(p)
        except DataError as exc:
            value = str(exc).removeprefix(f"{p}: ")
        cache[key] = [stamp, value]
        changed = True
        out.append(value)
    if changed:
        _save_json(cache_file, cache)
    return out


def dicom_headers(paths: Sequence[Path], root: Path) -> list[dict[str, str] | str]:
    """Header tags of each DICOM (header-only reads), or the error text for an unreadable one."""
    from benchmark.data.images import read_dicom_header

    def tags(p: Path) -> dict[str, str]:
        ds = read_dicom_header(p)
        return {t: _tag_text(ds.get(t)) for t in HEADER_TAGS}

    return _cached_per_file(paths, root, _header_cache_path(root), tags)


def _tag_text(value: object) -> str:
    if value is None:
        return ""
    return " ".join(str(value).split())


def _header_cache_path(root: Path) -> Path:
    from benchmark.execution.store import default_cache_dir

    digest = hashlib.sha256(f"{_HEADER_CACHE_VERSION}:{root}".encode()).hexdigest()[:16]
    return default_cache_dir() / "headers" / f"{digest}.json"


def _load_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _save_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data))


def site_and_scanner(tags: dict[str, str]) -> tuple[str | None, str | None]:
    """Site = the institution when the header names one, else the scanner (manufacturer + model),
    the next best stand-in for where an image was acquired; scanner on its own as well."""
    scanner = " ".join(x for x in (tags.get("Manufacturer", ""), tags.get("ManufacturerModelName", "")) if x)
    site = tags.get("InstitutionName", "") or scanner
    return (site or None), (scanner or None)


# --- boxes and masks -----------------------------------------------------------------------------

# Lesion-mask fragments smaller than this fraction of the image are specks, not findings.
MIN_COMPONENT = 0.0004


def boxes_from_mask(mask) -> list[list[float]]:
    """One [x1, y1, x2, y2] box (pixel edges) per connected region of a lesion mask."""
    import numpy as np
    from scipy import ndimage

    lab, n = ndimage.label(np.asarray(mask, dtype=bool))
    if n == 0:
        return []
    counts = np.bincount(lab.ravel())
    least = max(MIN_COMPONENT * mask.size, 4)
    boxes = []
    for k, sl in enumerate(ndimage.find_objects(lab), start=1):
        if sl is not None and counts[k] >= least:
            boxes.append([float(sl[1].start), float(sl[0].start), float(sl[1].stop), float(sl[0].stop)])
    return boxes


def mask_boxes_cached(paths: Sequence[Path], root: Path) -> list[list[list[float]] | str]:
    """`boxes_from_mask` of each mask file (or the error text), cached per file like headers."""
    from benchmark.data.images import decode_mask
    from benchmark.execution.store import default_cache_dir

    digest = hashlib.sha256(f"boxes{_HEADER_CACHE_VERSION}:{root}".encode()).hexdigest()[:16]
    cache_file = default_cache_dir() / "headers" / f"{digest}-boxes.json"
    return _cached_per_file(paths, root, cache_file, lambda p: boxes_from_mask(decode_mask(p)))


# --- the result ----------------------------------------------------------------------------------

def build_dataset(name: str, rows: list[dict], root: Path, *, description: str) -> Dataset:
    """Validate adapter rows as the README's manifest (paths relative to `root`) and wrap them."""
    if not rows:
        raise DataError("no usable images", where=str(root))
    raw = pd.DataFrame(rows)
    # Columns an adapter could not fill for any row are left out, so `explicit` stays honest.
    raw = raw[[c for c in raw.columns if c in ("path", "label") or raw[c].notna().any()]]
    table, explicit = validate_table(raw, where=str(root))
    manifest = Manifest(name=name, table=table, root=root, sha256=table_sha256(table), explicit=explicit)
    return Dataset(manifest, FileSource(manifest), description=description)
