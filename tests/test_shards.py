"""Sharded evaluation: `run --shard I/N` slices, shards combined in one cache or by `cxrbench merge`."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmark.execution.shards import Shard, all_shards, parse_shard, shard_rows
from tests.helpers import CANONICAL, TinyNet, card, cli, latest_result, save_model, written_synth

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@given(n_rows=st.integers(0, 500), count=st.integers(1, 12), batch=st.integers(1, 64))
def test_shards_partition_the_rows_into_whole_batches(n_rows, count, batch):
    parts = [shard_rows(n_rows, s, batch) for s in all_shards(count)]
    joined = np.concatenate(parts)
    assert np.array_equal(joined, np.arange(n_rows))  # disjoint, complete, in order
    for rows in parts:
        if len(rows):
            assert rows[0] % batch == 0  # starts on a batch boundary of the unsharded run
            assert len(rows) % batch == 0 or rows[-1] == n_rows - 1
    sizes = [-(-len(r) // batch) for r in parts]
    assert max(sizes) - min(sizes) <= 1  # batches dealt out evenly


@pytest.mark.parametrize("text", ["0/3", "4/3", "3", "a/b", "1/0", "-1/2", ""])
def test_bad_shard_text_is_refused(text):
    from benchmark.core.errors import CxrbenchError

    with pytest.raises(CxrbenchError, match="--shard"):
        parse_shard(text)


def test_parse_shard():
    assert parse_shard("2/5") == Shard(2, 5) and str(Shard(2, 5)) == "2/5"


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    return written_synth(tmp_path_factory, n_patients=40, image_size=96, seed=11)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return save_model(TinyNet(seed=3), tmp_path_factory.mktemp("m") / "m.pt", card("tiny", CANONICAL, size=48))


def _run(capsys, tmp_path, synth_dir, ckpt, cache, *extra):
    args = ["run", "--model", str(ckpt), "--data", str(synth_dir), "--suites", "subtype,calibration",
            "--bootstrap", "100", "--batch-size", "8", "--cache-dir", str(cache), "--out", str(tmp_path / "runs"),
            *extra]
    return cli(capsys, *args)


def test_sharded_run_equals_unsharded_run(capsys, tmp_path, synth_dir, ckpt):
    code, _, err = _run(capsys, tmp_path, synth_dir, ckpt, tmp_path / "whole")
    assert code == 0, err
    whole = latest_result(tmp_path / "runs")

    n = whole["dataset"]["counts"]["images"]
    for i in (1, 2, 3):
        code, out, err = _run(capsys, tmp_path, synth_dir, ckpt, tmp_path / "sharded", "--shard", f"{i}/3")
        assert code == 0, err
        assert f"shard {i}/3" in out
        assert ("every shard is in" in out) == (i == 3)
    assert len(list((tmp_path / "runs").iterdir())) == 1  # a shard writes no run folder

    code, out, err = _run(capsys, tmp_path, synth_dir, ckpt, tmp_path / "sharded")
    assert code == 0, err
    combined = latest_result(tmp_path / "runs")
    assert combined["provenance"]["forward_images"] == 0  # every row came from the shards
    assert combined["dataset"]["counts"]["images"] == n
    assert combined["suites"] == whole["suites"]  # exactly: same batches, same numbers


def test_rerunning_a_shard_computes_nothing(capsys, tmp_path, synth_dir, ckpt):
    _run(capsys, tmp_path, synth_dir, ckpt, tmp_path / "c", "--shard", "2/2")
    code, out, err = _run(capsys, tmp_path, synth_dir, ckpt, tmp_path / "c", "--shard", "2/2")
    assert code == 0, err
    assert "(0 forward passes)" in out


def test_shards_on_other_machines_merge(capsys, tmp_path, synth_dir, ckpt):
    for i in (1, 2):  # each "machine" has its own cache
        code, _, err = _run(capsys, tmp_path, synth_dir, ckpt, tmp_path / f"node{i}", "--shard", f"{i}/2")
        assert code == 0, err
    code, out, err = cli(capsys, "merge", str(tmp_path / "node1"), str(tmp_path / "node2"),
                         "--cache-dir", str(tmp_path / "main"))
    assert code == 0, err
    assert "merged" in out
    code, out, _ = cli(capsys, "merge", str(tmp_path / "node1"), "--cache-dir", str(tmp_path / "main"))
    assert code == 0 and "merged 0 pieces" in out  # merging again adds nothing

    code, _, err = _run(capsys, tmp_path, synth_dir, ckpt, tmp_path / "main")
    assert code == 0, err
    merged = latest_result(tmp_path / "runs")
    assert merged["provenance"]["forward_images"] == 0
    code, _, err = _run(capsys, tmp_path, synth_dir, ckpt, tmp_path / "fresh")
    assert latest_result(tmp_path / "runs")["suites"] == merged["suites"]


def test_merge_reports_a_corrupt_piece_and_keeps_the_rest(capsys, tmp_path, synth_dir, ckpt):
    _run(capsys, tmp_path, synth_dir, ckpt, tmp_path / "node", "--shard", "1/2")
    pieces = sorted((tmp_path / "node").glob("predictions/*/*/rows_*.npz"))
    assert len(pieces) >= 2
    pieces[0].write_bytes(b"not an npz")
    code, _, err = cli(capsys, "merge", str(tmp_path / "node"), "--cache-dir", str(tmp_path / "main"))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and pieces[0].name in lines[0] and "Traceback" not in err
    assert len(list((tmp_path / "main").glob("predictions/*/*/rows_*.npz"))) == len(pieces) - 1


@pytest.mark.parametrize("args, where", [
    (["--shard", "1/2", "--predictions", "p.parquet"], "--shard"),
    (["--shards", "2"], "--shards"),
    (["--address", "127.0.0.1:6379"], "--address"),
    (["--executor", "spark"], "--executor"),
    (["--executor", "ray", "--shard", "1/2"], "--shard"),
    (["--shard", "3/2"], "--shard"),
])
def test_bad_distribution_options_are_one_line(capsys, tmp_path, args, where):
    code, _, err = cli(capsys, "run", "--suites", "subtype", "--out", str(tmp_path / "runs"), *args)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and where in err and "Traceback" not in err


def test_merge_of_a_folder_without_a_store_is_one_line(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    for src in (tmp_path / "empty", tmp_path / "missing"):
        code, _, err = cli(capsys, "merge", str(src), "--cache-dir", str(tmp_path / "main"))
        assert code == 2 and str(src) in err and len(err.strip().splitlines()) == 1
