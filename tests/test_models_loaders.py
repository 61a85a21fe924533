"""Checkpoint loaders, the pickle rule, and LoadedModel's mapping and output checks."""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import pickle
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.core.errors import CardError, CheckpointError, ModelOutputError
from benchmark.core.labels import CLASSES
from benchmark.models.card import InputSpec, ModelCard, parse_card
from benchmark.core.hashing import sha256_file
from benchmark.models.loaded import LoadedModel, load_model_file
from benchmark.models.loaders_sniff import pickle_globals, pt2_unsafe_reason, sniff_format
from conftest_models import (
    KAGGLE, PERM, SIZE, Lambda, Payload, TinyNet, card_dict, edit_json, example, permute_head,
    raw_pickle, rewrite_pt2, save_export, save_onnx, save_safetensors, save_torchscript,
    timm_resnet18, write_card, zip_pickle,
)

PERMUTED_CLASSES = [KAGGLE[CLASSES[p]] for p in PERM]
SAVERS = {"torchscript": (save_torchscript, ".pt"), "export": (save_export, ".pt2"),
          "onnx": (save_onnx, ".onnx"), "safetensors": (save_safetensors, ".safetensors")}


def write(tmp: Path, stem: str, fmt: str, model: torch.nn.Module, **card: object) -> Path:
    saver, suffix = SAVERS[fmt]
    weights = saver(model, tmp / f"{stem}{suffix}")
    write_card(weights, card_dict(fmt, **card))
    return weights


def wrap(module: object, **card: object) -> LoadedModel:
    return LoadedModel(parse_card(card_dict("torchscript", **card), where="test"), module,
                       sha256="0" * 64)


@pytest.fixture(scope="module")
def tiny() -> TinyNet:
    return TinyNet().eval()


# ---------------------------------------------------------------- class order by name, per format


@pytest.mark.parametrize("fmt", ["torchscript", "export", "onnx", "safetensors"])
def test_permuted_head_with_aliases_predicts_the_same(fmt, tmp_path, tiny):
    if fmt == "safetensors":
        net, head, extra = timm_resnet18(), "fc", {"architecture": "timm:resnet18", "size": (32, 32)}
    else:
        net, head, extra = tiny, "head", {}
    plain = write(tmp_path, "plain", fmt, net, **extra)
    swapped = write(tmp_path, "perm", fmt, permute_head(net, head), classes=PERMUTED_CLASSES, **extra)

    batch = example(3, extra.get("size", SIZE))
    trust = fmt == "torchscript"  # TorchScript is code: it loads only with the opt-in
    a = load_model_file(plain, trust_code=trust).predict(batch)
    b = load_model_file(swapped, trust_code=trust).predict(batch)
    assert a.shape == (3, 4) and a.dtype == np.float64
    np.testing.assert_allclose(a.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_allclose(b, a, atol=1e-6)
    # The raw outputs really are in another order, so ignoring the card's classes would fail here.
    assert not np.allclose(a[:, list(PERM)], a, atol=1e-3)


def test_fewer_classes_leave_the_missing_one_at_zero(tiny):
    three = TinyNet(num_classes=3, seed=2)
    model = wrap(three, classes=["Typical Appearance", "negative", "atypical"])
    probs = model.predict(example(4))
    assert np.all(probs[:, CLASSES.index("indeterminate")] == 0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    logits = three((example(4) - 0.5) / 0.25).detach().double()
    np.testing.assert_allclose(probs[:, [1, 0, 3]], torch.softmax(logits, 1).numpy(), atol=1e-6)


def test_probabilities_output_matches_logits_output(tiny):
    as_probs = Lambda(lambda x: torch.softmax(tiny(x), dim=1))
    a = wrap(tiny).predict(example(3))
    b = wrap(as_probs, output="probabilities").predict(example(3))
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_tuple_and_dict_outputs_are_accepted(tiny):
    expected = wrap(tiny).predict(example())
    as_tuple = wrap(Lambda(lambda x: (tiny(x), torch.zeros(1))))
    as_dict = wrap(Lambda(lambda x: {"features": torch.zeros(1), "logits": tiny(x)}))
    np.testing.assert_allclose(as_tuple.predict(example()), expected)
    np.testing.assert_allclose(as_dict.predict(example()), expected)


# ---------------------------------------------------------------- preprocessing


def test_preprocess_normalises_and_repeats_channels():
    card = ModelCard("m", "onnx", CLASSES, "logits",
                     InputSpec((4, 4), channels=3, mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 2.0)))
    model = LoadedModel(card, Lambda(lambda x: x), sha256="0" * 64)
    x = torch.rand(2, 1, 4, 4)
    out = model.preprocess(x)
    assert out.shape == (2, 3, 4, 4)
    for c, (m, s) in enumerate(zip(card.input.mean, card.input.std)):
        torch.testing.assert_close(out[:, c], (x[:, 0] - m) / s)
    with pytest.raises(ValueError, match=r"expects canonical batches \[B, 1, 4, 4\]"):
        model.preprocess(torch.rand(2, 1, 5, 4))


def test_preprocessing_key_is_stable_and_tracks_inputs():
    a = wrap(TinyNet()).preprocessing_key()
    assert a == wrap(TinyNet(seed=3), name="other").preprocessing_key()
    changed = card_dict("torchscript")
    changed["input"]["std"] = [0.3]
    assert LoadedModel(parse_card(changed, where="t"), TinyNet(), sha256="0").preprocessing_key() != a
    from benchmark.data.geometry import REDUCING_GAP

    assert json.loads(a) == {"size": list(SIZE), "channels": 1, "mean": [0.5], "std": [0.25],
                             "keep_aspect": True, "reducing_gap": REDUCING_GAP}


def test_embed_uses_forward_features_or_returns_none(tiny, tmp_path):
    feats = wrap(tiny).embed(example(3))
    assert feats.shape == (3, 8) and feats.dtype == np.float64
    scripted = load_model_file(write(tmp_path, "ts", "torchscript", tiny), trust_code=True)
    assert scripted.embed(example(3)) is None
    resnet = LoadedModel(parse_card(card_dict("safetensors", architecture="timm:resnet18",
                                              size=(32, 32)), where="t"), timm_resnet18(), sha256="0")
    assert resnet.embed(example(2, (32, 32))).shape == (2, 512)


# ---------------------------------------------------------------- output validation


@pytest.mark.parametrize("fn, expected", [
    (lambda x: torch.zeros(x.shape[0], 3), r"model 'tiny-torchscript' returned shape \(2, 3\) for a "
                                            r"batch of 2; card says 4 classes"),
    (lambda x: torch.zeros(x.shape[0] + 1, 4), r"returned shape \(3, 4\) for a batch of 2"),
    (lambda x: torch.zeros(x.shape[0], 4, 1, 1), r"returned shape \(2, 4, 1, 1\)"),
    (lambda x: torch.tensor([[0.0, 1, 2, 3], [float("nan"), 0, 0, 0]]),
     r"model 'tiny-torchscript' returned NaN for a batch of 2 \(row 1\)"),
    (lambda x: torch.tensor([[float("inf"), 1, 2, 3], [float("-inf"), 0, 0, 0]]),
     r"model 'tiny-torchscript' returned inf for a batch of 2 \(rows 0, 1\)"),
    (lambda x: "oops", r"returned an object of type 'str', not a tensor"),
])
def test_bad_outputs_raise_model_output_error(fn, expected):
    with pytest.raises(ModelOutputError, match=expected):
        wrap(Lambda(fn)).predict(example(2))


def test_error_message_carries_the_batch_label():
    with pytest.raises(ModelOutputError, match=r"^images 64-65: model .* returned NaN"):
        wrap(Lambda(lambda x: torch.full((2, 4), float("nan")))).predict(example(2), where="images 64-65")


def test_probabilities_that_do_not_sum_to_one_are_refused(tiny):
    model = wrap(tiny, output="probabilities")  # the card lies: the module returns logits
    with pytest.raises(ModelOutputError, match="do not form a distribution.*\"output\": \"logits\""):
        model.predict(example(2))


def test_forward_failure_is_a_model_output_error():
    def boom(x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("Expected input batch_size 1\nmore detail")

    with pytest.raises(ModelOutputError, match=r"failed on a batch of shape \(2, 1, 16, 16\): "
                                               r"Expected input batch_size 1 \(a checkpoint"):
        wrap(Lambda(boom)).predict(example(2))


# ---------------------------------------------------------------- hashing


def test_sha256_matches_hashlib_and_is_recorded(tmp_path, tiny):
    weights = write(tmp_path, "m", "export", tiny)
    assert sha256_file(weights) == hashlib.sha256(weights.read_bytes()).hexdigest()
    model = load_model_file(weights)
    assert model.sha256 == sha256_file(weights) and model.weights_path == weights
    other = wrap(tiny, classes=PERMUTED_CLASSES)
    assert wrap(tiny).fingerprint() != other.fingerprint()


# ---------------------------------------------------------------- the pickle rule


@pytest.mark.parametrize("maker", [zip_pickle, raw_pickle])
@pytest.mark.parametrize("card_format", ["pickle", "torchscript", "export"])
def test_pickle_is_refused_without_running_it(maker, card_format, tmp_path):
    marker = tmp_path / "payload-ran"
    weights = maker(Payload(marker), tmp_path / "evil.pt")
    write_card(weights, card_dict(card_format))
    with pytest.raises(CheckpointError) as err:
        load_model_file(weights)
    message = str(err.value)
    assert str(weights) in message and "--trust-code" in message and "mkdir" in message
    assert not marker.exists()
    # Control: the same file, trusted, does run the payload, so the check above could fail.
    with pytest.raises(CheckpointError, match="not a torch.nn.Module"):
        load_model_file(weights, trust_code=True)
    assert marker.exists()


def test_trusted_pickle_of_a_module_or_state_dict_loads(tmp_path, tiny):
    expected = wrap(tiny).predict(example())
    whole = zip_pickle(tiny, tmp_path / "whole.pt")
    write_card(whole, card_dict("pickle"))
    np.testing.assert_allclose(load_model_file(whole, trust_code=True).predict(example()), expected)
    net = timm_resnet18()
    state = zip_pickle({"state_dict": net.state_dict(), "epoch": 3}, tmp_path / "state.pth")
    write_card(state, card_dict("pickle", architecture="timm:resnet18", size=(32, 32)))
    loaded = load_model_file(state, trust_code=True)
    direct = LoadedModel(loaded.card, net, sha256="0").predict(example(2, (32, 32)))
    np.testing.assert_allclose(loaded.predict(example(2, (32, 32))), direct, atol=1e-6)


def test_torchscript_and_pickle_are_told_apart(tmp_path, tiny):
    scripted = save_torchscript(tiny, tmp_path / "a.pt")
    assert sniff_format(scripted) == "torchscript"
    assert sniff_format(zip_pickle(tiny, tmp_path / "b.pt")) == "pickle"
    assert sniff_format(zip_pickle(tiny.state_dict(), tmp_path / "c.pt")) == "pickle"
    assert sniff_format(raw_pickle(tiny, tmp_path / "d.pt")) == "pickle"
    assert sniff_format(save_export(tiny, tmp_path / "e.pt2")) == "export"
    assert sniff_format(save_safetensors(tiny, tmp_path / "f.safetensors")) == "safetensors"
    write_card(scripted, card_dict("torchscript"))
    with pytest.raises(CheckpointError, match="a.pt: refusing a TorchScript archive.*--trust-code"):
        load_model_file(scripted)  # TorchScript is code: refused without the opt-in
    assert load_model_file(scripted, trust_code=True).card.format == "torchscript"


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_pickle_globals_are_read_from_opcodes(protocol, tmp_path):
    marker = tmp_path / "never"
    names = pickle_globals(pickle.dumps(Payload(marker), protocol=protocol))
    assert any(n.endswith(".mkdir") for n in names)
    assert not marker.exists()


def test_fake_torchscript_zip_does_not_unpickle_python(tmp_path):
    """A pickle dressed up with TorchScript's members goes to torch.jit.load, which runs no Python."""
    marker = tmp_path / "payload-ran"
    buffer = io.BytesIO()
    torch.save(Payload(marker), buffer)
    weights = tmp_path / "spoof.pt"
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as src, zipfile.ZipFile(weights, "w") as dst:
        root = src.namelist()[0].split("/")[0]
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        dst.writestr(f"{root}/constants.pkl", pickle.dumps((), protocol=2))
        dst.writestr(f"{root}/code/__torch__.py", "")
    assert sniff_format(weights) == "torchscript"
    write_card(weights, card_dict("torchscript"))
    with pytest.raises(CheckpointError, match="refusing a TorchScript archive"):
        load_model_file(weights)
    with pytest.raises(CheckpointError, match="not a loadable TorchScript archive"):
        load_model_file(weights, trust_code=True)
    assert not marker.exists()


# ---------------------------------------------------------------- torch.export archives


@pytest.fixture(scope="module")
def plain_pt2(tmp_path_factory, tiny) -> Path:
    return save_export(tiny, tmp_path_factory.mktemp("pt2") / "plain.pt2")


def test_plain_export_archive_passes_the_scan(plain_pt2):
    assert pt2_unsafe_reason(plain_pt2) is None


def test_export_archive_with_pickled_sample_inputs_is_refused(plain_pt2, tmp_path):
    marker = tmp_path / "payload-ran"
    buffer = io.BytesIO()
    torch.save((Payload(marker),), buffer)
    evil = rewrite_pt2(plain_pt2, tmp_path / "evil.pt2", lambda name, data: buffer.getvalue()
                       if name.endswith("sample_inputs/model.pt") else data)
    write_card(evil, card_dict("export"))
    with pytest.raises(CheckpointError, match=r"evil.pt2: refusing.*names \w+\.mkdir.*--trust-code"):
        load_model_file(evil)
    assert not marker.exists()
    # Control: torch.export.load itself falls back to full unpickling and runs the payload
    # (whether it then finishes depends on torch's logging; the payload has run either way).
    with contextlib.suppress(CheckpointError):
        load_model_file(evil, trust_code=True)
    assert marker.exists()


def _pickled_weights(cfg: dict) -> dict:
    next(iter(cfg["config"].values()))["use_pickle"] = True
    return cfg


def _sympy_payload(program: dict) -> dict:
    program["graph_module"]["graph"].setdefault("sym_int_values", {})["z"] = {
        "as_expr": {"expr_str": "__import__('os').getcwd()", "hint": None}}
    return program


@pytest.mark.parametrize("edit, reason", [
    (edit_json("_weights_config.json", _pickled_weights), "is stored as a pickle"),
    (edit_json("models/model.json", _sympy_payload), "not plain arithmetic"),
])
def test_tampered_export_archives_are_refused(plain_pt2, tmp_path, edit, reason):
    tampered = rewrite_pt2(plain_pt2, tmp_path / "t.pt2", edit)
    assert reason in (pt2_unsafe_reason(tampered) or "")
    write_card(tampered, card_dict("export"))
    with pytest.raises(CheckpointError, match="refusing this torch.export archive"):
        load_model_file(tampered)


def test_export_archive_with_extra_members_is_refused(plain_pt2, tmp_path):
    extra = rewrite_pt2(plain_pt2, tmp_path / "x.pt2", lambda name, data: data)
    assert pt2_unsafe_reason(extra) is None
    with zipfile.ZipFile(extra, "a") as zf:
        zf.writestr("plain/data/aotinductor/model/model.so", b"\x7fELF")
    assert "data/aotinductor/model/model.so" in pt2_unsafe_reason(extra)


# ---------------------------------------------------------------- files that are not what the card says


def test_garbage_torchscript_names_the_file(tmp_path):
    weights = tmp_path / "garbage.pt"
    weights.write_bytes(b"this is not a checkpoint" * 10)
    write_card(weights, card_dict("torchscript"))
    with pytest.raises(CheckpointError, match=r"garbage.pt: the card says format 'torchscript' but "
                                              r"the file is not a recognised checkpoint"):
        load_model_file(weights)


def test_card_format_mismatch_suggests_the_right_one(tmp_path, tiny):
    scripted = save_torchscript(tiny, tmp_path / "m.pt")
    write_card(scripted, card_dict("export"))
    with pytest.raises(CheckpointError, match="set \"format\": \"torchscript\""):
        load_model_file(scripted)
    exported = save_export(tiny, tmp_path / "n.pt2")
    write_card(exported, card_dict("torchscript"))
    with pytest.raises(CheckpointError, match="set \"format\": \"export\""):
        load_model_file(exported)


def test_safetensors_key_mismatch_names_the_key(tmp_path):
    net = timm_resnet18()
    state = {k: v for k, v in net.state_dict().items() if k != "fc.bias"}
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "m.safetensors"))
    write_card(tmp_path / "m.safetensors", card_dict("safetensors", architecture="timm:resnet18"))
    with pytest.raises(CheckpointError, match=r"m.safetensors: weights do not match timm:resnet18: "
                                              r"missing key 'fc.bias'"):
        load_model_file(tmp_path / "m.safetensors")
    three = card_dict("safetensors", architecture="timm:resnet18", classes=CLASSES[:3])
    save_safetensors(net, tmp_path / "m.safetensors")
    write_card(tmp_path / "m.safetensors", three)
    with pytest.raises(CheckpointError, match="size mismatch for fc.weight"):
        load_model_file(tmp_path / "m.safetensors")


@pytest.mark.parametrize("architecture, expected", [
    ("keras:resnet18", "unknown builder 'keras' \\(known: .*timm"),
    ("timm:not_a_model", "timm has no model"),
    ("cxrbench:not_a_model", "names no cxrbench architecture"),
    ({"architecture_args": {"checkpoint_path": "evil.pth"}},
     "field 'architecture_args.checkpoint_path' is not accepted"),
])
def test_unknown_architecture_is_a_card_error(tmp_path, tiny, architecture, expected):
    weights = save_safetensors(tiny, tmp_path / "m.safetensors")
    extra = architecture if isinstance(architecture, dict) else {"architecture": architecture}
    write_card(weights, card_dict("safetensors", **{"architecture": "timm:resnet18", **extra}))
    with pytest.raises(CardError, match=expected):
        load_model_file(weights)


def test_onnx_errors_name_the_file(tmp_path, monkeypatch):
    weights = tmp_path / "broken.onnx"
    weights.write_bytes(b"\x08\x07garbage")
    write_card(weights, card_dict("onnx"))
    with pytest.raises(CheckpointError, match="broken.onnx: onnxruntime cannot load it"):
        load_model_file(weights)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(CheckpointError, match=r"broken.onnx: onnxruntime is not installed; "
                                              r"pip install 'cxrbench\[onnx\]'"):
        load_model_file(weights)


def test_registered_architecture_builder_is_used(tmp_path, tiny, monkeypatch):
    from benchmark.models import loaders

    monkeypatch.setitem(loaders.ARCHITECTURE_BUILDERS, "mine",
                        lambda name, card: TinyNet(card.num_classes, card.input.channels, seed=9))
    weights = save_safetensors(tiny, tmp_path / "m.safetensors")
    write_card(weights, card_dict("safetensors", architecture="mine:tiny"))
    np.testing.assert_allclose(load_model_file(weights).predict(example()),
                               wrap(tiny).predict(example()), atol=1e-6)
