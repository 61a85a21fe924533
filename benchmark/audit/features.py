"""Per-image audit features of a dataset: pixel digest, pHash and thumbnail, from the prepared store
when one is current (no decoding), else decoded; cached by manifest and file fingerprints."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.core.errors import CxrbenchError, DataError
from benchmark.core.files import atomic_path
from benchmark.audit.phash import THUMB, fingerprint, pixel_digest

AUDIT_VERSION = "1"  # bump when features would differ for the same pixels


@dataclass
class Features:
    name: str
    manifest_sha256: str
    ids: list[str]
    patients: list[str]
    splits: list[str | None]
    has_patients: bool
    digests: list[str]
    phash: np.ndarray   # uint64 [n]
    thumbs: np.ndarray  # uint8 [n, THUMB, THUMB]
    pixels_from: str

    def info(self) -> dict:
        splits = Counter(s for s in self.splits if s is not None)
        return {"name": self.name, "manifest_sha256": self.manifest_sha256, "images": len(self.ids),
                "patients": len(set(self.patients)) if self.has_patients else None,
                "splits": dict(sorted(splits.items())), "pixels_from": self.pixels_from}


def dataset_features(dataset, *, cache_root: Path, workers: int = 0, progress: bool = False) -> Features:
    from benchmark.data.dataset import SynthSource
    from benchmark.data.prepared import find_store

    n = len(dataset)
    fps = dataset.source.fingerprints()
    cache_file = Path(cache_root) / "audit" / f"{dataset.manifest.sha256[:24]}-v{AUDIT_VERSION}-t{THUMB}.npz"
    rows = _load(cache_file, n)
    todo = np.flatnonzero(~(rows["done"] & (rows["fp"] == fps)))
    store = None if isinstance(dataset.source, SynthSource) else find_store(dataset, Path(cache_root) / "prepared")
    from_store = store.usable(fps) if store is not None else np.zeros(n, bool)
    errors: list[str] = []
    if len(todo):
        for i, digest, ph, thumb, error in _compute(dataset.source, store, from_store, todo, workers, progress,
                                                    f"fingerprinting {dataset.name}"):
            rows["fp"][i] = fps[i]
            rows["done"][i] = not error
            if error:
                errors.append(f"row {i + 2}: {error}")
                continue
            rows["digest"][i], rows["phash"][i], rows["thumb"][i] = digest, ph, thumb
        _save(cache_file, rows)
    if errors:
        raise DataError(f"{len(errors)} image(s) could not be read for the audit; first: {errors[0]}",
                        where=dataset.name)
    table = dataset.table
    has_patients = dataset.manifest.has_patients
    origin = "prepared store" if from_store.all() else "decoded" if not from_store.any() else "store + decoded"
    return Features(
        name=dataset.name, manifest_sha256=dataset.manifest.sha256, ids=table["image_id"].astype(str).tolist(),
        patients=table["patient_id"].astype(str).tolist(),
        splits=[None if pd.isna(s) or str(s).strip() == "" else str(s) for s in table["split"].tolist()],
        has_patients=has_patients, digests=[bytes(d).hex() for d in rows["digest"]],
        phash=rows["phash"].copy(), thumbs=rows["thumb"].copy(), pixels_from=origin)


def _load(path: Path, n: int) -> dict[str, np.ndarray]:
    try:
        with np.load(path) as z:
            rows = {k: z[k].copy() for k in ("fp", "done", "digest", "phash", "thumb")}
        if len(rows["fp"]) == n:
            return rows
    except (OSError, ValueError, KeyError):
        pass
    return {"fp": np.zeros(n, np.int64), "done": np.zeros(n, bool), "digest": np.zeros((n, 32), np.uint8),
            "phash": np.zeros(n, np.uint64), "thumb": np.zeros((n, THUMB, THUMB), np.uint8)}


def _save(path: Path, rows: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **rows)


_STATE: dict = {}


def _init(source, store, from_store) -> None:
    _STATE.update(source=source, store=store, from_store=from_store)


def _compute(source, store, from_store, todo, workers, progress, label):
    from benchmark.core.progress import advance_bar, progress_bar

    chunks = [todo[k:k + 128] for k in range(0, len(todo), 128)]
    bar = progress_bar(progress, len(todo), label)
    try:
        if workers > 0 and len(chunks) > 1:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(max_workers=workers, initializer=_init,
                                     initargs=(source, store, from_store)) as pool:
                for part in pool.map(_chunk, chunks):
                    yield from part
                    advance_bar(bar, len(part))
        else:
            _init(source, store, from_store)
            for c in chunks:
                part = _chunk(c)
                yield from part
                advance_bar(bar, len(part))
    finally:
        if bar:
            bar[0].stop()


def _chunk(rows: np.ndarray) -> list:
    source, store, from_store = _STATE["source"], _STATE["store"], _STATE["from_store"]
    out = []
    for i in rows:
        i = int(i)
        try:
            if from_store[i]:
                content = store.content(i)
                digest = np.asarray(store.digest[i], np.uint8)
            else:
                content = source.image(i)
                digest = np.frombuffer(pixel_digest(content), np.uint8)
            fp = fingerprint(content)
            out.append((i, digest, np.uint64(fp.phash), fp.thumb, ""))
        except CxrbenchError as exc:
            out.append((i, None, None, None, str(exc)))
    return out
