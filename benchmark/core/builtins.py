"""Built-in registrations as import paths, so that `cxrbench list` imports nothing heavy."""
from __future__ import annotations

from benchmark.core.registry import DATASETS, MODELS, SUITES, VIEWS, lazy

lazy(DATASETS, "synth", "benchmark.data.dataset:synth_dataset",
     description="embedded synthetic CXR data with known truth (synth:KEY=VALUE,...)")
lazy(DATASETS, "siim", "benchmark.data.adapters.siim:siim_dataset",
     description="SIIM-FISABIO-RSNA COVID-19 Kaggle layout (siim:PATH): study labels, boxes, DICOM headers")
lazy(DATASETS, "covidx", "benchmark.data.adapters.covidx:covidx_dataset",
     description="COVIDx CXR label files + image folders (covidx:PATH): COVID-positive/negative via coarse tasks")
lazy(DATASETS, "covidqu", "benchmark.data.adapters.covidqu:covidqu_dataset",
     description="COVID-QU-Ex folders (covidqu:PATH): lung masks; infection masks as lesions")
lazy(DATASETS, "bimcv", "benchmark.data.adapters.bimcv:bimcv_dataset",
     description="BIMCV-COVID19+ MIDS layout (bimcv:PATH): labels from report terms")
lazy(DATASETS, "ricord", "benchmark.data.adapters.ricord:ricord_dataset",
     description="MIDRC-RICORD-1c DICOMs + MD.ai labels (ricord:PATH): four appearance labels")
lazy(MODELS, "reference", "benchmark.models.reference:reference_checkpoint",
     description="small CNN trained on synth, shipped with the package (the default model)")
for _name, _what in (("supervised", "timm backbone, class-weighted cross-entropy"),
                     ("moco", "MoCo v2 pre-training, then fine-tuning"),
                     ("inpainting", "inpainting-CXR pretext task, then fine-tuning"),
                     ("multitask", "U-Net: class head + opacity/lung segmentation head")):
    lazy(MODELS, _name, f"baselines.registered:{_name}",
         description=f"seed-study baseline ({_what}); made by `cxrbench train {_name}`")
lazy(SUITES, "subtype", "suites.subtype:subtype", views=("clean",),
     description="4-class accuracy, balanced accuracy, macro-F1, kappa, MCC, AUROC, mAP; study level; coarse tasks")
lazy(SUITES, "calibration", "suites.calibration:calibration", views=("clean",),
     description="ECE, adaptive ECE, class-wise ECE, MCE, Brier, NLL; temperature scaling; reliability diagrams")
lazy(SUITES, "cross_site", "suites.cross_site:cross_site", views=("clean",), needs_embeddings=True,
     description="per-site metrics, worst site and gap, site-decodability probe, calibration and operating-point "
                 "transfer (--group-by COL)")
lazy(VIEWS, "clean", "benchmark.views.base:CleanView", description="the unperturbed canonical image")
lazy(VIEWS, "embedding", "benchmark.views.base:EmbeddingView",
     description="the clean image's pooled features (model.embed), for suites registered with needs_embeddings")
lazy(SUITES, "shortcut", "suites.shortcut:shortcut",
     description="lungs removed / only lungs / area-matched control / lesions / border / corners: retention, "
                 "flip rate, KL, fill sensitivity, verdict")
lazy(SUITES, "robustness", "suites.robustness:robustness",
     description="acquisition shifts at 3 severities: metrics, degradation curves, robust_macro_f1")
_FILL = " (@inpaint|mean|blur|noise)"
for _name, _cls, _masks, _what in (
        ("no_lung", "NoLungView", True, "lung fields replaced by a fill"),
        ("only_lung", "OnlyLungView", True, "everything outside the lungs replaced by a fill"),
        ("random_area", "RandomAreaView", True, "a random region outside the lungs, as large as them, replaced"),
        ("lesion", "LesionView", False, "opacity boxes replaced by a fill"),
        ("border", "BorderView", False, "outer frame (8% of each side) replaced by a fill"),
        ("corners", "CornersView", False, "four corner squares (15% of the side) replaced by a fill")):
    lazy(VIEWS, _name, f"benchmark.views.mask:{_cls}", needs_masks=_masks, description=_what + _FILL)
for _name, _cls, _what in (
        ("gamma", "GammaView", "display curve x^g or x^(1/g) per image (@g)"),
        ("contrast", "ContrastView", "contrast around the mean scaled (@c)"),
        ("noise", "NoiseView", "additive Gaussian noise (@sd)"),
        ("blur", "BlurView", "Gaussian blur (@sigma px at a 256 side)"),
        ("resample", "ResampleView", "down- then up-sampling (@factor)"),
        ("jpeg", "JpegView", "JPEG round trip (@quality)"),
        ("invert", "InvertView", "inverted photometry (MONOCHROME1 read as MONOCHROME2)"),
        ("marker", "MarkerView", "burned-in laterality letters and text at random places (@count)"),
        ("rotate", "RotateView", "rotation, direction per image (@degrees)"),
        ("crop", "CropView", "zoom around a random centre (@factor)")):
    lazy(VIEWS, _name, f"benchmark.views.acquisition:{_cls}", needs_masks=False, description=_what)

from baselines.registered import register_lung_segmenter  # noqa: E402  (stats one folder; imports no torch)
from benchmark.core.registry import SEGMENTERS  # noqa: E402

register_lung_segmenter(SEGMENTERS)
