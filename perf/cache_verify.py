"""What verifying the caches costs: a cached rerun with and without checksum checks, and reading a
prepared store's rows with and without their CRC-32 checks.

1. Whole `cxrbench run` processes on the default suites (a cached rerun: predictions, embeddings and
   suite results all from the cache), alternating CXRBENCH_VERIFY_CACHE=1 / =0, median of --reps
   each. Target: verification adds under 5% to a cached rerun.
2. In-process, the part of a cached rerun that verification touches (reading the prediction store),
   with and without, median of 20.
3. Reading every row of a prepared store (--size, synth images written to disk), with and without
   the row checks: the worst case, since a real run also resamples and runs the model.
4. A whole run on those images that reads the prepared store and computes every prediction.

    python perf/cache_verify.py [--data synth] [--model reference] [--reps 5] [--size 512]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def median_time(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="synth")
    ap.add_argument("--model", default="reference")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--prepared-images", type=int, default=60, help="synth patients written for part 3")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cache = os.path.join(tmp, "cache")
        env = {**os.environ, "CXRBENCH_CACHE": cache}
        cmd = [sys.executable, "-m", "benchmark.cli", "run", "--model", args.model, "--data", args.data,
               "--out", os.path.join(tmp, "runs")]
        timed(cmd, env)  # cold: fills the caches
        on, off = [], []
        for _ in range(args.reps):
            on.append(timed(cmd, {**env, "CXRBENCH_VERIFY_CACHE": "1"}))
            off.append(timed(cmd, {**env, "CXRBENCH_VERIFY_CACHE": "0"}))
        t_on, t_off = statistics.median(on), statistics.median(off)
        print(f"cached rerun, whole process   verified {t_on:7.3f} s   unverified {t_off:7.3f} s   "
              f"ratio {t_on / t_off:6.3f}   (target < 1.05)")

        store_on, store_off, share = _store_read(args, Path(cache))
        print(f"prediction-store reads       verified {store_on * 1e3:7.2f} ms  unverified {store_off * 1e3:7.2f} ms  "
              f"ratio {store_on / store_off:6.3f}   added {100 * (store_on - store_off) / t_off:.2f}% of a cached rerun")
        row_on, row_off, n = _prepared_read(args, Path(tmp))
        print(f"prepared store, {n} rows at {args.size}  verified {row_on * 1e3:7.1f} ms  unverified {row_off * 1e3:7.1f} ms  "
              f"ratio {row_on / row_off:6.3f}   ({(row_on - row_off) / n * 1e6:.0f} us per row)")
        # 4. A run that reads the prepared store and computes every prediction (no prediction cache).
        pcmd = [sys.executable, "-m", "benchmark.cli", "run", "--model", args.model, "--data", str(Path(tmp) / "synth"),
                "--suites", "subtype", "--bootstrap", "20", "--out", os.path.join(tmp, "runs")]
        fwd_on, fwd_off = [], []
        for _ in range(3):
            for verify, times in (("1", fwd_on), ("0", fwd_off)):
                penv = {**os.environ, "CXRBENCH_CACHE": os.path.join(tmp, "pcache"), "CXRBENCH_VERIFY_CACHE": verify}
                subprocess.run([sys.executable, "-c", "import shutil, sys; shutil.rmtree(sys.argv[1], True)",
                                os.path.join(tmp, "pcache", "predictions")], check=True)
                times.append(timed(pcmd, penv))
        print(f"run from the prepared store (no prediction cache)  verified {min(fwd_on):7.2f} s  unverified "
              f"{min(fwd_off):7.2f} s  ratio {min(fwd_on) / min(fwd_off):6.3f} (best of 3 each; noisy on shared cores)")
        print(f"row checks as a share of that run: {100 * (row_on - row_off) / min(fwd_off):.2f}%")


def _store_read(args, cache: Path) -> tuple[float, float, float]:
    from benchmark.execution import store as store
    from benchmark.api import RunRequest, model_and_data
    from benchmark.views.embedding import EMBEDDING_VIEW
    from benchmark.core.registry import SUITES  # noqa: F401 (registers the suites' views)
    from benchmark.execution.runner import view_entries
    from benchmark.core.suite import suite_views

    os.environ["CXRBENCH_CACHE"] = str(cache)
    req = RunRequest(model=args.model, data=args.data, cache_dir=cache)
    dataset, model, pstore = model_and_data(req)
    views = sorted({v for s in ("subtype", "calibration", "cross_site") for v in suite_views(s)}) + [EMBEDDING_VIEW]

    def read():
        entries = view_entries(model, dataset, views, pstore)  # fresh entries: nothing memoised
        for e in entries.values():
            assert e.complete()
            e.load()

    out = []
    for verify in (True, False):
        store.VERIFY = verify
        out.append(median_time(read, 20))
    store.VERIFY = True
    return out[0], out[1], 0.0


def _prepared_read(args, tmp: Path) -> tuple[float, float, int]:
    from benchmark import api
    from benchmark.execution import store
    from benchmark.data.dataset import resolve_dataset
    from benchmark.data.prepared import use_prepared
    from benchmark.models.card import InputSpec

    folder = tmp / "synth"
    api.synth(folder, n_patients=args.prepared_images, image_size=args.size)
    ds = resolve_dataset(str(folder))
    api.prepare(str(folder), args.size, cache_dir=tmp / "pcache")
    prepared = use_prepared(ds, InputSpec((args.size, args.size), 1, (0.5,), (0.25,)), tmp / "pcache" / "prepared")

    def read():
        for i in range(len(ds)):
            prepared.source.image(i)

    read()  # warm the page cache
    out = []
    for verify in (True, False, True, False):
        store.VERIFY = verify
        out.append(median_time(read, 5))
    store.VERIFY = True
    return min(out[0], out[2]), min(out[1], out[3]), len(ds)


if __name__ == "__main__":
    main()
