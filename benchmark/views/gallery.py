"""One sample through every view a suite asked for, as small PNGs for the report.

The sample is the first image (of the first 50) that has opacity boxes, so the lesion view shows
something; it goes through the runner's own preparation (decode, letterbox, lung mask, boxes) and
per-image seed, so the pictures show what the model was fed. Galleries are cached beside the
predictions: a cached rerun shows them without importing torch.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.core.files import atomic_write_text

GALLERY_VERSION = "1"
MAX_SIDE = 96       # pixels per picture in the report
SEARCH_ROWS = 50    # rows looked at for one with lesion boxes


def _cache_file(cache_dir: Path, dataset, views: Sequence[str], size, keep_aspect: bool, seed: int) -> Path:
    from benchmark.execution.runner import _mask_plan

    plan = _mask_plan(dataset, views)
    key = json.dumps({"v": GALLERY_VERSION, "manifest": dataset.manifest.sha256, "views": sorted(views),
                      "size": list(size), "keep_aspect": keep_aspect, "seed": seed,
                      "masks": None if plan is None else plan.key,
                      "fp": int(dataset.source.fingerprints()[:SEARCH_ROWS].sum())}, sort_keys=True)
    return cache_dir / "gallery" / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"


def _png(img: np.ndarray) -> str:
    from PIL import Image

    pic = Image.fromarray(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8))
    if max(pic.size) > MAX_SIDE:
        scale = MAX_SIDE / max(pic.size)
        pic = pic.resize((max(round(pic.size[0] * scale), 1), max(round(pic.size[1] * scale), 1)),
                         Image.Resampling.BOX)
    buf = io.BytesIO()
    pic.save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _pick_row(dataset) -> int:
    from benchmark.core.errors import CxrbenchError
    from benchmark.data.lungs import lesion_boxes

    for i in range(min(len(dataset), SEARCH_ROWS)):
        try:
            if len(lesion_boxes(dataset, i)):
                return i
        except CxrbenchError:  # a bad row is reported by the run itself, not by its picture
            pass
    return 0


def render_views(dataset, views: Sequence[str], *, size, keep_aspect: bool, seed: int) -> dict[str, Any]:
    """{"row", "image_id", "images": {view: float32 [H, W]}} for one sample."""
    import torch

    from benchmark.execution.forward import _Prepared, image_seed
    from benchmark.views.base import BatchContext, parse_view

    parsed = [(v, parse_view(v)) for v in views]
    row = _pick_row(dataset)
    prep = _Prepared(dataset, np.array([row]), tuple(size), keep_aspect,
                     any(p.needs_masks for _, p in parsed), any(p.needs_boxes for _, p in parsed))
    i, image, mask, boxes, error = prep[0]
    if error:
        return {"row": row, "image_id": str(dataset.table["image_id"].iat[row]), "images": {}, "error": error}
    ctx = BatchContext(rows=torch.tensor([i]),
                       seeds=torch.tensor([image_seed(seed, dataset.table["image_id"].iat[i])]),
                       lung_masks=mask[None], boxes=[boxes[~boxes.isnan().any(dim=1)]])
    out = {}
    with torch.inference_mode():
        for spec, view in parsed:
            if spec != "embedding":
                out[spec] = view.apply(image[None], ctx)[0, 0].float().numpy()
    return {"row": row, "image_id": str(dataset.table["image_id"].iat[i]), "images": out}


def gallery(dataset, views: Sequence[str], *, size, keep_aspect: bool, seed: int,
            cache_dir: Path) -> dict[str, Any]:
    """{"image_id", "pngs": {view: base64 PNG}} from the cache, or rendered and cached."""
    path = _cache_file(cache_dir, dataset, views, size, keep_aspect, seed)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    shown = render_views(dataset, views, size=size, keep_aspect=keep_aspect, seed=seed)
    data = {"image_id": shown["image_id"], "pngs": {v: _png(img) for v, img in shown["images"].items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data))
    return data


def image_figure(data: Mapping[str, Any], views: Sequence[str], title: str) -> dict[str, Any]:
    """A report figure of type "images" (benchmark/reporting/report.py renders it as a grid of pictures)."""
    return {"type": "images", "title": f"{title} (image {data['image_id']})",
            "images": [{"caption": v, "png_base64": data["pngs"][v]} for v in views if v in data["pngs"]]}


def attach_galleries(suite_results: dict[str, dict], suite_view_lists: Mapping[str, Sequence[str]], *,
                     data: str | None, card: Mapping[str, Any], seed: int, cache_dir: Path) -> None:
    """Add a `view_examples` figure to every suite that asked for views besides `clean`."""
    wanted = {s: [v for v in vs if v != "embedding"] for s, vs in suite_view_lists.items()}
    wanted = {s: vs for s, vs in wanted.items() if any(v != "clean" for v in vs) and s in suite_results}
    if not wanted:
        return
    from benchmark.data.dataset import resolve_dataset

    dataset = resolve_dataset(data)
    views = sorted({v for vs in wanted.values() for v in vs}, key=lambda v: (v != "clean", v))
    spec = card.get("input", {})
    shown = gallery(dataset, views, size=spec.get("size"), keep_aspect=bool(spec.get("keep_aspect", True)),
                    seed=seed, cache_dir=Path(cache_dir))
    for s, vs in wanted.items():
        suite_results[s].setdefault("figures", {})["view_examples"] = image_figure(
            shown, vs, "Every view of one sample, as fed to the model")
