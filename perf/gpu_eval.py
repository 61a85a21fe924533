"""Forward throughput of `cxrbench run` against the bare model on one CUDA GPU (driver of perf/gpu_eval.sh).

Writes N synth PNGs (256 px; 16,000 by default, so that the decode + forward loop, not the start-up
that both processes pay, is most of each run) and a checkpoint with random weights (resnet50 at 224
by default), then runs, as whole processes, alternating, --repeats times:
  bare:    perf/bare_forward.py (decode, letterbox, normalise, model; pinned memory, non_blocking
           copies and bf16 autocast as benchmark/execution/forward.py does);
  harness: `cxrbench run --suites subtype` on a fresh prediction cache.
Both use the same batch size and decode workers. Images/s of each is N over its predict_s (from
before torch is imported to the probabilities in memory: result.json's timings for the harness, the
script's own clock for the bare run); whole-process wall times are printed beside them.
Target: harness images/s >= 0.9 x bare images/s (medians over the repeats).

    bash perf/gpu_eval.sh [--images 16000] [--arch resnet50] [--batch-size 64] [--workers 8] [--repeats 2]
    python perf/gpu_eval.py --device cpu --images 64 --arch resnet18 --workers 0 --repeats 1  # smoke test

Planned for about 2 minutes on one H100 (writing the PNGs with every core: about 20 s).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness_overhead import harness_probs, write_checkpoint  # perf/ is not a package

ROOT = Path(__file__).resolve().parent.parent
TARGET = 0.9


def write_images(folder: Path, n: int, workers: int) -> Path:
    """n synth PNGs (the first n rows of a slightly larger draw), rendered by `workers` processes."""
    import pandas as pd

    from benchmark.data.synth import SynthConfig, write_synth

    manifest = folder / "manifest.csv"
    if manifest.is_file() and len(pd.read_csv(manifest)) == n:
        return folder
    write_synth(SynthConfig(n_patients=int(n / 1.75) + 50, seed=0), folder, workers=workers)
    table = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    if len(table) < n:
        sys.exit(f"synth gave only {len(table)} images")
    table.iloc[:n].to_csv(manifest, index=False)
    return folder


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    if done.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{done.stderr.decode()[-2000:]}")
    return time.perf_counter() - t0


def one_repeat(k: int, args, data: Path, ckpt: Path, tmp: Path) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CXRBENCH_CACHE": str(tmp / f"cache-{k}")}
    common = ["--batch-size", str(args.batch_size), "--workers", str(args.workers), "--device", args.device]
    bare_wall = timed([sys.executable, str(ROOT / "perf" / "bare_forward.py"), "--model", str(ckpt), "--data",
                       str(data), "--out", str(tmp / f"bare-{k}.npy"), "--timings", str(tmp / f"bare-{k}.json"),
                       *common], env)
    run_wall = timed([sys.executable, "-m", "benchmark.cli", "run", "--model", str(ckpt), "--data", str(data),
                      "--suites", "subtype", "--out", str(tmp / f"runs-{k}"), *common], env)
    run_dir = next((tmp / f"runs-{k}").iterdir())
    prov = json.loads((run_dir / "result.json").read_text())["provenance"]
    bare = json.loads((tmp / f"bare-{k}.json").read_text())
    diff = float(np.abs(np.load(tmp / f"bare-{k}.npy") - harness_probs(run_dir, data)).max())
    return {"bare_wall": bare_wall, "run_wall": run_wall, "bare_predict": bare["predict_s"],
            "bare_loop": bare["loop_s"], "run_predict": prov["timings"]["predict_s"], "device": prov["device"],
            "diff": diff}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda (the benchmark); cpu only to smoke-test this script")
    ap.add_argument("--images", type=int, default=16000)
    ap.add_argument("--arch", default="resnet50", help="a timm architecture")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=min(8, max(0, (os.cpu_count() or 2) - 2)))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--keep", type=Path, default=None, help="write (or reuse) the images here")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = ap.parse_args()
    import torch

    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        sys.exit("no CUDA GPU is visible; this benchmark needs one (or --device cpu to smoke-test it)")
    tmp = Path(tempfile.mkdtemp(prefix="cxrbench-gpu-eval-"))
    try:
        t0 = time.perf_counter()
        data = write_images(args.keep or tmp / "data", args.images, os.cpu_count() or 1)
        # Named only now: the PNG writers are forked above, and none of them should inherit a CUDA context.
        name = torch.cuda.get_device_name() if cuda else "cpu"
        ckpt = write_checkpoint(tmp / "ckpt", args.arch, args.size)
        print(f"{name} | torch {torch.__version__} | {args.arch} @ {args.size}px, {args.images} PNGs, batch "
              f"{args.batch_size}, {args.workers} workers (set-up {time.perf_counter() - t0:.0f} s)", flush=True)
        reps = []
        for k in range(args.repeats):
            r = one_repeat(k, args, data, ckpt, tmp)
            reps.append(r)
            n = args.images
            print(f"repeat {k + 1}: bare {n / r['bare_predict']:7.0f} images/s (predict {r['bare_predict']:.1f} s, "
                  f"loop alone {n / r['bare_loop']:.0f} images/s, process {r['bare_wall']:.1f} s) | harness "
                  f"{n / r['run_predict']:7.0f} images/s (predict {r['run_predict']:.1f} s, process "
                  f"{r['run_wall']:.1f} s, on {r['device']}) | max |bare - harness| {r['diff']:.1e}", flush=True)
        ratio = statistics.median(r["bare_predict"] / r["run_predict"] for r in reps)
        wall = statistics.median(r["bare_wall"] / r["run_wall"] for r in reps)
        print(f"median harness / bare images/s: {ratio:.3f} over predict_s (target >= {TARGET}: "
              f"{'ok' if ratio >= TARGET else 'under'}); {wall:.3f} over whole processes; "
              f"total {time.perf_counter() - t0:.0f} s")
        if args.json:
            args.json.write_text(json.dumps({"device": name, "args": {k: str(v) for k, v in vars(args).items()},
                                             "repeats": reps, "ratio": ratio, "ratio_wall": wall}, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
