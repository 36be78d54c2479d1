"""Sharding a run's checked elements into contiguous, chunk-aligned tasks.

A run keeps its results in *slots* (:class:`Slots`): at the global indices when it
checks every element, else one after the other, only the elements it checks. Shard
``k`` covers slots ``[k * shard_size, min((k + 1) * shard_size, n))``, which is
exactly chunk ``k`` of the output arrays: shards write disjoint chunks, so they
need no locks, and rerunning a shard rewrites the same chunk.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .layout import Layout, TensorSpec

__all__ = ["Shard", "Slots", "auto_shard_size", "make_plan", "plan_shards", "sampled_positions", "slots_for"]

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
    if size <= LARGE_TENSOR or k <= size // 50:  # NumPy's own draw: a set of k, or a permutation of a small range
        return np.sort(rng.choice(size, size=k, replace=False))
    # Beyond a fiftieth of a large tensor, NumPy permutes the whole range (800 MB for 10^8 elements): instead,
    # draw with replacement until k distinct elements are in hand, then keep k of them at random. Every draw is
    # uniform and exchangeable, so every set of k is as likely as any other.
    chosen = np.empty(0, dtype=np.int64)
    while chosen.size < k:
        drawn = np.sort(np.concatenate([chosen, rng.integers(0, size, size=k - chosen.size + k // 8 + 64)]))
        chosen = drawn[np.concatenate([[True], drawn[1:] != drawn[:-1]])]  # distinct (np.unique is 10x slower)
    return np.sort(chosen[rng.choice(chosen.size, size=k, replace=False)])


#: Tensors beyond this many elements have large samples drawn in memory proportional to the sample.
LARGE_TENSOR = 2**20


@dataclass(frozen=True, slots=True)
class Slots:
    """Where a run keeps each checked element's results: the output's index space.

    A run that checks every element keeps them at their global indices (``layout`` is the
    parameters' own and ``checked`` is None). A sampled run, or one of random directions only,
    keeps only what it evaluates (``sample``): ``layout`` then lays out each tensor's checked elements
    (``checked[name]``, its sorted positions in the tensor) one after the other, so its output
    is proportional to the work, not to the model.
    """

    layout: Layout
    checked: Mapping[str, np.ndarray] | None
    sample: tuple[int, int] | None = None  # what made them: ``(k, seed)``, or None for all

    @property
    def size(self) -> int:
        """How many elements the run checks (the output arrays' length)."""
        return self.layout.n_params

    def segments(self, params: Layout, start: int, stop: int) -> list[tuple[TensorSpec, np.ndarray]]:
        """The checked elements held in slots ``[start, stop)``: ``(tensor, positions in it)`` in slot order."""
        if self.checked is None:
            return [(spec, np.arange(lo, hi)) for spec, lo, hi in params.segments(start, stop)]
        return [
            (params.tensors[number], self.checked[spec.name][lo:hi])
            for number, spec in enumerate(self.layout.tensors)
            for lo, hi in [(max(start, spec.offset) - spec.offset, min(stop, spec.stop) - spec.offset)]
            if lo < hi
        ]

    def indices(self, params: Layout, start: int, stop: int) -> np.ndarray:
        """The global index of each slot in ``[start, stop)``."""
        if self.checked is None:
            return np.arange(start, stop)
        parts = [spec.offset + positions for spec, positions in self.segments(params, start, stop)]
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)

    def of_tensor(self, number: int) -> tuple[TensorSpec, np.ndarray | None]:
        """Tensor ``number``'s slots (its spec in the slot layout, which keeps the parameters' order) and its
        checked positions (None: all, in order)."""
        spec = self.layout.tensors[number]
        return spec, None if self.checked is None else self.checked[spec.name]


@functools.lru_cache(maxsize=8)
def slots_for(layout: Layout, sample: tuple[int, int] | None) -> Slots:
    """The slots of a run over ``layout`` that checks every element (``sample`` None) or ``k`` random
    elements per tensor (``sample = (k, seed)``; ``k = 0`` for random directions only). Cached: every
    shard of a run asks."""
    if sample is None:
        return Slots(layout, None)
    k, seed = sample
    checked = {spec.name: sampled_positions(spec.size, k, seed, number) for number, spec in enumerate(layout.tensors)}
    for positions in checked.values():
        positions.setflags(write=False)
    compact = Layout.from_shapes(
        layout.names,
        {name: (positions.size,) for name, positions in checked.items()},
        {t.name: t.dtype for t in layout.tensors},
    )
    return Slots(compact, checked, sample)


def plan_shards(
    slots: Slots,
    *,
    wanted: int | None,
    seconds_per_index: float,
    workers: int,
    fixed: int | None = None,
) -> tuple[int, tuple[Shard, ...]]:
    """The shard size and the shards: contiguous ranges of the run's slots (see :class:`Slots`).

    ``fixed`` (a resumed output's size) is kept as it is. Otherwise the size is ``wanted`` (the
    config's) or :func:`auto_shard_size` for the elements checked, given how long one index takes.
    """
    size = fixed or wanted or auto_shard_size(slots.size, seconds_per_index / 2, workers)
    return size, make_plan(slots.size, size)
