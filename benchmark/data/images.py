"""Decode DICOM, PNG and JPEG files into the canonical image (README, "Data").

The canonical image is float32 [H, W] in [0, 1] with 0 = air (dark) and 1 = bone/metal (bright).
Every failure a user can cause surfaces as a one-line `DataError` naming the file.
"""
from __future__ import annotations

import math
import re
import stat
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from PIL import ExifTags, Image, ImageOps
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from benchmark.data.dicom_codecs import check_dicom_pixels, check_pixel_count, decode_first_frame, max_pixels
from benchmark.data.dicom_deflate import is_deflated, read_deflated
from benchmark.data.grey_table import gather, value_counts, value_table, weighted_percentiles
from benchmark.core.errors import DataError

DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".dic"})
# Without a window the grey levels are spread over this percentile range, so a few hot pixels
# (burnt-in text, metal) do not squash the anatomy into a narrow band.
PERCENTILE_WINDOW = (0.5, 99.5)
# ITU-R BT.601 luma, the weights Pillow and pydicom use for RGB -> grey.
LUMA = np.array([0.299, 0.587, 0.114])
# Groups a data set stored without preamble usually starts with: file meta, or identifying data.
_RAW_START_GROUPS = frozenset({0x0002, 0x0008})


def decode_image(path: str | Path) -> np.ndarray:
    """Decode an image file into the canonical float32 [H, W] image in [0, 1]."""
    path = _existing_file(path)
    if _looks_like_dicom(path):
        return _canonical_dicom(_read_dicom(path), path)
    img, _ = _open_pillow(path)
    with img:
        return _canonical_pillow(img, path)


def decode_mask(path: str | Path) -> np.ndarray:
    """Decode a binary mask file: bool [H, W], True where any (non-alpha) channel is nonzero."""
    path = _existing_file(path)
    if _looks_like_dicom(path):
        arr = _first_frame(_read_dicom(path), path)
        return arr.any(axis=-1) if arr.ndim == 3 else arr != 0
    img, fmt = _open_pillow(path)
    with img:
        return _mask_from_pillow(img, fmt)


def decode_dicom_pixels(path: str | Path) -> np.ndarray:
    """The first frame of a DICOM file as stored (before any LUT), through the same reader, pixel
    limit and decoder choice as decode_image."""
    path = _existing_file(path)
    if not _looks_like_dicom(path):
        raise DataError(_not_dicom_reason(), where=str(path))
    return _first_frame(_read_dicom(path), path)


def read_dicom_header(path: str | Path) -> pydicom.Dataset:
    """Read a DICOM header without its pixel data."""
    path = _existing_file(path)
    if not _looks_like_dicom(path):
        raise DataError(_not_dicom_reason(), where=str(path))
    return _read_dicom(path, stop_before_pixels=True)


def _existing_file(path: str | Path) -> Path:
    path = Path(path)
    try:
        st = path.stat()  # one system call for the three checks: this runs for every image
    except OSError:
        raise DataError("file not found", where=str(path)) from None
    if not stat.S_ISREG(st.st_mode):
        raise DataError("not a regular file (expected an image file)", where=str(path))
    if st.st_size == 0:
        raise DataError("file is empty", where=str(path))
    return path


def _looks_like_dicom(path: Path) -> bool:
    """Decide by content: the 'DICM' marker, or a bare data set in a file named like DICOM."""
    try:
        with path.open("rb") as fh:
            head = fh.read(132)
    except OSError as exc:
        raise DataError(f"cannot read file: {exc.strerror or exc}", where=str(path)) from None
    if head[128:132] == b"DICM":
        return True
    if path.suffix.lower() not in DICOM_SUFFIXES or len(head) < 8:
        return False
    # A bare data set begins with a tag; little- and big-endian readings of its group number.
    groups = {int.from_bytes(head[:2], "little"), int.from_bytes(head[:2], "big")}
    return bool(groups & _RAW_START_GROUPS)


def _not_dicom_reason() -> str:
    return "not a DICOM file: no 'DICM' marker at byte 128 and no DICOM data set at the start"


def _read_dicom(path: Path, *, stop_before_pixels: bool = False) -> pydicom.Dataset:
    try:
        if is_deflated(path):  # pydicom would inflate it whole before the pixel limit is checked
            ds = read_deflated(path, stop_before_pixels=stop_before_pixels)
        else:
            ds = pydicom.dcmread(path, force=True, stop_before_pixels=stop_before_pixels)
    except DataError:
        raise
    except Exception as exc:  # pydicom raises many types for damaged headers
        raise DataError(f"unreadable DICOM header ({_one_line(exc)})", where=str(path)) from None
    if len(ds) == 0:
        raise DataError(_empty_dataset_reason(path, stop_before_pixels), where=str(path))
    _ensure_transfer_syntax(ds)
    return ds


def _empty_dataset_reason(path: Path, header_only: bool) -> str:
    # pydicom returns an empty data set when encapsulated pixel data runs into the end of
    # the file; a readable header then tells a cut-short file apart from a non-DICOM one.
    if not header_only:
        try:
            if len(pydicom.dcmread(path, force=True, stop_before_pixels=True)):
                return "truncated DICOM: the file ends inside its pixel data"
        except Exception:
            pass
    return _not_dicom_reason()


def _ensure_transfer_syntax(ds: pydicom.Dataset) -> None:
    """Files without file meta still say how they were encoded; record it so decoding can proceed."""
    if "TransferSyntaxUID" in ds.file_meta:
        return
    implicit, little = ds.original_encoding
    explicit = ExplicitVRLittleEndian if little else ExplicitVRBigEndian
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else explicit


def _first_frame(ds: pydicom.Dataset, path: Path) -> np.ndarray:
    """Pixels of the first frame, as stored (before any LUT)."""
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise DataError("DICOM file has no pixel data", where=str(path))
    # Before anything is decoded: a header may declare far more pixels than the file holds.
    check_dicom_pixels(ds, path)
    tsyntax = UID(ds.file_meta.TransferSyntaxUID)
    if not tsyntax.is_compressed and "PixelData" in ds:
        _check_native_length(ds, path)
    return decode_first_frame(ds, path)


def _check_native_length(ds: pydicom.Dataset, path: Path) -> None:
    """Uncompressed pixel data shorter than its header promises means the file was cut short."""
    try:
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        # Only the first frame is decoded, so only it has to be complete.
        needed = math.ceil(int(ds.Rows) * int(ds.Columns) * samples * int(ds.BitsAllocated) / 8)
    except (AttributeError, TypeError, ValueError):
        raise DataError("incomplete DICOM pixel module (Rows, Columns, BitsAllocated)",
                        where=str(path)) from None
    if len(ds.PixelData) < needed:
        raise DataError(f"truncated DICOM: pixel data is {len(ds.PixelData)} bytes, the first "
                        f"frame needs {needed}", where=str(path))


def _canonical_dicom(ds: pydicom.Dataset, path: Path, *, use_table: bool = True) -> np.ndarray:
    arr = _first_frame(ds, path)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if arr.ndim == 3 or photometric == "PALETTE COLOR":
        return _canonical_colour_dicom(ds, arr, photometric, path)
    table = value_table(arr) if use_table else None
    if table is None:
        return _monochrome_to_unit(arr, None, ds, photometric, path)
    values, index = table
    # Every step is per grey value, so it runs on the 256/65,536-entry table and one gather
    # builds the image (benchmark.data.grey_table); the percentile reads a histogram.
    counts = value_counts(index, values.size) if _needs_percentile(ds) else None
    return gather(_monochrome_to_unit(values, counts, ds, photometric, path), index)


def _monochrome_to_unit(arr: np.ndarray, counts: np.ndarray | None, ds: pydicom.Dataset, photometric: str,
                        path: Path) -> np.ndarray:
    """Stored values (pixels, or a table of values with their pixel counts) to canonical float32."""
    try:
        values = np.asarray(apply_modality_lut(arr, ds), dtype=np.float64)
        out = _voi_to_unit(values, ds, counts)
    except Exception as exc:  # malformed LUT or window elements
        raise DataError(f"invalid modality/VOI LUT ({_one_line(exc)})", where=str(path)) from None
    if photometric == "MONOCHROME1":
        # MONOCHROME1 stores air as the highest value; the canonical image keeps air dark.
        out = 1.0 - out
    return _finish(out)


def _needs_percentile(ds: pydicom.Dataset) -> bool:
    seq = ds.get("VOILUTSequence")
    return not (seq and "LUTData" in seq[0] and "LUTDescriptor" in seq[0]) and _first_window(ds) is None


def _canonical_colour_dicom(ds: pydicom.Dataset, arr: np.ndarray, photometric: str,
                            path: Path) -> np.ndarray:
    bits = int(ds.get("BitsStored", 8) or 8)
    if photometric == "PALETTE COLOR":
        try:
            arr = apply_color_lut(arr, ds)
        except Exception as exc:
            raise DataError(f"invalid palette colour LUT ({_one_line(exc)})", where=str(path)) from None
        bits = 8 * arr.dtype.itemsize
    return _finish(_luma(arr) / (2.0**bits - 1.0))


def _voi_to_unit(values: np.ndarray, ds: pydicom.Dataset, counts: np.ndarray | None = None) -> np.ndarray:
    """Map modality values to [0, 1]: VOI LUT, else window, else a robust percentile window.
    With `counts`, `values` is a table of grey values and counts[i] the pixels holding values[i]."""
    seq = ds.get("VOILUTSequence")
    if seq and "LUTData" in seq[0] and "LUTDescriptor" in seq[0]:
        return _apply_voi_lut_sequence(values, ds)
    window = _first_window(ds)
    if window is not None:
        return _apply_window(values, *window)
    return _percentile_window(values, counts)


def _apply_voi_lut_sequence(values: np.ndarray, ds: pydicom.Dataset) -> np.ndarray:
    item = ds.VOILUTSequence[0]
    entries, first_mapped, declared_bits = (int(v) for v in item.LUTDescriptor)
    if int(ds.get("PixelRepresentation", 0)) == 1 and first_mapped > 32767:
        first_mapped -= 65536  # stored as US, meant as SS for signed pixel data
    lut = item.LUTData
    if isinstance(lut, bytes):
        lut = np.frombuffer(lut, dtype="<u2" if ds.original_encoding[1] is not False else ">u2")
    lut = np.asarray(lut, dtype=np.float64).ravel()[: entries or 65536]
    # Inputs below/above the table take its first/last entry (PS3.3 C.11.2.1.1).
    index = np.clip(np.rint(values) - first_mapped, 0, lut.size - 1).astype(np.intp)
    # Some vendors declare 16-bit LUT entries while using 12; scale by the bits actually used
    # so the image is not rendered nearly black.
    used_bits = max(int(lut.max()).bit_length(), 1)
    return lut[index] / (2.0 ** min(declared_bits, used_bits) - 1.0)


def _first_window(ds: pydicom.Dataset) -> tuple[float, float, str] | None:
    """Window (center, width, function); multi-valued elements offer alternatives, use the first."""
    try:
        center = float(_first(ds.get("WindowCenter")))
        width = float(_first(ds.get("WindowWidth")))
    except (TypeError, ValueError):  # absent or empty
        return None
    if not (math.isfinite(center) and math.isfinite(width)) or width <= 0:
        return None
    function = str(_first(ds.get("VOILUTFunction")) or "LINEAR").strip().upper()
    return center, width, function


def _first(value: Any) -> Any:
    if isinstance(value, (list, tuple, MultiValue)):
        return value[0] if len(value) else None
    return value


def _apply_window(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2 windowing, with output range [0, 1]."""
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(np.clip(-4.0 * (values - center) / width, -700, 700)))
    if function == "LINEAR_EXACT":
        return np.clip((values - center) / width + 0.5, 0.0, 1.0)
    if width <= 1.0:
        return (values > center - 0.5).astype(np.float64)
    return np.clip((values - (center - 0.5)) / (width - 1.0) + 0.5, 0.0, 1.0)


def _percentile_window(values: np.ndarray, counts: np.ndarray | None = None) -> np.ndarray:
    if counts is None:
        finite = values[np.isfinite(values)]
        bounds = np.percentile(finite, PERCENTILE_WINDOW) if finite.size else None
    else:
        finite = values[(counts > 0) & np.isfinite(values)]
        bounds = weighted_percentiles(values, counts, PERCENTILE_WINDOW)
    if bounds is None:
        return np.zeros_like(values)
    lo, hi = bounds
    if hi <= lo:
        lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:
        return np.zeros_like(values)
    return np.clip((values - lo) / (hi - lo), 0.0, 1.0)


def _open_pillow(path: Path) -> tuple[Image.Image, str | None]:
    """Open and fully decode, so truncation shows up here; also return the file format,
    which the EXIF-rotated copy no longer knows."""
    try:
        img = _open_within_limit(path)
    except DataError:
        raise
    except Exception:
        reason = "not a readable image (neither DICOM nor a format Pillow recognises)"
        if path.suffix.lower() in DICOM_SUFFIXES:
            reason = _not_dicom_reason()
        raise DataError(reason, where=str(path)) from None
    try:
        img.load()
        # Viewers, and so annotators, see the EXIF-rotated picture; boxes refer to that. (Pillow
        # copies the image even when there is nothing to rotate, so ask first.)
        transposed = ImageOps.exif_transpose(img) if img.getexif().get(ExifTags.Base.Orientation, 1) != 1 else img
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, zlib errors ...
        img.close()
        raise DataError(f"corrupt or truncated {img.format or 'image'} file ({_one_line(exc)})",
                        where=str(path)) from None
    fmt = img.format
    if transposed is not img:
        img.close()
    return transposed, fmt


def _open_within_limit(path: Path) -> Image.Image:
    """Image.open reads only the header; check its size against our limit before any decoding.

    Pillow's own guard warns above Image.MAX_IMAGE_PIXELS and raises above twice that; ours gives
    the same default one clear error, and a limit raised with CXRBENCH_MAX_PIXELS lifts Pillow's."""
    limit = max_pixels()
    if Image.MAX_IMAGE_PIXELS is not None and limit > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = limit  # the user asked for more; ours is the check that counts
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except Image.DecompressionBombError as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        count = int(found.group(1)) if found else limit + 1
        check_pixel_count(count, "", path)
        raise  # unreachable unless Pillow's limit is below ours
    w, h = img.size
    try:
        check_pixel_count(w * h, f"{w:,} x {h:,}", path)
    except DataError:
        img.close()
        raise
    return img


def _canonical_pillow(img: Image.Image, path: Path) -> np.ndarray:
    mode = img.mode
    if mode == "1":
        return _finish(np.asarray(img, dtype=np.float64))
    if mode.startswith("I;16"):  # integer pixels: finite and within [0, 1] once scaled
        return (np.asarray(img).astype(np.float64) / 65535.0).astype(np.float32)
    if mode in ("I", "F"):
        return _finish(_wide_to_unit(np.asarray(img, dtype=np.float64), mode))
    if mode in ("L", "LA"):
        grey = img if mode == "L" else img.getchannel(0)
        return (np.asarray(grey, dtype=np.float64) / 255.0).astype(np.float32)
    try:
        rgb = np.asarray(img.convert("RGB"), dtype=np.float64)
    except Exception as exc:
        raise DataError(f"unsupported image mode {mode} ({_one_line(exc)})", where=str(path)) from None
    return _finish(_luma(rgb) / 255.0)


def _wide_to_unit(arr: np.ndarray, mode: str) -> np.ndarray:
    """32-bit int / float images carry no bit depth of their own (TIFF, older Pillow's PNG)."""
    lo, hi = (float(arr.min()), float(arr.max())) if np.isfinite(arr).all() else (-1.0, -1.0)
    if mode == "F" and 0.0 <= lo and hi <= 1.0:
        return arr
    # Older Pillow opens 16-bit grey PNG as "I"; values that fit 16 bits are scaled as such.
    if mode == "I" and 0.0 <= lo and hi <= 65535.0:
        return arr / 65535.0
    return _percentile_window(arr)


def _mask_from_pillow(img: Image.Image, fmt: str | None) -> np.ndarray:
    if img.mode in ("P", "PA"):
        img = img.convert("RGBA")
    arr = np.asarray(img)
    if arr.ndim == 2:
        return _mask_channel(arr, fmt)
    colour, alpha = (arr[..., :-1], arr[..., -1]) if img.mode in ("LA", "RGBA") else (arr, None)
    mask = _mask_channel(colour, fmt).any(axis=-1)
    # A mask painted only into the alpha channel (black strokes on transparency) is still a mask.
    if alpha is not None and not mask.any():
        mask = _mask_channel(alpha, fmt)
    return mask


def _mask_channel(arr: np.ndarray, fmt: str | None) -> np.ndarray:
    if fmt == "JPEG":
        # Lossy compression leaves faint non-zero ringing around edges; threshold at mid-grey.
        return arr >= 128
    return arr != 0


def _luma(arr: np.ndarray) -> np.ndarray:
    return np.asarray(arr[..., :3], dtype=np.float64) @ LUMA


def _finish(arr: np.ndarray) -> np.ndarray:
    out = np.nan_to_num(np.asarray(arr, dtype=np.float64), nan=0.0, posinf=1.0, neginf=0.0)
    return np.ascontiguousarray(np.clip(out, 0.0, 1.0), dtype=np.float32)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
