"""The prediction store: predictions cached by what determines them.

Key = model weights hash + preprocessing + manifest hash + view spec. Beside each stored row lies a
fingerprint of its pixels' source (file size and modification time), so an image replaced in place
is recomputed while its neighbours are reused. Each finished batch is written at once (atomically):
an interrupted run resumes where it stopped and a failure later in the run loses nothing computed.

Every piece carries a checksum of its arrays (`sum`), checked whenever it is read: a piece that was
damaged on disk (bad CRC, truncated zip, other content) is named in one warning on stderr, deleted
and its rows computed again, instead of serving wrong predictions or ending the run.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmark.core.files import atomic_path

STORE_VERSION = "2"  # bump when the meaning of cached predictions changes (2: pieces carry checksums)
# Check each piece's checksum (and each prepared-store row's CRC) on read. CXRBENCH_VERIFY_CACHE=0
# turns it off only so that perf/cache_verify.py can measure what it costs.
VERIFY = os.environ.get("CXRBENCH_VERIFY_CACHE", "1") != "0"


def default_cache_dir() -> Path:
    env = os.environ.get("CXRBENCH_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cxrbench"


def prediction_key(*, model_sha256: str, preprocessing: str, manifest_sha256: str, view: str) -> str:
    payload = json.dumps(
        {"v": STORE_VERSION, "model": model_sha256, "pre": preprocessing, "manifest": manifest_sha256,
         "view": view},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


class DamagedPiece(Exception):
    """A stored piece that cannot be trusted; the message says why."""


def piece_checksum(rows: np.ndarray, probs: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """16 bytes of BLAKE2b over the arrays' shapes, dtypes and bytes."""
    h = hashlib.blake2b(digest_size=16)
    for a in (rows, probs, fp):
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).data)
    return np.frombuffer(h.digest(), dtype=np.uint8)


def save_piece(path: Path, rows: np.ndarray | None, probs: np.ndarray, fp: np.ndarray) -> None:
    """Write a piece atomically (temporary file, then rename), with its checksum."""
    arrays = {"probs": np.asarray(probs, dtype=np.float64), "fp": np.asarray(fp, dtype=np.int64)}
    if rows is not None:
        arrays["rows"] = np.asarray(rows, dtype=np.int64)
    rows_ = arrays.get("rows", np.arange(len(arrays["fp"]), dtype=np.int64))
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays, sum=piece_checksum(rows_, arrays["probs"], arrays["fp"]))


def read_piece(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(rows, probs, fingerprints) of a stored piece: a finished entry (`probs.npz`, every row) or
    a batch (`rows_*.npz`). None when the file is gone (another process finished the entry);
    DamagedPiece when it is there but not a well-formed piece whose checksum matches."""
    try:
        with np.load(path, allow_pickle=False) as z:
            probs, fp, stored = z["probs"], z["fp"], z["sum"]
            rows = z["rows"] if "rows" in z.files else np.arange(len(fp), dtype=np.int64)
    except FileNotFoundError:
        return None
    except KeyError as exc:
        raise DamagedPiece(f"lacks the array {exc}") from exc
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError, MemoryError) as exc:
        # MemoryError: an array header declaring more than memory holds (numpy allocates before reading)
        raise DamagedPiece(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'unreadable'}") from exc
    if (probs.dtype != np.float64 or fp.dtype != np.int64 or rows.dtype != np.int64 or probs.ndim != 2
            or fp.ndim != 1 or rows.ndim != 1 or len(rows) != len(probs) or len(fp) != len(rows)):
        raise DamagedPiece("arrays of the wrong type or shape")
    if VERIFY and not np.array_equal(stored, piece_checksum(rows, probs, fp)):
        raise DamagedPiece("checksum mismatch (its content changed after it was written)")
    return rows, probs, fp


def _discard(path: Path, why: str) -> None:
    """One warning for a damaged piece, which is then deleted so that its rows are recomputed."""
    print(f"warning: {path}: damaged prediction piece ({why}); discarded, its rows are computed again",
          file=sys.stderr, flush=True)
    path.unlink(missing_ok=True)


def load_piece(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """read_piece for this store's own entries: a damaged piece is discarded (and None returned)."""
    try:
        return read_piece(path)
    except DamagedPiece as exc:
        _discard(path, str(exc))
        return None


@dataclass
class StoreEntry:
    """Predictions of one (model, dataset, view): `probs.npy` when complete, batch files until then.

    `fingerprints` holds one int64 per row describing the pixels' source now; stored rows whose
    fingerprint differs are treated as missing. `width` is the number of columns of a row: 4
    probabilities, or None for an embedding, whose width only its stored rows tell.
    """

    path: Path
    fingerprints: np.ndarray
    width: int | None = 4

    @property
    def n_rows(self) -> int:
        return len(self.fingerprints)

    @property
    def _final(self) -> Path:
        return self.path / "probs.npz"

    def _final_rows(self) -> tuple[np.ndarray, np.ndarray] | None:
        # A run asks complete() and load() of the same file: it is read and verified once while
        # it stays the same file (same inode, size and mtime).
        try:
            st = self._final.stat()
        except FileNotFoundError:
            return None
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        memo = self.__dict__.get("_memo")
        if memo is not None and memo[0] == stamp:
            return memo[1]
        piece = load_piece(self._final)
        final = None if piece is None else piece[1:]
        self.__dict__["_memo"] = (stamp, final)
        return final

    def complete(self) -> bool:
        final = self._final_rows() if self._final.is_file() else None
        return final is not None and np.array_equal(final[1], self.fingerprints)

    def load(self) -> np.ndarray:
        final = self._final_rows()
        assert final is not None
        return final[0]

    def done_mask(self) -> np.ndarray:
        done = np.zeros(self.n_rows, dtype=bool)
        for rows, _ in self._rows():
            done[rows] = True
        return done

    def _rows(self):
        """(rows, probs) of every stored piece whose fingerprints still match."""
        pieces = []
        if self._final.is_file() and (final := self._final_rows()) is not None:
            probs, fp = final
            if len(fp) == self.n_rows:
                pieces.append((np.arange(self.n_rows), probs, fp))
        if self.path.is_dir():
            for f in sorted(self.path.glob("rows_*.npz")):
                piece = load_piece(f)  # a damaged piece is named, deleted and its rows recomputed
                if piece is not None:
                    pieces.append(piece)
        for rows, probs, fp in pieces:
            ok = (rows < self.n_rows) & (fp == self.fingerprints[np.minimum(rows, self.n_rows - 1)])
            yield rows[ok], probs[ok]

    def stored(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rows, probs) of those of `rows` that are stored, in ascending row order."""
        want = np.zeros(self.n_rows, dtype=bool)
        want[np.asarray(rows, dtype=np.int64)] = True
        have_rows, have_probs = [], []
        for r, p in self._rows():
            keep = want[r]
            have_rows.append(r[keep])
            have_probs.append(p[keep])
        if not have_rows:  # nothing stored yet: an embedding's width is not known (0 columns), never 4
            return np.zeros(0, dtype=np.int64), np.zeros((0, self.width or 0))
        r, p = np.concatenate(have_rows), np.concatenate(have_probs)
        r, first = np.unique(r, return_index=True)
        return r, p[first]

    def write_chunk(self, rows: np.ndarray, probs: np.ndarray) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        name = f"rows_{int(rows[0]):09d}_{len(rows):06d}_{os.getpid()}.npz"
        save_piece(self.path / name, rows, probs, self.fingerprints[rows])

    def finalize(self) -> np.ndarray:
        """Merge the stored pieces into one file once every row is present."""
        out = None
        for rows, probs in self._rows():
            if out is None:  # 4 probabilities per row, or an embedding's width
                out = np.full((self.n_rows, probs.shape[1]), np.nan)
            out[rows] = probs
        if out is None:
            raise RuntimeError(f"prediction store entry {self.path} is empty")
        if np.isnan(out).any():
            raise RuntimeError(f"prediction store entry {self.path} is incomplete")
        save_piece(self._final, None, out, self.fingerprints)
        for f in self.path.glob("rows_*.npz"):
            f.unlink()
        return out


class PredictionStore:
    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root else default_cache_dir() / "predictions"

    def entry(self, key: str, fingerprints: np.ndarray, *, width: int | None = 4) -> StoreEntry:
        return StoreEntry(self.root / key[:2] / key, np.asarray(fingerprints, dtype=np.int64), width)

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
