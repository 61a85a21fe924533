#!/usr/bin/env bash
# Forward throughput (images/s) of `cxrbench run --suites subtype` against the bare model
# (perf/bare_forward.py) on one GPU: resnet50 at 224, 16,000 synth PNGs written first, batch 64,
# 8 decode workers, two alternating repeats; target harness >= 0.9 x bare. Needs a CUDA GPU and
# `pip install -e .`; installs and downloads nothing. Planned for about 2 minutes on one H100; `timeout`
# stops it before 5 minutes. Extra arguments go to the driver (perf/gpu_eval.py), e.g. --images 8000,
# --batch-size 128, --json eval.json; `--device cpu --images 64 --arch resnet18 --workers 0` smoke-tests it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
export HF_HUB_OFFLINE=1          # timm is always built with pretrained=False; never reach the hub
export PYTHONUNBUFFERED=1
exec timeout --signal=INT 290 "$PY" perf/gpu_eval.py "$@"
