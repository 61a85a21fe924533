"""Built-in registrations as import paths, so that `cxrbench list` imports nothing heavy."""
from __future__ import annotations

from benchmark.registry import DATASETS, MODELS, SUITES, VIEWS, lazy

lazy(DATASETS, "synth", "benchmark.data.dataset:synth_dataset",
     description="embedded synthetic CXR data with known truth (synth:KEY=VALUE,...)")
lazy(MODELS, "reference", "benchmark.models.reference:reference_checkpoint",
     description="small CNN trained on synth, shipped with the package (the default model)")
lazy(SUITES, "subtype", "suites.subtype:subtype", views=("clean",),
     description="4-class accuracy, balanced accuracy, macro-F1, kappa, MCC, AUROC, mAP; study level; coarse tasks")
lazy(VIEWS, "clean", "benchmark.views:CleanView", description="the unperturbed canonical image")
