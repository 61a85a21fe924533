"""The prepared-image store: every image of a dataset decoded once into a memory-mapped array.

`cxrbench prepare --data D --size S` decodes each image (DICOM windowing, MONOCHROME1, bit depth: the
canonical image), letterboxes it into an S x S square (aspect kept, long side = S, padding = 0 = air)
and stores it as uint16; lung masks, when the manifest has them, go through the same letterbox. Later
runs on the same data use the store automatically: the source hands the runner the stored content
without its padding, and the runner letterboxes that into the model's input exactly as it would a
freshly decoded image (same placement, same padding); only the resampling happens in two steps.

Key (the store's folder): the manifest hash, the size, and the decode settings. Beside the pixels lie
one fingerprint per row (file size and mtime, from the dataset's source): a row whose file changed
since is decoded afresh at run time, and re-running `prepare` redoes only those rows.

A store is used when the model keeps the aspect and its input is no larger than S on either side;
for other inputs (stretched, or larger than S) the files are decoded as usual. This module reads
stores; `benchmark.data.prepared_build` writes them.

Each row's stored image (and mask) carries a CRC-32, checked when the row is read (about 0.1 ms for a
512 x 512 row, against milliseconds to resample and run it): a row overwritten or damaged on disk is
named in one warning, decoded afresh from its file, and redone by the next `cxrbench prepare`.
"""
from __future__ import annotations

import hashlib
import json
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import zipfile

import numpy as np

from benchmark.data.dataset import Dataset
from benchmark.data.geometry import Letterbox, letterbox, resize_image, resize_mask, transform_boxes
from benchmark.core.errors import DataError

# bump when stored pixels would differ for the same inputs (2: row checksums; 3: sources >= 6x the store
# size are box-reduced first, geometry.REDUCING_GAP)
PREPARED_VERSION = "3"
MIN_SIZE, MAX_SIZE = 32, 4096


def decode_settings() -> dict:
    """Everything besides the manifest and size that decides the stored pixels."""
    from benchmark.data.geometry import REDUCING_GAP
    from benchmark.data.images import PERCENTILE_WINDOW

    return {"version": PREPARED_VERSION, "percentile_window": list(PERCENTILE_WINDOW),
            "geometry": "letterbox-centred-bilinear", "reducing_gap": REDUCING_GAP, "dtype": "uint16",
            "masks": "box>=0.5"}


def decode_key() -> str:
    return hashlib.sha256(json.dumps(decode_settings(), sort_keys=True).encode()).hexdigest()[:12]


def store_path(root: Path, manifest_sha256: str, size: int) -> Path:
    return Path(root) / f"{manifest_sha256[:24]}-{decode_key()}-s{int(size)}"


class PreparedStore:
    """A finished store, opened read-only; the arrays are memory-mapped on first use (and never
    pickled: a worker process re-opens them)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.meta = json.loads((self.path / "meta.json").read_text())
            with np.load(self.path / "rows.npz") as z:
                self.fp, self.hw, self.done = z["fp"], z["hw"], z["done"]
                self.has_mask, self.digest = z["has_mask"], z["digest"]
                self.crc = z["crc"]  # per row: CRC-32 of the stored image, of the stored mask
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            raise DataError(f"unreadable prepared store ({exc})", where=str(self.path)) from exc
        self.size = int(self.meta["size"])
        self._images = self._masks = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_images"] = state["_masks"] = None
        return state

    @property
    def images(self) -> np.ndarray:
        if self._images is None:
            self._images = np.load(self.path / "images.npy", mmap_mode="r")
        return self._images

    @property
    def masks(self) -> np.ndarray | None:
        if self._masks is None and (self.path / "masks.npy").is_file():
            self._masks = np.load(self.path / "masks.npy", mmap_mode="r")
        return self._masks

    def image(self, i: int) -> np.ndarray:
        raw = self.images[i]  # a row is contiguous: its CRC is taken on the mapped bytes, no copy
        self._check(i, 0, raw, "images.npy")
        return raw.astype(np.float32) * np.float32(1.0 / 65535.0)

    def mask(self, i: int) -> np.ndarray | None:
        if not self.has_mask[i] or self.masks is None:
            return None
        raw = self.masks[i]
        self._check(i, 1, raw, "masks.npy")
        return np.asarray(raw, dtype=bool)

    def _check(self, i: int, which: int, raw: np.ndarray, name: str) -> None:
        from benchmark.execution.store import VERIFY

        if VERIFY and zlib.crc32(memoryview(raw).cast("B")) != int(self.crc[i, which]):
            raise DamagedRow(f"{self.path / name}: row {i} does not match its checksum")

    def damaged(self, rows: np.ndarray) -> np.ndarray:
        """Which of `rows` (stored rows) fail their checksum: `prepare` redoes them."""
        bad = np.zeros(len(rows), dtype=bool)
        for k, i in enumerate(rows):
            try:
                self.image(int(i))
                self.mask(int(i))
            except DamagedRow:
                bad[k] = True
        return bad

    def geometry(self, i: int) -> Letterbox:
        """Original pixels -> stored square."""
        return letterbox(tuple(int(v) for v in self.hw[i]), (self.size, self.size))

    def content(self, i: int) -> np.ndarray:
        """Row i's stored image without its padding."""
        return np.ascontiguousarray(_crop(self.image(i), self.geometry(i)))

    def content_mask(self, i: int) -> np.ndarray | None:
        mask = self.mask(i)
        return None if mask is None else np.ascontiguousarray(_crop(mask, self.geometry(i)))

    def usable(self, fingerprints: np.ndarray) -> np.ndarray:
        """Rows whose stored pixels are current: decoded, from a file that has not changed since."""
        return self.done & (self.fp == fingerprints)


class DamagedRow(Exception):
    """A stored row whose bytes no longer match their checksum."""


class PreparedSource:
    """The dataset's source, read from a store where the store is current.

    It answers with the stored content at its prepared scale, without the padding: the runner's
    letterbox then pads it exactly as it pads a freshly decoded image, so nothing but the
    resampling differs (no blend of the image's edge into the stored padding).
    """

    def __init__(self, inner, store: PreparedStore, fingerprints: np.ndarray):
        self.inner, self.store = inner, store
        self._usable = store.usable(fingerprints)
        self._warned = False
        # The pixels differ (slightly) from decoding afresh, so predictions are cached apart.
        salt = int.from_bytes(hashlib.blake2b(f"prepared:{decode_key()}:{store.size}".encode(),
                                              digest_size=8).digest(), "little", signed=True)
        self._fp = np.bitwise_xor(np.asarray(fingerprints, dtype=np.int64), np.int64(salt))

    def fingerprints(self) -> np.ndarray:
        return self._fp.copy()

    @property
    def rows_current(self) -> int:
        """Rows read from the store (the rest are decoded afresh)."""
        return int(self._usable.sum())

    def _damaged(self, i: int, exc: DamagedRow) -> None:
        """A damaged row is read from its file from now on; the first one is named on stderr."""
        self._usable[i] = False
        if not self._warned:
            self._warned = True
            manifest = getattr(self.inner, "manifest", None)
            line = manifest.line(i) if manifest is not None else i + 2
            print(f"warning: {exc} (manifest row {line}); damaged rows of this prepared store are decoded "
                  "afresh from their files; run `cxrbench prepare` again to repair it", file=sys.stderr, flush=True)

    def image(self, i: int) -> np.ndarray:
        if self._usable[i]:
            try:
                return self.store.content(i)
            except DamagedRow as exc:
                self._damaged(i, exc)
        img = self.inner.image(i)
        lb = letterbox(img.shape, (self.store.size,) * 2)
        return _crop(resize_image(img, lb), lb)

    def lung_mask(self, i: int) -> np.ndarray | None:
        if self._usable[i]:
            try:
                return self.store.content_mask(i)
            except DamagedRow as exc:
                self._damaged(i, exc)
        mask = self.inner.lung_mask(i)
        if mask is None:
            return None
        lb = letterbox(mask.shape, (self.store.size,) * 2)
        return _crop(resize_mask(mask, lb), lb)

    def geometry(self, i: int) -> Letterbox:
        """Original pixels -> the pixels `image(i)` returns (a scale, no offset)."""
        lb = self.store.geometry(i) if self._usable[i] else letterbox(self.inner.image(i).shape,
                                                                       (self.store.size,) * 2)
        return Letterbox(lb.src_hw, lb.content_hw, lb.scale_y, lb.scale_x, 0, 0)


def _crop(arr: np.ndarray, lb: Letterbox) -> np.ndarray:
    nh, nw = lb.content_hw
    return arr[lb.pad_top:lb.pad_top + nh, lb.pad_left:lb.pad_left + nw]


@dataclass
class PreparedDataset(Dataset):
    """A dataset read through a store: boxes are mapped into the stored content like the pixels."""

    def boxes(self, i: int) -> np.ndarray:
        boxes = super().boxes(i)
        if len(boxes) == 0:
            return boxes
        return transform_boxes(boxes, self.source.geometry(i))


def find_store(dataset: Dataset, root: Path, *, min_size: int = 1) -> PreparedStore | None:
    """The smallest finished store of this dataset (same manifest and decode settings) with size >=
    min_size, or None."""
    base = Path(root)
    if not base.is_dir():
        return None
    prefix = f"{dataset.manifest.sha256[:24]}-{decode_key()}-s"
    sizes = []
    for p in base.glob(prefix + "*"):
        tail = p.name[len(prefix):]
        if tail.isdigit() and int(tail) >= min_size and (p / "meta.json").is_file():
            sizes.append(int(tail))
    for size in sorted(sizes):
        try:
            store = PreparedStore(store_path(base, dataset.manifest.sha256, size))
        except DataError:
            continue
        if store.meta.get("manifest_sha256") == dataset.manifest.sha256 and len(store.fp) == len(dataset):
            return store
    return None


def use_prepared(dataset: Dataset, input_spec, root: Path) -> Dataset:
    """`dataset` read through its prepared store when the model's input allows one, else unchanged."""
    from benchmark.data.dataset import SynthSource

    if isinstance(dataset.source, (SynthSource, PreparedSource)) or not input_spec.keep_aspect:
        # A stretched input would upsample the short side of the stored content: decode instead.
        return dataset
    store = find_store(dataset, root, min_size=max(int(v) for v in input_spec.size))
    if store is None:
        return dataset
    source = PreparedSource(dataset.source, store, dataset.source.fingerprints())
    return PreparedDataset(dataset.manifest, source, description=f"{dataset.description} (prepared store "
                           f"{store.path.name}, {source.rows_current}/{len(dataset)} rows current)")


def prepared_info(dataset: Dataset) -> dict:
    """For result.json's dataset block: which store the pixels came from, if any."""
    if not isinstance(dataset.source, PreparedSource):
        return {}
    store = dataset.source.store
    return {"prepared": {"store": store.path.name, "size": store.size, "decode": decode_settings(),
                         "rows_from_store": dataset.source.rows_current}}
