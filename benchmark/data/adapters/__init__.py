"""Dataset adapters: public COVID-19 CXR collections in their original layouts -> DESIGN's manifest.

Each module exposes `<name>_dataset(path)`, registered lazily in `benchmark.core.builtins` under DATASETS,
so `--data siim:/data/siim` imports no adapter until it is used. This package module stays light
(the CLI imports it at start-up for the warning filter).
"""
from __future__ import annotations

import warnings

from benchmark.core.errors import UserFacingWarning

ADAPTERS = ("siim", "covidx", "covidqu", "bimcv", "ricord")


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
