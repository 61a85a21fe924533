"""Checkpoints crafted to run code, write files, reach out or exhaust memory: each is refused in one
line naming the file, and nothing from it runs (sentinel files stay absent) unless trusted."""
from __future__ import annotations

import contextlib
import io
import json
import pickle
import resource
import zipfile
from pathlib import Path

import pytest
import torch

from benchmark.core.errors import CardError, CheckpointError
from benchmark.models.card import parse_card
from benchmark.models.loaded import load_model_file
from tests.conftest_models import (
    Payload, TinyNet, card_dict, rewrite_pt2, save_export, save_onnx, write_card,
)
from tests.helpers import cli


@pytest.fixture(scope="module")
def plain_pt2(tmp_path_factory) -> Path:
    return save_export(TinyNet().eval(), tmp_path_factory.mktemp("pt2") / "plain.pt2")


def _legacy_protocol0(payload: object) -> bytes:
    """torch's legacy (non-zip) layout: its magic-number pickle, then a protocol-0 pickle (no PROTO
    byte) that torch.load would unpickle next."""
    from benchmark.models.loaders_sniff import TORCH_LEGACY_MAGIC

    return pickle.dumps(TORCH_LEGACY_MAGIC, protocol=2) + pickle.dumps(payload, protocol=0)


def test_pt2_with_a_legacy_protocol0_sample_input_is_refused(plain_pt2, tmp_path):
    marker = tmp_path / "payload-ran"
    evil = rewrite_pt2(plain_pt2, tmp_path / "evil.pt2", lambda name, data: _legacy_protocol0(Payload(marker))
                       if name.endswith("sample_inputs/model.pt") else data)
    write_card(evil, card_dict("export"))
    with pytest.raises(CheckpointError, match=r"evil.pt2: refusing this torch.export archive: its sample "
                                              r"inputs are a pickle that names \w+\.mkdir"):
        load_model_file(evil)
    assert not marker.exists()


class _Writer(torch.nn.Module):
    """A scripted module whose __setstate__ (run by torch.jit.load) creates a file with from_file."""

    def __init__(self, target: str):
        super().__init__()
        self.target = target

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)).expand(-1, 4)

    @torch.jit.export
    def __getstate__(self) -> tuple[str, bool]:
        return (self.target, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool]) -> None:
        self.target = state[0]
        # The result is used, or TorchScript would drop the call as dead code.
        n = torch.from_file(self.target, shared=True, size=16).numel()
        self.training = state[1] or n < 0


def test_torchscript_that_writes_files_is_refused_without_the_flag(tmp_path, capsys):
    sentinel = tmp_path / "written-by-the-checkpoint"
    path = tmp_path / "writer.pt"
    torch.jit.save(torch.jit.script(_Writer(str(sentinel))), str(path))
    sentinel.unlink(missing_ok=True)  # scripting ran nothing, but be sure the control starts clean
    write_card(path, card_dict("torchscript"))
    code, out, err = cli(capsys, "run", "--model", str(path), "--data", "synth:n_patients=6",
                         "--suites", "subtype", "--bootstrap", "50", "--cache-dir", str(tmp_path / "c"),
                         "--out", str(tmp_path / "runs"))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "writer.pt: refusing a TorchScript archive" in err and "--trust-code" in err
    assert not sentinel.exists() and not list((tmp_path / "runs").glob("*/result.json"))
    # Control: with the opt-in, torch.jit.load runs the scripted __setstate__, which writes the file.
    with contextlib.suppress(CheckpointError):
        load_model_file(path, trust_code=True)
    assert sentinel.exists()


@pytest.mark.parametrize("arch", ["timm:hf-hub:someone/model", "timm:local-dir:/tmp/model",
                                  "timm:resnet18@https://example.invalid/x", "timm:no_such_net"])
def test_architecture_names_are_checked_against_timm(arch, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "m.safetensors"
    save_file({"w": torch.zeros(1)}, str(path))
    write_card(path, card_dict("safetensors", architecture=arch))
    with pytest.raises(CardError, match=r"field 'architecture'"):
        load_model_file(path)


def test_zip_bomb_member_is_refused_before_it_is_inflated(plain_pt2, tmp_path):
    bomb = tmp_path / "bomb.pt2"
    with zipfile.ZipFile(plain_pt2) as zin, zipfile.ZipFile(bomb, "w") as zout:
        root = zin.namelist()[0].split("/")[0]
        for info in zin.infolist():
            zout.writestr(info, zin.read(info))
        # 256 MiB of zeros deflate to ~250 KB.
        zout.writestr(zipfile.ZipInfo(f"{root}/extra/big"), bytes(256 << 20), zipfile.ZIP_DEFLATED)
    assert bomb.stat().st_size < 2 << 20
    write_card(bomb, card_dict("export"))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(CheckpointError, match=r"bomb.pt2: member '.*extra/big' would inflate .*zip bomb"):
        load_model_file(bomb)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 << 10  # KiB: no 256 MiB


def test_input_size_is_capped():
    with pytest.raises(CardError, match=r"field 'input.size' = \[60000, 60000\] exceeds the limit"):
        parse_card(card_dict("export", size=(60000, 60000)), where="m.card.json")


def _onnx_with_external_data(folder: Path) -> Path:
    import onnx

    path = save_onnx(TinyNet().eval(), folder / "tiny.onnx")
    model = onnx.load(str(path))
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="tiny.data", size_threshold=0)
    write_card(path, card_dict("onnx"))
    return path


def test_onnx_external_data_is_fingerprinted(tmp_path):
    from benchmark.models.resolve import resolve_model

    path = _onnx_with_external_data(tmp_path)
    first = resolve_model(str(path)).fingerprint()
    data = tmp_path / "tiny.data"
    raw = bytearray(data.read_bytes())
    raw[:4] = bytes(4)  # other weights, same .onnx file
    data.write_bytes(bytes(raw))
    assert resolve_model(str(path)).fingerprint() != first


def test_onnx_external_data_outside_the_folder_is_refused(tmp_path):
    import onnx

    inner = tmp_path / "model"
    inner.mkdir()
    path = _onnx_with_external_data(inner)
    model = onnx.load(str(path), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../secret.data"
    onnx.save_model(model, str(path))
    (tmp_path / "secret.data").write_bytes((inner / "tiny.data").read_bytes())
    from benchmark.models.resolve import resolve_model

    with pytest.raises(CheckpointError, match=r"tiny.onnx: tensor .* keeps its data at '../secret.data', outside"):
        resolve_model(str(path))


def test_pickle_scan_reads_protocol0_pickles_after_the_legacy_magic():
    from benchmark.models.loaders_sniff import pickle_globals

    names = pickle_globals(_legacy_protocol0(Payload(Path("/nonexistent/never"))))
    assert any(n.endswith(".mkdir") for n in names)
    # Raw storage bytes after the five legacy pickles are not pickles: no false alarm from them.
    buffer = io.BytesIO()
    torch.save({"w": torch.arange(64.0)}, buffer, _use_new_zipfile_serialization=False)
    assert all(not n.startswith("<") for n in pickle_globals(buffer.getvalue()))
    assert json.dumps(names)  # plain strings
