"""Dataset adapters: public COVID-19 CXR collections in their original layouts -> the README's manifest.

Each module exposes `<name>_dataset(path)`, declared below (DatasetSpec with a lazy target) and registered
through this distribution's `cxrbench.datasets` entry points, so `--data siim:/data/siim` imports no
adapter until it is used. This package module stays light (the CLI imports it at start-up for the
warning filter).
"""
from __future__ import annotations

import warnings

from benchmark.core.errors import UserFacingWarning
from benchmark.core.specs import DatasetSpec

ADAPTERS = ("siim", "covidx", "covidqu", "bimcv", "ricord")

SIIM = DatasetSpec("siim", "benchmark.data.adapters.siim:siim_dataset",
                   "SIIM-FISABIO-RSNA COVID-19 Kaggle layout (siim:PATH): study labels, boxes, DICOM headers")
COVIDX = DatasetSpec("covidx", "benchmark.data.adapters.covidx:covidx_dataset",
                     "COVIDx CXR label files + image folders (covidx:PATH): COVID-positive/negative via coarse tasks")
COVIDQU = DatasetSpec("covidqu", "benchmark.data.adapters.covidqu:covidqu_dataset",
                      "COVID-QU-Ex folders (covidqu:PATH): lung masks; infection masks as lesions")
BIMCV = DatasetSpec("bimcv", "benchmark.data.adapters.bimcv:bimcv_dataset",
                    "BIMCV-COVID19+ MIDS layout (bimcv:PATH): labels from report terms")
RICORD = DatasetSpec("ricord", "benchmark.data.adapters.ricord:ricord_dataset",
                     "MIDRC-RICORD-1c DICOMs + MD.ai labels (ricord:PATH): four appearance labels")


class DataWarning(UserFacingWarning):
    """Rows or files an adapter skipped (or kept with a caveat); the message names the list's file."""


def show_data_warnings() -> None:
    """Let warnings meant for the user (DataWarning, ModelWarning) through a blanket
    `warnings.simplefilter("ignore")` (the CLI's), one line each."""
    warnings.filterwarnings("always", category=UserFacingWarning)
    previous = warnings.formatwarning
    if getattr(previous, "cxrbench", False):
        return

    def one_line(message, category, filename, lineno, line=None):
        if isinstance(category, type) and issubclass(category, UserFacingWarning):
            return f"warning: {message}\n"
        return previous(message, category, filename, lineno, line)

    one_line.cxrbench = True
    warnings.formatwarning = one_line
