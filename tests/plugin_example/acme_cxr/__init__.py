"""acme-cxr: an example plugin distribution for cxrbench (tests/test_plugins.py installs its metadata).

Its entry points name the four specs below; the view's implementation imports torch, so its spec names
it as a string and `cxrbench list` stays light.
"""
from __future__ import annotations

import numpy as np

from benchmark.core.metric_spec import MetricSpec
from benchmark.core.specs import DatasetSpec, ModelSpec, SuiteSpec, ViewSpec
from benchmark.core.suite import SuiteConfig, SuiteResult, arrays, clusters_of, view_frame

DISTRIBUTION = "acme-cxr"
ENTRY_POINTS = {
    "cxrbench.suites": {"acme_confidence": "acme_cxr:SUITE"},
    "cxrbench.views": {"acme_flip": "acme_cxr:FLIP"},
    "cxrbench.models": {"acme_reference": "acme_cxr:MODEL"},
    "cxrbench.datasets": {"acme_tiny": "acme_cxr:DATASET"},
}

METRICS = (
    MetricSpec("mean_confidence", None, (0.0, 1.0), "mean top-1 probability on the clean images"),
    MetricSpec("flip_agreement", True, (0.0, 1.0), "share of images answered the same when mirrored"),
)


def _stats(flipped_pred: np.ndarray):
    def fn(y: np.ndarray, probs: np.ndarray, w: np.ndarray) -> dict[str, np.ndarray]:
        same = (probs.argmax(axis=1) == flipped_pred).astype(np.float64)
        return {"mean_confidence": (w * probs.max(axis=1)).sum(axis=1) / w.sum(axis=1),
                "flip_agreement": (w * same).sum(axis=1) / w.sum(axis=1)}
    return fn


def confidence(predictions, manifest, config: SuiteConfig) -> SuiteResult:
    from benchmark.stats import bootstrap

    clean = view_frame(predictions, "clean")
    flipped = view_frame(predictions, "acme_flip").set_index("image_id").loc[clean["image_id"]]
    y, probs = arrays(clean)
    _, flipped_probs = arrays(flipped.reset_index())
    res = bootstrap(_stats(flipped_probs.argmax(axis=1)), y, probs, clusters=clusters_of(clean),
                    config=config.bootstrap)
    return SuiteResult(metrics=dict(res.estimates), notes=[f"{len(clean)} images, mirrored left-right"])


def reference_again(**_: object):
    from benchmark.models.reference import reference_checkpoint

    return reference_checkpoint()  # a checkpoint folder: loaded like any submitted one


def tiny(arg: str | None = None):
    from benchmark.data.dataset import synth_dataset

    return synth_dataset(arg or "n_patients=24,seed=5")


SUITE = SuiteSpec("acme_confidence", confidence, views=("clean", "acme_flip"),
                  description="mean confidence and left-right flip agreement", metrics=METRICS)
FLIP = ViewSpec("acme_flip", "acme_cxr.views:FlipView", "the image mirrored left-right")
MODEL = ModelSpec("acme_reference", reference_again, "the shipped reference CNN, offered again by acme")
DATASET = DatasetSpec("acme_tiny", tiny, "24 synthetic patients (acme_tiny[:KEY=VALUE,...])")
