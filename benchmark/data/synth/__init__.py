"""`synth`: the embedded default dataset, procedurally generated PA chest X-rays with known truth.

Each image is a pure function of (SynthConfig, index): lungs, heart, bones and soft tissue of a
patient; class-specific opacities after the RSNA definitions (with lung and opacity masks and boxes);
and a site's acquisition look, whose class prior is confounded with the label by `confound`.
"""
from __future__ import annotations

from .config import GENERATOR_VERSION, SynthCase, SynthConfig
from .generate import render_case, write_synth
from .table import synth_table

__all__ = ["GENERATOR_VERSION", "SynthCase", "SynthConfig", "render_case", "synth_table", "write_synth"]
