"""Reading Deflated Explicit VR Little Endian files with bounded memory.

pydicom inflates the whole data set in one `zlib.decompress` call before it reads a single tag,
even for a header-only read, so a 300 KB file declaring 12,000 x 12,000 pixels costs hundreds of
MB before anything could be checked. Here the header is inflated a chunk at a time up to the Pixel
Data tag, the pixel limit is checked on it, and the full inflate is capped at what the header
declares (plus room for other large elements), so trailing padding cannot blow up either.
"""
from __future__ import annotations

import warnings
import zlib
from pathlib import Path
from typing import BinaryIO

import pydicom
from pydicom.dataset import FileDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import _read_file_meta_info, read_dataset, read_preamble
from pydicom.uid import DeflatedExplicitVRLittleEndian

from benchmark.data.dicom_codecs import check_dicom_pixels, expected_pixel_bytes
from benchmark.core.errors import DataError

HEADER_CAP = 8 * 2**20  # inflated bytes before Pixel Data; real headers are a few KB
EXTRA_CAP = 64 * 2**20  # room beyond the declared pixels for overlays, icons, private data
_CHUNK = 256 * 2**10
_DEFLATED_UID = DeflatedExplicitVRLittleEndian.encode()
_PIXEL_TAG = b"\xe0\x7f\x10\x00"  # (7FE0,0010) in little-endian


def is_deflated(path: Path) -> bool:
    # The UID sits in the file meta near the start; only files that contain it pay for a parse.
    try:
        with path.open("rb") as fh:
            if _DEFLATED_UID not in fh.read(4096):
                return False
        meta = pydicom.filereader.read_file_meta_info(path)
    except Exception:
        return False
    return meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian


def read_deflated(path: Path, *, stop_before_pixels: bool = False) -> FileDataset:
    """A deflated file, its pixel count checked before the pixel data is inflated."""
    with path.open("rb") as fh:
        preamble, meta = _file_meta(fh)
        start = fh.tell()
        header = _inflate(fh, HEADER_CAP, stop_at=_PIXEL_TAG)
        head_ds = _parse(header, path, stop_before_pixels=True)
        check_dicom_pixels(head_ds, path)
        ds = head_ds
        if not stop_before_pixels:
            fh.seek(start)
            body = _inflate(fh, len(header) + expected_pixel_bytes(head_ds) + EXTRA_CAP)
            ds = _parse(body, path, stop_before_pixels=False)
    out = FileDataset(str(path), ds, preamble=preamble, file_meta=meta, is_implicit_VR=False,
                      is_little_endian=True)
    out.set_original_encoding(False, True, ds._character_set)
    return out


def _file_meta(fh: BinaryIO):
    preamble = read_preamble(fh, True)
    return preamble, _read_file_meta_info(fh)


def _inflate(fh: BinaryIO, cap: int, stop_at: bytes | None = None) -> bytes:
    """Inflate at most `cap` bytes; with `stop_at`, stop once those bytes have appeared (inflating
    in small steps, so a run of zeros after the header is not inflated past them)."""
    z = zlib.decompressobj(-zlib.MAX_WBITS)
    out = bytearray()
    step = _CHUNK if stop_at is not None else cap + 1
    where = getattr(fh, "name", None)
    while True:
        chunk = z.unconsumed_tail or fh.read(_CHUNK)
        if not chunk:
            break
        before = len(out)
        try:
            out += z.decompress(chunk, min(step, cap + 1 - len(out)))
        except zlib.error as exc:
            raise DataError(f"corrupt deflated DICOM ({exc})", where=where) from None
        if stop_at is not None and out.find(stop_at, max(0, before - len(stop_at))) >= 0:
            break
        if len(out) > cap:
            if stop_at is not None:
                raise DataError(f"deflated DICOM header is over {cap // 2**20} MB before its pixel data",
                                where=where)
            raise DataError(f"deflated DICOM inflates to more than its header declares ({cap:,} bytes "
                            "including headroom)", where=where)
        if z.eof:
            break
    return bytes(out)


def _parse(body: bytes, path: Path, *, stop_before_pixels: bool) -> pydicom.Dataset:
    """Parse inflated bytes. A header prefix cut inside an element (the Pixel Data tag's bytes seen
    inside an earlier value) reads as far as it goes; pydicom warns and returns what it read, and
    the caller checks the pixel count again on the full data set."""
    stop = (lambda tag, vr, length: tag == 0x7FE00010) if stop_before_pixels else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            return read_dataset(DicomBytesIO(body), is_implicit_VR=False, is_little_endian=True, stop_when=stop)
        except Exception as exc:  # pydicom raises many types for damaged data
            raise DataError(f"unreadable deflated DICOM data set ({type(exc).__name__}: {exc})",
                            where=str(path)) from None
