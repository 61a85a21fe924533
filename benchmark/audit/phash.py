"""Image fingerprints for the leakage audit: a 64-bit DCT perceptual hash plus an aligned detail check.

Chest radiographs resemble each other far more than the photographs perceptual hashes were made for:
two different patients' films often share a 64-bit pHash outright. So a near-duplicate is decided in
two stages, each cheap enough for the number of pairs it sees:

1. every pair: the pHash Hamming distance and the cosine of a coarse band-pass descriptor of the
   central (lung) region, one matrix product for all pairs; both must pass;
2. the few pairs left: the two images are aligned (a scale and an offset per axis, found from their
   row and column profiles, which absorbs crops of a few pixels and changes of aspect), then the
   band-pass detail of one image's central region is correlated with the other's; the best
   normalised correlation must reach `DETAIL_MIN`.

Every step works on a 64x64 thumbnail of the image content (the letterbox padding removed) whose
grey levels are replaced by their ranks, so re-encoding, windowing and gamma changes, which keep the
order of grey levels, leave it almost unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.fft import dctn
from scipy.stats import rankdata

from benchmark.audit.digest import pixel_digest  # noqa: F401  (the audit's exact-copy key, beside its pHash)

THUMB = 64
PHASH_MAX = 20      # Hamming distance (of 64 bits) a duplicate may still have after a small crop
COARSE_MIN = 0.90   # cosine of the coarse descriptors for a pair to be checked in detail
DETAIL_MIN = 0.93   # aligned detail correlation that makes a pair a near-duplicate

_COARSE = 32                       # coarse grid; its central window [_LO, _COARSE - _LO) is compared
_LO = 6
_MARGIN = 10                       # the detail check compares the 64 grid less this margin
_PROFILE = slice(12, THUMB - 12)   # rows (columns) averaged into the column (row) profile
_SCALES = np.linspace(0.94, 1.06, 25)
_OFFSETS = np.linspace(-4.0, 4.0, 33)  # thumbnail pixels
_AXIS = np.arange(THUMB, dtype=np.float64)
_CENTRE = (THUMB - 1) / 2.0
# Where a point x of image A falls in image B for every (scale, offset) tried: [scale, offset, x].
_SAMPLE_AT = _CENTRE + (_AXIS[None, None, :] - _CENTRE) / _SCALES[:, None, None] + _OFFSETS[None, :, None]


@dataclass(frozen=True)
class Fingerprint:
    """What the audit keeps per image: the pHash and the rank-equalised thumbnail it came from."""

    phash: int
    thumb: np.ndarray  # uint8 [THUMB, THUMB]


def thumbnail(content: np.ndarray) -> np.ndarray:
    """Rank-equalised THUMB x THUMB thumbnail (uint8) of an image's content (no padding)."""
    arr = np.ascontiguousarray(content, dtype=np.float32)
    small = np.asarray(Image.fromarray(arr).resize((THUMB, THUMB), Image.Resampling.BOX), dtype=np.float64)
    # Ties (flat regions, clipped air) share their average rank, so a constant image stays constant.
    ranks = rankdata(small, method="average").reshape(small.shape) - 1.0
    return np.round(ranks * (255.0 / max(small.size - 1, 1))).astype(np.uint8)


def phash(thumb: np.ndarray) -> int:
    """64-bit DCT hash: the 8x8 lowest frequencies of the 32x32 thumbnail above/below their median."""
    t = _pool(_as_float(thumb), 32)
    coef = dctn(t, norm="ortho")[:8, :8].ravel()
    ac = coef[1:]
    bits = [coef[0] > 0, *(ac > np.median(ac))]
    return int("".join("1" if b else "0" for b in bits), 2)


def fingerprint(content: np.ndarray) -> Fingerprint:
    thumb = thumbnail(content)
    return Fingerprint(phash(thumb), thumb)


def coarse_descriptors(thumbs: np.ndarray) -> np.ndarray:
    """[n, d] unit vectors: band-pass of the 32x32 thumbnail over its central window. Borders and
    corner text, which a site shares across all its patients, are left out."""
    out = np.zeros((len(thumbs), (_COARSE - 2 * _LO) ** 2), dtype=np.float32)
    for k, t in enumerate(thumbs):
        g = _pool(_as_float(t), _COARSE)
        band = ndimage.gaussian_filter(g, 0.5) - ndimage.gaussian_filter(g, 2.0)
        v = band[_LO:_COARSE - _LO, _LO:_COARSE - _LO].ravel()
        v = v - v.mean()
        out[k] = v / (np.linalg.norm(v) + 1e-12)
    return out


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[len(a), len(b)] Hamming distances between two arrays of uint64 hashes."""
    x = np.bitwise_xor(np.asarray(a, dtype=np.uint64)[:, None], np.asarray(b, dtype=np.uint64)[None, :])
    return popcount(x)


_BITS_IN_BYTE = np.array([i.bit_count() for i in range(256)], dtype=np.uint8)


def popcount(x: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 (numpy >= 2 counts them natively; a byte table otherwise)."""
    x = np.ascontiguousarray(x, dtype=np.uint64)
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x).astype(np.uint8)
    return _BITS_IN_BYTE[x.view(np.uint8)].reshape(*x.shape, 8).sum(axis=-1, dtype=np.uint8)


def detail_similarity(thumb_a: np.ndarray, thumb_b: np.ndarray) -> float:
    """Correlation of the band-pass detail after aligning B onto A (and A onto B; the larger):
    near 1 for the same picture re-encoded, resized, re-windowed or cropped a little."""
    return max(_aligned(thumb_a, thumb_b), _aligned(thumb_b, thumb_a))


def _aligned(thumb_a: np.ndarray, thumb_b: np.ndarray) -> float:
    a, b = _as_float(thumb_a), _as_float(thumb_b)
    sy, oy = _align_axis(_profile(a, 0), _profile(b, 0))
    sx, ox = _align_axis(_profile(a, 1), _profile(b, 1))
    warped = ndimage.affine_transform(b, [1.0 / sy, 1.0 / sx], offset=[_CENTRE - _CENTRE / sy + oy,
                                      _CENTRE - _CENTRE / sx + ox], order=1, mode="nearest")
    m = _MARGIN
    h = THUMB - 2 * m
    da = _band(a)[m:m + h, m:m + h]
    da = da - da.mean()
    norm = np.linalg.norm(da)
    if norm < 1e-9:
        return 1.0 if np.linalg.norm(_band(b)) < 1e-9 else 0.0
    da /= norm
    db = _band(warped)
    # A one-pixel search mops up what the profile alignment leaves.
    win = np.lib.stride_tricks.sliding_window_view(db[m - 1:m + h + 1, m - 1:m + h + 1], (h, h))
    sums = win.sum(axis=(2, 3))
    var = (win * win).sum(axis=(2, 3)) - sums * sums / (h * h)
    dots = np.einsum("ijkl,kl->ij", win, da)  # da has zero mean, so B's mean drops out
    return float((dots / np.sqrt(np.maximum(var, 1e-12))).max())


def _profile(x: np.ndarray, axis: int) -> np.ndarray:
    """Row profile (axis 0) or column profile (axis 1) of the central band, high-passed."""
    p = x[:, _PROFILE].mean(axis=1) if axis == 0 else x[_PROFILE, :].mean(axis=0)
    return ndimage.gaussian_filter1d(p, 0.7) - ndimage.gaussian_filter1d(p, 4.0)


def _align_axis(pa: np.ndarray, pb: np.ndarray, lo: int = 8) -> tuple[float, float]:
    """(scale, offset) that best maps profile A onto profile B, over the whole grid at once."""
    sl = slice(lo, THUMB - lo)
    a = pa[sl] - pa[sl].mean()
    a /= np.linalg.norm(a) + 1e-12
    samples = np.interp(_SAMPLE_AT[..., sl], _AXIS, pb)
    samples -= samples.mean(axis=-1, keepdims=True)
    score = (samples @ a) / (np.linalg.norm(samples, axis=-1) + 1e-12)
    k_scale, k_offset = np.unravel_index(int(score.argmax()), score.shape)
    return float(_SCALES[k_scale]), float(_OFFSETS[k_offset])


def _band(x: np.ndarray) -> np.ndarray:
    return ndimage.gaussian_filter(x, 0.7) - ndimage.gaussian_filter(x, 3.0)


def _pool(x: np.ndarray, n: int) -> np.ndarray:
    f = THUMB // n
    return x.reshape(n, f, n, f).mean(axis=(1, 3))


def _as_float(thumb: np.ndarray) -> np.ndarray:
    return np.asarray(thumb, dtype=np.float64) / 255.0
