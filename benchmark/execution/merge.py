"""`cxrbench merge`: combine prediction stores filled on other machines (sharded runs) into one.

Each source is a cache folder (holding `predictions/`) or a `predictions/` folder itself. Every stored
piece, finished or partial, is copied into the target as a piece of the same entry, named by its
content hash so that merging the same source twice adds nothing. Nothing is trusted blindly: a piece
that is not a well-formed prediction array with a matching checksum (a bad CRC, a truncated zip, changed
content) is skipped, and named with the reason in the one error line that ends the merge after every
good piece is copied. The next `cxrbench run`
uses the rows whose images have the same size and modification time here as where they were computed
(a shared file system or `rsync -a` keeps both); others are recomputed.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmark.core.errors import DataError
from benchmark.execution.store import DamagedPiece, PredictionStore, read_piece, save_piece


@dataclass
class MergeOutcome:
    target: Path
    entries: int = 0          # entries that received pieces
    pieces: int = 0           # pieces copied
    rows: int = 0             # rows in the copied pieces
    already: int = 0          # pieces the target already had, or entries it had finished
    unreadable: list[str] = field(default_factory=list)


def merge_stores(sources: list[Path], target: PredictionStore) -> MergeOutcome:
    outcome = MergeOutcome(target.root)
    roots = [_predictions_root(Path(s)) for s in sources]  # every source checked before copying
    for root in roots:
        if root.resolve() == target.root.resolve():
            raise DataError("is the target store itself", where=str(root))
    for root in roots:
        for entry in sorted(p for p in root.glob("??/*") if p.is_dir()):
            _merge_entry(entry, target.root / entry.parent.name / entry.name, outcome)
    if outcome.unreadable:
        raise DataError(f"merged {outcome.pieces} pieces; {len(outcome.unreadable)} files are not intact prediction "
                        f"pieces and were skipped (first: {outcome.unreadable[0]})", where="merge")
    return outcome


def _predictions_root(path: Path) -> Path:
    if not path.is_dir():
        raise DataError("no such folder", where=str(path))
    for candidate in (path / "predictions", path):
        if any(p.is_dir() for p in candidate.glob("??/*")):
            return candidate
    raise DataError("holds no prediction store (expected a cache folder with predictions/ inside)",
                    where=str(path))


def _merge_entry(src: Path, dst: Path, outcome: MergeOutcome) -> None:
    if (dst / "probs.npz").is_file():  # finished here already: nothing to add
        outcome.already += 1
        return
    copied = False
    for f in sorted(src.glob("*.npz")):
        try:
            piece = _read_piece(f)
        except DamagedPiece as exc:
            outcome.unreadable.append(f"{f}: {exc}")
            continue
        if piece is None:  # gone since the listing
            continue
        rows, probs, fp = piece
        digest = hashlib.sha256(f.read_bytes()).hexdigest()[:16]
        name = f"rows_{int(rows[0]) if len(rows) else 0:09d}_{len(rows):06d}_m{digest}.npz"
        if (dst / name).exists():
            outcome.already += 1
            continue
        dst.mkdir(parents=True, exist_ok=True)
        save_piece(dst / name, rows, probs, fp)
        outcome.pieces += 1
        outcome.rows += len(rows)
        copied = True
    outcome.entries += int(copied)


def _read_piece(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """A stored piece (benchmark.execution.store.read_piece: checksum verified) that is also plausible: from
    another machine, it is checked before it is trusted. None when the file is gone."""
    piece = read_piece(path)
    if piece is None:
        return None
    rows, probs, fp = piece
    if not np.isfinite(probs).all() or (len(rows) and rows.min() < 0):
        raise DamagedPiece("non-finite predictions or negative rows")
    return rows, probs, fp
