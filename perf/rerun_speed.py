"""Cold run vs cached rerun of `cxrbench run` on the same model and data, as whole processes.

Prints both wall times and their ratio, measured side by side in one invocation. The target is a
cached rerun at least 10x faster than the cold run (it does no forward pass).

    python perf/rerun_speed.py [--data synth] [--model reference]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="synth")
    ap.add_argument("--model", default="reference")
    ap.add_argument("--suites", default="subtype")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "CXRBENCH_CACHE": os.path.join(tmp, "cache")}
        cmd = [sys.executable, "-m", "benchmark.cli", "run", "--model", args.model, "--data", args.data,
               "--suites", args.suites, "--out", os.path.join(tmp, "runs")]
        cold = timed(cmd, env)
        warm = timed(cmd, env)
    print(f"cold run      {cold:8.2f} s")
    print(f"cached rerun  {warm:8.2f} s")
    print(f"speed-up      {cold / warm:8.1f} x   (target >= 10x)")


if __name__ == "__main__":
    main()
