"""Re-encode a DICOM file in another transfer syntax: for the decoder tests, the full-size decode
benchmark, and users who want compressed copies of the synthetic data.

pydicom encodes RLE, JPEG-LS and JPEG 2000 itself (through pyjpegls and pylibjpeg-openjpeg); it
has no encoder for the JPEG processes (baseline, extended 12-bit, lossless), which GDCM writes.
Deflate and big-endian are encodings of the whole data set, written by pydicom's writer.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pydicom
from pydicom import uid

from benchmark.core.errors import CxrbenchError

# GDCM's names for the JPEG processes pydicom cannot encode.
_GDCM_JPEG = {
    uid.JPEGBaseline8Bit: "JPEGBaselineProcess1",
    uid.JPEGExtended12Bit: "JPEGExtendedProcess2_4",
    uid.JPEGLossless: "JPEGLosslessProcess14",
    uid.JPEGLosslessSV1: "JPEGLosslessProcess14_1",
}


def transcode(src: str | Path | pydicom.Dataset, dst: str | Path, syntax: str, **options: Any) -> Path:
    """Write `src` (an uncompressed data set or file) to `dst` in transfer syntax `syntax`.

    `options` go to pydicom's encoder (e.g. `jls_error=2` for near-lossless JPEG-LS,
    `j2k_cr=[20]` for lossy JPEG 2000); the GDCM JPEG processes take `quality` (1-100, lossy only).
    """
    dst, syntax = Path(dst), uid.UID(syntax)
    ds = src if isinstance(src, pydicom.Dataset) else pydicom.dcmread(src)
    ds = _copy(ds)
    if syntax in _GDCM_JPEG:
        _gdcm_jpeg(ds, dst, syntax, int(options.get("quality", 90)))
    elif syntax in (uid.DeflatedExplicitVRLittleEndian, uid.ExplicitVRBigEndian):
        _native(ds, dst, syntax)
    else:
        ds.compress(syntax, **options)
        ds.save_as(dst, enforce_file_format=True)
    return dst


def _copy(ds: pydicom.Dataset) -> pydicom.Dataset:
    """A private copy, so compressing in place leaves the caller's data set alone."""
    import copy

    return copy.deepcopy(ds)


def _native(ds: pydicom.Dataset, dst: Path, syntax: uid.UID) -> None:
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        ds.decompress()
    arr = ds.pixel_array if syntax == uid.ExplicitVRBigEndian else None
    ds.file_meta.TransferSyntaxUID = syntax
    if arr is not None:
        # The writer swaps element values but not Pixel Data bytes, which it cannot interpret.
        ds.PixelData = arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    # Changing byte order is a conversion pydicom only does when asked to force it.
    pydicom.dcmwrite(dst, ds, implicit_vr=False, little_endian=syntax != uid.ExplicitVRBigEndian,
                     force_encoding=True)


def _gdcm_jpeg(ds: pydicom.Dataset, dst: Path, syntax: uid.UID, quality: int) -> None:
    try:
        import gdcm
    except ImportError:
        raise CxrbenchError(f"writing {syntax.name} needs python-gdcm (pip install python-gdcm)",
                            where=str(dst)) from None
    with tempfile.TemporaryDirectory(prefix="cxrbench-transcode-") as tmp:
        plain = Path(tmp) / "plain.dcm"
        if ds.file_meta.TransferSyntaxUID.is_compressed:
            ds.decompress()
        ds.save_as(plain, enforce_file_format=True)
        reader = gdcm.ImageReader()
        reader.SetFileName(str(plain))
        if not reader.Read():
            raise CxrbenchError("GDCM cannot read the uncompressed copy", where=str(dst))
        change = gdcm.ImageChangeTransferSyntax()
        change.SetTransferSyntax(gdcm.TransferSyntax(getattr(gdcm.TransferSyntax, _GDCM_JPEG[syntax])))
        if syntax not in (uid.JPEGLossless, uid.JPEGLosslessSV1):
            codec = gdcm.JPEGCodec()
            codec.SetLossless(False)
            codec.SetQuality(float(quality))
            change.SetUserCodec(codec)
        change.SetInput(reader.GetImage())
        if not change.Change():
            raise CxrbenchError(f"GDCM cannot encode this image as {syntax.name}", where=str(dst))
        writer = gdcm.ImageWriter()
        writer.SetFileName(str(dst))
        writer.SetFile(reader.GetFile())
        writer.SetImage(change.GetOutput())
        if not writer.Write():
            raise CxrbenchError(f"GDCM cannot write {syntax.name}", where=str(dst))


def dx_dataset(pixels: Any, photometric: str, bits: int, patient_id: str) -> pydicom.Dataset:
    """An uncompressed digital X-ray (DX) data set around `pixels`, ready for `transcode` or save_as."""
    from pydicom.dataset import FileMetaDataset

    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # digital X-ray
    ds.SOPInstanceUID = uid.generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Modality = "DX"
    ds.PatientID = patient_id
    ds.set_pixel_data(pixels, photometric, bits, generate_instance_uid=False)
    return ds
