"""The bare forward pass: what `cxrbench run` must compute, written without cxrbench.

Reads a manifest's grey PNGs with Pillow and prepares them the way the harness does (canonical
float32 image in [0, 1]; centred letterbox with Pillow's bilinear filter on mode F, padding 0; the
card's mean/std), builds the card's timm architecture, loads its safetensors weights and writes the
softmax probabilities, float64 [n, 4] in the canonical class order and in manifest order, to an .npy
file. On CUDA it feeds the model as benchmark/execution/forward.py does: pinned host memory, non_blocking
copies, bf16 autocast. It is the yardstick of perf/harness_overhead.py and perf/gpu_eval.py.

    python perf/bare_forward.py --model CKPT_DIR --data DIR_OR_MANIFEST --out probs.npy \
        [--batch-size 32] [--workers 0] [--device cpu] [--timings timings.json]

Prints one line of timings; `predict_s` runs from the start of this script (before torch is
imported) to the probabilities in memory, the same span as the harness's own predict_s.
"""
from __future__ import annotations

import time

T_START = time.perf_counter()  # before the heavy imports, which the harness pays inside its predict_s too

import argparse
import contextlib
import csv
import json
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

CANONICAL = ("negative", "typical", "indeterminate", "atypical")


def decode(path: Path) -> np.ndarray:
    """Grey PNG -> float32 [H, W] in [0, 1] (16-bit / 65535, 8-bit / 255), as benchmark.data.images."""
    with Image.open(path) as img:
        img.load()
        if img.mode.startswith("I;16") or img.mode == "I":  # older Pillow opens 16-bit PNG as "I"
            arr = np.asarray(img).astype(np.float64) / 65535.0
        elif img.mode == "L":
            arr = np.asarray(img, dtype=np.float64) / 255.0
        else:
            raise SystemExit(f"{path}: mode {img.mode}; this script reads grey PNGs only")
    return np.clip(arr, 0.0, 1.0).astype(np.float32)


def letterbox(img: np.ndarray, size: tuple[int, int], keep_aspect: bool) -> np.ndarray:
    """Resize into a size canvas, centred, padding 0; the content size rounds half up, as the harness."""
    (sh, sw), (h, w) = img.shape, size
    if keep_aspect:
        scale = min(h / sh, w / sw)
        nh, nw = (min(d, max(1, math.floor(s * scale + 0.5))) for s, d in ((sh, h), (sw, w)))
    else:
        nh, nw = h, w
    content = img
    if (nh, nw) != img.shape:
        content = np.asarray(Image.fromarray(img).resize((nw, nh), Image.Resampling.BILINEAR), dtype=np.float32)
    out = np.zeros((h, w), dtype=np.float32)
    top, left = (h - nh) // 2, (w - nw) // 2
    out[top:top + nh, left:left + nw] = np.clip(content, 0.0, 1.0)
    return out


class Images(torch.utils.data.Dataset):
    def __init__(self, paths: list[Path], size: tuple[int, int], keep_aspect: bool):
        self.paths, self.size, self.keep_aspect = paths, size, keep_aspect

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(letterbox(decode(self.paths[i]), self.size, self.keep_aspect))[None]


def manifest_paths(data: Path) -> list[Path]:
    manifest = data / "manifest.csv" if data.is_dir() else data
    with manifest.open(newline="") as fh:
        return [manifest.parent / row["path"] for row in csv.DictReader(fh)]


def build_model(folder: Path, device: torch.device) -> tuple[torch.nn.Module, dict]:
    import timm
    from safetensors.torch import load_file

    card = json.loads((folder / "card.json").read_text())
    prefix, _, arch = card["architecture"].partition(":")
    if prefix != "timm":
        raise SystemExit(f"architecture {card['architecture']!r}: this script builds timm models only")
    model = timm.create_model(arch, pretrained=False, num_classes=len(card["classes"]),
                              in_chans=card["input"].get("channels", 1), **card.get("architecture_args", {}))
    model.load_state_dict(load_file(str(folder / "model.safetensors"), device="cpu"))
    return model.to(device).eval(), card


def predict(model, card: dict, loader, device: torch.device) -> np.ndarray:
    spec = card["input"]
    mean = torch.tensor(spec["mean"], dtype=torch.float32, device=device).view(1, -1, 1, 1)
    std = torch.tensor(spec["std"], dtype=torch.float32, device=device).view(1, -1, 1, 1)
    channels = spec.get("channels", 1)
    order = [card["classes"].index(c) for c in CANONICAL]
    cuda = device.type == "cuda"
    out = []
    with torch.inference_mode():
        for x in loader:
            x = x.to(device, non_blocking=True)
            with torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext():
                x = (x.to(torch.float32).expand(-1, channels, -1, -1) - mean) / std
                logits = model(x)
            # float64 on the host before the softmax, as the harness does
            out.append(torch.softmax(logits.to("cpu", torch.float64), dim=1)[:, order])
    return torch.cat(out).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True, help="checkpoint folder: model.safetensors + card.json")
    ap.add_argument("--data", type=Path, required=True, help="folder with manifest.csv, or the manifest")
    ap.add_argument("--out", type=Path, required=True, help=".npy file for the probabilities")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--timings", type=Path, default=None, help="also write the timings here as JSON")
    args = ap.parse_args()
    device = torch.device(args.device)
    t_import = time.perf_counter()
    model, card = build_model(args.model, device)
    t_model = time.perf_counter()
    spec = card["input"]
    images = Images(manifest_paths(args.data), tuple(spec["size"]), spec.get("keep_aspect", True))
    loader = torch.utils.data.DataLoader(images, batch_size=args.batch_size, shuffle=False,
                                         num_workers=args.workers, pin_memory=device.type == "cuda")
    probs = predict(model, card, loader, device)
    t_done = time.perf_counter()
    np.save(args.out, probs)
    timings = {"images": len(images), "import_s": t_import - T_START, "model_s": t_model - t_import,
               "loop_s": t_done - t_model, "predict_s": t_done - T_START, "device": str(device),
               "batch_size": args.batch_size, "workers": args.workers}
    print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in timings.items()))
    if args.timings:
        args.timings.write_text(json.dumps(timings, indent=2))


if __name__ == "__main__":
    main()
