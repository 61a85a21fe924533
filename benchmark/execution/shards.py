"""Shards: deterministic slices of a dataset's rows, computed apart and combined in the prediction store.

Shard I of N (1-based, as `--shard I/N`) is a contiguous run of whole batches: the dataset's rows are
cut into batches of `batch_size` in manifest order, and the batches are dealt out in N nearly equal
contiguous blocks. Because a shard's batches are exactly the batches an unsharded run would form,
the model sees the same inputs in the same groups and the combined predictions equal an unsharded
run's bit for bit (on the same hardware). Every shard must therefore use the same --batch-size.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmark.core.errors import CxrbenchError


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """`I/N` with 1 <= I <= N."""
    index, slash, count = str(text).partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        i = n = 0
    if not slash or n < 1 or not 1 <= i <= n:
        raise CxrbenchError(f"expected I/N with 1 <= I <= N (such as 2/4), got {text!r}", where="--shard")
    return Shard(i, n)


def shard_rows(n_rows: int, shard: Shard, batch_size: int) -> np.ndarray:
    """The rows of `shard`: whole batches of `batch_size`, in one contiguous block."""
    n_batches = -(-n_rows // batch_size)
    first = (shard.index - 1) * n_batches // shard.count
    last = shard.index * n_batches // shard.count
    return np.arange(first * batch_size, min(last * batch_size, n_rows), dtype=np.int64)


def all_shards(count: int) -> list[Shard]:
    return [Shard(i, count) for i in range(1, count + 1)]
