#!/usr/bin/env bash
# Training throughput (images/s) and peak GPU memory of the four baselines on one GPU:
# 200 steps per phase at 224x224, batch 64, on synth, through the real `cxrbench train` code path.
# Needs a CUDA GPU and `pip install -e .`; installs and downloads nothing. Planned to take 2-4 minutes
# on one H100; `timeout` stops it before 8 minutes, keeping what was printed. Extra arguments go to the
# driver, e.g. --backbone densenet121, --json perf.json, --compile, --workers 8.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
export HF_HUB_OFFLINE=1          # timm is always built with pretrained=False; never reach the hub
export PYTHONUNBUFFERED=1
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU is visible')"
exec timeout --signal=INT 470 "$PY" perf/gpu_baselines.py "$@"
