"""The static leaderboard: result files in, a site that opens from disk with no server and no network.

`build_site(paths, out_dir)` reads run folders (result.json + predictions.parquet), skips invalid
result files with a message, groups entries by the images they were scored on, finds statistical tie
groups and writes index, entry and compare pages plus their assets (plotly.js included).
"""
from __future__ import annotations

from leaderboard.build import BuildOutcome, build_site

__all__ = ["BuildOutcome", "build_site"]
