"""The seed study's baselines: each trains on synth at 64x64 on CPU and learns what its objective asks;
checkpoints load through the harness like any submission; `cxrbench train` -> `cxrbench run` end to end."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.helpers import cli

DATA = "synth:n_patients=40,image_size=64,seed=11"
FAST = {"backbone": "resnet10t", "image_size": 64, "batch_size": 16, "lr": 3e-3, "seed": 0}
MOCO_EPOCHS = 12        # about 24 steps on DATA
INPAINT_EPOCHS = 6
MT_DATA = "synth:n_patients=60,image_size=64,seed=11"
MT_STEPS = 120
EVAL_DATA = "synth:n_patients=40,image_size=64,seed=99"


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _train(baseline: str, out, **options):
    from benchmark import api

    return api.train(baseline, data=DATA, out=out, **{**FAST, **options})


def _val(phase: dict, key: str) -> tuple[float, float]:
    """(value before training, value after) of a validation number."""
    vals = [e["val"][key] for e in phase["epochs_log"] if key in e.get("val", {})]
    return vals[0], vals[-1]


def _falls(losses: list[float], k: int = 4) -> bool:
    return float(np.mean(losses[-k:])) < float(np.mean(losses[:k]))


# ---------------------------------------------------------------- small known answers


def test_rasterized_boxes_cover_the_pixels_whose_centres_they_hold():
    from baselines.data import rasterize_boxes

    mask = rasterize_boxes(np.array([[1.0, 2.0, 4.0, 3.0], [6.4, 6.6, 7.6, 9.0]]), (8, 8))
    expected = np.zeros((8, 8), dtype=bool)
    expected[2:3, 1:4] = True
    expected[7:8, 6:8] = True  # centres 6.5, 7.5 lie in [6.4, 7.6); row centre 7.5 in [6.6, 9.0), clipped
    assert (mask == expected).all()


def test_augmentation_moves_masks_with_their_images():
    from baselines.augment import AugmentSpec, augment

    g = torch.Generator().manual_seed(0)
    masks = (torch.rand(6, 2, 48, 48, generator=g) > 0.7).float()
    masks = torch.nn.functional.max_pool2d(masks, 7, stride=1, padding=3)  # blobs, not salt
    spec = AugmentSpec(brightness=0.0, contrast=0.0, rotate_deg=15.0, area=(0.5, 1.0))
    out_img, out_mask = augment(masks[:, :1].clone(), masks, spec=spec, gen=torch.Generator().manual_seed(3))
    assert not torch.equal(out_mask, masks)  # something moved
    agree = ((out_img >= 0.5).float() == out_mask[:, :1]).float().mean()
    assert agree > 0.995


def test_inpainting_masks_hide_about_the_asked_area():
    from baselines.inpainting import random_masks

    m = random_masks(64, 48, 0.25, torch.Generator().manual_seed(1), torch.device("cpu"))
    assert set(m.unique().tolist()) <= {0.0, 1.0}
    area = m.mean(dim=(1, 2, 3))
    assert 0.2 < float(area.mean()) < 0.3
    assert float(area.min()) > 0.05 and float(area.max()) < 0.45


def test_leave_out_site_removes_every_patient_seen_there():
    from baselines.data import select_rows
    from benchmark.data.dataset import resolve_dataset

    ds = resolve_dataset("synth:n_patients=80,image_size=64,seed=2")
    rows = select_rows(ds, leave_out_site="site_b", val_fraction=0.2, seed=0)
    t = ds.table
    held = set(t.loc[t["site"] == "site_b", "patient_id"])
    used = np.concatenate([rows.train, rows.val])
    assert len(set(rows.train) & set(rows.val)) == 0
    assert not t.iloc[used]["patient_id"].isin(held).any()
    assert rows.left_out_images == len(t) - len(used) >= (t["site"] == "site_b").sum() > 0
    plain = select_rows(ds, leave_out_site=None, val_fraction=0.2, seed=0)
    assert set(t.iloc[plain.train]["split"]) == {"train"} and set(t.iloc[plain.val]["split"]) == {"val"}


def test_class_weights_are_inverse_frequencies():
    import pandas as pd

    from baselines.data import TrainRows
    from benchmark.data.dataset import resolve_dataset

    ds = resolve_dataset("synth:n_patients=30,image_size=64")
    labels = ["negative"] * 10 + ["typical"] * 30 + ["atypical"] * 20
    ds.manifest.table = pd.DataFrame({"label": labels})
    w = TrainRows(ds, np.arange(60), np.arange(0)).class_weights()
    assert torch.allclose(w[[0, 1, 3]], torch.tensor([60 / 40, 60 / 120, 60 / 80]))


def test_linear_probe_trains_only_the_head():
    from baselines.backbones import create_classifier
    from baselines.runtime import Runtime
    from baselines.supervised import SupervisedTask
    from baselines.task import Batch

    model, _ = create_classifier("resnet10t", num_classes=4, image_size=64)
    task = SupervisedTask(Runtime(torch.device("cpu")), 0, model, torch.ones(4), linear=True)
    head = set(map(id, model.get_classifier().parameters()))
    assert {id(p) for p in task.parameters()} == head
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(task.parameters(), lr=0.5)
    task.train_mode()
    batch = Batch(torch.rand(4, 1, 64, 64), torch.tensor([0, 1, 2, 3]), torch.zeros(0), torch.zeros(4, 2, dtype=torch.bool))
    task.loss(model, batch)[0].backward()
    opt.step()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"fc.weight", "fc.bias"}  # batch-norm statistics of the encoder included


def test_every_multitask_backbone_has_a_loader_entry():
    from baselines.backbones import MULTITASK_BACKBONES
    from benchmark.models.loaders import CXRBENCH_ARCHITECTURES

    for b in MULTITASK_BACKBONES:
        module, _, attr = CXRBENCH_ARCHITECTURES[f"multitask_{b}"].partition(":")
        assert (module, attr) == ("baselines.multitask", f"build_multitask_{b}")


@pytest.mark.parametrize("args, needle", [
    (["train", "nope", "--data", DATA], "choose from supervised, moco, inpainting, multitask"),
    (["train", "supervised", "--data", DATA, "--backbone", "resnet_nope"], "timm has no model 'resnet_nope'"),
    (["train", "multitask", "--data", DATA, "--backbone", "vit_tiny_patch16_224"], "multitask baseline supports"),
    (["train", "supervised", "--data", DATA, "--image-size", "8"], "--image-size"),
    (["train", "moco", "--data", DATA, "--finetune", "half"], "--finetune"),
])
def test_bad_train_options_are_one_line(capsys, tmp_path, args, needle):
    code, out, err = cli(capsys, *args, "--out", str(tmp_path / "m"))
    assert code == 2, (out, err)
    assert needle in err and "Traceback" not in err
    assert not (tmp_path / "m").exists()


def test_unknown_site_and_occupied_folder_fail_before_training(capsys, tmp_path):
    code, _, err = cli(capsys, "train", "supervised", "--data", DATA, "--out", str(tmp_path / "a"),
                       "--leave-out-site", "site_zz", "--backbone", "resnet10t", "--image-size", "64")
    assert code == 2 and "site_zz" in err and "site_a" in err
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "other.pt").write_bytes(b"x")
    code, _, err = cli(capsys, "train", "supervised", "--data", DATA, "--out", str(tmp_path / "b"),
                       "--backbone", "resnet10t", "--image-size", "64")
    assert code == 2 and "other.pt" in err


def test_registered_name_without_checkpoint_says_how_to_train_it(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("CXRBENCH_MODELS", str(tmp_path / "models"))
    code, _, err = cli(capsys, "run", "--model", "moco", "--data", DATA, "--out", str(tmp_path / "runs"))
    assert code == 2
    assert f"cxrbench train moco --data synth --out {tmp_path / 'models' / 'moco'}" in err


# ---------------------------------------------------------------- each baseline learns


def test_supervised_loss_falls_without_the_left_out_site(tmp_path):
    from benchmark.models.loaded import load_model_file

    outcome = _train("supervised", tmp_path / "sup", steps=16, leave_out_site="site_a")
    (phase,) = outcome.phases
    assert phase["phase"] == "supervised" and phase["steps"] == 16 and len(phase["step_losses"]) == 16
    assert _falls(phase["step_losses"]), phase["step_losses"]
    card = json.loads((tmp_path / "sup" / "card.json").read_text())
    assert card["architecture"] == "timm:resnet10t" and card["input"]["size"] == [64, 64]
    assert card["backbone"] == "resnet10t" and card["image_size"] == 64
    assert card["training"]["left_out_site"] == "site_a"
    assert outcome.log["data"]["left_out_site"] == "site_a" and outcome.log["data"]["left_out_images"] > 0
    model = load_model_file(tmp_path / "sup")
    probs = model.predict(torch.rand(3, 1, 64, 64))
    assert probs.shape == (3, 4) and np.allclose(probs.sum(axis=1), 1)


def test_moco_infonce_falls_then_fine_tunes(tmp_path):
    from benchmark.models.loaded import load_model_file

    outcome = _train("moco", tmp_path / "moco", pretrain_epochs=MOCO_EPOCHS, epochs=1, moco_queue=64)
    pre, fine = outcome.phases
    assert pre["phase"] == "pretrain-moco" and fine["phase"] == "finetune"
    # In-batch InfoNCE between two fixed views of held-out images: log(batch) when the encoder cannot
    # tell the images apart (as at initialisation), lower as it learns to.
    before, after = _val(pre, "infonce")
    assert after < before - 0.05, (before, after)
    assert len(fine["step_losses"]) == fine["steps_per_epoch"]
    model = load_model_file(tmp_path / "moco")  # the fine-tuned encoder is a plain timm classifier
    assert model.predict(torch.rand(2, 1, 64, 64)).shape == (2, 4)


def test_inpainting_masked_error_falls_then_fine_tunes(tmp_path):
    outcome = _train("inpainting", tmp_path / "inp", pretrain_epochs=INPAINT_EPOCHS, epochs=1, finetune="linear")
    pre, fine = outcome.phases
    assert pre["phase"] == "pretrain-inpainting" and fine["phase"] == "finetune"
    before, after = _val(pre, "masked_mse")
    assert after < 0.9 * before, (before, after)
    assert _falls(pre["step_losses"])
    card = json.loads((tmp_path / "inp" / "card.json").read_text())
    assert card["training"]["finetune"] == "linear" and card["training"]["pretrain_epochs"] == INPAINT_EPOCHS


# ---------------------------------------------------------------- multitask, end to end through the CLI


def _cli_exit_code(*args: str) -> int:
    """`cxrbench ARGS` in this process, for module fixtures (capsys is per test); output goes to pytest."""
    import sys

    from benchmark import cli as cli_mod

    argv, sys.argv = sys.argv, ["cxrbench", *args]
    try:
        cli_mod.main()
        return 0
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        sys.argv = argv


@pytest.fixture(scope="module")
def multitask_dir(tmp_path_factory):
    """`cxrbench train multitask` into a models directory, where the registered name looks."""
    models = tmp_path_factory.mktemp("models")
    out = models / "multitask"
    code = _cli_exit_code("train", "multitask", "--data", MT_DATA, "--out", str(out), "--steps", str(MT_STEPS),
                          "--backbone", "resnet10t", "--image-size", "64", "--batch-size", "16", "--lr", "3e-3")
    assert code == 0
    return out


def test_multitask_learns_to_segment_synth_opacities(multitask_dir):
    log = json.loads((multitask_dir / "train_log.json").read_text())
    (phase,) = log["phases"]
    assert phase["phase"] == "multitask" and phase["steps"] == MT_STEPS
    assert _falls(phase["step_losses"], k=8)
    before, after = _val(phase, "dice_opacity")
    assert before < 0.3 < after, (before, after)
    assert _val(phase, "dice_lung")[1] > 0.7
    card = json.loads((multitask_dir / "card.json").read_text())
    assert card["architecture"] == "cxrbench:multitask_resnet10t"
    assert card["segmentation"] == {"channels": ["opacity", "lung"], "trained": ["opacity", "lung"]}


def test_train_then_run_end_to_end(capsys, tmp_path, multitask_dir, monkeypatch):
    from benchmark.reporting.results import validate_result

    code, _, err = cli(capsys, "run", "--model", str(multitask_dir), "--data", EVAL_DATA,
                         "--out", str(tmp_path / "runs"), "--bootstrap", "50")
    assert code == 0, err
    (run_dir,) = (tmp_path / "runs").iterdir()
    result = json.loads((run_dir / "result.json").read_text())
    assert validate_result(result) == [] and result["model"]["name"] == "multitask-resnet10t"
    assert result["model"]["card"]["architecture"] == "cxrbench:multitask_resnet10t"
    # The registered name resolves to the same checkpoint in the models directory.
    monkeypatch.setenv("CXRBENCH_MODELS", str(multitask_dir.parent))
    code, _, err = cli(capsys, "run", "--model", "multitask", "--data", EVAL_DATA,
                       "--out", str(tmp_path / "runs2"), "--bootstrap", "50")
    assert code == 0, err
    (run2,) = (tmp_path / "runs2").iterdir()
    assert json.loads((run2 / "result.json").read_text())["model"]["sha256"] == result["model"]["sha256"]


def test_multitask_segments_lungs_and_opacities_at_any_image_size(multitask_dir):
    from baselines.segmenter import MultitaskLungSegmenter, MultitaskOpacitySegmenter
    from benchmark.data.synth import SynthConfig, render_case

    lungs, opacity = MultitaskLungSegmenter(multitask_dir), MultitaskOpacitySegmenter(multitask_dir)
    cfg = SynthConfig(n_patients=12, image_size=96, seed=77)  # unseen patients, another size
    cases = [render_case(cfg, i) for i in range(16)]
    batch = torch.from_numpy(np.stack([c.image for c in cases]))[:, None]
    probs = opacity.segment(batch)
    assert probs.shape == batch.shape and probs.dtype == torch.float32
    assert float(probs.min()) >= 0 and float(probs.max()) <= 1

    def dice(pred, truth):
        return 2 * (pred & truth).sum() / max(pred.sum() + truth.sum(), 1)

    lung_pred = np.stack([lungs(c.image) for c in cases])  # benchmark/data/lungs.py's per-image contract
    assert lung_pred.dtype == bool and lung_pred.shape == (16, 96, 96)
    assert dice(lung_pred, np.stack([c.lung_mask for c in cases])) > 0.7
    assert dice(probs[:, 0].numpy() >= 0.5, np.stack([c.opacity_mask for c in cases])) > 0.2


def test_lung_segmenter_is_registered_only_once_trained(multitask_dir, tmp_path, monkeypatch):
    from baselines.registered import LUNG_SEGMENTER, register_lung_segmenter
    from benchmark.core.registry import Registry

    monkeypatch.setenv("CXRBENCH_MODELS", str(tmp_path / "empty"))
    empty = Registry("segmenter")
    register_lung_segmenter(empty)
    assert LUNG_SEGMENTER not in empty.names()
    monkeypatch.setenv("CXRBENCH_MODELS", str(multitask_dir.parent))
    reg = Registry("segmenter")
    register_lung_segmenter(reg)
    assert reg.meta(LUNG_SEGMENTER)["version"] and not reg.entry(LUNG_SEGMENTER).loaded
    segmenter = reg.get(LUNG_SEGMENTER)()  # benchmark/data/lungs.py instantiates a registered class
    assert segmenter(np.zeros((70, 50), dtype=np.float32)).shape == (70, 50)
