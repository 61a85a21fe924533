"""Images/s of the harness's forward path against the model alone, by batch size and decode workers.

In one process, on N synth PNGs (256 px) and a resnet18 checkpoint at 224 (random weights), loaded
once: `benchmark.execution.runner.predict_views` with a fresh prediction store for batch sizes 8, 32, 64 and
decode workers 0, 1, 2 (decode, letterbox, views, model, store writes), and the bare forward pass:
the same module on the same images already decoded into one tensor, normalised, at the same batch
sizes. The table gives images/s and the ratio to the bare forward at the same batch size; the bare
pass is timed before and after each batch size's harness rows, and the two are averaged, so a change
in the machine's load weighs on both sides.

    python perf/throughput.py [--images 256] [--batch-sizes 8,32,64] [--workers 0,1,2]

About 1.5 minutes on two CPU cores (the brief allows 5). No pass/fail target of its own: it shows
where the overhead that perf/harness_overhead.py (cold run <= 1.15 x bare) and perf/gpu_eval.py
(>= 0.9 x bare images/s) hold to a target comes from. A ratio near 1 means the harness adds nothing
to the model; on a CPU the model and the decoding share the same cores, so decode workers cannot
hide decoding there.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness_overhead import write_checkpoint  # perf/ is not a package


def write_images(folder: Path, n: int) -> Path:
    """n synth PNGs and their manifest (the first n rows of a slightly larger draw)."""
    import pandas as pd

    from benchmark.data.synth import SynthConfig, write_synth

    manifest = write_synth(SynthConfig(n_patients=int(n / 1.75) + 20, seed=0), folder, workers=2)
    table = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    if len(table) < n:
        sys.exit(f"synth gave only {len(table)} images")
    table.iloc[:n].to_csv(manifest, index=False)
    return folder


def harness_rate(model, dataset, store_dir: Path, batch_size: int, workers: int) -> float:
    from benchmark.execution.runner import predict_views
    from benchmark.execution.store import PredictionStore

    t0 = time.perf_counter()
    _, stats = predict_views(model, dataset, ["clean"], store=PredictionStore(store_dir), batch_size=batch_size,
                             workers=workers, progress=False)
    assert stats.forward_images == len(dataset)
    return len(dataset) / (time.perf_counter() - t0)


def bare_rate(model, images, batch_size: int) -> float:
    import torch

    t0 = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            model.module(model.preprocess(images[i:i + batch_size]))
    return len(images) / (time.perf_counter() - t0)


def decoded(dataset, model):
    """Every image as the harness prepares it: [n, 1, H, W] float32 in [0, 1]."""
    import torch

    from benchmark.execution.forward import _Prepared

    card = model.card.input
    prep = _Prepared(dataset, np.arange(len(dataset)), card.size, card.keep_aspect, with_masks=False)
    return torch.stack([prep[k][1] for k in range(len(prep))])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--batch-sizes", default="8,32,64")
    ap.add_argument("--workers", default="0,1,2")
    args = ap.parse_args()
    import torch

    from benchmark.data.dataset import resolve_dataset
    from benchmark.models.resolve import resolve_model

    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    worker_counts = [int(w) for w in args.workers.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="cxrbench-throughput-"))
    try:
        t0 = time.perf_counter()
        dataset = resolve_dataset(str(write_images(tmp / "data", args.images)))
        model = resolve_model(str(write_checkpoint(tmp / "resnet18"))).load(torch.device("cpu"))
        images = decoded(dataset, model)
        bare_rate(model, images[:64], 32)  # first calls allocate and pick kernels
        print(f"{len(dataset)} synth PNGs, resnet18 at 224, cpu, "
              f"{torch.get_num_threads()} torch threads (set-up {time.perf_counter() - t0:.0f} s)")
        print(f"{'batch':>5} {'path':<22} {'images/s':>9} {'x bare':>7}")
        for bs in batch_sizes:
            before = bare_rate(model, images, bs)
            rates = {w: harness_rate(model, dataset, tmp / f"store-{bs}-{w}", bs, w) for w in worker_counts}
            bare = (before + bare_rate(model, images, bs)) / 2
            print(f"{bs:>5} {'bare forward':<22} {bare:>9.1f} {1:>7.2f}")
            for w, rate in rates.items():
                print(f"{bs:>5} {f'harness, {w} workers':<22} {rate:>9.1f} {rate / bare:>7.2f}", flush=True)
        print(f"total {time.perf_counter() - t0:.0f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
