"""Caches that verify what they serve (issue 14, item 2): a prediction piece with a bad CRC, a
truncated zip or changed content is named in one warning, discarded and recomputed (the run still
exits 0 with the right numbers); `merge` names such a piece and skips it; a prepared store whose
images.npy was half overwritten in place is caught row by row and those rows are decoded afresh."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.data.dataset import resolve_dataset
from benchmark.data.prepared import use_prepared
from benchmark.data.prepared_build import prepare
from benchmark.models.card import InputSpec
from tests.helpers import CANONICAL, TinyNet, card, cli, latest_result, save_model, written_synth

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    return written_synth(tmp_path_factory, n_patients=24, image_size=64, seed=5)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return save_model(TinyNet(seed=2), tmp_path_factory.mktemp("m") / "m.pt", card("tiny", CANONICAL, size=32))


def _run(capsys, tmp_path, synth_dir, ckpt, cache, *extra):
    return cli(capsys, "run", "--model", str(ckpt), "--data", str(synth_dir), "--suites", "subtype",
               "--bootstrap", "20", "--batch-size", "8", "--cache-dir", str(cache), "--out", str(tmp_path / "runs"),
               *extra)


def _member_span(path: Path, member: str) -> tuple[int, int]:
    """(first byte, length) of a stored zip member's data in the file."""
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(member)
    raw = path.read_bytes()
    start = info.header_offset + 30 + int.from_bytes(raw[info.header_offset + 26:info.header_offset + 28], "little") \
        + int.from_bytes(raw[info.header_offset + 28:info.header_offset + 30], "little")
    return start, info.compress_size


def damage(path: Path, how: str) -> None:
    raw = bytearray(path.read_bytes())
    if how == "bad-crc":  # one bit of a probability flipped: the zip's CRC no longer matches
        start, size = _member_span(path, "probs.npy")
        raw[start + size - 3] ^= 0x10
        path.write_bytes(bytes(raw))
    elif how == "truncated":
        path.write_bytes(bytes(raw[: len(raw) // 2]))
    else:  # a well-formed zip with other predictions, and the old checksum
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        arrays["probs"] = arrays["probs"][:, ::-1].copy()
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)


@pytest.mark.parametrize("how", ["bad-crc", "truncated", "other-content"])
def test_a_damaged_prediction_piece_is_named_discarded_and_recomputed(capsys, tmp_path, synth_dir, ckpt, how):
    code, _, err = _run(capsys, tmp_path, synth_dir, ckpt, tmp_path / "clean")
    assert code == 0, err
    truth = latest_result(tmp_path / "runs")["suites"]

    cache = tmp_path / "cache"
    assert _run(capsys, tmp_path, synth_dir, ckpt, cache, "--shard", "1/2")[0] == 0
    pieces = sorted(cache.glob("predictions/*/*/rows_*.npz"))
    assert len(pieces) >= 2
    kept_rows = sum(len(np.load(p)["rows"]) for p in pieces[1:])
    damage(pieces[0], how)

    code, out, err = _run(capsys, tmp_path, synth_dir, ckpt, cache)
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and str(pieces[0]) in warnings[0] and "damaged prediction piece" in warnings[0]
    assert "internal error" not in err and "Traceback" not in err
    result = latest_result(tmp_path / "runs")
    n = len(pd.read_csv(synth_dir / "manifest.csv"))
    # Every row but those of shard 1's intact pieces was computed: the damaged piece's rows again.
    assert result["provenance"]["forward_images"] == n - kept_rows
    assert result["suites"] == truth  # the right numbers, not the damaged piece's

    code, _, err = _run(capsys, tmp_path, synth_dir, ckpt, cache)  # now finished and intact: silent
    assert code == 0 and "warning" not in err and latest_result(tmp_path / "runs")["provenance"]["forward_images"] == 0


def test_a_damaged_finished_entry_is_recomputed(capsys, tmp_path, synth_dir, ckpt):
    cache = tmp_path / "cache"
    assert _run(capsys, tmp_path, synth_dir, ckpt, cache)[0] == 0
    truth = latest_result(tmp_path / "runs")["suites"]
    (final,) = cache.glob("predictions/*/*/probs.npz")
    damage(final, "bad-crc")
    code, _, err = _run(capsys, tmp_path, synth_dir, ckpt, cache)
    assert code == 0, err
    assert [line for line in err.splitlines() if "warning" in line] == [
        f"warning: {final}: damaged prediction piece (BadZipFile: Bad CRC-32 for file 'probs.npy'); discarded, "
        "its rows are computed again"]
    result = latest_result(tmp_path / "runs")
    assert result["provenance"]["forward_images"] == len(pd.read_csv(synth_dir / "manifest.csv"))
    assert result["suites"] == truth


@pytest.mark.parametrize("how, reason", [("bad-crc", "Bad CRC-32"), ("truncated", "BadZipFile"),
                                         ("other-content", "checksum mismatch")])
def test_merge_names_and_skips_a_damaged_piece(capsys, tmp_path, synth_dir, ckpt, how, reason):
    assert _run(capsys, tmp_path, synth_dir, ckpt, tmp_path / "node", "--shard", "1/2")[0] == 0
    pieces = sorted((tmp_path / "node").glob("predictions/*/*/rows_*.npz"))
    damage(pieces[0], how)
    code, out, err = cli(capsys, "merge", str(tmp_path / "node"), "--cache-dir", str(tmp_path / "main"))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(pieces[0]) in lines[0] and reason in lines[0], err
    assert "internal error" not in err
    # every intact piece was copied (nothing lost), the damaged one was not
    assert len(list((tmp_path / "main").glob("predictions/*/*/rows_*.npz"))) == len(pieces) - 1


def test_a_prepared_store_overwritten_in_place_is_caught_row_by_row(capsys, tmp_path, synth_dir, ckpt):
    ds = resolve_dataset(str(synth_dir))
    root = tmp_path / "cache" / "prepared"
    outcome = prepare(ds, 48, root)
    spec = InputSpec((32, 32), 1, (0.5,), (0.25,))
    intact = use_prepared(ds, spec, root)
    before = [intact.source.image(i) for i in range(len(ds))]

    images = outcome.path / "images.npy"
    arr = np.load(images, mmap_mode="r+")
    n = len(arr)
    arr[: n // 2] = 12345  # half the rows overwritten in place, the file's size and header unchanged
    arr.flush()
    del arr
    capsys.readouterr()
    damaged = use_prepared(ds, spec, root)
    after = [damaged.source.image(i) for i in range(len(ds))]
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert err.startswith(f"warning: {images}: row 0 does not match its checksum (manifest row 2)")
    for a, b in zip(before, after):  # decoded afresh: the same pixels up to the store's 16-bit rounding
        np.testing.assert_allclose(a, b, atol=1e-4)

    code, _, err = _run(capsys, tmp_path, synth_dir, ckpt, tmp_path / "cache")
    assert code == 0 and err.count("warning:") == 1 and "images.npy" in err

    again = prepare(ds, 48, root)  # the next prepare redoes exactly the damaged rows
    assert (again.decoded, again.reused) == (n // 2, n - n // 2)
    repaired = use_prepared(ds, spec, root)
    capsys.readouterr()
    for i, b in enumerate(before):
        np.testing.assert_array_equal(repaired.source.image(i), b)
    assert capsys.readouterr().err == ""
