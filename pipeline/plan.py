"""Sharding the flat index space into contiguous, chunk-aligned tasks.

Shard ``k`` covers ``[k * shard_size, min((k + 1) * shard_size, n))``, which is
exactly chunk ``k`` of the output arrays: shards write disjoint chunks, so they
need no locks, and rerunning a shard rewrites the same chunk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Shard", "auto_shard_size", "make_plan"]

#: Automatic sharding aims at this many shards, for load balance and progress...
TARGET_SHARDS = 16
#: ...but never more indices than this in one task, so a lost task costs little.
MAX_AUTO_SHARD_SIZE = 1024


@dataclass(frozen=True, slots=True)
class Shard:
    """A contiguous range ``[start, stop)`` of global indices; ``index`` is its chunk number."""

    index: int
    start: int
    stop: int

    @property
    def size(self) -> int:
        """Number of indices."""
        return self.stop - self.start


def auto_shard_size(n_params: int) -> int:
    """Indices per shard when the config does not say: about ``TARGET_SHARDS`` shards."""
    return max(1, min(MAX_AUTO_SHARD_SIZE, math.ceil(n_params / TARGET_SHARDS)))


def make_plan(n_params: int, shard_size: int) -> tuple[Shard, ...]:
    """Split ``[0, n_params)`` into shards of ``shard_size`` (the last may be shorter)."""
    if shard_size < 1:
        raise ValueError(f"`shard_size` must be at least 1. Got {shard_size} instead.")
    return tuple(
        Shard(k, start, min(start + shard_size, n_params)) for k, start in enumerate(range(0, n_params, shard_size))
    )
