"""Clean probabilities and embeddings come from one forward pass when the model splits its forward
(timm's forward_features + forward_head), with exactly the numbers of two separate passes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.core.labels import CLASSES
from benchmark.models.card import parse_card
from benchmark.models.loaded import LoadedModel
from benchmark.models.small_cnn import SmallCNN

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _loaded(net, size: int = 48) -> LoadedModel:
    card = parse_card({"name": "n", "format": "safetensors", "architecture": "cxrbench:small_cnn",
                       "classes": list(CLASSES), "output": "logits",
                       "input": {"size": [size, size], "channels": 1, "mean": [0.5], "std": [0.25]}}, where="test")
    return LoadedModel(card, net, sha256="0" * 64)


class CountingCNN(SmallCNN):
    def __init__(self):
        super().__init__()
        self.feature_calls = 0

    def forward_features(self, x):
        self.feature_calls += 1
        return super().forward_features(x)


class OwnEmbed(SmallCNN):
    """A module with its own `embed`: its features are not the head's input, so no fusing."""

    def embed(self, x):
        return self.features(x).amax(dim=(2, 3))


@pytest.mark.parametrize("make", [
    lambda: SmallCNN(),
    lambda: __import__("timm").create_model("resnet18", pretrained=False, num_classes=4, in_chans=1),
])
def test_fused_pass_equals_separate_passes(make):
    torch.manual_seed(0)
    model = _loaded(make())
    assert model.fuses_embedding
    x = torch.rand(6, 1, 48, 48)
    probs, feats = model.predict_and_embed(x)
    assert np.array_equal(probs, model.predict(x))
    assert np.array_equal(feats, model.embed(x))


def test_a_module_with_its_own_embed_is_not_fused():
    model = _loaded(OwnEmbed())
    assert not model.fuses_embedding
    x = torch.rand(3, 1, 48, 48)
    probs, feats = model.predict_and_embed(x)
    assert np.array_equal(feats, model.embed(x)) and np.array_equal(probs, model.predict(x))


def test_a_run_needing_embeddings_does_one_pass(tmp_path):
    from benchmark.data.dataset import resolve_dataset
    from benchmark.views.embedding import EMBEDDING_VIEW
    from benchmark.execution.runner import predict_views
    from benchmark.execution.store import PredictionStore

    ds = resolve_dataset("synth:n_patients=12,image_size=64,seed=3")
    net = CountingCNN()
    out, stats = predict_views(_loaded(net), ds, ["clean", EMBEDDING_VIEW], store=PredictionStore(tmp_path),
                               batch_size=8, progress=False)
    n_batches = -(-len(ds) // 8)
    assert n_batches >= 3
    assert net.feature_calls == n_batches + 2  # not 2 x n_batches: 4 images are checked both ways once
    assert stats.forward_images == len(ds)  # counts predictions, not embeddings
    assert out["clean"].shape == (len(ds), 4) and out[EMBEDDING_VIEW].shape == (len(ds), 144)


class ScaledForward(SmallCNN):
    """forward is not forward_head(forward_features): fusing would change its predictions."""

    def forward(self, x):
        return 3.0 * super().forward(x)


def test_a_forward_that_is_not_head_of_features_is_not_fused(tmp_path):
    from benchmark.data.dataset import resolve_dataset
    from benchmark.views.embedding import EMBEDDING_VIEW
    from benchmark.execution.runner import predict_views
    from benchmark.execution.store import PredictionStore

    torch.manual_seed(1)
    model = _loaded(ScaledForward())
    assert model.fuses_embedding  # by its methods; the first batch shows otherwise
    ds = resolve_dataset("synth:n_patients=6,image_size=64,seed=3")
    out, _ = predict_views(model, ds, ["clean", EMBEDDING_VIEW], store=PredictionStore(tmp_path / "a"),
                           batch_size=4, progress=False)
    plain, _ = predict_views(model, ds, ["clean"], store=PredictionStore(tmp_path / "b"), batch_size=4,
                             progress=False)
    assert np.array_equal(out["clean"], plain["clean"])
