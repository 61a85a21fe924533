"""cxrbench: evaluation and robustness benchmark harness for fine-grained COVID-19 chest X-ray models."""
from __future__ import annotations

__version__ = "0.1.0"

# Bumped whenever a metric's definition or computation changes, so results made with older code can
# be told apart (the leaderboard marks them stale).
METRIC_CODE_VERSION = "2"
