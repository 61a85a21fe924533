"""Training throughput of the four baselines on one GPU (driver of perf/gpu_baselines.sh).

Each baseline trains through the real `cxrbench train` code path (data loader workers decoding synth,
on-device augmentation, bf16 autocast, channels_last) for --steps optimizer steps per phase at
--image-size, batch --batch-size; MoCo and inpainting run their pretext phase and their fine-tuning
phase. Printed per phase: images/s after a 10-step warm-up, peak GPU memory, and the ratio to the
supervised baseline's images/s; also the data loader's own images/s, to tell whether the GPU or the
decoding bounds the numbers. Per-epoch validation is off: only training is timed.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def loader_rate(cfg, workers: int, batches: int = 60) -> float:
    """Images/s of the training loader alone (decode + letterbox + collate, no model)."""
    from baselines.data import Samples, make_loader, select_rows
    from benchmark.data.dataset import resolve_dataset

    ds = resolve_dataset(cfg.data)
    rows = select_rows(ds, leave_out_site=None, val_fraction=cfg.val_fraction, seed=0)
    loader = make_loader(Samples(ds, rows.train, cfg.image_size, with_seg=False), batch_size=cfg.batch_size,
                         train=True, workers=workers, seed=0, pin_memory=cfg.device.startswith("cuda"))
    it = iter(loader)
    for _ in range(min(5, len(loader) // 2)):  # workers started and prefetching
        next(it)
    t = time.perf_counter()
    n = sum(len(b[0]) for _, b in zip(range(batches), it))
    return n / (time.perf_counter() - t)


def _gib(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def main() -> None:
    import torch

    from baselines import BASELINES
    from baselines.config import TrainConfig
    from baselines.train import train_baseline

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="resnet50")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=max(2, min(14, (os.cpu_count() or 4) - 2)))
    p.add_argument("--n-patients", type=int, default=8000)
    p.add_argument("--baselines", default=",".join(BASELINES))
    p.add_argument("--compile", action="store_true")
    p.add_argument("--json", type=Path, default=None, help="Also write the numbers here.")
    p.add_argument("--device", default="cuda", help="cuda (the benchmark); cpu only to smoke-test this script")
    args = p.parse_args()
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        sys.exit("no CUDA GPU is visible; this benchmark needs one")

    data = f"synth:n_patients={args.n_patients},image_size={args.image_size},seed=3"
    common = {"data": data, "backbone": args.backbone, "image_size": args.image_size, "steps": args.steps,
              "batch_size": args.batch_size, "device": args.device, "workers": args.workers, "validate": False,
              "compile": args.compile, "moco_queue": 16384}
    device_name = torch.cuda.get_device_name() if cuda else "cpu"
    print(f"{device_name} | torch {torch.__version__} | {args.backbone} @ {args.image_size}px, "
          f"batch {args.batch_size}, {args.steps} steps per phase, {args.workers} workers"
          f"{', bf16 autocast, channels_last' if cuda else ''}{', compiled' if args.compile else ''}", flush=True)
    t_all = time.perf_counter()
    rate = loader_rate(TrainConfig("supervised", **common), args.workers)
    print(f"data loader alone: {rate:.0f} images/s", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.baselines.split(","):
            cfg = TrainConfig(name, out=Path(tmp) / name, **common)
            if cuda:
                torch.cuda.empty_cache()
            t = time.perf_counter()
            outcome = train_baseline(cfg)
            for ph in outcome.phases:
                rows.append({"baseline": name, "phase": ph["phase"], "steps": ph["steps"], "seconds": ph["seconds"],
                             "images_per_s": ph["images_per_s"], "peak_gpu_memory_gb": ph["peak_gpu_memory_gb"]})
                print(f"  {name:<11} {ph['phase']:<20} {ph['images_per_s']:>8.0f} images/s  "
                      f"peak {_gib(ph['peak_gpu_memory_gb'])} GiB  ({ph['seconds']:.1f} s)", flush=True)
            print(f"  {name}: {time.perf_counter() - t:.1f} s including set-up and export", flush=True)
    ref = next((r["images_per_s"] for r in rows if r["phase"] == "supervised"), None)
    print(f"\n{'baseline':<11} {'phase':<20} {'images/s':>9} {'peak GiB':>9} {'x supervised':>13} {'x loader':>9}")
    for r in rows:
        ratio = f"{r['images_per_s'] / ref:.2f}" if ref else "n/a"
        print(f"{r['baseline']:<11} {r['phase']:<20} {r['images_per_s']:>9.0f} {_gib(r['peak_gpu_memory_gb']):>9} "
              f"{ratio:>13} {r['images_per_s'] / rate:>9.2f}")
    total = time.perf_counter() - t_all
    print(f"total {total:.0f} s (a phase near 'x loader' = 1.00 is bounded by decoding, not by the GPU)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"device": device_name, "args": vars(args) | {"json": str(args.json)},
                                         "loader_images_per_s": rate, "phases": rows, "seconds": total}, indent=2))


if __name__ == "__main__":
    main()
