"""Writing the prepared-image store (see `benchmark.data.prepared` for what it holds and how runs
read it): decode every row once, in worker processes if asked, straight into the memory-mapped
arrays; on a second call only rows whose file changed, or whose stored bytes fail their checksum,
are decoded again."""
from __future__ import annotations

import json
import os
import shutil
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmark.data.dataset import Dataset
from benchmark.data.geometry import letterbox, resize_image, resize_mask
from benchmark.core.progress import advance_bar, progress_bar
from benchmark.data.prepared import (
    MAX_SIZE,
    MIN_SIZE,
    PREPARED_VERSION,
    PreparedStore,
    decode_settings,
    store_path,
)
from benchmark.core.errors import CxrbenchError, DataError
from benchmark.core.files import atomic_path


@dataclass
class PrepareOutcome:
    path: Path
    size: int
    images: int
    decoded: int
    reused: int
    seconds: float
    bytes: int
    failed: list[str] = field(default_factory=list)


def prepare(dataset: Dataset, size: int, root: Path, *, workers: int = 0, progress: bool = False) -> PrepareOutcome:
    """Decode every image of `dataset` into the store for (manifest, size, decode settings)."""
    from benchmark.data.dataset import SynthSource

    t0 = time.perf_counter()
    if isinstance(dataset.source, SynthSource):
        raise CxrbenchError("synth images are rendered, not decoded, so there is nothing to prepare; write "
                            "them with `cxrbench synth --out DIR` and prepare DIR", where="--data")
    if not MIN_SIZE <= int(size) <= MAX_SIZE:
        raise CxrbenchError(f"must be in {MIN_SIZE}..{MAX_SIZE}, got {size}", where="--size")
    if workers < 0:
        raise CxrbenchError("must be 0 or more", where="--workers")
    size = int(size)
    n = len(dataset)
    fps = dataset.source.fingerprints()
    final = store_path(root, dataset.manifest.sha256, size)
    old = _open_existing(final)
    if old is None:
        todo = np.arange(n)
    else:  # stale rows, and current rows damaged on disk since (one read of the store)
        current = np.flatnonzero(old.usable(fps))
        todo = np.union1d(np.flatnonzero(~old.usable(fps)), current[old.damaged(current)])
    with_masks = bool(dataset.table["lung_mask"].notna().any())
    work = final if old is not None else final.with_name(f"{final.name}.tmp-{os.getpid()}")
    if old is None:
        _allocate(work, n, size, with_masks)
    rows = _rows_of(old, n)
    results = _decode_rows(dataset.source, todo, work, size, with_masks, workers, progress,
                           f"preparing {dataset.name} at {size}")
    failed = []
    for i, hw, digest, has_mask, crc, error in results:
        rows["fp"][i] = fps[i]
        rows["done"][i] = not error
        if error:
            failed.append(f"row {dataset.manifest.line(i)}: {error}")
            continue
        rows["hw"][i], rows["digest"][i], rows["has_mask"][i], rows["crc"][i] = hw, digest, has_mask, crc
    meta = {"version": PREPARED_VERSION, "decode": decode_settings(), "size": size, "n": n,
            "manifest_sha256": dataset.manifest.sha256, "name": dataset.name, "masks": with_masks,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    _write_rows(work, rows)
    (work / "meta.json").write_text(json.dumps(meta, indent=2))
    if work != final:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(work, final)
    nbytes = sum(p.stat().st_size for p in final.iterdir())
    return PrepareOutcome(final, size, n, int(len(todo) - len(failed)), int(n - len(todo)),
                          time.perf_counter() - t0, nbytes, failed)


def _open_existing(path: Path) -> PreparedStore | None:
    if not (path / "meta.json").is_file():
        return None
    try:
        return PreparedStore(path)
    except DataError:
        shutil.rmtree(path, ignore_errors=True)  # a damaged store is rebuilt, not trusted
        return None


def _allocate(work: Path, n: int, size: int, with_masks: bool) -> None:
    work.mkdir(parents=True, exist_ok=True)
    np.lib.format.open_memmap(work / "images.npy", mode="w+", dtype=np.uint16, shape=(n, size, size)).flush()
    if with_masks:
        np.lib.format.open_memmap(work / "masks.npy", mode="w+", dtype=np.uint8, shape=(n, size, size)).flush()


def _rows_of(old: PreparedStore | None, n: int) -> dict[str, np.ndarray]:
    if old is not None:
        return {"fp": old.fp.copy(), "hw": old.hw.copy(), "done": old.done.copy(),
                "has_mask": old.has_mask.copy(), "digest": old.digest.copy(), "crc": old.crc.copy()}
    return {"fp": np.zeros(n, np.int64), "hw": np.zeros((n, 2), np.int32), "done": np.zeros(n, bool),
            "has_mask": np.zeros(n, bool), "digest": np.zeros((n, 32), np.uint8),
            "crc": np.zeros((n, 2), np.uint32)}


def _write_rows(work: Path, rows: dict[str, np.ndarray]) -> None:
    with atomic_path(work / "rows.npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **rows)


def _decode_rows(source, todo: np.ndarray, work: Path, size: int, with_masks: bool, workers: int,
                 progress: bool, label: str) -> list:
    step = max(1, min(64, -(-len(todo) // max(1, 4 * workers))))  # enough chunks to keep workers busy
    chunks = [todo[k:k + step] for k in range(0, len(todo), step)]
    bar = progress_bar(progress, len(todo), label)
    out = []
    try:
        if workers > 0 and len(chunks) > 1:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(max_workers=workers) as pool:
                futures = [pool.submit(_decode_chunk, source, c, work, size, with_masks) for c in chunks]
                for f in futures:
                    part = f.result()
                    out += part
                    advance_bar(bar, len(part))
        else:
            for c in chunks:
                part = _decode_chunk(source, c, work, size, with_masks)
                out += part
                advance_bar(bar, len(part))
    finally:
        if bar:
            bar[0].stop()
    return out


def _decode_chunk(source, rows: np.ndarray, work: Path, size: int, with_masks: bool) -> list:
    """Decode rows into the store's arrays (opened here, so a worker process writes directly)."""
    from benchmark.audit.digest import pixel_digest

    images = np.load(work / "images.npy", mmap_mode="r+")
    masks = np.load(work / "masks.npy", mmap_mode="r+") if with_masks else None
    out = []
    for i in rows:
        i = int(i)
        try:
            img = source.image(i)
            lb = letterbox(img.shape, (size, size))
            stored = np.round(resize_image(img, lb) * 65535.0).astype(np.uint16)
            images[i] = stored
            crc = [zlib.crc32(stored.data), 0]  # checked when the row is read (PreparedStore)
            has_mask = False
            if masks is not None:
                m = source.lung_mask(i)
                if m is not None:
                    # the image's geometry: a mismatched mask is an error
                    stored_mask = np.ascontiguousarray(resize_mask(m, lb), dtype=np.uint8)
                    masks[i] = stored_mask
                    crc[1] = zlib.crc32(stored_mask.data)
                    has_mask = True
            out.append((i, img.shape, np.frombuffer(pixel_digest(img), np.uint8), has_mask, crc, ""))
        except CxrbenchError as exc:
            out.append((i, (0, 0), np.zeros(32, np.uint8), False, [0, 0], str(exc)))
    images.flush()
    if masks is not None:
        masks.flush()
    return out


