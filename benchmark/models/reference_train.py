"""Trains the shipped reference model on synth (about two minutes on two CPU cores):

    python -m benchmark.models.reference_train --out benchmark/assets/reference
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from benchmark.models.reference import ASSET_DIR, INPUT_SIZE, TRAIN_SYNTH, card_json
from benchmark.models.small_cnn import SmallCNN


def _training_arrays(spec: str) -> tuple[np.ndarray, np.ndarray]:
    from benchmark.data.dataset import resolve_dataset
    from benchmark.data.geometry import letterbox, resize_image

    ds = resolve_dataset(f"synth:{spec}")
    images = np.empty((len(ds), 1, *INPUT_SIZE), dtype=np.float32)
    for i in range(len(ds)):
        img = ds.source.image(i)
        images[i, 0] = resize_image(img, letterbox(img.shape, INPUT_SIZE))
    labels = ds.table["label"].map({"negative": 0, "typical": 1, "indeterminate": 2, "atypical": 3}).to_numpy()
    return images, labels


def train(out: Path, *, spec: str = TRAIN_SYNTH, epochs: int = 12, seed: int = 0, batch_size: int = 32) -> dict:
    """Train the reference CNN on synth and write model.safetensors + card.json + train_log.json."""
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    x, y = _training_arrays(spec)
    n_val = len(x) // 6
    order = rng.permutation(len(x))
    val, tr = order[:n_val], order[n_val:]
    model = SmallCNN()
    counts = np.bincount(y[tr], minlength=4)
    weight = torch.tensor(len(tr) / (4 * np.maximum(counts, 1)), dtype=torch.float32)
    loss_fn = nn.CrossEntropyLoss(weight=weight)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    steps = epochs * int(np.ceil(len(tr) / batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    xt, yt = torch.from_numpy((x - 0.5) / 0.25), torch.from_numpy(y)
    log = []
    for epoch in range(epochs):
        model.train()
        perm = torch.from_numpy(rng.permutation(tr))
        losses = []
        for k in range(0, len(perm), batch_size):
            idx = perm[k:k + batch_size]
            xb = _augment(xt[idx], rng)
            loss = loss_fn(model(xb), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        model.eval()
        with torch.inference_mode():
            pred = model(xt[val]).argmax(1).numpy()
        log.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "val_accuracy": float((pred == y[val]).mean())})
        print(json.dumps(log[-1]), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
    (out / "card.json").write_text(json.dumps(card_json(), indent=2) + "\n")
    summary = {"spec": spec, "epochs": epochs, "seed": seed, "seconds": round(time.perf_counter() - t0, 1), "log": log}
    (out / "train_log.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _augment(xb: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Small shifts and brightness/contrast changes; no flips (they move the heart to the wrong side)."""
    dy, dx = rng.integers(-6, 7, size=2)
    xb = torch.roll(xb, shifts=(int(dy), int(dx)), dims=(2, 3))
    gain = torch.from_numpy(rng.uniform(0.85, 1.15, size=(len(xb), 1, 1, 1)).astype(np.float32))
    bias = torch.from_numpy(rng.uniform(-0.3, 0.3, size=(len(xb), 1, 1, 1)).astype(np.float32))
    return xb * gain + bias


def main() -> None:
    parser = argparse.ArgumentParser(description="Train the shipped reference model on synth.")
    parser.add_argument("--out", type=Path, default=ASSET_DIR)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--spec", default=TRAIN_SYNTH)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    train(args.out, spec=args.spec, epochs=args.epochs, seed=args.seed)


if __name__ == "__main__":
    main()
