"""The prepared-image store: decoded once, read back as the same letterboxed pixels, masks and boxes;
used by runs only where the model's input allows; stale rows decoded afresh."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from benchmark import api
from benchmark.data.dataset import resolve_dataset
from benchmark.data.geometry import letterbox, resize_image, resize_mask, transform_boxes
from benchmark.data.images import decode_image
from benchmark.data.prepared import PreparedDataset, find_store, use_prepared
from benchmark.data.prepared_build import prepare
from benchmark.core.errors import CxrbenchError, DataError
from benchmark.models.card import InputSpec
from tests.helpers import CANONICAL, TinyNet, card, cli, save_model
from tests.test_adapters import write_dcm

SHAPES = [(60, 80), (80, 60), (70, 70), (50, 90), (90, 40), (64, 64)]


def make_manifest(root: Path) -> Path:
    """Six non-square images (16-bit PNG, MONOCHROME1 DICOM), lung masks and boxes on some."""
    rng = np.random.default_rng(0)
    rows = []
    root.mkdir(parents=True, exist_ok=True)
    for k, (h, w) in enumerate(SHAPES):
        yy, xx = np.mgrid[0:h, 0:w]
        pixels = ((np.sin(xx / 5.0 + k) + np.cos(yy / 7.0)) * 12000 + 30000 + rng.normal(0, 800, (h, w)))
        pixels = np.clip(pixels, 0, 65535).astype(np.uint16)
        if k % 2:
            path = write_dcm(root / f"img{k}.dcm", pixels >> 4, photometric="MONOCHROME1")
        else:
            path = root / f"img{k}.png"
            Image.fromarray(pixels).save(path)
        mask = ""
        if k < 4:
            m = np.zeros((h, w), np.uint8)
            m[h // 4: 3 * h // 4, w // 5: 4 * w // 5] = 255
            Image.fromarray(m).save(root / f"mask{k}.png")
            mask = f"mask{k}.png"
        boxes = json.dumps([[2.0, 3.0, w / 2, h / 2]]) if k in (0, 3) else ""
        rows.append({"path": path.name, "label": CANONICAL[k % 4], "patient_id": f"p{k // 2}",
                     "lung_mask": mask, "boxes": boxes, "split": "test"})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root / "manifest.csv"


def store_root() -> Path:
    return Path(os.environ["CXRBENCH_CACHE"]) / "prepared"


def test_store_holds_letterboxed_pixels_masks_and_boxes(tmp_path):
    ds = resolve_dataset(str(make_manifest(tmp_path / "d")))
    outcome = prepare(ds, 48, store_root())
    assert (outcome.images, outcome.decoded, outcome.reused, outcome.failed) == (6, 6, 0, [])
    prepared = use_prepared(ds, InputSpec((32, 32), 1, (0.5,), (0.25,)), store_root())
    assert isinstance(prepared, PreparedDataset)
    for i in range(len(ds)):
        img = ds.source.image(i)
        lb = letterbox(img.shape, (48, 48))
        content = (slice(lb.pad_top, lb.pad_top + lb.content_hw[0]), slice(lb.pad_left, lb.pad_left + lb.content_hw[1]))
        assert max(prepared.source.image(i).shape) == 48  # long side at the prepared size, no padding
        # uint16 storage: within half a quantisation step of the letterboxed float image
        np.testing.assert_allclose(prepared.source.image(i), resize_image(img, lb)[content], atol=0.6 / 65535)
        mask = ds.source.lung_mask(i)
        if mask is None:
            assert prepared.source.lung_mask(i) is None
        else:
            np.testing.assert_array_equal(prepared.source.lung_mask(i), resize_mask(mask, lb)[content])
        expected = transform_boxes(ds.boxes(i), lb) - [lb.pad_left, lb.pad_top] * 2 if len(ds.boxes(i)) else np.zeros((0, 4))
        np.testing.assert_allclose(prepared.boxes(i), expected, atol=1e-4)
    assert prepared.source.fingerprints().tolist() != ds.source.fingerprints().tolist()  # cached apart


def test_model_input_from_the_store_matches_decoding_afresh(tmp_path):
    ds = resolve_dataset(str(make_manifest(tmp_path / "d")))
    prepare(ds, 64, store_root())
    prepared = use_prepared(ds, InputSpec((32, 32), 1, (0.5,), (0.25,)), store_root())
    for i in range(len(ds)):
        direct_lb = letterbox(ds.source.image(i).shape, (32, 32))
        direct = resize_image(ds.source.image(i), direct_lb)
        stored = prepared.source.image(i)
        store_lb = letterbox(stored.shape, (32, 32))
        via_store = resize_image(stored, store_lb)
        # The runner pads the stored content exactly as a freshly decoded image ...
        assert (store_lb.pad_top, store_lb.pad_left, store_lb.content_hw) == \
               (direct_lb.pad_top, direct_lb.pad_left, direct_lb.content_hw)
        # ... and only resampling in two steps differs, a little everywhere.
        assert np.abs(direct - via_store).max() < 0.01


@pytest.mark.parametrize("spec, used", [((32, 32), True), ((48, 48), True), ((32, 48), True),
                                        ((64, 64), False), ((32, 56), False)])
def test_store_is_used_only_where_the_model_input_allows(tmp_path, spec, used):
    ds = resolve_dataset(str(make_manifest(tmp_path / "d")))
    assert use_prepared(ds, InputSpec(spec, 1, (0.5,), (0.25,)), store_root()) is ds  # nothing prepared yet
    prepare(ds, 48, store_root())
    got = use_prepared(ds, InputSpec(spec, 1, (0.5,), (0.25,)), store_root())
    assert isinstance(got, PreparedDataset) is used
    stretched = use_prepared(ds, InputSpec((32, 32), 1, (0.5,), (0.25,), keep_aspect=False), store_root())
    assert stretched is ds


def test_a_changed_file_is_decoded_afresh_and_reprepared_alone(tmp_path):
    manifest = make_manifest(tmp_path / "d")
    ds = resolve_dataset(str(manifest))
    prepare(ds, 48, store_root())
    new = np.full((60, 80), 50000, np.uint16)
    new[:, :40] = 1000
    Image.fromarray(new).save(tmp_path / "d" / "img0.png")
    os.utime(tmp_path / "d" / "img0.png", ns=(1, 1))  # a different mtime even on coarse clocks
    ds = resolve_dataset(str(manifest))
    prepared = use_prepared(ds, InputSpec((32, 32), 1, (0.5,), (0.25,)), store_root())
    lb = letterbox((60, 80), (48, 48))
    fresh = resize_image(decode_image(tmp_path / "d" / "img0.png"), lb)
    np.testing.assert_allclose(prepared.source.image(0), fresh[lb.pad_top:lb.pad_top + 36], atol=1e-6)
    again = prepare(ds, 48, store_root())
    assert (again.decoded, again.reused) == (1, 5)
    store = find_store(ds, store_root())
    np.testing.assert_allclose(store.image(0), fresh, atol=0.6 / 65535)


def test_workers_write_the_same_store(tmp_path):
    ds = resolve_dataset(str(make_manifest(tmp_path / "d")))
    serial = prepare(ds, 40, tmp_path / "serial")
    parallel = prepare(ds, 40, tmp_path / "parallel", workers=2)
    for name in ("images.npy", "masks.npy"):
        np.testing.assert_array_equal(np.load(serial.path / name), np.load(parallel.path / name))
    with np.load(serial.path / "rows.npz") as a, np.load(parallel.path / "rows.npz") as b:
        for key in ("hw", "digest", "done", "has_mask"):
            np.testing.assert_array_equal(a[key], b[key])


def test_undecodable_rows_are_reported_after_the_rest_is_stored(tmp_path):
    manifest = make_manifest(tmp_path / "d")
    (tmp_path / "d" / "img2.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DataError, match=r"stored 5 of 6 images; 1 could not be decoded \(first: row 4: .*img2\.png"):
        api.prepare(str(manifest), 48)
    store = find_store(resolve_dataset(str(manifest)), store_root())
    assert store.done.tolist() == [True, True, False, True, True, True]


def test_prepare_refuses_synth_and_bad_sizes(tmp_path):
    with pytest.raises(CxrbenchError, match="synth images are rendered"):
        api.prepare("synth:n_patients=4", 64)
    with pytest.raises(CxrbenchError, match="--size: must be in 32..4096"):
        api.prepare(str(make_manifest(tmp_path / "d")), 8)


def test_cli_prepare_then_run_reads_the_store(tmp_path, capsys):
    manifest = make_manifest(tmp_path / "d")
    model = save_model(TinyNet(), tmp_path / "m.pt", card("tiny", CANONICAL, size=32))
    args = ["run", "--model", str(model), "--data", str(manifest), "--bootstrap", "10", "--suites", "subtype"]
    code, _, err = cli(capsys, *args, "--out", str(tmp_path / "plain"))
    assert code == 0, err
    code, out, err = cli(capsys, "prepare", "--data", str(manifest), "--size", "48")
    assert code == 0, err
    assert "prepared 6 images at 48x48 (6 decoded, 0 already current)" in out
    code, _, err = cli(capsys, *args, "--out", str(tmp_path / "stored"))
    assert code == 0, err
    plain = json.loads(next((tmp_path / "plain").glob("*/result.json")).read_text())
    stored = json.loads(next((tmp_path / "stored").glob("*/result.json")).read_text())
    assert "prepared" not in plain["dataset"]
    assert stored["dataset"]["prepared"]["rows_from_store"] == 6 and stored["dataset"]["prepared"]["size"] == 48
    p0 = pd.read_parquet(next((tmp_path / "plain").glob("*/predictions.parquet")))
    p1 = pd.read_parquet(next((tmp_path / "stored").glob("*/predictions.parquet")))
    cols = [c for c in p0.columns if c.startswith("prob_")]
    assert np.abs(p0[cols].to_numpy() - p1[cols].to_numpy()).max() < 0.05
