"""Atomic file writes: the one way cxrbench replaces a file.

A reader (another process, a later run, a crash-interrupted one) sees the old file or the new one,
never half of either: the bytes go to a temporary file beside the target, which is then renamed
onto it (`os.replace` is atomic within one file system, hence "beside", not in /tmp).
"""
from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_COUNTER = itertools.count()  # two writers of one target in one process (threads) get two names


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` for a writer that wants a file name (parquet, np.savez, a
    library's save); it replaces `path` when the block ends without error and is removed otherwise."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{next(_COUNTER)}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # only left when the block raised


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """UTF-8 text, whatever the locale says."""
    atomic_write_bytes(path, text.encode("utf-8"))


__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text"]
