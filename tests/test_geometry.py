"""Letterbox geometry: image, mask and boxes stay aligned; padding is empty; aspect is kept."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmark.data.geometry import (
    Letterbox,
    letterbox,
    resize_image,
    resize_mask,
    transform_boxes,
)
from benchmark.core.errors import DataError

sizes = st.tuples(st.integers(1, 3000), st.integers(1, 3000))


def test_landscape_into_square_pads_top_and_bottom():
    lb = letterbox((100, 200), (64, 64))
    assert lb == Letterbox((100, 200), (64, 64), 0.32, 0.32, 16, 0)
    assert lb.content_hw == (32, 64)


def test_portrait_into_wide_canvas_pads_left_and_right():
    lb = letterbox((1955, 1841), (224, 224))
    assert lb.content_hw == (224, 211) and (lb.pad_top, lb.pad_left) == (0, 6)


def test_stretch_has_no_padding():
    lb = letterbox((100, 200), (64, 32), keep_aspect=False)
    assert (lb.scale_y, lb.scale_x, lb.pad_top, lb.pad_left) == (0.64, 0.16, 0, 0)
    assert lb.content_hw == (64, 32)


@settings(max_examples=300, deadline=None)
@given(src=sizes, dst=sizes)
def test_letterbox_properties(src, dst):
    lb = letterbox(src, dst)
    nh, nw = lb.content_hw
    assert 1 <= nh <= dst[0] and 1 <= nw <= dst[1]
    assert nh == dst[0] or nw == dst[1]  # the limiting side fills the canvas
    # Aspect ratio kept: each side within one pixel of the ideal uniform scaling.
    ideal = min(dst[0] / src[0], dst[1] / src[1])
    assert abs(nh - src[0] * ideal) <= 1 and abs(nw - src[1] * ideal) <= 1
    # Centred: the two pads on an axis differ by at most one pixel.
    for pad, content, total in ((lb.pad_top, nh, dst[0]), (lb.pad_left, nw, dst[1])):
        assert 0 <= pad and 0 <= (total - content - pad) - pad <= 1


def _scene(h: int, w: int, box: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A dim image with one bright rectangle, and the mask of that rectangle."""
    x1, y1, x2, y2 = box
    img = np.full((h, w), 0.2, dtype=np.float32)
    img[y1:y2, x1:x2] = 1.0
    mask = np.zeros((h, w), dtype=bool)
    mask[y1:y2, x1:x2] = True
    return img, mask


def _extent(plane: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(plane)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=float)


@pytest.mark.parametrize(
    ("src", "dst", "box", "keep_aspect"),
    [
        ((1000, 800), (224, 224), (150, 300, 430, 620), True),  # portrait, downsample
        ((600, 1200), (256, 256), (700, 100, 1100, 380), True),  # landscape, downsample
        ((50, 70), (200, 300), (10, 5, 40, 30), True),  # upsample
        ((900, 700), (224, 224), (100, 200, 500, 650), False),  # stretch
    ],
)
def test_image_mask_and_box_stay_aligned(src, dst, box, keep_aspect):
    img, mask = _scene(*src, box)
    lb = letterbox(src, dst, keep_aspect=keep_aspect)
    out_img, out_mask = resize_image(img, lb), resize_mask(mask, lb)
    out_box = transform_boxes([box], lb)[0]
    assert out_img.shape == dst and out_img.dtype == np.float32
    assert out_mask.shape == dst and out_mask.dtype == np.bool_
    np.testing.assert_allclose(_extent(out_mask), out_box, atol=1.0)
    np.testing.assert_allclose(_extent(out_img > 0.6), out_box, atol=1.0)
    # Everything outside the resized image is padding: zero and unmasked.
    nh, nw = lb.content_hw
    inside = np.zeros(dst, dtype=bool)
    inside[lb.pad_top : lb.pad_top + nh, lb.pad_left : lb.pad_left + nw] = True
    assert not out_img[~inside].any() and not out_mask[~inside].any()
    assert out_img[inside].min() >= 0.2 - 1e-6 and out_img.max() <= 1.0


def test_downsampling_is_antialiased():
    checker = (np.indices((512, 512)).sum(axis=0) % 2).astype(np.float32)
    out = resize_image(checker, letterbox(checker.shape, (64, 64)))
    # Nearest-neighbour or point sampling would give all 0 or all 1 here.
    assert abs(out.mean() - 0.5) < 0.01 and out.std() < 0.02


def test_mask_area_rule():
    mask = np.zeros((8, 8), dtype=bool)
    mask[:4, :4] = True  # top-left 4x4 block: all of it
    mask[:2, 4:] = True  # top-right: exactly half
    mask[4:, :4].flat[:7] = True  # bottom-left: 7 of 16 pixels
    out = resize_mask(mask, letterbox((8, 8), (2, 2)))
    np.testing.assert_array_equal(out, [[True, True], [False, False]])


def test_boxes_clipped_to_image_and_empty_boxes():
    lb = letterbox((100, 200), (64, 64))
    out = transform_boxes(np.array([[-10, -10, 250, 50], [0, 0, 200, 100]]), lb)
    np.testing.assert_allclose(out, [[0, 16, 64, 32], [0, 16, 64, 48]], atol=1e-5)
    assert transform_boxes([], lb).shape == (0, 4)


@pytest.mark.parametrize("bad", [[[1, 2, 3]], [[5, 0, 1, 4]], [[0, 0, float("nan"), 1]], "x"])
def test_bad_boxes_rejected(bad):
    with pytest.raises(DataError):
        transform_boxes(bad, letterbox((10, 10), (5, 5)))


def test_mask_of_another_size_rejected():
    lb = letterbox((100, 80), (32, 32))
    with pytest.raises(DataError, match="mask is 50x40 but the letterbox expects 100x80"):
        resize_mask(np.zeros((50, 40), dtype=bool), lb)


def test_identity_letterbox_is_lossless():
    img = np.random.default_rng(0).random((30, 40)).astype(np.float32)
    lb = letterbox(img.shape, img.shape)
    np.testing.assert_array_equal(resize_image(img, lb), img)
    np.testing.assert_array_equal(transform_boxes([[1, 2, 3, 4]], lb), [[1, 2, 3, 4]])


def _one_pass(img: np.ndarray, lb: Letterbox, **kw) -> np.ndarray:
    """The content as one Pillow bilinear pass over the whole float image, clipped to [0, 1]."""
    from PIL import Image

    nh, nw = lb.content_hw
    return np.clip(np.asarray(Image.fromarray(img).resize((nw, nh), Image.Resampling.BILINEAR, **kw)), 0, 1)


def _content(out: np.ndarray, lb: Letterbox) -> np.ndarray:
    nh, nw = lb.content_hw
    return out[lb.pad_top:lb.pad_top + nh, lb.pad_left:lb.pad_left + nw]


@pytest.mark.parametrize("hw", [(224, 200), (512, 384), (1000, 1340), (1300, 1000)])
def test_sources_under_six_times_the_input_are_resized_in_one_pass(hw):
    img = np.random.default_rng(hw[0]).random(hw).astype(np.float32)
    lb = letterbox(hw, (224, 224))
    np.testing.assert_array_equal(_content(resize_image(img, lb), lb), _one_pass(img, lb))


def test_full_size_source_is_box_reduced_first_and_stays_close():
    yy, xx = np.mgrid[0:1500, 0:1400].astype(np.float32)
    img = (0.5 + 0.4 * np.sin(yy / 97.0) * np.cos(xx / 61.0)).astype(np.float32)  # smooth, like a film
    lb = letterbox(img.shape, (224, 224))  # 6.7x: box-reduced by 2 first
    content = _content(resize_image(img, lb), lb)
    np.testing.assert_array_equal(content, _one_pass(img, lb, reducing_gap=3.0))
    assert 0 < np.abs(content - _one_pass(img, lb)).max() < 2e-3


def test_pillow_without_arrow_import_gives_the_same_pixels(monkeypatch):
    from PIL import Image

    img = np.random.default_rng(3).random((700, 500)).astype(np.float32)
    lb = letterbox(img.shape, (96, 96))
    shared = resize_image(img, lb)
    monkeypatch.delattr(Image, "fromarrow", raising=False)  # Pillow < 11.2: a copy
    np.testing.assert_array_equal(resize_image(img, lb), shared)
