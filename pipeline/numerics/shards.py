"""Shards: the analytic gradient written once, then centred differences over each shard of indices.

A shard evaluates each of its entries' stencil (:mod:`.groups`: in place, one loss per point, or a
batch of perturbed copies where the model offers one) and estimates each derivative with its error
bar, judges it and gives every suspect a second look (:mod:`.judging`), writes its
own chunks of the output and returns partial sums for the reducer. Its seal records what it
wrote, so a resume computes again only the shards that are missing or damaged. Results are
written to an *output* (:class:`~.problem.Output`): arrays over the index space that take
numpy slicing, such as Zarr arrays or plain numpy arrays.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable, Sequence

import numpy as np

from .directions import direction_dots
from .groups import by_dtype, first_pass
from .judging import Sides, judge_group, kink_codes, rechecked_in_float64
from .plan import Shard, slots_for
from .problem import Loaded, Output, Settings
from .reduce import ShardResult, summarize_shard
from .tolerance import UNCHECKED

__all__ = [
    "resume_shard",
    "run_shard",
    "shard_intact",
    "shard_seal",
    "stored_shard",
    "write_analytic",
]


def write_analytic(
    loaded: Loaded, output: Output, done: Sequence[Shard] = (), directions: Sequence[tuple[str, int]] = ()
) -> tuple[bool, tuple[float, ...]]:
    """Write the analytic gradient to ``output.analytic`` (at the run's slots), once per run, and compute
    ``g·u`` along each random direction while it is here (:func:`.directions.direction_dots`).

    When resuming (``done``: the shards an earlier run finished), first compare it over the finished
    shards, and return False where it differs in a shard that verifies: a changed model must not be
    mixed with the shards of the old one. Then write it whole: the same values where it agreed, and
    again where a damaged shard will be computed again. Only the analytic array is read, and a
    shard's other arrays only where it differs (to tell a changed model from a damaged chunk).
    Returns whether it agreed, and the directions' ``g·u``.
    """
    settings, analytic, target = loaded.settings, loaded.analytic_gradient(), output.analytic
    slots = loaded.slots
    for shard in done:
        given = np.concatenate(
            [
                analytic[spec.name].reshape(-1)[positions].astype(np.float64)
                for spec, positions in slots.segments(settings.layout, shard.start, shard.stop)
            ]
        )
        try:
            agrees = np.array_equal(np.asarray(target[shard.start : shard.stop]), given, equal_nan=True)
        except OSError:
            raise
        except Exception:  # a chunk that cannot be decoded: damaged, written again below
            agrees = False
        if not agrees and shard_intact(settings.identity, shard, output):
            return False, ()
    for number, spec in enumerate(settings.layout.tensors):  # tensor by tensor: no flat copy of the gradient
        at, positions = slots.of_tensor(number)
        flat = analytic[spec.name].reshape(-1)
        target[at.offset : at.stop] = flat if positions is None else flat[positions].astype(np.float64)
    dots = direction_dots(loaded, analytic, directions)
    loaded.analytic = None  # written: free it
    return True, dots


def run_shard(loaded: Loaded, shard: Shard, output: Output, *, fresh: bool = False) -> ShardResult:
    """Derivative estimates over one shard, judged (suspects after a second look); writes its chunks to
    ``output``, then marks the shard done.

    ``fresh`` says, for the timings, whether the caller had to load the problem for this shard.
    """
    start = time.perf_counter()
    settings = loaded.settings
    analytic = np.asarray(output.analytic[shard.start : shard.stop])
    numeric = np.full(shard.size, np.nan)
    allowed = np.full(shard.size, np.nan)
    status = np.full(shard.size, UNCHECKED, dtype=np.int8)
    nonfinite = np.zeros(shard.size, dtype=np.int8)
    steps = np.full(shard.size, np.nan)
    sides = Sides.none(shard.size)  # what the second look found of the one-sided slopes (:func:`kink_codes`)
    slots = loaded.slots
    groups = by_dtype(slots.segments(settings.layout, shard.start, shard.stop))
    evaluating = time.perf_counter()
    estimates = first_pass(loaded, groups)
    evaluated = time.perf_counter()
    looked, looked_evaluations, slot = 0, 0, 0
    for group, first in zip(groups, estimates, strict=True):
        # every slot of a shard holds a checked element, group after group
        at, est, slot = np.arange(slot, slot + group.columns.size), first.est, slot + group.columns.size
        numeric[at], nonfinite[at], steps[at] = est.numeric, est.nonfinite, first.h
        if not settings.judged:
            status[at] = 0
            continue
        a = analytic[at]
        (numeric[at], allowed[at], status[at], steps[at], found), (n, cost) = judge_group(loaded, group, first, a)
        for mine, value in zip(sides, found, strict=True):
            mine[at] = value
        looked, looked_evaluations = looked + n, looked_evaluations + cost
        if settings.second_look and settings.against_float64(group.dtype):
            (numeric[at], allowed[at], status[at], sides.interacting[at]), (n, cost) = rechecked_in_float64(
                loaded, group, first, a, (numeric[at], allowed[at], status[at]), (sides.kink[at], sides.interacting[at])
            )
            looked, looked_evaluations = looked + n, looked_evaluations + cost
    if settings.judged:
        # a loss not finite at the first steps that the second look judged on finer ones (:func:`_look_again`), or
        # the float64 model did (:func:`_float32_only`)
        nonfinite = np.where(np.isfinite(numeric), 0, nonfinite).astype(np.int8)
    # what the second look found of the kinks' slopes, float64's verdicts included: they are moved together once every
    # shard is done (:mod:`.together`)
    kink = kink_codes(status, sides)
    second_look_seconds = time.perf_counter() - evaluated
    output.numeric[shard.start : shard.stop] = numeric
    output.nonfinite[shard.start : shard.stop] = nonfinite
    output.allowed[shard.start : shard.stop] = allowed
    output.status[shard.start : shard.stop] = status
    output.step[shard.start : shard.stop] = steps
    output.kink[shard.start : shard.stop] = kink
    # Last: a shard marked done has all its chunks written. A crash before this
    # line leaves the shard to be computed again, with the same values.
    output.done[shard.index] = shard_seal(
        settings.identity, shard, (analytic, numeric, nonfinite, allowed, status, steps, kink)
    )
    result = summarize_shard(
        slots.layout,
        shard,
        analytic,
        numeric,
        nonfinite,
        allowed,
        status,
        steps,
        worst=settings.worst,
        seconds=time.perf_counter() - start,
        loaded=fresh,
        evaluate_seconds=evaluated - evaluating + second_look_seconds,
        indices=None
        if slots.checked is None
        else np.concatenate([g.columns for g in groups] or [np.empty(0, np.int64)]),
    )
    return dataclasses.replace(result, second_look=(looked, looked_evaluations))


def shard_seal(identity: str, shard: Shard, per_index: Sequence[np.ndarray]) -> int:
    """A shard's completion record: a digest of the run's identity, the shard, and every per-index value it
    wrote (in :data:`~pipeline.storage.output.PER_INDEX` order), as a positive int64 (0 means "not done").

    A record is trusted only when the chunks read back give the same seal: a chunk cut short, flipped,
    missing (read back as fill values) or written by another run does not.
    """
    digest = hashlib.blake2b(f"{identity}\0{shard.index}\0{shard.start}\0{shard.stop}".encode(), digest_size=8)
    # ``kink`` (the seventh, since format 5) counts only where the shard has a kink: a shard of an older format, which
    # recorded none, keeps its seal
    for values in [*per_index[:6], *(kink for kink in per_index[6:] if np.any(kink))]:
        if values.dtype.kind == "f":  # every NaN as one: a chunk of fill values reads back the canonical NaN
            values = np.where(np.isnan(values), np.nan, values)
        digest.update(np.ascontiguousarray(values).tobytes())
    return (int.from_bytes(digest.digest(), "little") >> 1) | 1


def stored_shard(shard: Shard, output: Output) -> list[np.ndarray] | None:
    """A shard's per-index values as stored; None when a chunk cannot be decoded (cut short, garbled).

    An ``OSError`` (a store that cannot be reached) is not damage: it is raised.
    """
    window = slice(shard.start, shard.stop)
    try:
        return [np.asarray(array[window]) for array in output.per_index]
    except OSError:
        raise
    except Exception:  # the codecs' own errors (zstd's RuntimeError, ValueError...): as untrustworthy as a wrong seal
        return None


def _sealed(identity: str, shard: Shard, output: Output, stored: Sequence[np.ndarray]) -> bool:
    return int(np.asarray(output.done[shard.index])) == shard_seal(identity, shard, stored)


def shard_intact(identity: str, shard: Shard, output: Output) -> bool:
    """Whether a shard's chunks, read back, give the seal its completion record holds."""
    stored = stored_shard(shard, output)
    return stored is not None and _sealed(identity, shard, output, stored)


def resume_shard(
    settings: Settings, shard: Shard, output: Output, load: Callable[[], tuple[Loaded, bool]]
) -> ShardResult:
    """A shard an earlier run completed: read back when its chunks verify against its completion record,
    computed again (``load`` gives the problem and whether it had to be loaded) when they do not."""
    start = time.perf_counter()
    stored = stored_shard(shard, output)
    if stored is not None and _sealed(settings.identity, shard, output, stored):
        slots = slots_for(settings.layout, settings.sample)
        return summarize_shard(
            slots.layout,
            shard,
            *stored[:6],
            worst=settings.worst,
            seconds=time.perf_counter() - start,
            loaded=False,
            indices=None if slots.checked is None else slots.indices(settings.layout, shard.start, shard.stop),
        )
    loaded, fresh = load()
    return dataclasses.replace(run_shard(loaded, shard, output, fresh=fresh), recomputed=True)
