"""Sharding the flat index space into contiguous, chunk-aligned tasks.

Shard ``k`` covers ``[k * shard_size, min((k + 1) * shard_size, n))``, which is
exactly chunk ``k`` of the output arrays: shards write disjoint chunks, so they
need no locks, and rerunning a shard rewrites the same chunk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .layout import Layout

__all__ = ["Shard", "auto_shard_size", "checked_positions", "make_plan", "plan_shards", "sampled_positions"]

#: Automatic sharding aims at tasks of about this long: long enough that Dask's
#: per-task overhead (about a millisecond) is lost in them, short enough that a lost
#: task costs little and the progress bar moves.
TARGET_TASK_SECONDS = 1.0
#: ...and at this many shards per worker at least, so that workers finish together...
MIN_SHARDS_PER_WORKER = 4
#: ...unless tasks would be shorter than this: balancing them is not worth a task each.
MIN_TASK_SECONDS = 0.1
#: At most this many shards (tasks, and chunks per output array): a full check of a large,
#: slow model gets longer tasks instead of hundreds of thousands of tasks and chunk files.
MAX_SHARDS = 10_000
#: The most indices a shard of a sampled run spans (its chunk of each output array).
MAX_SAMPLED_SHARD = 2**16


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


def auto_shard_size(n_params: int, loss_seconds: float, workers: int) -> int:
    """Indices per shard when the config does not say, from the measured time of one loss evaluation.

    A shard of ``k`` indices costs ``2 k`` evaluations: ``k`` is chosen for tasks of about
    ``TARGET_TASK_SECONDS``, but no larger than gives ``MIN_SHARDS_PER_WORKER`` shards per
    worker, unless that would make tasks shorter than ``MIN_TASK_SECONDS``; and never so
    small that there would be more than ``MAX_SHARDS`` shards.
    """
    per_index = 2 * max(loss_seconds, 1e-9)
    by_time = int(TARGET_TASK_SECONDS / per_index)
    by_balance = max(math.ceil(n_params / (MIN_SHARDS_PER_WORKER * max(1, workers))), int(MIN_TASK_SECONDS / per_index))
    by_count = math.ceil(n_params / MAX_SHARDS)
    return max(1, min(max(min(by_time, by_balance), by_count), n_params))


def make_plan(n_params: int, shard_size: int) -> tuple[Shard, ...]:
    """Split ``[0, n_params)`` into shards of ``shard_size`` (the last may be shorter)."""
    if shard_size < 1:
        raise ValueError(f"`shard_size` must be at least 1. Got {shard_size} instead.")
    return tuple(
        Shard(k, start, min(start + shard_size, n_params)) for k, start in enumerate(range(0, n_params, shard_size))
    )


def sampled_positions(size: int, k: int, seed: int, tensor_number: int) -> np.ndarray:
    """``k`` distinct elements of a tensor of ``size``, sorted (all of them when ``k >= size``).

    Seeded by ``(seed, tensor_number)``: the same choice on every worker and every run.
    """
    if k >= size:
        return np.arange(size)
    rng = np.random.default_rng([seed, tensor_number])
    return np.sort(rng.choice(size, size=k, replace=False))


def checked_positions(layout: Layout, sample: tuple[int, int] | None) -> dict[str, np.ndarray]:
    """Per tensor, the elements a sampled run checks (sorted); empty when it checks all."""
    if sample is None:
        return {}
    k, seed = sample
    return {spec.name: sampled_positions(spec.size, k, seed, number) for number, spec in enumerate(layout.tensors)}


def plan_shards(
    layout: Layout,
    checked: dict[str, np.ndarray],
    *,
    wanted: int | None,
    seconds_per_index: float,
    workers: int,
    fixed: int | None = None,
) -> tuple[int, tuple[Shard, ...]]:
    """The shard size and the shards to run: all of them, or for a sampled run those that hold a checked element.

    ``fixed`` (a resumed output's size) is kept as it is. Otherwise the size is ``wanted`` (the
    config's) or :func:`auto_shard_size` for the indices checked, given how long one index takes;
    a sampled run then gets as many tasks as its checked elements would, each spanning its share
    of the whole index space, but at most :data:`MAX_SAMPLED_SHARD` indices (a chunk of each
    output array).
    """
    n = layout.n_params
    n_checked = sum(positions.size for positions in checked.values()) if checked else n
    size = fixed
    if size is None:
        size = wanted or auto_shard_size(n_checked, seconds_per_index / 2, workers)
        if checked:
            size = min(math.ceil(n / max(1, math.ceil(n_checked / size))), MAX_SAMPLED_SHARD)
    plan = make_plan(n, size)
    if checked:
        plan = tuple(shard for shard in plan if _holds_sample(layout, checked, shard))
    return size, plan


def _holds_sample(layout: Layout, checked: dict[str, np.ndarray], shard: Shard) -> bool:
    """Whether a shard's range holds any checked element."""
    return any(
        np.any((checked[spec.name] >= lo) & (checked[spec.name] < hi))
        for spec, lo, hi in layout.segments(shard.start, shard.stop)
    )
