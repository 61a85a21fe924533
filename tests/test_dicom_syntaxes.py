"""Every transfer syntax chest X-ray archives use decodes, lossless ones to exactly the stored pixels,
through the harness's own reader (benchmark.data.images); and the DICOM pixel limit holds before
any decoding or inflating."""
from __future__ import annotations

import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import uid
from pydicom.data import get_testdata_file
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.pixels import pixel_array

from benchmark.data.dicom_codecs import PLUGIN_ORDER, PixelLimitError, decoders_for
from benchmark.data.dicom_transcode import transcode
from benchmark.data.images import decode_dicom_pixels, decode_image
from benchmark.core.errors import CxrbenchError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def sample(name: str) -> Path:
    """A file from pydicom or pydicom-data (a dev dependency); never downloaded."""
    found = get_testdata_file(name, download=False)
    assert found, f"{name} missing: install the dev extra (pydicom-data)"
    return Path(found)


# --- pydicom's own compressed files against their uncompressed originals --------------------

OWN_PAIRS = [  # (compressed, uncompressed original), all lossless
    ("RG1_J2KR.dcm", "RG1_UNCR.dcm"),                      # JPEG 2000 lossless, chest CR, 15 bit
    ("RG3_J2KR.dcm", "RG3_UNCR.dcm"),
    ("JPEG2000.dcm", "JPEG2000_UNC.dcm"),                   # .91 holding a reversible stream
    ("MR_small_jp2klossless.dcm", "MR_small.dcm"),
    ("emri_small_jpeg_2k_lossless.dcm", "emri_small.dcm"),  # multi-frame: the first frame
    ("MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm"),      # JPEG-LS lossless
    ("emri_small_jpeg_ls_lossless.dcm", "emri_small.dcm"),
    ("MR_small_RLE.dcm", "MR_small.dcm"),                   # RLE
    ("emri_small_RLE.dcm", "emri_small.dcm"),
    ("MR_small_bigendian.dcm", "MR_small.dcm"),             # explicit VR big endian
    ("emri_small_big_endian.dcm", "emri_small.dcm"),
]


@pytest.mark.parametrize(("compressed", "original"), OWN_PAIRS)
def test_pydicom_lossless_files_decode_exactly(compressed, original):
    got, want = decode_dicom_pixels(sample(compressed)), decode_dicom_pixels(sample(original))
    assert got.dtype == want.dtype and np.array_equal(got, want)


def test_pydicom_jpeg_extended_12_bit_matches_reference_values():
    # pydicom's reference values for JPEG-lossy.dcm (12-bit process 4), which pydicom's GDCM
    # plug-in refuses; the harness's GDCM plug-in decodes it.
    for name in ("JPEG-lossy.dcm", "JPGExtended.dcm"):
        arr = decode_dicom_pixels(sample(name))
        assert arr.shape == (1024, 256) and arr[420, 140] == 244 and arr[230, 120] == 95
        assert decode_image(sample(name)).shape == (1024, 256)


@pytest.mark.parametrize("name", ["JPEG-LL.dcm", "JPGLosslessP14SV1_1s_1f_8b.dcm", "JPEGLSNearLossless_16.dcm",
                                  "image_dfl.dcm", "SC_rgb_jpeg_dcmtk.dcm"])
def test_other_pydicom_files_decode(name):
    img = decode_image(sample(name))
    ds = pydicom.dcmread(sample(name), stop_before_pixels=True)
    assert img.shape == (ds.Rows, ds.Columns) and np.isfinite(img).all() and img.std() > 0


# --- a real chest radiograph transcoded here into every syntax ----------------------------------

LOSSLESS = {  # syntax -> encoder options (JPEG-LS near-lossless with NEAR = 0 is lossless)
    uid.JPEGLosslessSV1: {}, uid.JPEGLossless: {}, uid.JPEGLSLossless: {},
    uid.JPEGLSNearLossless: {"jls_error": 0}, uid.JPEG2000Lossless: {}, uid.RLELossless: {},
    uid.DeflatedExplicitVRLittleEndian: {}, uid.ExplicitVRBigEndian: {},
}


@pytest.fixture(scope="module")
def rg1_copies(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("rg1")
    copies = {s: transcode(sample("RG1_UNCR.dcm"), out / f"{s}.dcm", s, **o) for s, o in LOSSLESS.items()}
    # A reversible JPEG 2000 stream is also valid under the general JPEG 2000 syntax (.91).
    ds = pydicom.dcmread(copies[uid.JPEG2000Lossless])
    ds.file_meta.TransferSyntaxUID = uid.JPEG2000
    ds.save_as(out / "j2k91.dcm")
    copies[uid.JPEG2000] = out / "j2k91.dcm"
    return copies


@pytest.mark.parametrize("syntax", [*LOSSLESS, uid.JPEG2000], ids=lambda s: uid.UID(s).keyword)
def test_chest_radiograph_lossless_in_every_syntax(rg1_copies, syntax):
    path = rg1_copies[syntax]
    assert pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID == syntax
    want = pydicom.dcmread(sample("RG1_UNCR.dcm")).pixel_array
    got = decode_dicom_pixels(path)
    assert got.dtype == want.dtype and np.array_equal(got, want)
    # The canonical image too: same header, same pixels, same floats.
    assert np.array_equal(decode_image(path), decode_image(sample("RG1_UNCR.dcm")))


@pytest.mark.parametrize("syntax", [*(s for s in LOSSLESS if uid.UID(s).is_compressed), uid.JPEG2000],
                         ids=lambda s: uid.UID(s).keyword)
def test_every_installed_plugin_agrees_on_lossless_streams(rg1_copies, syntax):
    """So the harness's choice among plug-ins cannot change a lossless result."""
    plugins = decoders_for(syntax)
    assert plugins, f"no decoder installed for {syntax.name}"
    ds = pydicom.dcmread(rg1_copies[syntax])
    want = pydicom.dcmread(sample("RG1_UNCR.dcm")).pixel_array
    for plugin in plugins:
        assert np.array_equal(pixel_array(ds, index=0, decoding_plugin=plugin), want), plugin


def synthetic(bits: int, rows: int = 240, cols: int = 200) -> tuple[pydicom.Dataset, np.ndarray]:
    """A smooth chest-like gradient with texture: what lossy JPEG is meant for."""
    y, x = np.mgrid[0:rows, 0:cols] / np.array([rows, cols])[:, None, None]
    img = 0.5 + 0.3 * np.sin(6 * x) * np.cos(4 * y) + 0.1 * np.sin(40 * x * y)
    pixels = np.round(img * (2**bits - 1)).astype(np.uint8 if bits == 8 else np.uint16)
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.1.1", uid.generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Modality = "DX"
    ds.set_pixel_data(pixels, "MONOCHROME2", bits, generate_instance_uid=False)
    return ds, pixels


@pytest.mark.parametrize(("syntax", "bits", "options", "tolerance", "mean_tolerance"), [
    (uid.JPEGBaseline8Bit, 8, {"quality": 95}, 0.03, 0.005),
    (uid.JPEGExtended12Bit, 12, {"quality": 95}, 0.03, 0.005),
    (uid.JPEGLSNearLossless, 12, {"jls_error": 3}, 3 / 4095 + 1e-9, 3 / 4095),  # |error| <= NEAR exactly
    (uid.JPEG2000, 12, {"j2k_cr": [10]}, 0.03, 0.005),
], ids=["jpeg-baseline-8", "jpeg-extended-12", "jpeg-ls-near-3", "jpeg2000-lossy"])
def test_lossy_syntaxes_decode_close_and_deterministically(tmp_path, syntax, bits, options, tolerance,
                                                           mean_tolerance):
    ds, pixels = synthetic(bits)
    path = transcode(ds, tmp_path / "lossy.dcm", syntax, **options)
    got = decode_dicom_pixels(path)
    assert got.shape == pixels.shape
    err = np.abs(got.astype(np.float64) - pixels) / (2**bits - 1)
    assert err.max() <= tolerance and err.mean() < mean_tolerance
    if syntax == uid.JPEGLSNearLossless:
        assert err.max() > 0 or options["jls_error"] == 0  # really lossy, within NEAR
    # The harness's result is the first plug-in of its order, whatever else is installed.
    first = decoders_for(syntax)[0]
    assert first == PLUGIN_ORDER[syntax][0]
    assert np.array_equal(got, pixel_array(pydicom.dcmread(path), index=0, decoding_plugin=first))


# --- the pixel limit ------------------------------------------------------------------------


def deflated_bomb(path: Path, rows: int, cols: int, pixel_bytes: int | None = None) -> Path:
    """A deflated DICOM declaring rows x cols 16-bit zeros (or holding `pixel_bytes` of them),
    written without holding them."""
    ds = pydicom.Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.1.1", uid.generate_uid()
    ds.Modality, ds.SamplesPerPixel, ds.PhotometricInterpretation = "DX", 1, "MONOCHROME2"
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = (
        rows, cols, 16, 12, 11, 0)
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = uid.DeflatedExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    meta_fp, body = DicomBytesIO(), DicomBytesIO()
    for fp in (meta_fp, body):
        fp.is_little_endian, fp.is_implicit_VR = True, False
    write_file_meta_info(meta_fp, meta)
    write_dataset(body, ds)
    n = rows * cols * 2 if pixel_bytes is None else pixel_bytes
    header = body.getvalue() + b"\xe0\x7f\x10\x00OW\0\0" + n.to_bytes(4, "little")
    z = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    zeros = bytes(2**20)
    with path.open("wb") as fh:
        fh.write(b"\0" * 128 + b"DICM" + meta_fp.getvalue())
        fh.write(z.compress(header))
        for start in range(0, n, len(zeros)):
            fh.write(z.compress(zeros[: min(len(zeros), n - start)]))
        fh.write(z.flush())
    return path


def test_deflated_bomb_refused_before_inflating(tmp_path):
    path = deflated_bomb(tmp_path / "bomb.dcm", 12_000, 12_000)
    assert path.stat().st_size < 1_000_000  # 288 MB of pixels in a few hundred KB
    tracemalloc.start()
    try:
        with pytest.raises(PixelLimitError) as info:
            decode_image(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(info.value)
    assert message == (f"{path}: too many pixels: 12,000 rows x 12,000 columns x 1 frames = 144,000,000 pixels, "
                       "over the limit of 89,478,485 (raise it with CXRBENCH_MAX_PIXELS)")
    assert peak < 16 * 2**20, f"peak {peak / 2**20:.0f} MiB while refusing"
    # And the resident set of a fresh process (zlib's own buffers are not traced above).
    script = ("import resource, sys\nfrom benchmark.data.images import decode_image\n"
              "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
              "try:\n    decode_image(sys.argv[1])\nexcept Exception as exc:\n    print(type(exc).__name__)\n"
              "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n")
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[1])
    kind, growth_mib = done.stdout.split()
    assert kind == "PixelLimitError" and int(growth_mib) < 32, done.stdout
    assert issubclass(PixelLimitError, CxrbenchError) and PixelLimitError.exit_code == 2


def test_deflated_within_limit_decodes_and_padding_bomb_is_capped(tmp_path):
    path = deflated_bomb(tmp_path / "ok.dcm", 300, 200)
    assert decode_image(path).shape == (300, 200)
    # 300 x 200 declared, 400 MB of pixel element behind it: inflating stops at the cap.
    liar = deflated_bomb(tmp_path / "liar.dcm", 300, 200, pixel_bytes=400 * 2**20)
    tracemalloc.start()
    try:
        with pytest.raises(CxrbenchError, match="liar.dcm: deflated DICOM inflates to more than its header"):
            decode_image(liar)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200 * 2**20, f"peak {peak / 2**20:.0f} MiB"


def test_compressed_and_multiframe_headers_checked_before_decoding(tmp_path, monkeypatch):
    ds = pydicom.dcmread(sample("MR_small_jpeg_ls_lossless.dcm"))
    ds.Rows = ds.Columns = 20_000  # 400 M pixels behind a 64 x 64 stream
    ds.save_as(tmp_path / "huge.dcm")
    with pytest.raises(PixelLimitError, match=r"huge.dcm: too many pixels: 20,000 rows x 20,000 columns"):
        decode_image(tmp_path / "huge.dcm")
    monkeypatch.setenv("CXRBENCH_MAX_PIXELS", "40000")  # emri_small: 64 x 64 x 10 frames = 40,960
    with pytest.raises(PixelLimitError, match=r"64 rows x 64 columns x 10 frames = 40,960 pixels, over the limit "
                                              r"of 40,000"):
        decode_image(sample("emri_small_RLE.dcm"))
    monkeypatch.setenv("CXRBENCH_MAX_PIXELS", "40960")
    assert decode_image(sample("emri_small_RLE.dcm")).shape == (64, 64)


def test_prepare_names_the_bomb_in_one_line_exit_2_and_keeps_the_good_row(tmp_path, capsys):
    from tests.helpers import cli

    (tmp_path / "d").mkdir()
    transcode(sample("MR_small.dcm"), tmp_path / "d" / "good.dcm", uid.JPEGLSLossless)
    deflated_bomb(tmp_path / "d" / "bomb.dcm", 12_000, 12_000)
    (tmp_path / "d" / "manifest.csv").write_text("path,label,patient_id\ngood.dcm,negative,p1\nbomb.dcm,typical,p2\n")
    code, _out, err = cli(capsys, "prepare", "--data", str(tmp_path / "d"), "--size", "64",
                          "--cache-dir", str(tmp_path / "cache"))
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert "stored 1 of 2 images" in lines[0] and "row 3:" in lines[0] and "bomb.dcm: too many pixels" in lines[0]
