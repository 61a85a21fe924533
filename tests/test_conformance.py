"""The plugin contract, checked on everything registered (timm's registry-driven tests): a new suite, view
or model is tested here without a line added. Suites: JSON-safe output, a value and CI for every metric,
each metric declared by exactly one spec, the same output under the same seed. Views: shape and dtype
kept, the same output for the same seeds. Models: load and give [B, 4] probabilities."""
from __future__ import annotations

import json
from functools import lru_cache

import numpy as np
import pandas as pd
import pytest
import torch

from benchmark.core.errors import CheckpointError
from benchmark.core.jsonsafe import json_safe
from benchmark.core.labels import CLASSES, PROB_COLUMNS
from benchmark.core.metric_spec import column_tag, matching
from benchmark.core.registry import MODELS, SUITES, VIEWS
from benchmark.core.suite import SuiteConfig
from benchmark.stats import BootstrapConfig

N_PATIENTS = 90  # 30 per site: enough for the per-site metrics' default minimum
SIDE = 32


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@lru_cache(maxsize=None)
def _data(views: tuple[str, ...]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Predictions for `views` (informative, noisier off the clean view), the manifest, embeddings."""
    rng = np.random.default_rng(0)
    pid = np.repeat(np.arange(N_PATIENTS), 2)
    y = rng.integers(0, 4, N_PATIENTS)[pid]
    base = pd.DataFrame({"image_id": [f"i{k}" for k in range(len(pid))], "label": np.array(CLASSES)[y],
                         "patient_id": [f"p{p}" for p in pid], "site": [f"s{p % 3}" for p in pid]})
    frames = []
    for v in sorted(set(views) | {"clean"}):
        z = rng.normal(0, 1, (len(pid), 4))
        z[np.arange(len(pid)), y] += 2.0 if v == "clean" else 1.0
        frames.append(base.assign(view=v, **dict(zip(PROB_COLUMNS, _softmax(z).T))))
    manifest = base.assign(study_id=[f"st{p}" for p in pid], split="test")
    feats = rng.normal(0, 1, (len(pid), 6)) + (pid % 3)[:, None]  # sites leave a trace in the features
    embeddings = pd.DataFrame(feats, index=pd.Index(base["image_id"], name="image_id"))
    return pd.concat(frames, ignore_index=True), manifest, embeddings


def _compute(name: str, seed: int) -> str:
    spec = SUITES.spec(name)
    preds, manifest, embeddings = _data(tuple(v for v in spec.views if v != "embedding"))
    config = SuiteConfig(bootstrap=BootstrapConfig(n_resamples=20, seed=seed), seed=seed,
                         embeddings=embeddings if spec.needs_embeddings else None)
    body = SUITES.get(name)(preds, manifest, config).to_json()
    return json.dumps(json_safe(body), allow_nan=False, sort_keys=True)  # JSON-safe, or this raises


_suite_output = lru_cache(maxsize=None)(_compute)


@pytest.mark.parametrize("name", SUITES.names())
def test_suite_declares_what_it_emits(name):
    spec = SUITES.spec(name)
    assert spec.metrics and spec.description and spec.views
    body = json.loads(_suite_output(name, 0))
    assert body["metrics"], f"suite {name} emitted no metric"
    plain = tuple(s for s in spec.metrics if not s.grouped)
    grouped = tuple(s for s in spec.metrics if s.grouped)
    tag = column_tag("site")
    emitted = [(m, e, plain) for m, e in body["metrics"].items()]
    emitted += [(e["metric"], e, grouped) for e in body.get("grouped", [])]
    for metric, estimate, specs in emitted:
        assert len(matching(specs, metric, tag)) == 1, f"{name}.{metric} is not declared by exactly one spec"
        assert isinstance(estimate["value"], float | int | type(None))
        ci = estimate["ci"]
        assert isinstance(ci, list) and len(ci) == 2, f"{name}.{metric} has no CI"
        if estimate["value"] is not None and None not in ci:
            assert ci[0] <= ci[1]
    names = [m for m, _, _ in emitted]
    silent = [s.name for s in spec.metrics if not any(s.matches(m, tag) for m in names)]
    assert not silent, f"suite {name} declares metrics it did not emit on complete data: {silent}"


@pytest.mark.parametrize("name", SUITES.names())
def test_suite_is_deterministic_under_a_seed(name):
    assert _compute(name, 0) == _suite_output(name, 0)


def _params() -> dict[str, str | None]:
    """A parameter for each view, from the views the registered suites ask for (None: its default)."""
    out: dict[str, str | None] = {}
    for suite in SUITES.names():
        for v in SUITES.spec(suite).views:
            base, sep, param = v.partition("@")
            out.setdefault(base, param if sep else None)
    return out


def _context(batch: torch.Tensor, seed: int):
    from benchmark.views.base import BatchContext

    b, _, h, w = batch.shape
    lungs = torch.zeros(b, 1, h, w, dtype=torch.bool)
    lungs[:, :, h // 4: 3 * h // 4, w // 8: 3 * w // 8] = True
    lungs[:, :, h // 4: 3 * h // 4, 5 * w // 8: 7 * w // 8] = True
    boxes = [torch.tensor([[4.0, 4.0, 12.0, 12.0]]) for _ in range(b)]
    return BatchContext(rows=torch.arange(b), seeds=torch.arange(b) + 1000 * seed, lung_masks=lungs, boxes=boxes)


@pytest.mark.parametrize("name", VIEWS.names())
def test_view_keeps_shape_and_dtype_and_is_deterministic(name):
    from benchmark.views.base import parse_view

    param = _params().get(name)
    view = parse_view(name if param is None else f"{name}@{param}")
    batch = torch.rand(3, 1, SIDE, SIDE, generator=torch.Generator().manual_seed(0))
    out = view.apply(batch.clone(), _context(batch, 0))
    assert bool(getattr(view, "needs_masks", False)) == VIEWS.spec(name).needs_masks, "spec and View disagree"
    assert out.shape == batch.shape and out.dtype == batch.dtype
    assert torch.isfinite(out).all()
    again = view.apply(batch.clone(), _context(batch, 0))
    assert torch.equal(out, again), f"view {name} differs between two runs with the same seeds"


@pytest.mark.parametrize("name", MODELS.names())
def test_model_loads_and_gives_probabilities(name, tmp_path, monkeypatch):
    from benchmark.models.resolve import resolve_model

    monkeypatch.setenv("CXRBENCH_MODELS", str(tmp_path))  # untrained baselines: an empty models folder
    try:
        ref = resolve_model(name)
    except CheckpointError as exc:
        # The seed-study baselines exist once trained; until then the name must say how to make them.
        assert f"cxrbench train {name}" in str(exc)
        return
    model = ref.load("cpu")
    size = tuple(model.card.input.size)
    batch = torch.rand(2, model.card.input.channels, *size, generator=torch.Generator().manual_seed(0))
    probs = model.predict(batch)  # canonical [0, 1] pixels; the model applies its card's normalisation
    assert probs.shape == (2, 4)
    assert np.all(probs >= 0) and np.allclose(probs.sum(axis=1), 1.0)
