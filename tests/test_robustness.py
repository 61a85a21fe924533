"""The `robustness` suite: its arithmetic against scikit-learn, and a real run end to end."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from benchmark.core.labels import CLASSES, PROB_COLUMNS


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def frame(ids, labels, probs, view):
    f = pd.DataFrame({"image_id": ids, "view": view, "label": labels, "patient_id": ids, "site": "a"})
    f[list(PROB_COLUMNS)] = probs
    return f


def test_metrics_match_a_direct_computation():
    from sklearn.metrics import balanced_accuracy_score, f1_score

    from benchmark.stats import BootstrapConfig
    from benchmark.core.suite import SuiteConfig
    from suites.robustness import SEVERITIES, VIEWS, robustness, spec, tag

    rng = np.random.default_rng(0)
    n = 120
    ids = [f"i{k}" for k in range(n)]
    y = rng.integers(0, 4, n)
    labels = np.array(CLASSES)[y]
    clean = rng.dirichlet(np.ones(4), n) + np.eye(4)[y] * 0.6
    clean /= clean.sum(1, keepdims=True)
    views = {"clean": clean}
    for v in VIEWS[1:]:
        p = clean.copy()
        flip = rng.random(n) < rng.uniform(0.05, 0.6)  # each view scrambles its own share of images
        p[flip] = rng.dirichlet(np.ones(4), int(flip.sum()))
        views[v] = p
    preds = pd.concat([frame(ids, labels, p, v) for v, p in views.items()], ignore_index=True)
    res = robustness(preds, preds[preds.view == "clean"], SuiteConfig(bootstrap=BootstrapConfig(n_resamples=50)))

    f1 = {v: f1_score(y, p.argmax(1), average="macro") for v, p in views.items()}
    for kind, params in SEVERITIES.items():
        for level, param in enumerate(params, 1):
            p = views[spec(kind, param)]
            t = tag(kind, level)
            assert res.metrics[f"{t}_macro_f1"].value == pytest.approx(f1[spec(kind, param)])
            assert res.metrics[f"{t}_balanced_accuracy"].value == pytest.approx(balanced_accuracy_score(y, p.argmax(1)))
            assert res.metrics[f"{t}_flip_rate"].value == pytest.approx(np.mean(p.argmax(1) != clean.argmax(1)))
            kl = np.mean(np.sum(clean * np.log(clean / p), axis=1))
            assert res.metrics[f"{t}_kl"].value == pytest.approx(kl, rel=1e-6)
    robust = np.mean([np.mean([f1[spec(k, p)] for p in ps]) for k, ps in SEVERITIES.items()])
    assert res.metrics["robust_macro_f1"].value == pytest.approx(robust)
    assert res.metrics["robust_macro_f1_drop"].value == pytest.approx(f1["clean"] - robust)
    lo, hi = res.metrics["robust_macro_f1"].ci
    assert lo <= robust <= hi
    assert len(res.tables["per_view"]) == len(VIEWS) - 1
    curves = res.figures["degradation_macro_f1"]["data"]
    assert [c["name"] for c in curves] == list(SEVERITIES)
    assert curves[0]["y"][0] == pytest.approx(f1["clean"])  # severity 0 is the clean image


class Constant(nn.Module):
    """Answers the same whatever the image: no shift can move it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor([2.0, 1.0, 0.5, 0.0]).expand(x.shape[0], 4) + 0 * x.mean()


class Brightness(nn.Module):
    """Reads the mean brightness only: photometric shifts move it, geometric ones hardly."""

    def __init__(self):
        super().__init__()
        self.register_buffer("centres", torch.tensor([-0.5, 0.0, 0.5, 1.0]))  # in normalized units

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(1, 2, 3))
        return -40.0 * (m[:, None] - self.centres[None]) ** 2


def test_end_to_end_with_real_models(tmp_path):
    from benchmark import api
    from suites.robustness import VIEWS
    from tests.helpers import CANONICAL, card, save_model

    data = "synth:n_patients=10,image_size=64,seed=3"
    results = {}
    for name, net in (("constant", Constant()), ("brightness", Brightness())):
        ckpt = save_model(net, tmp_path / f"{name}.pt", card(name, CANONICAL, size=64))
        out = api.run(api.RunRequest(model=str(ckpt), data=data, suites=("robustness",), out=tmp_path / name,
                                     bootstrap=50, progress=False))
        results[name] = out.result["suites"]["robustness"]
    const = results["constant"]["metrics"]
    assert const["robust_macro_f1"]["value"] == pytest.approx(const["clean_macro_f1"]["value"])
    assert all(const[k]["value"] == pytest.approx(0, abs=1e-9) for k in const if k.endswith(("_flip_rate", "_kl")))
    bright = results["brightness"]["metrics"]
    assert bright["invert_kl"]["value"] > 10 * bright["rotate_s1_kl"]["value"]
    assert bright["gamma_s3_kl"]["value"] > bright["gamma_s1_kl"]["value"]
    body = results["brightness"]
    assert len(body["tables"]["per_view"]) == len(VIEWS) - 1
    assert {"degradation_macro_f1", "degradation_flip_rate", "view_examples"} <= set(body["figures"])
    assert [im["caption"] for im in body["figures"]["view_examples"]["images"]] == list(VIEWS)
    assert "Macro-F1" in body["notes"][0]
