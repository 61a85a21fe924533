"""Device memory running out halves the batch (or ends as one line, nothing computed lost), and
--device holds for a model registered in process."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.core.errors import CxrbenchError
from benchmark.core.labels import CLASSES
from benchmark.models.card import parse_card
from benchmark.models.loaded import LoadedModel, OutOfMemory
from benchmark.models.small_cnn import SmallCNN

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _card(size: int = 48):
    return parse_card({"name": "n", "format": "safetensors", "architecture": "cxrbench:small_cnn",
                       "classes": list(CLASSES), "output": "logits",
                       "input": {"size": [size, size], "channels": 1, "mean": [0.5], "std": [0.25]}}, where="test")


class Hungry(SmallCNN):
    """Runs out of device memory on more than `fits` images, or (fits=0) on any after `ok_calls` calls."""

    def __init__(self, fits: int, ok_calls: int = 10**9):
        super().__init__()
        self.fits, self.ok_calls, self.calls, self.sizes = fits, ok_calls, 0, []

    def forward(self, x):
        self.calls += 1
        self.sizes.append(int(x.shape[0]))
        if x.shape[0] > self.fits or self.calls > self.ok_calls:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return super().forward(x)


def test_out_of_memory_halves_the_batch_and_gives_the_same_numbers():
    torch.manual_seed(0)
    hungry = Hungry(fits=3)
    plain = SmallCNN()
    plain.load_state_dict(hungry.state_dict())
    x = torch.rand(8, 1, 48, 48)
    got = LoadedModel(_card(), hungry, sha256="0" * 64)
    assert np.allclose(got.predict(x), LoadedModel(_card(), plain, sha256="0" * 64).predict(x), atol=1e-12)
    assert got.max_rows == 2 and hungry.sizes[:3] == [8, 4, 2]  # 8 -> 4 -> 2, then kept
    hungry.sizes.clear()
    got.predict(x[:5])
    assert hungry.sizes == [2, 2, 1]  # a later batch starts at the size that fitted


def test_out_of_memory_on_one_image_is_one_line():
    model = LoadedModel(_card(), Hungry(fits=0), sha256="0" * 64)
    with pytest.raises(OutOfMemory) as err:
        model.predict(torch.rand(4, 1, 48, 48), where="images 0-3")
    text = str(err.value)
    assert "\n" not in text and "--batch-size" in text and text.startswith("images 0-3:")
    assert isinstance(err.value, CxrbenchError)


def test_out_of_memory_mid_run_keeps_the_batches_before_it(tmp_path):
    from benchmark.data.dataset import resolve_dataset
    from benchmark.execution.runner import predict_views
    from benchmark.execution.store import PredictionStore

    ds = resolve_dataset("synth:n_patients=6,image_size=64,seed=3")
    torch.manual_seed(0)
    net = Hungry(fits=10**6, ok_calls=1)  # the first batch passes, then nothing fits
    store = PredictionStore(tmp_path)
    with pytest.raises(CxrbenchError, match="one image at a time"):
        predict_views(LoadedModel(_card(), net, sha256="0" * 64), ds, ["clean"], store=store, batch_size=4,
                      progress=False)
    net.ok_calls = 10**9  # memory freed: the rerun computes only what is missing
    net.sizes.clear()
    out, stats = predict_views(LoadedModel(_card(), net, sha256="0" * 64), ds, ["clean"], store=store,
                               batch_size=4, progress=False)
    assert stats.forward_images == len(ds) - 4 and sum(net.sizes) == len(ds) - 4
    assert out["clean"].shape == (len(ds), 4)


class _Models:
    """A stand-in for the model registry holding one model built in process."""

    def __init__(self, target):
        self.target = target

    def __contains__(self, name):
        return name == "in-process"

    def get(self, name):
        return lambda trust_code=False: self.target

    def names(self):
        return ["in-process"]


def test_device_is_honoured_for_a_model_registered_in_process(monkeypatch):
    from benchmark.models import resolve

    built = LoadedModel(_card(), SmallCNN(), sha256="0" * 64)  # on the CPU, before the run's --device
    monkeypatch.setattr(resolve, "MODELS", _Models(built))
    ref = resolve.resolve_model("in-process")
    loaded = ref.load(torch.device("meta"))  # a device every machine has, that is not the CPU
    assert loaded.device.type == "meta"
    assert next(loaded.module.parameters()).device.type == "meta"
    assert loaded._mean.device.type == "meta"


def test_out_of_memory_outside_the_model_names_batch_size(tmp_path, monkeypatch):
    """Memory running out around the forward (a view on the GPU, the batch's copy) cannot be halved
    by the model: one line naming --batch-size, the batches before it stored."""
    from benchmark.data.dataset import resolve_dataset
    from benchmark.execution import forward as forward_mod
    from benchmark.execution.runner import predict_views
    from benchmark.execution.store import PredictionStore

    real, calls = forward_mod.image_seed, []

    def seed_then_fail(run_seed, image_id):
        calls.append(image_id)
        if len(calls) > 4:  # inside the second batch
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return real(run_seed, image_id)

    monkeypatch.setattr(forward_mod, "image_seed", seed_then_fail)
    ds = resolve_dataset("synth:n_patients=6,image_size=64,seed=3")
    store = PredictionStore(tmp_path)
    model = LoadedModel(_card(), SmallCNN(), sha256="0" * 64)
    with pytest.raises(CxrbenchError) as err:
        predict_views(model, ds, ["clean"], store=store, batch_size=4, progress=False)
    assert "--batch-size" in str(err.value) and "the 4 images before it are stored" in str(err.value)
    from benchmark.execution.runner import view_entries

    assert int(view_entries(model, ds, ["clean"], store)["clean"].done_mask().sum()) == 4
