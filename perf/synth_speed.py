"""How fast the synth generator renders, on one core, against the 200 images/s target.

    python perf/synth_speed.py [--n 600] [--size 256] [--order sequential|random] [--seed 0]

Renders `--n` images of the default config after a warm-up (the per-size caches: coordinate
tables, noise banks, glyphs) and prints images/s and the ratio to the target. `random` order
defeats the per-patient cache, the worst case for a shuffled loader.
"""
from __future__ import annotations

import os

# Before numpy is imported: BLAS/OpenMP pools would otherwise spread work over every core.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from benchmark.data.synth import SynthConfig, render_case, synth_table  # noqa: E402

TARGET = 200.0  # images/s at 256 x 256 on one core


def measure(cfg: SynthConfig, n: int, order: str, repeats: int = 3) -> tuple[float, float]:
    """Best-of-`repeats` (wall-clock images/s, CPU-time images/s) over the first n indices, or a
    seeded shuffle of them.

    CPU time counts only this process's own cycles, so on a shared machine it is the better
    estimate of what one free core does; on an idle machine the two agree.
    """
    n_rows = len(synth_table(cfg))
    idx = np.arange(min(n, n_rows))
    if order == "random":
        idx = np.random.default_rng(0).permutation(n_rows)[: len(idx)]
    for i in idx[:20]:
        render_case(cfg, int(i))
    wall = cpu = 0.0
    for _ in range(repeats):
        _clear_patient_cache()
        t0, c0 = time.perf_counter(), time.process_time()
        for i in idx:
            render_case(cfg, int(i))
        wall = max(wall, len(idx) / (time.perf_counter() - t0))
        cpu = max(cpu, len(idx) / max(time.process_time() - c0, 1e-9))
    return wall, cpu


def _clear_patient_cache() -> None:
    from benchmark.data.synth import generate

    generate._patient.cache_clear()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=600)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--order", choices=("sequential", "random"), default="sequential")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    cfg = SynthConfig(image_size=a.size, seed=a.seed, n_patients=max(300, a.n))
    wall, cpu = measure(cfg, a.n, a.order)
    print(f"synth {a.size}x{a.size}, {a.order} order, 1 thread: {wall:.0f} images/s wall-clock "
          f"({1000 / wall:.2f} ms/image), {wall / TARGET:.2f}x the {TARGET:.0f}/s target; "
          f"{cpu:.0f} images per CPU-second ({cpu / TARGET:.2f}x)")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load > (os.cpu_count() or 1) * 0.5:
        print(f"note: load average {load:.1f} on {os.cpu_count()} cores; wall-clock is pessimistic here")

if __name__ == "__main__":
    main()
