"""Overhead of `cxrbench run` over a bare forward pass on the same 2,000 PNGs, as whole processes.

Writes (into a temporary folder) a synth dataset of exactly 2,000 images of whole patients and a
resnet18 checkpoint (random weights: only cost matters) for 224x224 input, then runs, side by side:
  (a) perf/bare_forward.py: decode, letterbox, normalise, resnet18 at batch 32, probabilities to .npy;
  (b) `cxrbench run --suites subtype,calibration,cross_site` on a fresh cache (cold);
  (c) the same command again (cached rerun).
Targets: (b)/(a) <= 1.15 and (c)/(b) <= 0.05. Before timing counts, the bare probabilities must
equal the harness's clean-view predictions within 1e-4: that shows both did the same work.

    python perf/harness_overhead.py [--repeats 1] [--images 2000] [--keep DIR]

--repeats K runs (a), (b), (c) K times, alternating, and reports median ratios (a shared machine is
noisy). About 2 minutes per repeat on two CPU cores, plus about 30 s to write the data once.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory_scaling import run_child  # perf/ is not a package

ROOT = Path(__file__).resolve().parent.parent
TARGET_COLD, TARGET_CACHED, TOLERANCE = 1.15, 0.05, 1e-4
SUITES = "subtype,calibration,cross_site"
SEED = 0


def whole_patients(patient_ids, n_images: int):
    """Bool per row: whole patients, in manifest order, holding exactly n_images images. A patient
    who would overflow the count is dropped whole and later ones fill the gap (1-image patients are
    common), so no patient is ever cut."""
    keep = np.zeros(len(patient_ids), dtype=bool)
    total = 0
    for rows in patient_ids.groupby(patient_ids, sort=False).indices.values():
        if total + len(rows) <= n_images:
            keep[rows] = True
            total += len(rows)
        if total == n_images:
            return keep
    raise SystemExit(f"cannot pick whole patients holding exactly {n_images} images")


def write_data(folder: Path, n_images: int) -> Path:
    """`cxrbench synth` for a few more patients than needed, then the manifest cut to whole patients
    holding exactly n_images images (the synth table is patient-major: a patient's rows are adjacent)."""
    import pandas as pd

    manifest = folder / "manifest.csv"
    if manifest.is_file() and len(pd.read_csv(manifest)) == n_images:
        return folder
    n_patients = math.ceil(n_images / 1.75) + 20
    subprocess.run([sys.executable, "-m", "benchmark.cli", "synth", "--out", str(folder), "--n-patients",
                    str(n_patients), "--seed", str(SEED)], check=True, stdout=subprocess.DEVNULL)
    # Strings stay strings: the cut manifest must say exactly what the written one said.
    table = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    keep = whole_patients(table["patient_id"], n_images)
    kept = table[keep]
    kept.to_csv(manifest, index=False)
    head = f"data: `cxrbench synth --n-patients {n_patients} --seed {SEED}` wrote {len(table)} images;"
    if keep[:n_images].all():
        print(f"{head} kept the first {n_images}, which end between two patients ({kept['patient_id'].nunique()} "
              "patients)", flush=True)
    else:
        last = int(keep.nonzero()[0][-1])
        dropped = table["patient_id"].iloc[:last][~keep[:last]].unique()
        print(f"{head} the first {n_images} would cut patient {table['patient_id'].iat[n_images - 1]} in two, so "
              f"patient(s) {', '.join(dropped)} were dropped whole and the next whole patients kept instead: "
              f"{len(kept)} images of {kept['patient_id'].nunique()} patients, none cut", flush=True)
    return folder


def write_checkpoint(folder: Path, arch: str = "resnet18", size: int = 224) -> Path:
    """A timm checkpoint folder with random weights (perf/throughput.py and perf/gpu_eval.py use it too)."""
    import timm
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    m = timm.create_model(arch, pretrained=False, num_classes=4, in_chans=1).eval()
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(folder / "model.safetensors"))
    (folder / "card.json").write_text(json.dumps({
        "name": f"{arch}-perf", "format": "safetensors", "architecture": f"timm:{arch}",
        "classes": ["negative", "typical", "indeterminate", "atypical"], "output": "logits",
        "input": {"size": [size, size], "channels": 1, "mean": [0.5], "std": [0.25]}}))
    return folder


def harness_probs(run_dir: Path, data: Path) -> np.ndarray:
    """The run's clean-view probabilities in manifest order."""
    import pandas as pd

    from benchmark.core.labels import PROB_COLUMNS

    preds = pd.read_parquet(run_dir / "predictions.parquet")
    clean = preds[preds["view"] == "clean"].set_index("image_id")
    ids = pd.read_csv(data / "manifest.csv", dtype=str)["image_id"]
    return clean.loc[ids, list(PROB_COLUMNS)].to_numpy(dtype=np.float64)


def one_repeat(k: int, data: Path, ckpt: Path, tmp: Path) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CXRBENCH_CACHE": str(tmp / f"cache-{k}")}
    bare_npy = tmp / f"bare-{k}.npy"
    bare_cmd = [sys.executable, str(ROOT / "perf" / "bare_forward.py"), "--model", str(ckpt), "--data", str(data),
                "--out", str(bare_npy), "--batch-size", "32", "--timings", str(tmp / f"bare-{k}.json")]
    run_cmd = [sys.executable, "-m", "benchmark.cli", "run", "--model", str(ckpt), "--data", str(data),
               "--suites", SUITES]
    out = {"bare": run_child(bare_cmd, env)}
    out["cold"] = run_child(run_cmd + ["--out", str(tmp / f"cold-{k}")], env)
    out["cached"] = run_child(run_cmd + ["--out", str(tmp / f"cached-{k}")], env)
    cold_dir, cached_dir = (next((tmp / f"{w}-{k}").iterdir()) for w in ("cold", "cached"))
    bare, cold, cached = np.load(bare_npy), harness_probs(cold_dir, data), harness_probs(cached_dir, data)
    out["diff"] = float(np.abs(bare - cold).max())
    out["cached_same"] = bool(np.array_equal(cold, cached))
    out["bare_timings"] = json.loads((tmp / f"bare-{k}.json").read_text())
    out["timings"] = {w: json.loads((d / "result.json").read_text())["provenance"] for w, d in
                      (("cold", cold_dir), ("cached", cached_dir))}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--keep", type=Path, default=None, help="write (or reuse) data and checkpoint here")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cxrbench-overhead-"))
    base = args.keep or tmp
    try:
        data = write_data(base / "data", args.images)
        ckpt = write_checkpoint(base / "resnet18")
        reps = []
        for k in range(args.repeats):
            r = one_repeat(k, data, ckpt, tmp)
            reps.append(r)
            (bw, brss), (cw, crss), (rw, rrss) = r["bare"], r["cold"], r["cached"]
            print(f"repeat {k + 1}: (a) bare {bw:6.1f} s, {brss:5.0f} MB | (b) cold run {cw:6.1f} s, {crss:5.0f} MB "
                  f"| (c) cached rerun {rw:5.1f} s, {rrss:5.0f} MB | (b)/(a) {cw / bw:.3f} | (c)/(b) {rw / cw:.3f} "
                  f"| max |bare - harness| {r['diff']:.2e} | cached == cold: {r['cached_same']}", flush=True)
        last = reps[-1]
        bt = last["bare_timings"]
        print(f"bare timings:    import {bt['import_s']:.1f} s, model {bt['model_s']:.1f} s, "
              f"decode+forward {bt['loop_s']:.1f} s ({bt['images']} images)")
        for which in ("cold", "cached"):
            prov = last["timings"][which]
            print(f"harness {which:6s}: {json.dumps(prov['timings'])}; forward_images {prov['forward_images']}")
        diff = max(r["diff"] for r in reps)
        cold_ratio = statistics.median(r["cold"][0] / r["bare"][0] for r in reps)
        cached_ratio = statistics.median(r["cached"][0] / r["cold"][0] for r in reps)
        print(f"same work: max |bare - harness| = {diff:.2e} (tolerance {TOLERANCE:g}: "
              f"{'ok' if diff <= TOLERANCE else 'DIFFERENT'})")
        print(f"median over {len(reps)} repeat(s): cold run / bare = {cold_ratio:.3f} (target <= {TARGET_COLD}: "
              f"{'ok' if cold_ratio <= TARGET_COLD else 'over'}); cached / cold = {cached_ratio:.3f} "
              f"(target <= {TARGET_CACHED}: {'ok' if cached_ratio <= TARGET_CACHED else 'over'})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
