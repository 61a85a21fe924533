"""One trained timm classifier saved every way people save it: each loads (the code-carrying one only
with --trust-code) and predicts the same; `card init` / `card check` take a bare state dict to a run."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.core.errors import CardError, CheckpointError
from benchmark.core.labels import CLASSES
from benchmark.models.loaded import load_model_file
from tests.conftest_models import Payload, card_dict, write_card
from tests.helpers import cli

SIZE = (48, 48)
ARCH = "resnet10t"


def _trained() -> torch.nn.Module:
    """resnet10t with weights and batch-norm statistics moved away from their initial values."""
    import timm

    torch.manual_seed(0)
    net = timm.create_model(ARCH, pretrained=False, num_classes=4, in_chans=1)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    x = torch.rand(8, 1, *SIZE, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3] * 2)
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return net.eval()


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    return _trained()


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    return torch.rand(6, 1, *SIZE, generator=torch.Generator().manual_seed(3))


def _card(fmt: str, **extra) -> dict:
    return card_dict(fmt, size=SIZE, architecture=f"timm:{ARCH}", **extra)


def _lightning_checkpoint(net: torch.nn.Module, path: Path) -> Path:
    """A .ckpt written by a real Lightning Trainer around the network (keys under `model.`)."""
    import pytorch_lightning as pl

    class Module(pl.LightningModule):
        def __init__(self, lr: float = 0.0):
            super().__init__()
            self.save_hyperparameters()
            self.model = net
            self.loss = torch.nn.CrossEntropyLoss(weight=torch.ones(4))  # a buffer outside `model.`

        def training_step(self, batch, _):
            return self.loss(self.model(batch[0]), batch[1]) * 0.0  # weights stay as they are

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    data = torch.utils.data.TensorDataset(torch.rand(2, 1, *SIZE), torch.tensor([0, 1]))
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", default_root_dir=str(path.parent))
    module = Module()
    module.model.eval()
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=2))
    trainer.save_checkpoint(str(path))
    return path


def _timm_folder(net: torch.nn.Module, folder: Path) -> Path:
    from timm.models import save_for_hf

    save_for_hf(net, str(folder), model_config={"label_names": list(CLASSES)},
                safe_serialization="both", data_config={"input_size": (1, *SIZE), "mean": (0.5,),
                                                        "std": (0.25,), "interpolation": "bilinear"})
    return folder


@pytest.fixture(scope="module")
def saved(net, tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("byom")
    out: dict[str, Path] = {}
    ts = d / "scripted.pt"
    torch.jit.save(torch.jit.trace(net, torch.rand(2, 1, *SIZE)), str(ts))
    write_card(ts, card_dict("torchscript", size=SIZE))
    out["torchscript"] = ts
    sd = d / "weights.pth"
    torch.save(net.state_dict(), sd)
    write_card(sd, _card("state_dict"))
    out["state_dict"] = sd
    ddp = d / "ddp.pt"
    torch.save({"model_state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}, "epoch": 7}, ddp)
    write_card(ddp, _card("state_dict"))
    out["ddp"] = ddp
    ckpt = _lightning_checkpoint(net, d / "lightning.ckpt")
    write_card(ckpt, _card("state_dict"))
    out["lightning"] = ckpt
    out["timm_folder"] = _timm_folder(net, d / "timm-model")
    return out


def test_every_way_of_saving_predicts_the_same(saved, net, batch):
    from benchmark.models.loaded import LoadedModel
    from benchmark.models.card import parse_card

    direct = LoadedModel(parse_card(_card("safetensors"), where="t"), net, sha256="0").predict(batch)
    for kind, path in saved.items():
        model = load_model_file(path, trust_code=kind == "torchscript")
        got = model.predict(batch)
        assert np.abs(got - direct).max() <= 1e-5, kind
    assert load_model_file(saved["lightning"]).loading == {"unwrapped": "state_dict",
                                                           "stripped_prefix": "model."}
    assert load_model_file(saved["ddp"]).loading == {"unwrapped": "model_state_dict",
                                                     "stripped_prefix": "module."}


def test_timm_folder_card_comes_from_config(saved):
    folder = saved["timm_folder"]
    model = load_model_file(folder)
    assert model.card.architecture == f"timm:{ARCH}" and model.card.format == "safetensors"
    assert model.card.input.size == SIZE and model.card.input.channels == 1
    assert model.card.classes == CLASSES and model.weights_path.name == "model.safetensors"
    (folder / "card.json").write_text(json.dumps({"format": "state_dict", "input": {"std": [0.5]}}))
    try:
        over = load_model_file(folder)
        assert over.weights_path.name == "pytorch_model.bin" and over.card.input.std == (0.5,)
        assert over.card.input.mean == (0.5,)  # fields the override does not name stay from config
    finally:
        (folder / "card.json").unlink()


def test_timm_folder_without_label_names_asks_for_classes(net, tmp_path):
    from timm.models import save_for_hf

    save_for_hf(net, str(tmp_path / "m"))
    with pytest.raises(CardError, match=r"config.json: .*no 'label_names'.*\"classes\""):
        load_model_file(tmp_path / "m")


def test_payload_inside_a_state_dict_is_refused_and_never_runs(net, tmp_path):
    marker = tmp_path / "payload-ran"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": net.state_dict(), "extra": Payload(marker)}, path)
    write_card(path, _card("state_dict"))
    with pytest.raises(CheckpointError) as err:
        load_model_file(path)
    message = str(err.value)
    assert "evil.pth: not a plain state dict" in message and "mkdir" in message
    assert "torch.save(model.state_dict()" in message and "--trust-code" in message
    assert not marker.exists()


def test_whole_pickled_module_is_refused_without_the_flag(net, tmp_path):
    path = tmp_path / "whole.pt"
    torch.save(net, path)
    write_card(path, _card("state_dict"))
    with pytest.raises(CheckpointError, match=r"whole.pt: not a plain state dict: loading it would "
                                              r"import timm\.models\.resnet\.ResNet"):
        load_model_file(path)
    write_card(path, _card("pickle"))
    with pytest.raises(CheckpointError, match=r"pickled checkpoint.*--trust-code"):
        load_model_file(path)
    assert load_model_file(path, trust_code=True).card.format == "pickle"  # the opt-in still works


def test_keys_that_do_not_match_name_the_first_one(net, tmp_path):
    path = tmp_path / "other.pth"
    torch.save({f"backbone.{k}": v for k, v in list(net.state_dict().items())[:-2]}, path)
    write_card(path, _card("state_dict"))
    with pytest.raises(CheckpointError, match=r"other.pth: weights do not match timm:resnet10t: missing key"):
        load_model_file(path)


def test_interpolation_is_honoured_and_keyed(saved, batch):
    from benchmark.data.geometry import letterbox, resize_image
    from benchmark.models.card import parse_card, preprocessing_key

    img = np.random.default_rng(0).random((100, 80)).astype(np.float32)
    lb = letterbox(img.shape, SIZE)
    assert not np.allclose(resize_image(img, lb, "bicubic"), resize_image(img, lb))
    bilinear = parse_card(_card("state_dict"), where="t")
    bicubic = parse_card(_card("state_dict", input={"size": list(SIZE), "interpolation": "bicubic"}), where="t")
    assert bicubic.input.interpolation == "bicubic"
    assert preprocessing_key(bicubic) != preprocessing_key(bilinear)
    with pytest.raises(CardError, match="input.interpolation"):
        parse_card(_card("state_dict", input={"size": list(SIZE), "interpolation": "cubic"}), where="t")


def test_card_init_then_card_check_then_run(net, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    import timm

    torch.save(timm.create_model("resnet18", pretrained=False, num_classes=4, in_chans=1).state_dict(),
               tmp_path / "model.pth")
    code, out, err = cli(capsys, "card", "init", "model.pth")
    assert code == 0 and "architecture timm:resnet18" in out and "fill in: classes" in out
    card = json.loads((tmp_path / "model.card.json").read_text())
    assert card["format"] == "state_dict" and card["input"]["channels"] == 1 and card["_fill_in"] == ["classes"]
    code, _, err = cli(capsys, "card", "check", "--model", "model.pth")
    assert code == 2 and "still has fields to fill in (classes)" in err and len(err.strip().splitlines()) == 1
    code, out, _ = cli(capsys, "card", "init", "model.pth", "--force", "--classes",
                       "Negative for Pneumonia,Typical Appearance,Indeterminate Appearance,Atypical Appearance")
    assert code == 0 and "fill in" not in out
    code, out, _ = cli(capsys, "card", "check", "--model", "model.pth")
    assert code == 0 and "(8, 4)" in out
    from benchmark import api

    rows = {r.check: r for r in api.card_check("model.pth").rows}
    assert "Typical Appearance -> typical" in rows["class mapping"].found
    assert rows["output shape"].status == rows["finite"].status == "ok"
    code, out, err = cli(capsys, "run", "--model", "model.pth", "--data", "synth:n_patients=12",
                         "--suites", "subtype", "--bootstrap", "50", "--cache-dir", str(tmp_path / "c"),
                         "--out", str(tmp_path / "runs"))
    assert code == 0, err


def test_card_init_refuses_a_whole_pickled_module(net, tmp_path, capsys):
    torch.save(net, tmp_path / "whole.pt")
    code, _, err = cli(capsys, "card", "init", str(tmp_path / "whole.pt"))
    assert code == 2 and "not a plain state dict" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "whole.card.json").exists()


def test_constant_output_warning_fires_for_wrong_normalisation(tmp_path, capsys):
    from benchmark.models.reference import reference_checkpoint

    folder = Path(reference_checkpoint())
    code, out, _ = cli(capsys, "card", "check", "--model", str(folder))
    assert code == 0 and "WARN" not in out and "nearly constant" not in out
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    card = json.loads((folder / "card.json").read_text())
    # A model trained on 0-255 pixels fed 0-1: its inputs shrink 255 times.
    card["input"]["std"] = [s * 255 for s in card["input"]["std"]]
    card["input"]["mean"] = [0.0 for _ in card["input"]["mean"]]
    (wrong / "card.json").write_text(json.dumps(card))
    os.link(folder / "model.safetensors", wrong / "model.safetensors")
    code, out, _ = cli(capsys, "card", "check", "--model", str(wrong))
    assert code == 0 and "WARN" in out
    from benchmark import api

    rows = {r.check: r for r in api.card_check(str(wrong)).rows}
    assert rows["depends on the image"].status == "warn" and "nearly constant" in rows["depends on the image"].found
    from benchmark.core.errors import ModelWarning

    with pytest.warns(ModelWarning, match="nearly the same probabilities") as caught:
        code, _, err = cli(capsys, "run", "--model", str(wrong), "--data", "synth:n_patients=12",
                           "--suites", "subtype", "--bootstrap", "50", "--cache-dir", str(tmp_path / "c"),
                           "--out", str(tmp_path / "runs"))
    assert code == 0, err
    assert len([w for w in caught if issubclass(w.category, ModelWarning)]) == 1  # the first batch only


def test_run_records_the_stripped_prefix(saved, tmp_path, capsys):
    from tests.helpers import latest_result

    code, _, err = cli(capsys, "run", "--model", str(saved["lightning"]), "--data", "synth:n_patients=6",
                       "--suites", "subtype", "--bootstrap", "20", "--cache-dir", str(tmp_path / "c"),
                       "--out", str(tmp_path / "runs"))
    assert code == 0, err
    assert latest_result(tmp_path / "runs")["model"]["loading"] == {"unwrapped": "state_dict",
                                                                  "stripped_prefix": "model."}
