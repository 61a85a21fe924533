"""The prediction store: predictions cached by what determines them.

Key = model weights hash + preprocessing + manifest hash + view spec. Beside each stored row lies a
fingerprint of its pixels' source (file size and modification time), so an image replaced in place
is recomputed while its neighbours are reused. Each finished batch is written at once (atomically):
an interrupted run resumes where it stopped and a failure later in the run loses nothing computed.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

STORE_VERSION = "1"  # bump when the meaning of cached predictions changes


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


def read_piece(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(rows, probs, fingerprints) of a stored piece: a finished entry (`probs.npz`, every row) or
    a batch (`rows_*.npz`); None when the file cannot be read as one."""
    try:
        with np.load(path, allow_pickle=False) as z:
            probs, fp = z["probs"], z["fp"]
            rows = z["rows"] if "rows" in z.files else np.arange(len(fp))
    except (OSError, ValueError, KeyError, EOFError):
        return None
    return rows, probs, fp


@dataclass
class StoreEntry:
    """Predictions of one (model, dataset, view): `probs.npy` when complete, batch files until then.

    `fingerprints` holds one int64 per row describing the pixels' source now; stored rows whose
    fingerprint differs are treated as missing.
    """

    path: Path
    fingerprints: np.ndarray

    @property
    def n_rows(self) -> int:
        return len(self.fingerprints)

    @property
    def _final(self) -> Path:
        return self.path / "probs.npz"

    def _final_rows(self) -> tuple[np.ndarray, np.ndarray] | None:
        piece = read_piece(self._final)
        return None if piece is None else piece[1:]

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
                piece = read_piece(f)
                if piece is None:
                    f.unlink(missing_ok=True)  # a torn write from a killed process: recompute those rows
                    continue
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
        if not have_rows:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 4))
        r, p = np.concatenate(have_rows), np.concatenate(have_probs)
        r, first = np.unique(r, return_index=True)
        return r, p[first]

    def write_chunk(self, rows: np.ndarray, probs: np.ndarray) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        name = f"rows_{int(rows[0]):09d}_{len(rows):06d}_{os.getpid()}.npz"
        tmp = self.path / f".{name}.tmp"
        with open(tmp, "wb") as fh:
            np.savez(fh, rows=rows.astype(np.int64), probs=probs.astype(np.float64),
                     fp=self.fingerprints[rows])
        os.replace(tmp, self.path / name)

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
        tmp = self.path / f".probs.{os.getpid()}.tmp"
        with open(tmp, "wb") as fh:
            np.savez(fh, probs=out, fp=self.fingerprints)
        os.replace(tmp, self._final)
        for f in self.path.glob("rows_*.npz"):
            f.unlink()
        return out


class PredictionStore:
    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root else default_cache_dir() / "predictions"

    def entry(self, key: str, fingerprints: np.ndarray) -> StoreEntry:
        return StoreEntry(self.root / key[:2] / key, np.asarray(fingerprints, dtype=np.int64))

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
