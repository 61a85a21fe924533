"""Which decoder reads which DICOM transfer syntax, and the pixel limit checked before any decode.

pydicom 3 may have several plug-ins for one syntax and, left alone, tries them in the order they
were registered, which depends on what happens to be installed. Decoders of lossy streams differ in
the last grey level, so the harness names its order: the first available plug-in of `PLUGIN_ORDER`
decodes, the next ones only when it fails on that stream. All are permissively licensed (README,
"DICOM decoders"); the GPL pylibjpeg-libjpeg is never asked for, even when installed.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom import uid
from pydicom.pixels import get_decoder, pixel_array

from benchmark.core.errors import DataError

GDCM12 = "cxrbench-gdcm12"  # our plug-in for 12-bit JPEG Extended; see _decode_jpeg_extended
PLUGIN_ORDER: Mapping[str, tuple[str, ...]] = {
    # GDCM is the only non-GPL decoder of lossless JPEG (process 14) with wheels everywhere.
    uid.JPEGLossless: ("gdcm",),
    uid.JPEGLosslessSV1: ("gdcm",),
    # CharLS 2 in pyjpegls decodes about twice as fast as the CharLS inside GDCM.
    uid.JPEGLSLossless: ("pyjpegls", "gdcm"),
    uid.JPEGLSNearLossless: ("pyjpegls", "gdcm"),
    # libjpeg-turbo in Pillow for 8-bit baseline; pydicom's GDCM plug-in refuses 12-bit
    # extended although GDCM decodes it, hence our own plug-in for that case.
    uid.JPEGBaseline8Bit: ("pillow", "gdcm"),
    uid.JPEGExtended12Bit: (GDCM12, "pillow"),
    # OpenJPEG 2.5 in all three; pylibjpeg-openjpeg was the fastest here (README, DICOM decoders).
    uid.JPEG2000Lossless: ("pylibjpeg", "gdcm", "pillow"),
    uid.JPEG2000: ("pylibjpeg", "gdcm", "pillow"),
    # pylibjpeg-rle (Rust) is ~10x faster than pydicom's NumPy decoder on radiographs.
    uid.RLELossless: ("pylibjpeg", "pydicom"),
}
# What to install for each plug-in (named in the "no decoder" error).
PLUGIN_PACKAGES = {"gdcm": "python-gdcm", GDCM12: "python-gdcm", "pyjpegls": "pyjpegls",
                   "pillow": "pillow", "pydicom": "pydicom",
                   "pylibjpeg": "pylibjpeg with pylibjpeg-openjpeg or pylibjpeg-rle"}

# --- pixel limit ---------------------------------------------------------------------------------

MAX_PIXELS_ENV = "CXRBENCH_MAX_PIXELS"


class PixelLimitError(DataError):
    """An image declaring more pixels than the configured limit (refused before decoding)."""


def max_pixels() -> int:
    """The pixel limit: $CXRBENCH_MAX_PIXELS, else Pillow's own default (Image.MAX_IMAGE_PIXELS)."""
    from PIL import Image

    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not raw:
        return int(Image.MAX_IMAGE_PIXELS or 0) or _PILLOW_DEFAULT
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise DataError(f"must be a positive whole number of pixels, got {raw!r}", where=MAX_PIXELS_ENV)
    return value


_PILLOW_DEFAULT = int(1024 * 1024 * 1024 // 4 // 3)  # Pillow's value, if someone set it to None


def check_pixel_count(count: int, detail: str, path: Path | str) -> None:
    limit = max_pixels()
    if count > limit:
        size = f"{detail} = {count:,}" if detail else f"{count:,}"
        raise PixelLimitError(f"too many pixels: {size} pixels, over the limit of {limit:,} "
                              f"(raise it with {MAX_PIXELS_ENV})", where=str(path))


def check_dicom_pixels(ds: pydicom.Dataset | Mapping[str, Any], path: Path | str) -> None:
    """Rows x Columns x frames from the header, before any pixel data is decoded or inflated."""
    try:
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        frames = max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        raise DataError("invalid Rows, Columns or NumberOfFrames in the DICOM header", where=str(path)) from None
    check_pixel_count(rows * cols * frames, f"{rows:,} rows x {cols:,} columns x {frames:,} frames", path)


def expected_pixel_bytes(ds: pydicom.Dataset | Mapping[str, Any]) -> int:
    """Bytes of uncompressed pixel data the header declares (all frames)."""
    try:
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        frames = max(1, int(ds.get("NumberOfFrames", 1) or 1))
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        bits = int(ds.get("BitsAllocated", 16) or 16)
    except (TypeError, ValueError):
        return 0
    return math.ceil(rows * cols * frames * samples * bits / 8)


# --- decoding ------------------------------------------------------------------------------------

def decoders_for(tsyntax: uid.UID) -> tuple[str, ...]:
    """The available plug-ins for a compressed syntax, in the harness's order."""
    _register_once()
    try:
        available = set(get_decoder(tsyntax).available_plugins)
    except NotImplementedError:  # a compressed syntax pydicom has no decoder class for
        return ()
    return tuple(p for p in PLUGIN_ORDER.get(tsyntax, ()) if p in available)


def decode_first_frame(ds: pydicom.Dataset, path: Path) -> np.ndarray:
    """Pixels of the first frame as stored, decoded by the harness's plug-in for the syntax."""
    tsyntax = uid.UID(ds.file_meta.TransferSyntaxUID)
    plugins = decoders_for(tsyntax) if tsyntax.is_compressed else ("",)  # "": pydicom's native reader
    if not plugins:
        wanted = sorted({PLUGIN_PACKAGES[p] for p in PLUGIN_ORDER.get(tsyntax, ())})
        hint = f"; install {' or '.join(wanted)}" if wanted else ""
        raise DataError(f"unsupported transfer syntax '{tsyntax.name}' ({tsyntax}): no decoder installed{hint}",
                        where=str(path))
    failures = []
    for plugin in plugins:
        try:
            arr = pixel_array(ds, index=0, decoding_plugin=plugin)
        except Exception as exc:  # plug-ins raise assorted types for corrupt or unsupported streams
            reason = _last_line(exc)  # pydicom's line already starts with the plug-in's name
            failures.append(reason if not plugin or reason.startswith(f"{plugin}:") else f"{plugin}: {reason}")
            continue
        # Big-endian files come back in their byte order; everything downstream expects native.
        return arr if arr.dtype.isnative else arr.astype(arr.dtype.newbyteorder("="))
    raise DataError(f"cannot decode {tsyntax.name} pixel data ({'; '.join(failures)})", where=str(path))


def _last_line(exc: BaseException) -> str:
    # pydicom's "all plug-ins failed" message lists each failure on its own line; keep the cause.
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[-1] if lines else type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


_registered = False


def _register_once() -> None:
    global _registered
    if _registered:
        return
    decoder = get_decoder(uid.JPEGExtended12Bit)
    if GDCM12 not in decoder.available_plugins and GDCM12 not in decoder.missing_dependencies:
        decoder.add_plugin(GDCM12, (__name__, "_decode_jpeg_extended"))
    _registered = True


# pydicom's plug-in protocol: module-level is_available() and DECODER_DEPENDENCIES.
DECODER_DEPENDENCIES = {uid.JPEGExtended12Bit: ("python-gdcm>=3.0.10",)}


def is_available(tsyntax: str) -> bool:
    try:
        import gdcm  # noqa: F401
    except ImportError:
        return False
    return tsyntax == uid.JPEGExtended12Bit


def _decode_jpeg_extended(src: bytes, runner: Any) -> bytes:
    """One JPEG Extended (process 2/4) frame, 8 or 12 bits, through GDCM.

    GDCM carries IJG libjpeg builds for 8, 12 and 16 bits; pydicom's own GDCM plug-in refuses 12-bit
    streams, the precision a 12-bit lossy radiograph uses. Output is checked in the tests against
    pydicom's reference values for JPEG-lossy.dcm.
    """
    import gdcm

    fragment = gdcm.Fragment()
    fragment.SetByteStringValue(src)
    fragments = gdcm.SequenceOfFragments.New()
    fragments.AddFragment(fragment)
    elem = gdcm.DataElement(gdcm.Tag(0x7FE0, 0x0010))
    elem.SetValue(fragments.__ref__())
    img = gdcm.Image()
    img.SetNumberOfDimensions(2)
    img.SetDimensions((runner.columns, runner.rows, 1))
    img.SetDataElement(elem)
    pi = gdcm.PhotometricInterpretation.GetPIType(str(runner.photometric_interpretation))
    img.SetPhotometricInterpretation(gdcm.PhotometricInterpretation(pi))
    if runner.samples_per_pixel > 1:
        img.SetPlanarConfiguration(runner.planar_configuration)
    img.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGExtendedProcess2_4))
    bits = runner.bits_stored
    img.SetPixelFormat(gdcm.PixelFormat(runner.samples_per_pixel, runner.bits_allocated, bits, bits - 1,
                                        runner.pixel_representation))
    # GDCM tries its 16-bit libjpeg first and prints "Unsupported JPEG data precision 12" to the
    # process's stderr before its 12-bit build succeeds; the pixels are right (see the tests).
    buffer = img.GetBuffer()
    if not buffer:
        raise ValueError("GDCM could not decode the JPEG Extended stream")
    # GDCM hands char* back as str; re-encode to the original bytes.
    return buffer.encode("utf-8", "surrogateescape")
