"""Known-answer tests of the `shortcut` suite: a planted marker must be found, a lung reader cleared.

Two real models, saved as TorchScript with a card and run through the real runner:
- `MarkerReader` looks only at the bottom-right square where synth plants its label-coding marker;
- `LungReader` looks only at a core of pixels inside the lungs of (nearly) every training image, with
  a linear head fitted on synth training images (a short training).
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from benchmark.core.labels import CLASSES, PROB_COLUMNS

SIZE = 64
MARKED = "marker_label_corr=0.9"


def _card(name: str) -> dict:
    return {"name": name, "format": "export", "classes": list(CLASSES), "output": "logits",
            "input": {"size": [SIZE, SIZE], "channels": 1, "mean": [0.5], "std": [0.25]}}


def save(module: nn.Module, path: Path) -> Path:
    from tests.helpers import save_model

    return save_model(module, path, _card(path.stem))


class MarkerReader(nn.Module):
    """Logit of class c = minus the squared distance of the marker square to the class's symbol."""

    def __init__(self):
        super().__init__()
        from benchmark.data.synth.acquire import class_marker_box
        from benchmark.data.synth.glyphs import class_symbol

        x1, y1, x2, y2 = class_marker_box(SIZE)
        self.y1, self.y2, self.x1, self.x2 = y1, y2, x1, x2
        # As synth stamps it: a 0.05 plate, the symbol at 0.98; in the card's normalized units.
        t = np.stack([0.05 + 0.93 * class_symbol(c, x2 - x1) for c in CLASSES])
        self.register_buffer("templates", torch.tensor((t - 0.5) / 0.25, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patch = x[:, 0, self.y1:self.y2, self.x1:self.x2]
        return -4.0 * (patch[:, None] - self.templates[None]).pow(2).mean(dim=(2, 3))


class LungReader(nn.Module):
    """Cell means (relative to the core's mean and contrast) and spreads over a core inside the
    lungs, with their squares, into a linear head."""

    def __init__(self, cells: np.ndarray, mu: np.ndarray, sd: np.ndarray, weight: np.ndarray, bias: np.ndarray):
        super().__init__()
        self.register_buffer("cells", torch.tensor(cells.reshape(len(cells), -1), dtype=torch.float32))
        self.register_buffer("mu", torch.tensor(mu, dtype=torch.float32))
        self.register_buffer("sd", torch.tensor(sd, dtype=torch.float32))
        self.head = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor(weight, dtype=torch.float32))
            self.head.bias.copy_(torch.tensor(bias, dtype=torch.float32))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        img = x[:, 0].flatten(1) * 0.25 + 0.5  # undo the card's normalization
        m = img @ self.cells.t()
        sq = (img * img) @ self.cells.t()
        spread = (sq - m * m).clamp_min(0).sqrt()
        g = m.mean(dim=1, keepdim=True)
        contrast = (sq.mean(dim=1, keepdim=True) - g * g).clamp_min(1e-4).sqrt()
        f = torch.cat([(m - g) / contrast, spread / contrast, g, contrast], dim=1)
        return torch.cat([f, f * f], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head((self.features(x) - self.mu) / self.sd)


def lung_cells(masks: np.ndarray, grid: tuple[int, int] = (10, 8)) -> np.ndarray:
    """Grid cells of the core: pixels inside the lungs of at least 99% of the training images."""
    core = masks.mean(axis=0) >= 0.99
    h, w = core.shape
    cells = []
    for i in range(grid[0]):
        for j in range(grid[1]):
            c = np.zeros_like(core)
            c[i * h // grid[0]:(i + 1) * h // grid[0], j * w // grid[1]:(j + 1) * w // grid[1]] = True
            c &= core
            if c.sum() >= 4:
                cells.append(c / c.sum())
    return np.stack(cells).astype(np.float32)


def train_lung_reader() -> LungReader:
    from sklearn.linear_model import LogisticRegression

    from benchmark.data.synth import SynthConfig, render_case, synth_table

    cfg = SynthConfig(n_patients=450, image_size=SIZE, seed=1001, marker_label_corr=0.9)
    cases = [render_case(cfg, i) for i in range(len(synth_table(cfg)))]
    images = np.stack([c.image for c in cases])
    y = np.array([CLASSES.index(c.meta["label"]) for c in cases])
    cells = lung_cells(np.stack([c.lung_mask for c in cases]))
    n = 2 * (2 * len(cells) + 2)
    probe = LungReader(cells, np.zeros(n), np.ones(n), np.zeros((4, n)), np.zeros(4))
    with torch.no_grad():
        feats = probe.features((torch.tensor(images[:, None]) - 0.5) / 0.25).numpy()
    mu, sd = feats.mean(axis=0), feats.std(axis=0) + 1e-6
    clf = LogisticRegression(C=0.1, max_iter=5000, class_weight="balanced").fit((feats - mu) / sd, y)
    return LungReader(cells, mu, sd, clf.coef_, clf.intercept_)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("models")
    return {"marker": save(MarkerReader(), d / "marker-reader.pt"),
            "lung": save(train_lung_reader(), d / "lung-reader.pt")}


def write_data(out: Path, seed: int, n_patients: int, *, drop_masks: bool = False) -> Path:
    from benchmark import api

    manifest = api.synth(out, n_patients=n_patients, image_size=SIZE, seed=seed, marker_label_corr=0.9)
    if drop_masks:
        table = pd.read_csv(manifest).drop(columns=["lung_mask"])
        table.to_csv(manifest, index=False)
    return manifest


def run(model: Path, data: Path, out: Path, *suites: str, bootstrap: int = 200) -> dict:
    from benchmark import api

    outcome = api.run(api.RunRequest(model=str(model), data=str(data), suites=suites or ("shortcut",),
                                     out=out, bootstrap=bootstrap, progress=False))
    return {"dir": outcome.run_dir, **outcome.result}


def value(result: dict, name: str) -> float:
    return result["suites"]["shortcut"]["metrics"][name]["value"]


@pytest.fixture(scope="module")
def known_runs(models, tmp_path_factory):
    d = tmp_path_factory.mktemp("known")
    data = write_data(d / "data", seed=3, n_patients=80)
    return {name: run(path, data, d / name) for name, path in models.items()}


def test_marker_reader_keeps_its_accuracy_without_the_lungs(known_runs):
    r = known_runs["marker"]
    assert value(r, "clean_balanced_accuracy") > 0.8
    assert value(r, "no_lung_retention") >= 0.8
    # The marker sits in a corner: hiding the corners (or the border) removes it.
    assert value(r, "corners_retention") <= 0.2 and value(r, "only_lung_retention") <= 0.2
    assert r["suites"]["shortcut"]["tables"]["verdict"][0]["verdict"] == "outside_lungs"
    assert "corners" in r["suites"]["shortcut"]["notes"][0]


def test_lung_reader_needs_the_lungs(known_runs):
    r = known_runs["lung"]
    assert value(r, "clean_balanced_accuracy") > 0.45
    assert value(r, "no_lung_retention") <= 0.2
    assert value(r, "only_lung_retention") >= 0.8
    assert value(r, "random_area_retention") >= 0.6
    assert value(r, "corners_retention") >= 0.8
    assert r["suites"]["shortcut"]["tables"]["verdict"][0]["verdict"] == "lungs"


def test_result_and_report_show_views_tables_and_mask_source(known_runs):
    from suites.shortcut import REGIONS, VIEWS

    r = known_runs["lung"]
    body = r["suites"]["shortcut"]
    assert [row["view"] for row in body["tables"]["per_view"]] == list(REGIONS)
    assert len(body["tables"]["fill_sensitivity"]) == 12
    for row in body["tables"]["per_view"]:
        ci = row["retention"]["ci"]
        assert ci[0] <= row["retention"]["value"] <= ci[1]
    assert body["tables"]["lung_masks"] == [{"source": "manifest", "images": r["dataset"]["counts"]["images"],
                                             "fraction": 1.0}]
    assert any(n.startswith("lesion: ") and "have opacity boxes in the manifest" in n for n in body["notes"])
    gallery = body["figures"]["view_examples"]
    assert [im["caption"] for im in gallery["images"]] == list(VIEWS)
    html = (r["dir"] / "report.html").read_text()
    assert html.count("<figure><img") == len(VIEWS)
    assert "Looks at the lungs" in html and "fill_sensitivity" in html
    preds = pd.read_parquet(r["dir"] / "predictions.parquet")
    assert set(preds["view"]) == set(VIEWS) and (preds["lung_mask_source"] == "manifest").all()


def _verdict(model: Path, data: Path, store, seed: int) -> tuple[str, dict]:
    from benchmark.data.dataset import resolve_dataset
    from benchmark.models.loaded import load_model_file
    from benchmark.execution.runner import predict_views
    from benchmark.stats import BootstrapConfig
    from benchmark.core.suite import SuiteConfig
    from suites.shortcut import shortcut

    ds = resolve_dataset(str(data))
    probs, _ = predict_views(load_model_file(model), ds, ["clean", "no_lung", "only_lung", "random_area"],
                             store=store, progress=False, seed=seed)
    frames = []
    for view, p in probs.items():
        f = ds.table[["image_id", "label", "patient_id", "site"]].assign(view=view)
        f[list(PROB_COLUMNS)] = p
        frames.append(f)
    res = shortcut(pd.concat(frames, ignore_index=True), ds.table,
                   SuiteConfig(bootstrap=BootstrapConfig(n_resamples=100, seed=seed)))
    return res.tables["verdict"][0]["verdict"], {k: v.value for k, v in res.metrics.items() if "retention" in k}


def test_verdict_is_right_on_at_least_19_of_20_seeds(models, tmp_path):
    from benchmark.execution.store import PredictionStore

    store = PredictionStore(tmp_path / "store")
    right = {"marker": 0, "lung": 0}
    expected = {"marker": "outside_lungs", "lung": "lungs"}
    seen = []
    for seed in range(20):
        data = write_data(tmp_path / f"d{seed}", seed=100 + seed, n_patients=35)
        for name, path in models.items():
            verdict, retention = _verdict(path, data, store, seed)
            right[name] += verdict == expected[name]
            seen.append((seed, name, verdict, retention))
    assert right["marker"] >= 19 and right["lung"] >= 19, seen


def test_without_lung_masks_the_prior_is_used_and_flagged(models, tmp_path):
    data = write_data(tmp_path / "data", seed=4, n_patients=25, drop_masks=True)
    r = run(models["marker"], data, tmp_path / "runs", bootstrap=50)
    body = r["suites"]["shortcut"]
    n = r["dataset"]["counts"]["images"]
    assert body["tables"]["lung_masks"] == [{"source": "prior", "images": n, "fraction": 1.0}]
    assert body["tables"]["flags"][0]["flag"] == "lung_mask_prior"
    assert any(note.startswith("FLAG:") and "prior" in note for note in body["notes"])
    assert "geometric lung prior" in (r["dir"] / "report.html").read_text()
    preds = pd.read_parquet(r["dir"] / "predictions.parquet")
    assert (preds["lung_mask_source"] == "prior").all()
    # The prior still hides the lungs roughly, and the marker is still found.
    assert value(r, "no_lung_retention") >= 0.8


@pytest.mark.parametrize("no, only, rand, clean_low, code", [
    (0.9, 0.1, 0.9, 0.6, "outside_lungs"), (0.1, 0.9, 0.9, 0.6, "lungs"),
    (0.1, 0.9, 0.3, 0.6, "occlusion_sensitive"), (0.4, 0.8, 0.9, 0.6, "mixed"),
    (0.1, 0.9, 0.9, 0.24, "no_verdict"),
])
def test_verdict_rule(no, only, rand, clean_low, code):
    from benchmark.stats import Estimate
    from suites.shortcut import verdict

    est = {"clean_balanced_accuracy": Estimate(0.7, (clean_low, 0.8)), "corners_retention": Estimate(1.0, (1.0, 1.0)),
           **{f"{k}_retention": Estimate(v, (v - 0.1, v + 0.1))
              for k, v in (("no_lung", no), ("only_lung", only), ("random_area", rand))}}
    got, text = verdict(est, ["no_lung", "only_lung", "random_area", "corners"])
    assert got == code and "corners" not in text
