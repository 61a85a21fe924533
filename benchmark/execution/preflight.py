"""Checks made before any forward pass, so that a run cannot compute for an hour and then fail to
write: the run folder's parent and the cache must be folders this process can write in."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from benchmark.core.errors import CxrbenchError


def ensure_writable(folder: Path, *, option: str) -> None:
    """Create `folder` if needed and prove it writable with a temporary file; one line otherwise."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".cxrbench-write-check-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise CxrbenchError(f"cannot write here ({type(exc).__name__}: {exc.strerror or exc}); choose a "
                            f"writable folder with {option}", where=str(folder)) from exc
