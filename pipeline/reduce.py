"""Reduction: per-shard partial sums (map side) and the verdict (reduce side).

Pure numpy, no Dask. The whole numeric gradient is never needed in one place:
norms come from per-tensor sums of squares, the worst elements from each
shard's own worst few.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .fd import normalized_difference
from .layout import Layout
from .plan import Shard
from .report import TensorReport, WorstElement

__all__ = ["Element", "ShardResult", "TensorSums", "Verdict", "combine", "failing_tensors", "summarize_shard"]


@dataclass(frozen=True, slots=True)
class TensorSums:
    """Sums over the part of one tensor that one shard covers."""

    name: str
    sum_sq_diff: float
    sum_sq_analytic: float
    sum_sq_numeric: float
    max_abs_error: float
    n_nonfinite: int


@dataclass(frozen=True, slots=True)
class Element:
    """One element by global index."""

    index: int
    analytic: float
    numeric: float
    abs_error: float


@dataclass(frozen=True, slots=True)
class ShardResult:
    """What a shard task returns: small, whatever the shard's size."""

    shard: Shard
    sums: tuple[TensorSums, ...]
    worst: tuple[Element, ...]
    seconds: float
    loaded: bool


@dataclass(frozen=True, slots=True)
class Verdict:
    """The combined metrics of all shards."""

    difference: float
    passed: bool
    n_checked: int
    tensors: tuple[TensorReport, ...]
    worst: tuple[WorstElement, ...]


def _error_key(abs_error: float) -> float:
    # A NaN error (a non-finite loss) is as bad as it gets.
    return math.inf if math.isnan(abs_error) else abs_error


def summarize_shard(
    layout: Layout, shard: Shard, analytic: np.ndarray, numeric: np.ndarray, *, worst: int, seconds: float, loaded: bool
) -> ShardResult:
    """Partial sums per tensor and the ``worst`` largest errors of one shard."""
    error = np.abs(analytic - numeric)
    sums = []
    for spec, lo, hi in layout.segments(shard.start, shard.stop):
        at = slice(spec.offset + lo - shard.start, spec.offset + hi - shard.start)
        # Sums over finite elements only, so one non-finite loss does not blind the
        # metrics of every other tensor; the non-finite ones are counted instead.
        finite = np.isfinite(error[at])
        a, n, e = analytic[at][finite], numeric[at][finite], error[at][finite]
        n_nonfinite = int(finite.size - np.count_nonzero(finite))
        max_abs_error = math.nan if n_nonfinite else float(e.max(initial=0.0))
        sums.append(TensorSums(spec.name, float(e @ e), float(a @ a), float(n @ n), max_abs_error, n_nonfinite))
    ranked = np.where(np.isnan(error), np.inf, error)
    top = np.argsort(-ranked, kind="stable")[:worst]
    elements = tuple(Element(shard.start + int(k), float(analytic[k]), float(numeric[k]), float(error[k])) for k in top)
    return ShardResult(shard, tuple(sums), elements, seconds, loaded)


def failing_tensors(contributions: dict[str, float], difference: float, threshold: float) -> set[str]:
    """The largest contributors, taken in turn until what remains is within ``threshold``.

    The squares of the contributions add up to ``difference**2``, so this is
    the smallest set of tensors whose errors, once fixed, let the check pass.
    It is empty exactly when the check passes.
    """
    if difference <= threshold:
        return set()
    failing: set[str] = set()
    remaining = dict(contributions)
    for name in sorted(contributions, key=lambda n: _error_key(contributions[n]), reverse=True):
        if math.sqrt(sum(c * c for c in remaining.values())) <= threshold:
            break
        failing.add(name)
        del remaining[name]
    return failing


def combine(layout: Layout, results: Iterable[ShardResult], *, threshold: float, worst: int) -> Verdict:
    """Reduce shard results to the seed's difference, per-tensor metrics and worst elements."""
    totals = {name: [0.0, 0.0, 0.0, 0.0] for name in layout.names}
    nonfinite = dict.fromkeys(layout.names, 0)
    heap: list[tuple[float, int, Element]] = []
    n_checked = 0
    for result in results:
        n_checked += result.shard.size
        for s in result.sums:
            t = totals[s.name]
            t[0] += s.sum_sq_diff
            t[1] += s.sum_sq_analytic
            t[2] += s.sum_sq_numeric
            t[3] = max(t[3], s.max_abs_error, key=_error_key)
            nonfinite[s.name] += s.n_nonfinite
        for element in result.worst:
            item = (_error_key(element.abs_error), -element.index, element)
            if len(heap) < worst:
                heapq.heappush(heap, item)
            elif item[:2] > heap[0][:2]:
                heapq.heapreplace(heap, item)
    diff_norm = math.sqrt(sum(t[0] for t in totals.values()))
    scale = math.sqrt(sum(t[1] for t in totals.values())) + math.sqrt(sum(t[2] for t in totals.values()))
    # A non-finite element makes the seed's difference undefined (NaN: the check
    # fails) and its tensor wrong outright; the other tensors are judged as usual.
    difference = math.nan if any(nonfinite.values()) else normalized_difference(diff_norm, scale)
    passed = difference <= threshold
    contributions = {
        name: math.inf if nonfinite[name] else normalized_difference(math.sqrt(t[0]), scale)
        for name, t in totals.items()
    }
    failing = failing_tensors(contributions, difference, threshold)
    tensors = tuple(
        TensorReport(
            spec.name,
            spec.shape,
            math.nan
            if nonfinite[spec.name]
            else normalized_difference(
                math.sqrt(totals[spec.name][0]), math.sqrt(totals[spec.name][1]) + math.sqrt(totals[spec.name][2])
            ),
            contributions[spec.name],
            totals[spec.name][3],
            spec.name not in failing,
        )
        for spec in layout.tensors
    )
    ranked = sorted(heap, key=lambda item: item[:2], reverse=True)
    elements = tuple(WorstElement(*layout.locate(e.index), e.analytic, e.numeric, e.abs_error) for _, _, e in ranked)
    return Verdict(difference, passed, n_checked, tensors, elements)
