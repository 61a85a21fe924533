"""Render docs/synth_grid.png: one row per class, samples from different sites, labelled.

    python perf/render_synth_grid.py [--out docs/synth_grid.png] [--per-row 6] [--size 256] [--seed 0]
           [--tile 200] [--overlay]   # outline lung masks (green) and opacity boxes (red) to check the truth
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from benchmark.data.synth import SynthConfig, render_case, synth_table
from benchmark.core.labels import CLASSES


def pick(table, label: str, per_row: int, seed: int = 0) -> list[int]:
    """Up to per_row images of a class from different patients, cycling through the sites and
    preferring opacity patterns not shown yet, so a row shows the class's range."""
    rows = table[(table["true_label"] == label)].drop_duplicates("patient_id")
    by_site = [list(g["index"]) for _, g in rows.groupby("site")]
    patient = dict(zip(rows["index"], rows["patient_id"], strict=True))
    seen: set[str] = set()
    out: list[int] = []
    while len(out) < per_row and any(by_site):
        for lst in by_site:
            if not lst or len(out) >= per_row:
                continue
            fresh = [i for i in lst[:20] if _pattern(seed, patient[i], label) not in seen]
            i = fresh[0] if fresh else lst[0]
            lst.remove(i)
            seen.add(_pattern(seed, patient[i], label))
            out.append(int(i))
    return out


def _pattern(seed: int, patient_id: str, label: str) -> str:
    from benchmark.data.synth.generate import _patient

    return _patient(seed, int(patient_id.split("p")[-1]), label)[2].split("+")[0]


def render_grid(cfg: SynthConfig, per_row: int = 6, overlay: bool = False, tile: int | None = None) -> Image.Image:
    """Grey grid (RGB with `overlay`), one row per class, a caption strip under each tile."""
    table = synth_table(cfg)
    tile = tile or cfg.image_size
    label_w, gap, cap = 122, 4, 14
    mode, white, grey = ("RGB", (255, 255, 255), (200, 200, 200)) if overlay else ("L", 255, 200)
    size = (label_w + per_row * (tile + gap), len(CLASSES) * (tile + cap + gap) + gap)
    grid = Image.new(mode, size, (20, 20, 20) if overlay else 20)
    draw = ImageDraw.Draw(grid)
    font = _font(16)
    small = _font(10)
    for r, label in enumerate(CLASSES):
        y0 = gap + r * (tile + cap + gap)
        draw.text((8, y0 + tile // 2 - 8), label, fill=white, font=font)
        for c, idx in enumerate(pick(table, label, per_row, cfg.seed)):
            case = render_case(cfg, idx)
            grey_px = (np.clip(case.image, 0, 1) * 255).astype(np.uint8)
            img = Image.fromarray(grey_px)
            if overlay:
                img = _outline(img.convert("RGB"), case)
            if tile != cfg.image_size:
                img = img.resize((tile, tile), Image.Resampling.LANCZOS)
            x0 = label_w + c * (tile + gap)
            grid.paste(img, (x0, y0))
            caption = f"{case.meta['site']}  {case.meta['pattern']}"
            draw.text((x0 + 2, y0 + tile + 1), caption[:44], fill=grey, font=small)
    return grid


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):
        return ImageFont.load_default()


def _outline(tile: Image.Image, case) -> Image.Image:
    arr = np.asarray(tile).copy()
    m = case.lung_mask
    edge = m ^ (np.roll(m, 1, 0) & np.roll(m, -1, 0) & np.roll(m, 1, 1) & np.roll(m, -1, 1))
    arr[edge & m] = (40, 200, 40)
    o = case.opacity_mask
    oedge = o ^ (np.roll(o, 1, 0) & np.roll(o, -1, 0) & np.roll(o, 1, 1) & np.roll(o, -1, 1))
    arr[oedge & o] = (240, 160, 40)
    tile = Image.fromarray(arr)
    d = ImageDraw.Draw(tile)
    for x1, y1, x2, y2 in case.boxes:
        d.rectangle([x1, y1, x2 - 1, y2 - 1], outline=(230, 40, 40))
    return tile


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("docs/synth_grid.png"))
    p.add_argument("--per-row", type=int, default=6)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tile", type=int, default=200, help="displayed tile size (keeps the PNG small)")
    p.add_argument("--overlay", action="store_true")
    a = p.parse_args()
    cfg = SynthConfig(image_size=a.size, seed=a.seed)
    img = render_grid(cfg, a.per_row, a.overlay, a.tile)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    img.save(a.out, optimize=True)
    print(f"wrote {a.out} ({a.out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
