"""Mask and acquisition views, lung masks and their sources: regions, fills, determinism, geometry."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.core.errors import CxrbenchError, DataError
from benchmark.views.base import BatchContext, parse_view

SIZE = 64


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def cases():
    from benchmark.data.synth import SynthConfig, render_case

    cfg = SynthConfig(n_patients=12, image_size=SIZE, seed=2, marker_label_corr=1.0)
    out = [render_case(cfg, i) for i in range(8)]
    assert any(c.boxes for c in out)
    return out


def batch_of(cases, seeds=None, pad: int = 0):
    x = torch.tensor(np.stack([c.image for c in cases]))[:, None]
    m = torch.tensor(np.stack([c.lung_mask for c in cases]))[:, None]
    boxes = [torch.tensor(c.boxes, dtype=torch.float32).reshape(-1, 4) for c in cases]
    if pad:  # a letterboxed image: zero columns on both sides
        x = torch.nn.functional.pad(x[..., pad:-pad], (pad, pad))
        m = torch.nn.functional.pad(m[..., pad:-pad], (pad, pad))
        boxes = [b.clamp(pad, SIZE - pad) for b in boxes]
    seeds = torch.arange(len(cases)) + 100 if seeds is None else torch.as_tensor(seeds)
    return x, BatchContext(rows=torch.arange(len(cases)), seeds=seeds, lung_masks=m, boxes=boxes)


def changed(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).abs() > 1e-6


REGIONS = ("no_lung", "only_lung", "random_area", "lesion", "border", "corners")
FILLS = ("inpaint", "mean", "blur", "noise")


@pytest.mark.parametrize("fill", FILLS)
def test_mask_views_change_only_their_region(cases, fill):
    x, ctx = batch_of(cases)
    for name in REGIONS:
        view = parse_view(f"{name}@{fill}")
        region = view.region(x, ctx)
        y = view.apply(x, ctx)
        assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
        assert not (changed(y, x) & ~region).any(), name
        if region.any():
            assert changed(y, x)[region].float().mean() > 0.5, (name, fill)


def test_regions_are_what_they_say(cases):
    x, ctx = batch_of(cases)
    lungs = ctx.lung_masks
    assert torch.equal(parse_view("no_lung").region(x, ctx), lungs)
    assert torch.equal(parse_view("only_lung").region(x, ctx), ~lungs)
    rand = parse_view("random_area").region(x, ctx)
    assert not (rand & lungs).any()
    assert torch.equal(rand.flatten(1).sum(1), lungs.flatten(1).sum(1))  # area-matched, per image
    border = parse_view("border").region(x, ctx).float().mean()
    corners = parse_view("corners").region(x, ctx).float().mean()
    w, c = round(0.08 * SIZE) / SIZE, round(0.15 * SIZE) / SIZE
    assert border == pytest.approx(1 - (1 - 2 * w) ** 2, abs=1e-6)
    assert corners == pytest.approx(4 * c * c, abs=1e-6)
    lesion = parse_view("lesion").region(x, ctx)
    for k, case in enumerate(cases):
        expect = torch.zeros((SIZE, SIZE), dtype=torch.bool)
        for x1, y1, x2, y2 in case.boxes:
            expect[int(y1):int(y2), int(x1):int(x2)] = True
        assert torch.equal(lesion[k, 0], expect)


def test_random_area_is_deterministic_per_image_and_independent_of_the_batch(cases):
    x, ctx = batch_of(cases)
    view = parse_view("random_area@noise")
    whole = view.apply(x, ctx)
    again = view.apply(x, ctx)
    assert torch.equal(whole, again)
    x3, ctx3 = batch_of(cases[3:4], seeds=ctx.seeds[3:4])
    assert torch.equal(view.apply(x3, ctx3)[0], whole[3])
    _, other = batch_of(cases, seeds=ctx.seeds + 1)
    assert not torch.equal(view.region(x, other), view.region(x, ctx))


def test_fills(cases):
    from benchmark.views.mask import harmonic_fill

    x, ctx = batch_of(cases)
    lungs = ctx.lung_masks
    mean = parse_view("no_lung@mean").apply(x, ctx)
    for k in range(len(cases)):
        outside = x[k][~lungs[k]]
        assert torch.allclose(mean[k][lungs[k]], outside.mean().expand(int(lungs[k].sum())), atol=1e-5)
    # Smooth inpainting: a convex combination of what surrounds the region, with no texture left.
    inpaint = harmonic_fill(x, lungs)
    for k in range(len(cases)):
        known = x[k][~lungs[k]]
        inside = inpaint[k][lungs[k]]
        assert known.min() - 1e-6 <= inside.min() and inside.max() <= known.max() + 1e-6

    def roughness(img, region):
        lap = (img[..., 1:-1, 1:-1] * 4 - img[..., :-2, 1:-1] - img[..., 2:, 1:-1]
               - img[..., 1:-1, :-2] - img[..., 1:-1, 2:])
        return lap.abs()[region[..., 1:-1, 1:-1]].mean()
    assert roughness(inpaint, lungs) < 0.2 * roughness(x, lungs)
    # Noise: the surroundings' level, and a spread of the order of their detail.
    noisy = parse_view("no_lung@noise").apply(x, ctx)
    resid = noisy - inpaint
    spread = resid[lungs].std()
    detail = (x - torch.nn.functional.avg_pool2d(x, 3, 1, 1))[~lungs].std()
    assert abs(float(resid[lungs].mean())) < 0.02 and 0.3 * detail < spread < 3 * detail
    # Blur: the region's own content, heavily smoothed.
    blur = parse_view("no_lung@blur").apply(x, ctx)
    interior = -torch.nn.functional.max_pool2d(-lungs.float(), 5, 1, 2) > 0.5  # away from the seam
    assert roughness(blur, interior) < 0.1 * roughness(x, interior)


def test_letterbox_padding_is_never_touched(cases):
    from suites.robustness import VIEWS as SHIFTS

    pad = 8
    x, ctx = batch_of(cases, pad=pad)
    for spec in (*REGIONS, "only_lung@mean", "border@noise", "corners@blur", "invert", "contrast@0.3"):
        y = parse_view(spec).apply(x, ctx)
        assert (y[..., :pad] == 0).all() and (y[..., -pad:] == 0).all(), spec
    assert not (parse_view("border").region(x, ctx)[..., :pad]).any()
    assert len(SHIFTS) == 29


def test_acquisition_views_are_deterministic_per_image_and_change_the_image(cases):
    from suites.robustness import VIEWS as SHIFTS

    x, ctx = batch_of(cases)
    x1, ctx1 = batch_of(cases[5:6], seeds=ctx.seeds[5:6])
    for spec in SHIFTS[1:]:
        view = parse_view(spec)
        y = view.apply(x, ctx)
        assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1, spec
        assert torch.allclose(view.apply(x1, ctx1)[0], y[5], atol=1e-6), spec
        assert (y - x).abs().mean() > 1e-5, spec  # blur@1 is a quarter pixel at 64 px


def test_acquisition_views_do_what_they_say(cases):
    x, ctx = batch_of(cases)
    assert torch.allclose(parse_view("invert").apply(x, ctx), 1 - x)
    gamma = parse_view("gamma@2").apply(x, ctx)
    for k in range(len(cases)):
        assert torch.allclose(gamma[k], x[k] ** 2) or torch.allclose(gamma[k], x[k] ** 0.5)
    noise = parse_view("noise@0.05").apply(x, ctx) - x
    assert 0.03 < float(noise[(x > 0.1) & (x < 0.9)].std()) < 0.06
    errors = [float((parse_view(f"jpeg@{q}").apply(x, ctx) - x).abs().mean()) for q in (50, 20, 5)]
    assert errors[0] < errors[1] < errors[2]
    assert torch.allclose(parse_view("rotate@0").apply(x, ctx), x, atol=1e-5)
    assert torch.allclose(parse_view("crop@1").apply(x, ctx), x, atol=1e-5)
    contrast = parse_view("contrast@0.5").apply(x, ctx)
    assert float(contrast.std(dim=(2, 3)).mean()) < 0.6 * float(x.std(dim=(2, 3)).mean())
    marks = parse_view("marker@4").apply(x, ctx)
    assert ((marks - x).abs() > 0.3).flatten(1).any(1).all()


@pytest.mark.parametrize("spec, words", [
    ("no_lung@sparkle", "unknown fill 'sparkle'"), ("gamma@0.5", "gamma needs a value in"),
    ("jpeg@abc", "could not convert"), ("invert@2", "invert takes no parameter"),
])
def test_bad_view_parameters_are_one_clear_error(spec, words):
    with pytest.raises(CxrbenchError, match=words):
        parse_view(spec)


# --- lung masks ---------------------------------------------------------------------------------

def test_prior_fits_synth_lungs_and_follows_the_body():
    from benchmark.data.geometry import letterbox, resize_image, resize_mask
    from benchmark.data.synth import SynthConfig, render_case
    from benchmark.data.lungs import lung_prior

    def iou(a, b):
        return (a & b).sum() / (a | b).sum()

    cfg = SynthConfig(n_patients=30, image_size=128, seed=9)
    cases = [render_case(cfg, i) for i in range(30)]
    assert np.mean([iou(lung_prior(c.image), c.lung_mask) for c in cases]) >= 0.75
    # A narrower picture, letterboxed: the prior moves with the body, not with the canvas.
    c = cases[0]
    crop = c.image[:, 16:112]
    lb = letterbox(crop.shape, (128, 128))
    img, mask = resize_image(crop, lb), resize_mask(c.lung_mask[:, 16:112], lb)
    prior = lung_prior(img)
    assert iou(prior, mask) >= 0.6 and not prior[:, :lb.pad_left].any()


def test_mask_sources_manifest_segmenter_prior(monkeypatch, tmp_path):
    from benchmark import api
    from benchmark.data import lungs
    from benchmark.data.dataset import load_csv_dataset
    from benchmark.core.registry import SEGMENTERS

    manifest = api.synth(tmp_path, n_patients=3, image_size=SIZE, seed=1)
    table = __import__("pandas").read_csv(manifest)
    table.loc[1:, "lung_mask"] = ""
    table.to_csv(manifest, index=False)
    ds = load_csv_dataset(manifest)
    plan = lungs.plan_masks(ds)
    assert list(plan.sources) == ["manifest"] + ["prior"] * (len(ds) - 1)
    img = ds.source.image(1)
    assert np.array_equal(lungs.lung_mask(ds, 1, img, plan), lungs.lung_prior(img))
    assert np.array_equal(lungs.lung_mask(ds, 0, ds.source.image(0), plan), ds.source.lung_mask(0))

    def box_segmenter(image):
        out = np.zeros(image.shape, bool)
        out[10:50, 8:30] = True
        return out

    monkeypatch.setattr(SEGMENTERS, "_entries", {**SEGMENTERS._entries})
    monkeypatch.setattr(lungs, "chosen_segmenter", lambda: "boxes")
    SEGMENTERS.register("boxes", box_segmenter, version="1")
    with_seg = lungs.plan_masks(ds)
    assert list(with_seg.sources[1:]) == ["segmenter:boxes"] * (len(ds) - 1) and with_seg.key != plan.key
    assert lungs.lung_mask(ds, 2, ds.source.image(2), with_seg)[10:50, 8:30].all()

    SEGMENTERS.register("boxes-bad", lambda image: np.zeros((3, 3), bool), version="1")
    monkeypatch.setattr(lungs, "chosen_segmenter", lambda: "boxes-bad")
    with pytest.raises(DataError, match=r"segmenter 'boxes-bad': returned a \(3, 3\) mask for a \(64, 64\) image"):
        lungs.lung_mask(ds, 1, img, lungs.plan_masks(ds))


def test_a_new_mask_source_recomputes_cached_mask_views(monkeypatch, tmp_path):
    """Installing a segmenter changes the masks, so mask views are not served from the cache."""
    from benchmark import api
    from benchmark.data import lungs
    from benchmark.data.dataset import load_csv_dataset
    from benchmark.models.resolve import resolve_model
    from benchmark.core.registry import SEGMENTERS
    from benchmark.execution.runner import predict_views
    from benchmark.execution.store import PredictionStore
    from tests.helpers import CANONICAL, TinyNet, card, save_model

    manifest = api.synth(tmp_path / "d", n_patients=3, image_size=SIZE, seed=1)
    table = __import__("pandas").read_csv(manifest).drop(columns=["lung_mask"])
    table.to_csv(manifest, index=False)
    ds = load_csv_dataset(manifest)
    model = resolve_model(str(save_model(TinyNet(), tmp_path / "m.pt", card("tiny", CANONICAL, size=SIZE))))
    store = PredictionStore(tmp_path / "store")
    _, first = predict_views(model, ds, ["clean", "no_lung"], store=store, progress=False)
    assert set(first.lung_mask_sources) == {"prior"}
    _, again = predict_views(model, ds, ["clean", "no_lung"], store=store, progress=False)
    assert again.cached_views == ["clean", "no_lung"]
    monkeypatch.setattr(SEGMENTERS, "_entries", {**SEGMENTERS._entries})
    monkeypatch.setattr(lungs, "chosen_segmenter", lambda: "half")
    SEGMENTERS.register("half", lambda image: np.arange(image.shape[1])[None, :].repeat(image.shape[0], 0) < 20,
                        version="1")
    _, seg = predict_views(model, ds, ["clean", "no_lung"], store=store, progress=False)
    assert seg.cached_views == ["clean"] and seg.computed_views == ["no_lung"]
    assert set(seg.lung_mask_sources) == {"segmenter:half"}

    def broken(image):
        raise RuntimeError("no weights")

    SEGMENTERS.register("broken", broken, version="1")
    monkeypatch.setattr(lungs, "chosen_segmenter", lambda: "broken")
    with pytest.raises(DataError, match=r"manifest.csv: row 2: segmenter 'broken': failed \(RuntimeError: no weights\)"):
        predict_views(model, ds, ["clean", "no_lung"], store=store, progress=False)
