"""Evaluation decoding every DICOM vs reading the prepared-image store, measured in one run.

Writes N synth images as 1024x1024 DICOMs (12-bit, no window: the percentile path; every fourth
MONOCHROME1) once into a temporary folder, then times, on the same files and model:
  1. `cxrbench run` with an empty cache: every image decoded from its DICOM;
  2. `cxrbench prepare --size S` (the one-off cost);
  3. `cxrbench run` with an empty prediction cache: pixels from the store.
Target: (3) at least 5x faster than (1).

    python perf/prepared_store.py [--n 2000] [--size 512] [--workers 0] [--model both] [--keep DIR]

Two models: a one-conv network whose forward pass costs next to nothing (the situation on a GPU,
where a run is bound by getting pixels in) and the reference SmallCNN (its untrained architecture
when the weights are not shipped: timing does not depend on them), whose CPU forward pass is a cost
the store cannot remove.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

SIDE = 1024


def write_dicoms(out: Path, n: int, workers: int) -> Path:
    """N synth images (one render each, at 1024 px) as DICOM files plus manifest.csv."""
    from benchmark.data.synth import SynthConfig, synth_table

    manifest = out / "manifest.csv"
    if manifest.is_file() and len(pd.read_csv(manifest)) == n:
        return manifest
    cfg = SynthConfig(n_patients=max(10, int(n / 1.75) + 10), image_size=SIDE, seed=0)
    table = synth_table(cfg).head(n)
    if len(table) < n:
        raise SystemExit(f"synth config gives only {len(table)} images")
    (out / "dicom").mkdir(parents=True, exist_ok=True)
    chunks = np.array_split(table["index"].to_numpy(), max(1, workers) * 8)
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(_write_chunk, [cfg] * len(chunks), [out] * len(chunks), chunks))
    pd.DataFrame({"path": [f"dicom/{i}.dcm" for i in table["image_id"]], "label": table["label"],
                  "patient_id": table["patient_id"], "site": table["site"], "split": table["split"],
                  "image_id": table["image_id"]}).to_csv(manifest, index=False)
    return manifest


def _write_chunk(cfg, out: Path, indices) -> None:
    from benchmark.data.dicom_transcode import dx_dataset

    from benchmark.data.synth import render_case

    for index in indices:
        case = render_case(cfg, int(index))
        pixels = np.round(case.image * 4095).astype(np.uint16)
        photometric = "MONOCHROME1" if index % 4 == 3 else "MONOCHROME2"
        if photometric == "MONOCHROME1":
            pixels = 4095 - pixels
        ds = dx_dataset(pixels, photometric, 12, case.meta["image_id"])
        ds.save_as(out / "dicom" / f"{case.meta['image_id']}.dcm", enforce_file_format=True)


def models(tmp: Path, which: str) -> list[tuple[str, str]]:
    """(checkpoint, description): a one-conv network whose forward pass costs next to nothing (what a
    GPU makes of any model: the run is bound by getting pixels in), and the reference SmallCNN,
    whose forward pass on this CPU is the larger cost."""
    import json

    import torch
    from torch import nn

    from benchmark.core.errors import CxrbenchError
    from benchmark.models.reference import card_json, reference_checkpoint

    out = []
    if which in ("tiny", "both"):
        class Tiny(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(1, 8, 5, stride=4)
                self.head = nn.Linear(8, 4)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))

        torch.manual_seed(0)
        path = tmp / "tiny.pt"
        torch.jit.save(torch.jit.script(Tiny().eval()), str(path))
        card = {**card_json("tiny"), "format": "torchscript"}
        card.pop("architecture")
        (tmp / "tiny.card.json").write_text(json.dumps(card))
        out.append((str(path), "one-conv net, 128x128 (forward ~free)"))
    if which in ("reference", "both"):
        try:
            out.append((str(reference_checkpoint()), "reference SmallCNN, 128x128"))
        except CxrbenchError:
            from safetensors.torch import save_file

            from benchmark.models.small_cnn import build_small_cnn

            folder = tmp / "small_cnn"
            folder.mkdir(exist_ok=True)
            torch.manual_seed(0)
            net = build_small_cnn(4, 1)
            save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(folder / "model.safetensors"))
            (folder / "card.json").write_text(json.dumps(card_json("small_cnn_untrained")))
            out.append((str(folder), "SmallCNN 128x128 (untrained: no shipped weights here)"))
    return out


def timed_run(manifest: Path, model: str, cache: Path, out: Path, workers: int) -> tuple[float, dict]:
    from benchmark import api

    t0 = time.perf_counter()
    # trust_code: the one-conv stand-in is TorchScript this script wrote itself.
    outcome = api.run(api.RunRequest(model=model, data=str(manifest), suites=("subtype",), out=out,
                                     cache_dir=cache, workers=workers, bootstrap=200, progress=False,
                                     trust_code=True))
    return time.perf_counter() - t0, outcome.result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--workers", type=int, default=0, help="decode workers, the same for every step")
    ap.add_argument("--model", choices=("tiny", "reference", "both"), default="both")
    ap.add_argument("--write-workers", type=int, default=2, help="processes that render and write the DICOMs")
    ap.add_argument("--keep", type=Path, default=None, help="write (or reuse) the DICOMs here, not in a temp dir")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cxrbench-prepared-"))
    data_dir = args.keep or tmp / "data"
    try:
        from benchmark import api

        t0 = time.perf_counter()
        manifest = write_dicoms(data_dir, args.n, args.write_workers)
        written = time.perf_counter() - t0
        files = sum(p.stat().st_size for p in (data_dir / "dicom").iterdir())
        t0 = time.perf_counter()
        prep = api.prepare(str(manifest), args.size, cache_dir=tmp / "cache_store", workers=args.workers)
        prepare_s = time.perf_counter() - t0
        print(f"data: {args.n} synth images as {SIDE}x{SIDE} 12-bit DICOMs ({files / 2**30:.2f} GiB, written in "
              f"{written:.0f} s); workers: {args.workers}")
        print(f"prepare --size {args.size} (once): {prepare_s:.1f} s, store {prep.bytes / 2**30:.2f} GiB")
        print(f"{'model':<56}{'decode s':>10}{'store s':>9}{'speed-up':>10}{'predict speed-up':>18}")
        for model, name in models(tmp, args.model):
            decode_s, res_a = timed_run(manifest, model, tmp / "cache_decode", tmp / "runs", args.workers)
            store_s, res_b = timed_run(manifest, model, tmp / "cache_store", tmp / "runs", args.workers)
            assert "prepared" not in res_a["dataset"], "the decoding run read a store"
            assert res_b["dataset"]["prepared"]["rows_from_store"] == args.n, "the run did not read the store"
            pa, pb = (r["provenance"]["timings"]["predict_s"] for r in (res_a, res_b))
            print(f"{name:<56}{decode_s:>10.1f}{store_s:>9.1f}{decode_s / store_s:>9.1f}x{pa / pb:>17.1f}x",
                  flush=True)
        print("target: a run from the store at least 5x faster than decoding every DICOM")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
