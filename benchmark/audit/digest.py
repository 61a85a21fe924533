"""Exact-copy key of a canonical image, apart from the perceptual hash (benchmark.audit.phash) so that
`cxrbench prepare`, which stores it for every row, does not import SciPy (about 1 s per process)."""
from __future__ import annotations

import hashlib

import numpy as np

_CHUNK = 1 << 16  # pixels quantised per step: the temporaries stay in cache


def pixel_digest(image: np.ndarray) -> bytes:
    """SHA-256 of a canonical image's pixels (quantised to 16 bits) and shape: equal for exact copies
    whatever the file format, container or metadata around them."""
    img = np.asarray(image, dtype=np.float32)
    h = hashlib.sha256(f"{img.shape[0]}x{img.shape[1]}:".encode())
    # The bytes of np.round(np.clip(img, 0, 1) * 65535).astype("<u2"), made and hashed a cache-sized
    # piece at a time: the whole-image temporaries cost a full-size radiograph more than the hash.
    flat = img.reshape(-1)
    work = np.empty(min(flat.size, _CHUNK), dtype=np.float32)
    quantised = np.empty(work.size, dtype="<u2")
    for start in range(0, flat.size, _CHUNK):
        piece = flat[start:start + _CHUNK]
        w, q = work[:piece.size], quantised[:piece.size]
        np.clip(piece, 0.0, 1.0, out=w)
        np.multiply(w, np.float32(65535.0), out=w)
        np.rint(w, out=w)
        q[...] = w
        h.update(q)
    return h.digest()
