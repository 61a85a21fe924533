"""Every bad input: one line naming the file, row or field; exit code 2; no traceback; cache kept."""
from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import torch
from torch import nn

from tests.helpers import CANONICAL, TinyNet, card, cli, save_model


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    from benchmark import api

    out = tmp_path_factory.mktemp("synth")
    api.synth(out, n_patients=12, image_size=96, seed=2)
    return out


@pytest.fixture()
def ckpt(tmp_path):
    return save_model(TinyNet(), tmp_path / "m.pt", card("tiny", CANONICAL))


def assert_one_line_error(code, err, *needles):
    assert code == 2, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def manifest_copy(synth_dir, tmp_path, edit):
    frame = pd.read_csv(synth_dir / "manifest.csv")
    frame = edit(frame)
    for col in ("path", "lung_mask"):
        frame[col] = [str(synth_dir / p) if isinstance(p, str) and not p.startswith("/") and p else p
                      for p in frame[col]]
    path = tmp_path / "manifest.csv"
    frame.to_csv(path, index=False)
    return path


def run(capsys, ckpt, data, tmp_path, *extra):
    return cli(capsys, "run", "--model", str(ckpt), "--data", str(data), "--out", str(tmp_path / "runs"),
               "--bootstrap", "20", *extra)


def test_missing_image(capsys, tmp_path, synth_dir, ckpt):
    data = manifest_copy(synth_dir, tmp_path, lambda f: f.assign(path=f["path"].where(f.index != 3, "gone.png")))
    code, _, err = run(capsys, ckpt, data, tmp_path)
    assert_one_line_error(code, err, "row 5", "gone.png")


def test_unreadable_dicom(capsys, tmp_path, synth_dir, ckpt):
    bad = tmp_path / "broken.dcm"
    bad.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00garbage" * 10)
    data = manifest_copy(synth_dir, tmp_path, lambda f: f.assign(path=f["path"].where(f.index != 0, str(bad))))
    code, _, err = run(capsys, ckpt, data, tmp_path)
    assert_one_line_error(code, err, "broken.dcm", "row 2")


def test_unknown_label(capsys, tmp_path, synth_dir, ckpt):
    data = manifest_copy(synth_dir, tmp_path, lambda f: f.assign(label=f["label"].where(f.index != 1, "flu")))
    code, _, err = run(capsys, ckpt, data, tmp_path)
    assert_one_line_error(code, err, "unknown label 'flu' in row 3", "manifest.csv")


def test_empty_dataset(capsys, tmp_path, synth_dir, ckpt):
    data = manifest_copy(synth_dir, tmp_path, lambda f: f.iloc[:0])
    code, _, err = run(capsys, ckpt, data, tmp_path)
    assert_one_line_error(code, err, "empty")


@pytest.mark.parametrize("field", ["classes", "format", "input", "output", "name"])
def test_card_field_missing(capsys, tmp_path, synth_dir, field):
    data = card("tiny", CANONICAL)
    del data[field]
    ck = save_model(TinyNet(), tmp_path / "m.pt", data)
    code, _, err = run(capsys, ck, synth_dir / "manifest.csv", tmp_path)
    assert_one_line_error(code, err, f"'{field}'", "m.card.json")


def test_card_malformed_json(capsys, tmp_path, synth_dir, ckpt):
    (tmp_path / "m.card.json").write_text('{"name": "x", ')
    code, _, err = run(capsys, ckpt, synth_dir / "manifest.csv", tmp_path)
    assert_one_line_error(code, err, "m.card.json")


def test_card_missing(capsys, tmp_path, synth_dir, ckpt):
    (tmp_path / "m.card.json").unlink()
    code, _, err = run(capsys, ckpt, synth_dir / "manifest.csv", tmp_path)
    assert_one_line_error(code, err, "card")


def test_unmappable_classes(capsys, tmp_path, synth_dir):
    ck = save_model(TinyNet(), tmp_path / "m.pt", card("tiny", ["negative", "covid", "x", "y"]))
    code, _, err = run(capsys, ck, synth_dir / "manifest.csv", tmp_path)
    assert_one_line_error(code, err, "'covid'", "classes")


class WrongShape(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 2, 3)).unsqueeze(1).repeat(1, 3)


class NonFinite(nn.Module):
    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x.mean(dim=(1, 2, 3)).unsqueeze(1).repeat(1, 4)
        return out * 0 + self.value


@pytest.mark.parametrize("module,needle", [(WrongShape(), "shape"), (NonFinite(float("nan")), "NaN"),
                                           (NonFinite(float("inf")), "inf")])
def test_bad_model_output(capsys, tmp_path, synth_dir, module, needle):
    ck = save_model(module, tmp_path / "m.pt", card("badnet", CANONICAL))
    code, _, err = run(capsys, ck, synth_dir / "manifest.csv", tmp_path)
    assert_one_line_error(code, err, needle, "badnet")


def test_debug_shows_traceback(capsys, tmp_path, synth_dir, ckpt):
    data = manifest_copy(synth_dir, tmp_path, lambda f: f.assign(path=f["path"].where(f.index != 0, "gone.png")))
    with pytest.raises(Exception, match="gone.png"):
        from benchmark import cli as cli_mod
        import sys
        argv, sys.argv = sys.argv, ["cxrbench", "--debug", "run", "--model", str(ckpt), "--data", str(data),
                                    "--out", str(tmp_path / "runs")]
        try:
            cli_mod.main()
        finally:
            sys.argv = argv
            cli_mod.STATE["debug"] = False


def test_failure_keeps_finished_batches(capsys, tmp_path, synth_dir, ckpt):
    """A missing image late in the manifest: the batches before it are cached and not recomputed."""
    from benchmark import api

    frame = pd.read_csv(synth_dir / "manifest.csv")
    last = len(frame) - 1
    moved = tmp_path / "moved.png"
    shutil.copy(synth_dir / frame["path"].iloc[last], moved)
    data = manifest_copy(synth_dir, tmp_path, lambda f: f.assign(path=f["path"].where(f.index != last, str(moved))))
    moved_away = tmp_path / "away.png"
    moved.rename(moved_away)
    code, _, err = run(capsys, ckpt, data, tmp_path, "--batch-size", "4")
    assert_one_line_error(code, err, "moved.png")
    moved_away.rename(moved)
    outcome = api.run(api.RunRequest(model=str(ckpt), data=str(data), out=tmp_path / "runs2", batch_size=4,
                                     bootstrap=20, progress=False))
    done_before = (last // 4) * 4
    assert outcome.forward_images == len(frame) - done_before
    assert json.loads((outcome.run_dir / "result.json").read_text())["dataset"]["counts"]["images"] == len(frame)
