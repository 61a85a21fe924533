"""Peak memory of `cxrbench run` as the dataset grows from about 2,000 to 32,000 images.

Each size runs as its own process, on a fresh prediction cache, on the embedded synth data (generated
on the fly: no files), with the reference model; the peak RSS is that child's own ru_maxrss, read
with os.wait4 by a small launcher process (see _LAUNCHER). Beside it: the size of the predictions
themselves (rows x 4 float64, and the predictions DataFrame's deep memory read back from the run's
predictions.parquet), since a run must hold those. Target: peak RSS grows by at most 100 MB from
the smallest to the largest size.

    python perf/memory_scaling.py [--images 2000,8000,32000] [--model reference] [--workers 0]

About 8 to 15 minutes on two shared CPU cores (the 32,000-image run is most of it).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

TARGET_MB = 100
IMAGES_PER_PATIENT = 1.75  # mean of the synth generator's 1/2/3 images per patient
SUITES = "subtype,calibration,cross_site"


# Linux carries the high-water RSS of the image a process was exec'd from into its ru_maxrss, so a
# child started by this script would report at least this script's own peak (pandas, or torch in
# perf/harness_overhead.py). Children are therefore started by this small launcher, whose wait4 gives
# the child's own peak; it also times the child, so its own start-up is not counted either.
_LAUNCHER = """import os, subprocess, sys, time
t0 = time.perf_counter()
p = subprocess.Popen(sys.argv[2:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(p.pid, 0)
with open(sys.argv[1], "w") as fh:
    fh.write(f"{time.perf_counter() - t0} {usage.ru_maxrss}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_child(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one whole process; exits with its stderr if it fails."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "usage"
        done = subprocess.run([sys.executable, "-c", _LAUNCHER, out, *cmd], env=env, stderr=subprocess.PIPE,
                              check=False)
        if done.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr.decode()[-2000:]}")
        wall, maxrss = out.read_text().split()
    return float(wall), int(maxrss) / 1024  # Linux reports kilobytes


def measure(n_images: int, model: str, workers: int, tmp: Path) -> dict:
    import pandas as pd

    n_patients = round(n_images / IMAGES_PER_PATIENT)
    out = tmp / f"runs-{n_images}"
    env = {**os.environ, "CXRBENCH_CACHE": str(tmp / f"cache-{n_images}"), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "benchmark.cli", "run", "--model", model,
           "--data", f"synth:n_patients={n_patients},seed=7", "--suites", SUITES, "--out", str(out),
           "--workers", str(workers)]
    wall, rss = run_child(cmd, env)
    run_dir = next(out.iterdir())
    result = json.loads((run_dir / "result.json").read_text())
    preds = pd.read_parquet(run_dir / "predictions.parquet")
    prob_cols = [c for c in preds.columns if c.startswith("prob_")]
    return {"n_patients": n_patients, "images": result["dataset"]["counts"]["images"], "wall": wall, "rss": rss,
            "probs_mb": len(preds) * len(prob_cols) * 8 / 2**20,
            "frame_mb": preds.memory_usage(deep=True).sum() / 2**20,
            "timings": result["provenance"]["timings"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", default="2000,8000,32000", help="approximate image counts, comma-separated")
    ap.add_argument("--model", default="reference")
    ap.add_argument("--workers", type=int, default=0, help="decode workers of each run")
    args = ap.parse_args()
    sizes = [int(s) for s in args.images.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="cxrbench-mem-") as tmp:
        for n in sizes:
            r = measure(n, args.model, args.workers, Path(tmp))
            rows.append(r)
            t = r["timings"]
            print(f"{r['images']:>7} images ({r['n_patients']} patients): peak RSS {r['rss']:7.0f} MB, "
                  f"{r['wall']:6.1f} s wall (predict {t['predict_s']:.1f} s, suites "
                  f"{sum(v for k, v in t.items() if k.startswith('suite_')):.1f} s)", flush=True)
    base = rows[0]
    print(f"\n{'images':>7} {'peak RSS MB':>12} {'growth MB':>10} {'probs MB':>9} {'frame MB':>9} "
          f"{'growth - frame growth':>22}")
    for r in rows:
        growth = r["rss"] - base["rss"]
        net = growth - (r["frame_mb"] - base["frame_mb"])
        print(f"{r['images']:>7} {r['rss']:>12.0f} {growth:>10.0f} {r['probs_mb']:>9.2f} {r['frame_mb']:>9.2f} "
              f"{net:>22.0f}")
    last = rows[-1]
    growth = last["rss"] - base["rss"]
    print(f"growth {base['images']} -> {last['images']} images: {growth:.0f} MB "
          f"(target <= {TARGET_MB} MB: {'ok' if growth <= TARGET_MB else 'over'}); without the predictions' own "
          f"growth: {growth - (last['frame_mb'] - base['frame_mb']):.0f} MB")


if __name__ == "__main__":
    main()
