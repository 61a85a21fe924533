"""Decoding files into the canonical image: real radiographs, synthetic DICOM/PNG/JPEG, bad input."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless, generate_uid

from benchmark.data import images
from benchmark.data.dicom_codecs import PixelLimitError
from benchmark.data.images import decode_image, decode_mask, read_dicom_header
from benchmark.core.errors import DataError


def sample(name: str) -> Path:
    """A file from the pydicom-data package (a dev dependency); never downloaded."""
    found = get_testdata_file(name, download=False)
    assert found, f"{name} missing: install the dev extra (pydicom-data)"
    return Path(found)


@pytest.fixture(scope="module")
def rg1() -> np.ndarray:
    return decode_image(sample("RG1_UNCR.dcm"))


def region(img: np.ndarray, y0: float, y1: float, x0: float, x1: float) -> np.ndarray:
    """A rectangle given as fractions of the image height and width."""
    h, w = img.shape
    return img[int(y0 * h) : int(y1 * h), int(x0 * w) : int(x1 * w)]


# --- real chest radiograph (pydicom-data RG1: CR, MONOCHROME1, 15 bit, window 15000/30000) ----


def test_rg1_lungs_dark_bone_bright(rg1):
    assert rg1.shape == (1955, 1841) and rg1.dtype == np.float32
    assert 0.0 <= rg1.min() and rg1.max() <= 1.0
    lungs = [region(rg1, 0.20, 0.32, 0.20, 0.36), region(rg1, 0.20, 0.32, 0.63, 0.79)]
    dense = {
        "spine/mediastinum": region(rg1, 0.35, 0.75, 0.45, 0.53),
        "liver below the right hemidiaphragm": region(rg1, 0.80, 0.90, 0.18, 0.38),
        "right shoulder": region(rg1, 0.12, 0.22, 0.02, 0.10),
    }
    darkest_dense = min(float(r.mean()) for r in dense.values())
    for lung in lungs:
        assert 0.40 < lung.mean() < 0.65
        assert lung.mean() + 0.15 < darkest_dense


def test_rg1_header_window_and_monochrome1_inversion(rg1):
    ds = pydicom.dcmread(sample("RG1_UNCR.dcm"))
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    assert (float(ds.WindowCenter), float(ds.WindowWidth)) == (15000.0, 30000.0)
    raw = ds.pixel_array.astype(np.float64)
    # DICOM linear window worked out by hand, then inverted because air is stored bright.
    expected = 1.0 - np.clip((raw - 14999.5) / 29999.0 + 0.5, 0.0, 1.0)
    np.testing.assert_allclose(rg1, expected, atol=1e-5)
    assert np.corrcoef(raw[::7, ::7].ravel(), rg1[::7, ::7].ravel())[0, 1] < -0.99


@pytest.mark.parametrize(
    ("name", "tolerance"), [("RG1_J2KR.dcm", 1e-6), ("RG1_J2KI.dcm", 0.01)]
)
def test_rg1_jpeg2000_copies_match(rg1, name, tolerance):
    ds = read_dicom_header(sample(name))
    assert ds.file_meta.TransferSyntaxUID.is_compressed
    img = decode_image(sample(name))
    assert img.shape == rg1.shape and img.dtype == np.float32
    assert np.abs(img - rg1).mean() < tolerance


def test_header_only_read():
    ds = read_dicom_header(sample("RG1_UNCR.dcm"))
    assert ds.Modality == "CR" and "PixelData" not in ds


# --- synthetic DICOM --------------------------------------------------------------------------


def write_dicom(path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2",
                preamble: bool = True, **elements) -> Path:
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # CR image storage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Modality = "CR"
    bits = 8 if pixels.dtype == np.uint8 else 16
    ds.set_pixel_data(pixels, photometric, bits, generate_instance_uid=False)
    for key, value in elements.items():
        setattr(ds, key, value)
    if preamble:
        ds.save_as(path, enforce_file_format=True)
    else:
        del ds.file_meta
        ds.save_as(path, implicit_vr=True, little_endian=True)
    return path


RAMP = np.arange(0, 1000, dtype=np.uint16).reshape(25, 40)


def test_monochrome1_is_monochrome2_inverted(tmp_path):
    for window in ({}, {"WindowCenter": 500, "WindowWidth": 600}):
        m2 = decode_image(write_dicom(tmp_path / "m2.dcm", RAMP, "MONOCHROME2", **window))
        m1 = decode_image(write_dicom(tmp_path / "m1.dcm", RAMP, "MONOCHROME1", **window))
        np.testing.assert_allclose(m1, 1.0 - m2, atol=1e-6)
        assert m2[0, 0] < m2[-1, -1]


def test_rescale_applied_before_window(tmp_path):
    stored = np.array([[500, 750, 1000]], dtype=np.uint16)  # modality values 0, 500, 1000
    path = write_dicom(tmp_path / "r.dcm", stored, RescaleSlope=2, RescaleIntercept=-1000,
                       WindowCenter=500, WindowWidth=1000, VOILUTFunction="LINEAR_EXACT")
    np.testing.assert_allclose(decode_image(path), [[0.0, 0.5, 1.0]], atol=1e-6)


def test_first_of_several_windows_is_used(tmp_path):
    pixels = np.array([[0, 100, 150, 200, 900]], dtype=np.uint16)
    path = write_dicom(tmp_path / "w.dcm", pixels, WindowCenter=[100, 400], WindowWidth=[201, 800])
    expected = np.clip((pixels - 99.5) / 200.0 + 0.5, 0, 1)  # PS3.3 linear window, C=100 W=201
    np.testing.assert_allclose(decode_image(path), expected, atol=1e-6)


@pytest.mark.parametrize("vr", ["US", "OW"])
def test_voi_lut_sequence_preferred_over_window(tmp_path, vr):
    item = pydicom.Dataset()
    item.LUTDescriptor = [256, 0, 8]
    reverse = np.arange(255, -1, -1, dtype="<u2")  # a LUT that reverses grey levels
    item.add_new(0x00283006, vr, reverse.tolist() if vr == "US" else reverse.tobytes())
    pixels = np.array([[0, 51, 255]], dtype=np.uint16)
    path = write_dicom(tmp_path / "lut.dcm", pixels, VOILUTSequence=Sequence([item]),
                       WindowCenter=128, WindowWidth=256)
    np.testing.assert_allclose(decode_image(path), [[1.0, 204 / 255, 0.0]], atol=1e-6)


def test_no_window_uses_robust_percentiles(tmp_path):
    pixels = RAMP.copy()
    pixels[0, 0] = 60000  # a hot pixel must not squash the anatomy to black
    img = decode_image(write_dicom(tmp_path / "p.dcm", pixels))
    assert img[0, 0] == 1.0
    assert abs(float(np.median(img)) - 0.5) < 0.02
    assert img[0, 1] == 0.0


def test_preamble_less_dicom_dispatched_by_content(tmp_path):
    bare = write_dicom(tmp_path / "bare.dcm", RAMP, preamble=False)
    assert open(bare, "rb").read(132)[128:] != b"DICM"
    full = write_dicom(tmp_path / "full.dcm", RAMP)
    np.testing.assert_array_equal(decode_image(bare), decode_image(full))
    disguised = tmp_path / "looks_like.png"
    disguised.write_bytes(full.read_bytes())
    np.testing.assert_array_equal(decode_image(disguised), decode_image(full))


def test_multiframe_uses_first_frame(tmp_path):
    frames = np.stack([RAMP, RAMP[::-1, ::-1]])
    img = decode_image(write_dicom(tmp_path / "mf.dcm", frames, WindowCenter=500,
                                   WindowWidth=1000))
    assert img.shape == RAMP.shape and img[0, 0] < img[-1, -1]


def test_rgb_dicom_to_luminance(tmp_path):
    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    rgb[0, 0], rgb[0, 1], rgb[0, 2], rgb[1, :] = (255, 0, 0), (0, 255, 0), (0, 0, 255), 255
    img = decode_image(write_dicom(tmp_path / "rgb.dcm", rgb, "RGB"))
    np.testing.assert_allclose(img, [[0.299, 0.587, 0.114], [1, 1, 1]], atol=1e-6)


# --- PNG / JPEG -------------------------------------------------------------------------------


def test_png_8_and_16_bit_scaled_by_depth(tmp_path):
    Image.fromarray(np.array([[0, 51, 255]], dtype=np.uint8)).save(tmp_path / "g8.png")
    np.testing.assert_allclose(decode_image(tmp_path / "g8.png"), [[0, 0.2, 1]], atol=1e-7)
    values = np.array([[0, 1000, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    np.testing.assert_allclose(decode_image(tmp_path / "g16.png"), values / 65535.0, atol=1e-7)


def test_jpeg_8_bit_scaled(tmp_path):
    ramp = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (64, 1))
    Image.fromarray(ramp).save(tmp_path / "g.jpg", quality=95)
    img = decode_image(tmp_path / "g.jpg")
    assert img.shape == (64, 64) and img.dtype == np.float32
    assert np.abs(img - ramp / 255.0).mean() < 0.01


def test_rgb_png_and_jpeg_to_luminance(tmp_path):
    rgb = np.zeros((8, 24, 3), dtype=np.uint8)
    rgb[:, :8, 0], rgb[:, 8:16, 1], rgb[:, 16:, 2] = 255, 255, 255
    Image.fromarray(rgb).save(tmp_path / "c.png")
    img = decode_image(tmp_path / "c.png")
    np.testing.assert_allclose(img[0, [0, 8, 16]], [0.299, 0.587, 0.114], atol=1e-6)
    Image.fromarray(rgb).save(tmp_path / "c.jpg", quality=100, subsampling=0)
    assert np.abs(decode_image(tmp_path / "c.jpg")[2:6, [2, 12, 20]] - [0.299, 0.587, 0.114]).max() < 0.03


def test_jpeg_exif_orientation_applied(tmp_path):
    pixels = np.zeros((20, 40), dtype=np.uint8)
    pixels[:, :10] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways; displayed rotated 90 degrees clockwise
    Image.fromarray(pixels).save(tmp_path / "rot.jpg", exif=exif, quality=100)
    img = decode_image(tmp_path / "rot.jpg")
    assert img.shape == (40, 20) and img[:10].mean() > 0.9 and img[12:].mean() < 0.1


# --- masks ------------------------------------------------------------------------------------


def test_mask_any_nonzero_channel(tmp_path):
    grey = np.array([[0, 1], [255, 0]], dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "m.png")
    np.testing.assert_array_equal(decode_mask(tmp_path / "m.png"), grey != 0)
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., 3] = 255  # opaque everywhere: alpha is not part of the mask
    rgba[0, 1, 0] = 7
    Image.fromarray(rgba).save(tmp_path / "m_rgba.png")
    np.testing.assert_array_equal(decode_mask(tmp_path / "m_rgba.png"), [[False, True], [False, False]])


def test_jpeg_mask_ignores_compression_ringing(tmp_path):
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[16:48, 20:40] = 255
    Image.fromarray(mask).save(tmp_path / "m.jpg", quality=60)
    assert (np.asarray(Image.open(tmp_path / "m.jpg")) != 0).sum() > (mask != 0).sum()
    np.testing.assert_array_equal(decode_mask(tmp_path / "m.jpg"), mask != 0)


# --- bad input --------------------------------------------------------------------------------


def png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def make_bad(kind: str, tmp_path: Path) -> Path:
    if kind == "missing":
        return tmp_path / "missing.png"
    if kind == "directory":
        (tmp_path / "folder.png").mkdir()
        return tmp_path / "folder.png"
    if kind == "empty":
        return _write(tmp_path / "empty.png", b"")
    if kind == "text_dcm":
        return _write(tmp_path / "notes.dcm", b"patient 12, chest PA, reported normal\n" * 5)
    if kind == "truncated_dicom":
        data = sample("RG1_UNCR.dcm").read_bytes()
        return _write(tmp_path / "half.dcm", data[: len(data) // 2])
    if kind == "truncated_j2k_dicom":
        data = sample("RG1_J2KR.dcm").read_bytes()
        return _write(tmp_path / "half_j2k.dcm", data[: len(data) // 2])
    if kind == "no_pixels":
        ds = pydicom.dcmread(sample("RG1_UNCR.dcm"))
        del ds.PixelData
        ds.save_as(tmp_path / "nopix.dcm")
        return tmp_path / "nopix.dcm"
    if kind == "corrupt_png":
        data = bytearray(png_bytes())
        data[60:160] = bytes(100)  # zero out part of the compressed stream
        return _write(tmp_path / "corrupt.png", bytes(data))
    if kind == "truncated_png":
        data = png_bytes()
        return _write(tmp_path / "cut.png", data[: len(data) // 2])
    if kind == "truncated_jpeg":
        buf = io.BytesIO()
        Image.open(io.BytesIO(png_bytes())).save(buf, "JPEG")
        return _write(tmp_path / "cut.jpg", buf.getvalue()[: len(buf.getvalue()) // 2])
    raise AssertionError(kind)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


BAD = {
    "missing": "not found",
    "directory": "not a regular file",
    "empty": "empty",
    "text_dcm": "not a DICOM file",
    "truncated_dicom": "truncated",
    "truncated_j2k_dicom": "truncated",
    "no_pixels": "no pixel data",
    "corrupt_png": "corrupt",
    "truncated_png": "truncated",
    "truncated_jpeg": "truncated",
}


# pydicom warns on its way to the error this test expects.
@pytest.mark.filterwarnings("ignore:End of file reached before delimiter")
@pytest.mark.parametrize("kind", sorted(BAD))
@pytest.mark.parametrize("decode", [decode_image, decode_mask], ids=["image", "mask"])
def test_bad_input_is_one_line_data_error(kind, decode, tmp_path):
    path = make_bad(kind, tmp_path)
    with pytest.raises(DataError) as info:
        decode(path)
    message = str(info.value)
    assert path.name in message and BAD[kind] in message and "\n" not in message


def test_mislabelled_stream_names_each_decoder_tried(tmp_path):
    ds = pydicom.dcmread(sample("RG1_J2KR.dcm"))
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless  # J2K bytes behind a JPEG-LS label
    ds.save_as(tmp_path / "jls.dcm")
    with pytest.raises(DataError, match="jls.dcm") as info:
        decode_image(tmp_path / "jls.dcm")
    message = str(info.value)
    # Both JPEG-LS plug-ins are dependencies; they are tried in the harness's fixed order.
    assert "cannot decode JPEG-LS Lossless" in message and "\n" not in message
    assert message.index("pyjpegls:") < message.index("gdcm:")


def test_syntax_without_any_decoder_named(tmp_path):
    ds = pydicom.dcmread(sample("RG1_J2KR.dcm"))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: compressed, no decoder
    ds.save_as(tmp_path / "mpeg.dcm")
    with pytest.raises(DataError, match="mpeg.dcm: unsupported transfer syntax 'MPEG2") as info:
        decode_image(tmp_path / "mpeg.dcm")
    assert "no decoder installed" in str(info.value)


# --- grey-value tables: the fast path must equal the per-pixel computation bit for bit -------


@pytest.mark.parametrize("name", ["RG1_UNCR.dcm", "CT_small.dcm", "693_UNCR.dcm", "mlut_18.dcm", "vlut_04.dcm",
                                  "MR_small_bigendian.dcm", "JPEG-LL.dcm", "liver_1frame.dcm"])
def test_table_path_equals_pixel_path_on_real_files(name):
    path = sample(name)
    fast = images._canonical_dicom(images._read_dicom(path), path)
    slow = images._canonical_dicom(images._read_dicom(path), path, use_table=False)
    assert fast.dtype == slow.dtype == np.float32 and np.array_equal(fast, slow)


def test_table_path_equals_pixel_path_on_random_images():
    rng = np.random.default_rng(7)
    template = pydicom.dcmread(sample("MR_small.dcm"))
    for trial in range(120):
        ds = template.copy()
        for key in ("WindowCenter", "WindowWidth"):  # the percentile window: the histogram path
            if key in ds and trial % 4:
                del ds[key]
        signed = trial % 2 == 1
        lo, hi = (-3000, 3000) if signed else (0, int(rng.integers(2, 65535)))
        arr = rng.integers(lo, hi, (int(rng.integers(1, 50)), int(rng.integers(1, 50))))
        arr = arr.astype(np.int16 if signed else np.uint16)
        if trial % 5 == 0:
            arr[:] = arr.flat[0]  # a flat image: percentiles coincide
        ds.set_pixel_data(arr, "MONOCHROME1" if trial % 3 == 0 else "MONOCHROME2", 16)
        ds.RescaleSlope, ds.RescaleIntercept = float(rng.choice([1, -1, 0.5, 2.5e-3])), float(rng.normal() * 100)
        fast = images._canonical_dicom(ds, Path("x.dcm"))
        slow = images._canonical_dicom(ds, Path("x.dcm"), use_table=False)
        assert np.array_equal(fast, slow), trial


# --- pixel limit (Pillow side; DICOM in tests/test_dicom_syntaxes.py) -------------------------


def test_png_over_the_pixel_limit_says_too_many_pixels(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((300, 400), np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setenv("CXRBENCH_MAX_PIXELS", "100000")  # 120,000 > limit
    with pytest.raises(PixelLimitError) as info:
        decode_image(tmp_path / "big.png")
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'big.png'}: too many pixels: 400 x 300 = 120,000 pixels")
    assert "limit of 100,000" in message and "not a readable image" not in message
    monkeypatch.setenv("CXRBENCH_MAX_PIXELS", "120000")
    assert decode_image(tmp_path / "big.png").shape == (300, 400)


def test_png_beyond_pillows_hard_limit_says_too_many_pixels(tmp_path, monkeypatch):
    # Pillow raises DecompressionBombError above twice its limit, inside Image.open.
    Image.fromarray(np.zeros((100, 100), np.uint8)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    monkeypatch.delenv("CXRBENCH_MAX_PIXELS", raising=False)
    with pytest.raises(PixelLimitError, match=r"bomb.png: too many pixels: 10,000 pixels, over the limit of 1,000"):
        decode_image(tmp_path / "bomb.png")


def test_bad_pixel_limit_setting_is_one_line(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "x.png")
    monkeypatch.setenv("CXRBENCH_MAX_PIXELS", "lots")
    with pytest.raises(DataError, match="CXRBENCH_MAX_PIXELS: must be a positive whole number"):
        decode_image(tmp_path / "x.png")


def test_header_of_non_dicom_refused(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "x.png")
    with pytest.raises(DataError, match="x.png: not a DICOM file"):
        read_dicom_header(tmp_path / "x.png")
