"""Declarations of the built-in views (benchmark.core.specs.ViewSpec), registered through this
distribution's `cxrbench.views` entry points like any plugin's. The implementations import torch;
this module does not, so listing views and planning a cached run stay light: each spec names its class
as a string."""
from __future__ import annotations

from benchmark.core.specs import ViewSpec

_FILL = " (@inpaint|mean|blur|noise)"


def _view(name: str, target: str, description: str, needs_masks: bool = False) -> ViewSpec:
    return ViewSpec(name=name, target=target, description=description, needs_masks=needs_masks)


CLEAN = _view("clean", "benchmark.views.base:CleanView", "the unperturbed canonical image")
EMBEDDING = _view("embedding", "benchmark.views.base:EmbeddingView",
                  "the clean image's pooled features (model.embed), for suites that declare needs_embeddings")

# Masking views (benchmark.views.mask): a region replaced by a fill.
NO_LUNG = _view("no_lung", "benchmark.views.mask:NoLungView", "lung fields replaced by a fill" + _FILL, True)
ONLY_LUNG = _view("only_lung", "benchmark.views.mask:OnlyLungView",
                  "everything outside the lungs replaced by a fill" + _FILL, True)
RANDOM_AREA = _view("random_area", "benchmark.views.mask:RandomAreaView",
                    "a random region outside the lungs, as large as them, replaced" + _FILL, True)
LESION = _view("lesion", "benchmark.views.mask:LesionView", "opacity boxes replaced by a fill" + _FILL)
BORDER = _view("border", "benchmark.views.mask:BorderView", "outer frame (8% of each side) replaced by a fill" + _FILL)
CORNERS = _view("corners", "benchmark.views.mask:CornersView",
                "four corner squares (15% of the side) replaced by a fill" + _FILL)

# Acquisition shifts (benchmark.views.acquisition).
GAMMA = _view("gamma", "benchmark.views.acquisition:GammaView", "display curve x^g or x^(1/g) per image (@g)")
CONTRAST = _view("contrast", "benchmark.views.acquisition:ContrastView", "contrast around the mean scaled (@c)")
NOISE = _view("noise", "benchmark.views.acquisition:NoiseView", "additive Gaussian noise (@sd)")
BLUR = _view("blur", "benchmark.views.acquisition:BlurView", "Gaussian blur (@sigma px at a 256 side)")
RESAMPLE = _view("resample", "benchmark.views.acquisition:ResampleView", "down- then up-sampling (@factor)")
JPEG = _view("jpeg", "benchmark.views.acquisition:JpegView", "JPEG round trip (@quality)")
INVERT = _view("invert", "benchmark.views.acquisition:InvertView", "inverted photometry (MONOCHROME1 read as MONOCHROME2)")
MARKER = _view("marker", "benchmark.views.acquisition:MarkerView",
               "burned-in laterality letters and text at random places (@count)")
ROTATE = _view("rotate", "benchmark.views.acquisition:RotateView", "rotation, direction per image (@degrees)")
CROP = _view("crop", "benchmark.views.acquisition:CropView", "zoom around a random centre (@factor)")
