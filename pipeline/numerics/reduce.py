"""Reduction: per-shard partial sums (map side) and the verdict (reduce side).

Pure numpy, no Dask. The whole numeric gradient is never needed in one place:
norms come from per-tensor sums of squares, the worst elements from each
shard's own worst few. The sums are exact (integers in units of the smallest
float's ulp), so the verdict does not depend on where the shards were cut: a run
split into 7-index shards, one in a single shard, in this process or on a
cluster, gives the same report, bit for bit.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np

from .diagnose import digits_apart
from .fd import MINUS, PLUS, normalized_difference
from .layout import Layout
from .plan import Shard
from .tolerance import (
    AGREE,
    FLOAT32_ONLY,
    INCONCLUSIVE,
    NONDIFFERENTIABLE,
    TOGETHER,
    UNCHECKED,
    UNSETTLED,
    VERIFY_LIMIT,
    WRONG,
    reference,
    unproven,
)
from .verdict import NonFinite, NonFiniteLoss, TensorReport, WorstElement

__all__ = [
    "DirectionResult",
    "Element",
    "ShardResult",
    "TensorSums",
    "Verdict",
    "combine",
    "direction_difference",
    "exact_squares",
    "exact_sum",
    "failing_tensors",
    "summarize_shard",
    "with_directions",
]


#: An exact sum is an integer count of 2**-ULP_SHIFT: every float64 is a whole multiple of it.
ULP_SHIFT = 1074 + 53


def exact_sum(values: np.ndarray) -> int:
    """The exact sum of finite float64 ``values``, as an integer count of ``2**-ULP_SHIFT``.

    Exact sums add in any order and any grouping to the same integer (float sums do not).
    Each value is ``m·2**k`` with an integer ``|m| < 2**53``; the ``m`` are summed per
    exponent in two 26-bit halves, which cannot overflow int64 below 2**36 values.
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    values = values[values != 0]
    if not values.size:
        return 0
    if values.size <= _FEW:  # numpy's set-up costs more than Python's loop
        return sum(int(m * 2.0**53) << (e + ULP_SHIFT - 53) for m, e in map(math.frexp, values.tolist()))
    fraction, exponent = np.frexp(values)
    mantissa = (fraction * 2.0**53).astype(np.int64)  # exact: |fraction| < 1 has 53 significant bits
    shift = exponent + (ULP_SHIFT - 53)  # in 0 .. _BINS for every finite float64
    high, low = np.zeros(_BINS, dtype=np.int64), np.zeros(_BINS, dtype=np.int64)
    np.add.at(high, shift, mantissa >> 26)
    np.add.at(low, shift, mantissa & (2**26 - 1))
    return sum(((int(high[k]) << 26) + int(low[k])) << int(k) for k in np.flatnonzero(high | low))


#: Up to this many values, :func:`exact_sum` adds them in a Python loop.
_FEW = 64
#: Values from this magnitude on :func:`exact_squares` squares as integers (their float64 squares overflow).
_BIG = 2.0**511
#: Exact sums from this on are beyond a float64's range.
_FLOAT_RANGE = 1 << (1024 + ULP_SHIFT)
#: Bins of :func:`exact_sum`, one per binary exponent a float64 can have.
_BINS = 1024 + ULP_SHIFT - 53 + 1


def exact_squares(values: np.ndarray) -> int:
    """The exact sum (:func:`exact_sum`) of the squares of finite float64 ``values``, those whose square a float64
    cannot hold (above 2**511: a backward recursion blown up to 1e200, review 104) squared as integers."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    big = np.abs(values) >= _BIG
    return exact_sum(values[~big] * values[~big]) + sum(int(v) ** 2 << ULP_SHIFT for v in values[big].tolist())


def _root(total: int, count: int = 1) -> float:
    """The square root of an exact sum (:func:`exact_squares`) over ``count``, as a float (inf beyond its range)."""
    if total < _FLOAT_RANGE * count:
        return math.sqrt(float(Fraction(total, count << ULP_SHIFT)))
    root = math.isqrt((total // count) >> ULP_SHIFT)  # (a whole number above 2**1024: its fraction is lost in rounding)
    return float(root) if root < _FLOAT_RANGE >> ULP_SHIFT else math.inf


@dataclass(frozen=True, slots=True)
class TensorSums:
    """Sums over the part of one tensor that one shard covers (the sums of squares exact: see :func:`exact_sum`)."""

    name: str
    sum_sq_diff: int
    sum_sq_analytic: int
    sum_sq_numeric: int
    max_abs_error: float
    n_nonfinite: int
    n_checked: int = 0
    n_wrong: int = 0
    n_nondifferentiable: int = 0
    step_min: float = math.inf
    step_max: float = 0.0
    worst: Element | None = None  # the tensor's worst element in this part
    n_inconclusive: int = 0
    power: float = 0.0  # the largest allowance of an agreeing element, relative to its reference magnitude
    n_unproven: int = 0  # inconclusive elements that disagree beyond their allowance
    n_zero: int = 0  # inconclusive elements whose analytic and numeric values are both exactly 0...
    zero_allowed: float = 0.0  # ...and the widest allowance among them
    # Checked elements that agree within an allowance narrow enough to be a verification: counted, not
    # derived from the others (a non-finite element is also wrong or inconclusive).
    n_verified: int = 0
    n_float32_only: int = 0  # wrong in float32, right when the model computes in float64
    n_unsettled: int = 0  # not settled at the finest steps (also counted inconclusive)
    n_together: int = 0  # on kinks that, moved together, disagree with the gradient (also counted on a kink)
    # the widest allowance of an inconclusive element (not exactly 0 in both), relative to its reference magnitude
    inconclusive_power: float = 0.0

    def __add__(self, other: TensorSums) -> TensorSums:
        return TensorSums(
            self.name,
            self.sum_sq_diff + other.sum_sq_diff,
            self.sum_sq_analytic + other.sum_sq_analytic,
            self.sum_sq_numeric + other.sum_sq_numeric,
            max(self.max_abs_error, other.max_abs_error, key=_error_key),
            self.n_nonfinite + other.n_nonfinite,
            self.n_checked + other.n_checked,
            self.n_wrong + other.n_wrong,
            self.n_nondifferentiable + other.n_nondifferentiable,
            min(self.step_min, other.step_min),
            max(self.step_max, other.step_max),
            _worse(self.worst, other.worst),
            self.n_inconclusive + other.n_inconclusive,
            max(self.power, other.power),
            self.n_unproven + other.n_unproven,
            self.n_zero + other.n_zero,
            max(self.zero_allowed, other.zero_allowed),
            self.n_verified + other.n_verified,
            self.n_float32_only + other.n_float32_only,
            self.n_unsettled + other.n_unsettled,
            self.n_together + other.n_together,
            max(self.inconclusive_power, other.inconclusive_power),
        )

    def contribution(self, scale: float) -> float:
        """``||g_t − g~_t|| / scale``; infinite when the tensor holds a non-finite element."""
        return math.inf if self.n_nonfinite else normalized_difference(_root(self.sum_sq_diff), scale)

    def difference(self) -> float:
        """The tensor's own normalized difference (NaN when it holds a non-finite element)."""
        if self.n_nonfinite:
            return math.nan
        return normalized_difference(
            _root(self.sum_sq_diff),
            _root(self.sum_sq_analytic) + _root(self.sum_sq_numeric),
        )


@dataclass(frozen=True, slots=True)
class Element:
    """One element by global index."""

    index: int
    analytic: float
    numeric: float
    abs_error: float
    allowed: float = math.nan
    status: int = 0

    @property
    def rank(self) -> float:
        """How bad: errors in units of the allowance when elements are judged, else absolute;
        a non-finite estimate is the worst of all."""
        if math.isnan(self.abs_error):
            return math.inf
        if self.allowed > 0:
            return self.abs_error / self.allowed
        return self.abs_error


@dataclass(frozen=True, slots=True)
class ShardResult:
    """What a shard task returns: small, whatever the shard's size.

    ``nonfinite`` lists ``(global index, side)`` where a loss was not finite
    (side: 1 plus, 2 minus, 3 both); it is empty for a healthy model.
    """

    shard: Shard
    sums: tuple[TensorSums, ...]
    worst: tuple[Element, ...]
    nonfinite: tuple[tuple[int, int], ...]
    seconds: float
    loaded: bool
    evaluate_seconds: float = 0.0  # of ``seconds``, the loss evaluations alone (no I/O, no loading)
    recomputed: bool = False  # an earlier run's shard whose chunks failed verification, computed again
    second_look: tuple[int, int] = (0, 0)  # elements looked at again, and the losses that cost


@dataclass(frozen=True, slots=True)
class DirectionResult:
    """One random-direction check of one tensor: ``g·v`` against the directional difference."""

    tensor: str
    number: int
    analytic: float
    numeric: float
    allowed: float
    status: int
    step: float  # the step t of a unit parameter along the tangent (each element moves by about its own step)
    orders: tuple[float, ...] = ()  # the Taylor test's observed orders of convergence (when it ran)
    evaluations: int = 0
    seconds: float = 0.0  # the whole check, tangent and moves included (not in the report's listing: a timing)
    evaluate_seconds: float = 0.0  # of ``seconds``, in the model's loss...
    move_seconds: float = 0.0  # ...and moving the tensor to the points it was evaluated at
    # why it decided nothing, and its tensor's directions verify nothing: "kink" (a kink at θ on its line, g·u between
    # its one-sided slopes or beyond them: non-differentiable), "crossing" (g·u outside the allowance of its line, on a
    # kink at θ that shows as its slopes' gap changing sign and not halving since, or stopping halving toward a jump at
    # θ: non-differentiable, and not even every element verifies its tensor), "edge" (losses not finite at the first
    # steps, finer ones not deciding: inconclusive), or ""
    undecided: str = ""

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form, as the report lists it."""
        return {
            "tensor": self.tensor,
            "number": self.number,
            "analytic": self.analytic,
            "numeric": self.numeric if math.isfinite(self.numeric) else None,
            "allowed": self.allowed if math.isfinite(self.allowed) else None,
            "status": STATUS[self.status],
            "step": self.step,
            "orders": [o if math.isfinite(o) else None for o in self.orders],
            "evaluations": self.evaluations,
            "undecided": self.undecided or None,
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    """The combined metrics of all shards."""

    difference: float
    passed: bool
    n_checked: int
    tensors: tuple[TensorReport, ...]
    worst: tuple[WorstElement, ...]
    nonfinite: NonFinite
    n_wrong: int = 0
    n_nondifferentiable: int = 0
    n_inconclusive: int = 0


#: How many non-finite losses the report lists (all are counted).
NONFINITE_LISTED = 100
SIDES = {PLUS: "plus", MINUS: "minus", PLUS | MINUS: "both"}
STATUS = {
    AGREE: "agrees",
    WRONG: "wrong",
    NONDIFFERENTIABLE: "non-differentiable",
    UNCHECKED: "unchecked",
    INCONCLUSIVE: "inconclusive",
    FLOAT32_ONLY: "wrong in float32 only",
    UNSETTLED: "unsettled",
    TOGETHER: "kinks disagree together",
}


def _worse(a: Element | None, b: Element | None) -> Element | None:
    """The worse of two elements (a wrong one first, then an unsettled one, then by rank; between equals, the earlier
    index), either may be None: a wrong tensor's worst element is a wrong one (a kink beside it, its allowance
    narrower, ranked higher and was named instead: review 67), and a tensor left not verified by an unsettled element
    names that element (review 133: the report said one was not settled, and no list showed which)."""
    if a is None or b is None:
        return a or b
    return max(a, b, key=lambda e: (e.status == WRONG, e.status == UNSETTLED, e.rank, -e.index))


def _error_key(abs_error: float) -> float:
    # A NaN error (a non-finite loss) is as bad as it gets.
    return math.inf if math.isnan(abs_error) else abs_error


def summarize_shard(
    layout: Layout,
    shard: Shard,
    analytic: np.ndarray,
    numeric: np.ndarray,
    nonfinite: np.ndarray,
    allowed: np.ndarray,
    status: np.ndarray,
    step: np.ndarray,
    *,
    worst: int,
    seconds: float,
    loaded: bool,
    evaluate_seconds: float = 0.0,
    indices: np.ndarray | None = None,
) -> ShardResult:
    """Partial sums and counts per tensor, the ``worst`` elements and the non-finite losses of one shard.

    ``layout`` lays out the output's slots (:class:`~.plan.Slots`), and ``indices`` gives each of the
    shard's slots its global index where they are not the same (a sampled run's slots hold only the
    elements it checks). Only checked elements count (``status`` other than ``UNCHECKED``).
    A tensor's power is its agreeing elements' widest allowance against their own magnitude
    (:func:`~.tolerance.reference`).
    """
    checked = status != UNCHECKED
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        error = np.abs(analytic - numeric)
        ranked = np.where(allowed > 0, error / allowed, error)
    ranked = np.where(np.isnan(error), np.inf, ranked)
    ranked = np.where(checked, ranked, -np.inf)

    def index(k: int) -> int:
        return shard.start + k if indices is None else int(indices[k])

    def element(k: int) -> Element:
        return Element(
            index(k), float(analytic[k]), float(numeric[k]), float(error[k]), float(allowed[k]), int(status[k])
        )

    sums = []
    for spec, lo, hi in layout.segments(shard.start, shard.stop):
        at = slice(spec.offset + lo - shard.start, spec.offset + hi - shard.start)
        # agreeing with a finite error (without per-element verdicts every element's status is AGREE)
        agreeing = (status[at] == AGREE) & np.isfinite(error[at])
        zero = (status[at] == INCONCLUSIVE) & (analytic[at] == 0) & (numeric[at] == 0)
        # an unsettled element is inconclusive too, and counts among the inconclusive ones (not among the unproven:
        # its tensor is not verified, and the report says why)
        undecided = np.isin(status[at], (INCONCLUSIVE, UNSETTLED))
        unsure = (status[at] == INCONCLUSIVE) & ~zero
        with np.errstate(invalid="ignore", divide="ignore"):
            relative = allowed[at][agreeing] / reference(analytic[at][agreeing], numeric[at][agreeing])
            unsure_relative = allowed[at][unsure] / reference(analytic[at][unsure], numeric[at][unsure])
        relative = relative[np.isfinite(relative)]
        unsure_relative = unsure_relative[np.isfinite(unsure_relative)]
        # Sums over finite elements only, so one non-finite loss does not blind the
        # metrics of every other tensor; the non-finite ones are counted instead.
        mine = checked[at]
        finite = np.isfinite(error[at]) & mine
        a, n, e = analytic[at][finite], numeric[at][finite], error[at][finite]
        n_checked = int(np.count_nonzero(mine))
        n_nonfinite = n_checked - int(np.count_nonzero(finite))
        max_abs_error = math.nan if n_nonfinite else float(e.max(initial=0.0))
        h = step[at][mine]
        # a wrong element first, else an unsettled one, which leaves its tensor not verified (:func:`_worse`)
        preferred = next((these for these in (status[at] == WRONG, status[at] == UNSETTLED) if these.any()), None)
        worst_here = (
            at.start + int(np.argmax(ranked[at] if preferred is None else np.where(preferred, ranked[at], -np.inf)))
            if np.any(mine)
            else None
        )
        sums.append(
            TensorSums(
                spec.name,
                exact_squares(e),
                exact_squares(a),
                exact_squares(n),
                max_abs_error,
                n_nonfinite,
                n_checked,
                int(np.count_nonzero(status[at] == WRONG)),
                int(np.count_nonzero(np.isin(status[at], (NONDIFFERENTIABLE, TOGETHER)))),
                float(h.min(initial=math.inf)),
                float(h.max(initial=0.0)),
                None if worst_here is None else element(worst_here),
                int(np.count_nonzero(undecided)),
                float(relative.max(initial=0.0)),
                int(np.count_nonzero(unproven(analytic[at], numeric[at], allowed[at], status[at]))),
                int(np.count_nonzero(zero)),
                float(allowed[at][zero].max(initial=0.0)),
                int(np.count_nonzero(agreeing)),
                int(np.count_nonzero(status[at] == FLOAT32_ONLY)),
                int(np.count_nonzero(status[at] == UNSETTLED)),
                int(np.count_nonzero(status[at] == TOGETHER)),
                float(unsure_relative.max(initial=0.0)),
            )
        )
    top = np.argsort(-ranked, kind="stable")[: min(worst, int(np.count_nonzero(checked)))]
    elements = tuple(element(int(k)) for k in top)
    sides = tuple((index(int(k)), int(nonfinite[k])) for k in np.flatnonzero(nonfinite))
    return ShardResult(shard, tuple(sums), elements, sides, seconds, loaded, evaluate_seconds)


def _withdrawn(tensor: TensorSums | TensorReport) -> bool:
    """Whether the tensor holds elements that leave it not verified whatever its others show: wrong in float32 only
    (the dtype made the difference; a bug in a float32 code path looks the same) or unsettled (outside one-sided
    slopes still moving, where a sign flip passed beside the verified others: review 59; or a table that never
    converged, where a zeroed value passed: review 60), or on kinks that disagree with the gradient moved together
    (a maximum's ties each given the whole gradient: review 67)."""
    return bool(tensor.n_float32_only or tensor.n_unsettled or tensor.n_together)


def failing_tensors(contributions: dict[str, float], difference: float, threshold: float | None) -> set[str]:
    """The largest contributors, taken in turn until what remains is within ``threshold``.

    The squares of the contributions add up to ``difference**2``, so this is
    the smallest set of tensors whose errors, once fixed, let the check pass.
    It is empty exactly when the check passes (or there is no threshold). Between
    equal contributions the later tensor, nearer the output, is named first.
    """
    if threshold is None or difference <= threshold:
        return set()
    ranked = sorted(contributions, key=lambda n: _error_key(contributions[n]))  # smallest first
    # remaining[k]: what is left when all but the k smallest are fixed. Summing from
    # the small end avoids the cancellation of subtracting from the total.
    remaining = [0.0, *itertools.accumulate(contributions[n] ** 2 for n in ranked)]
    keep = max(k for k in range(len(ranked) + 1) if math.sqrt(remaining[k]) <= threshold)
    return set(ranked[keep:])


def _located(layout: Layout, e: Element) -> WorstElement:
    return WorstElement(*layout.locate(e.index), e.analytic, e.numeric, e.abs_error, e.allowed, STATUS[e.status])


def _maybe_located(layout: Layout, e: Element | None) -> WorstElement | None:
    return None if e is None else _located(layout, e)


def sampled_kinks(n_nondifferentiable: int, n_checked: int, size: int, at_theta: bool) -> bool:
    """Whether a tensor's sample holds kinks that leave it not verified: a kink at θ is judged by its own slopes,
    which a wrong value shared with other elements also lies within (a max-pool tie routed to every tied input); only
    the kinks moved together show it, and in a sample they miss the partners not drawn (review 74: that tie bug passed
    7 of 20 seeds at 16 of 64 elements, "fewer than 0.187 wrong"). ``at_theta``: its noise probe found kinks at θ
    itself; not a float32 kink a step away, which float32's steps cannot pass inside (review 75: correct float32 ReLU
    networks and max-pools on random data, sampled, were not verified, 1 or 2 elements of 16 on such kinks)."""
    return bool(n_nondifferentiable) and n_checked < size and at_theta


def combine(
    layout: Layout,
    results: Iterable[ShardResult],
    *,
    threshold: float | None,
    worst: int,
    at_theta: Collection[str] = (),
    jumped: Collection[str] = (),
) -> Verdict:
    """Reduce shard results to the seed's difference, per-tensor metrics and worst elements.

    The check passes when no element is wrong (non-differentiable ones are not)
    and, if there is a ``threshold``, the seed's difference is within it. A tensor
    is wrong when one of its elements is, or when the threshold's rule names it
    (:func:`failing_tensors`).

    The result does not depend on the order the shards arrived in: they are
    folded in shard order, so the same run always gives the same report, bit for bit.
    """
    totals = {name: TensorSums(name, 0, 0, 0, 0.0, 0) for name in layout.names}
    heap: list[tuple[float, int, Element]] = []
    n_checked = 0
    n_nonfinite = 0
    nonfinite: list[tuple[int, int]] = []
    for result in sorted(results, key=lambda r: r.shard.index):
        n_nonfinite += len(result.nonfinite)
        nonfinite.extend(result.nonfinite[: max(0, NONFINITE_LISTED - len(nonfinite))])
        for sums in result.sums:
            totals[sums.name] += sums
        for element in result.worst:
            item = (element.rank, -element.index, element)
            if len(heap) < worst:
                heapq.heappush(heap, item)
            elif item[:2] > heap[0][:2]:
                heapq.heapreplace(heap, item)
    diff_norm = _root(sum(t.sum_sq_diff for t in totals.values()))
    scale = _root(sum(t.sum_sq_analytic for t in totals.values())) + _root(
        sum(t.sum_sq_numeric for t in totals.values())
    )
    # A non-finite element makes the seed's difference undefined (NaN: the check
    # fails) and its tensor wrong outright; the other tensors are judged as usual.
    any_nonfinite = any(t.n_nonfinite for t in totals.values())
    difference = math.nan if any_nonfinite else normalized_difference(diff_norm, scale)
    n_checked = sum(t.n_checked for t in totals.values())
    n_wrong = sum(t.n_wrong for t in totals.values())
    within = threshold is None or difference <= threshold
    passed = within and n_wrong == 0 and not any_nonfinite
    contributions = {name: t.contribution(scale) for name, t in totals.items()}
    failing = failing_tensors(contributions, difference, threshold)
    failing |= {name for name, t in totals.items() if t.n_wrong or t.n_nonfinite}
    # Elements exactly 0 in both are where the loss does not move only if a derivative of VERIFY_LIMIT of the
    # gradient's RMS (over all checked elements) would have moved it: their allowances are narrower than that. Otherwise the steps may
    # simply not have resolved a derivative below the loss's rounding (float32), and they stay plain inconclusive.
    rms = _root(sum(t.sum_sq_analytic for t in totals.values()), max(1, n_checked))
    # (where the whole gradient is 0 in both, no step moved the loss with any element: review 105's option far out of
    # the money on fixed samples, its price and Greeks 0)
    still = {name: t.n_zero if t.zero_allowed <= VERIFY_LIMIT * rms or rms == 0 else 0 for name, t in totals.items()}
    # a tensor checked by directions alone is verified (or not) by them: see with_directions
    verified = {name: (t.n_verified > 0 or t.n_checked == 0) and not _withdrawn(t) for name, t in totals.items()}
    # ``at_theta``: the tensors whose noise probe found kinks at θ itself (every line through θ crossed one)
    for spec in layout.tensors:
        sums = totals[spec.name]
        if sampled_kinks(sums.n_nondifferentiable, sums.n_checked, spec.size, spec.name in at_theta):
            verified[spec.name] = False
        # ``jumped``: the tensors whose noise probe found a jump at θ itself (each half of its lines smooth): an element
        # it did not verify may be the jump's, its estimate no derivative (review 105's tied routing; a dihedral at a
        # bond angle 1e-6 from straight, whose 10% errors passed as inconclusive beside the verified others)
        if spec.name in jumped and sums.n_inconclusive > still[spec.name]:
            verified[spec.name] = False
    tensors = tuple(
        TensorReport(
            spec.name,
            spec.shape,
            totals[spec.name].difference(),
            contributions[spec.name],
            totals[spec.name].max_abs_error,
            spec.name not in failing,
            n_checked=totals[spec.name].n_checked,
            n_wrong=totals[spec.name].n_wrong,
            n_nondifferentiable=totals[spec.name].n_nondifferentiable,
            # no element checked (random directions only): no step, as the report's JSON reads it back
            step_min=totals[spec.name].step_min if totals[spec.name].n_checked else math.nan,
            step_max=totals[spec.name].step_max if totals[spec.name].n_checked else math.nan,
            worst=_maybe_located(layout, totals[spec.name].worst),
            n_inconclusive=totals[spec.name].n_inconclusive,
            n_unproven=totals[spec.name].n_unproven,
            n_zero=still[spec.name],
            n_verified=totals[spec.name].n_verified,
            n_float32_only=totals[spec.name].n_float32_only,
            n_unsettled=totals[spec.name].n_unsettled,
            n_together=totals[spec.name].n_together,
            # a tensor not verified claims no power: its verified elements' bars say nothing of the others
            power=totals[spec.name].power if totals[spec.name].n_verified and verified[spec.name] else math.nan,
            verified=verified[spec.name],
            inconclusive_power=totals[spec.name].inconclusive_power or math.nan,
        )
        for spec in layout.tensors
    )
    ranked = sorted(heap, key=lambda item: item[:2], reverse=True)
    elements = tuple(_located(layout, e) for _, _, e in ranked)
    listed = tuple(NonFiniteLoss(*layout.locate(index), SIDES[side]) for index, side in nonfinite)
    return Verdict(
        difference,
        passed,
        n_checked,
        tensors,
        elements,
        NonFinite(n_nonfinite, listed),
        n_wrong,
        sum(t.n_nondifferentiable for t in totals.values()),
        sum(t.n_inconclusive for t in totals.values()),
    )


def _widest(power: float, agreeing: Sequence[DirectionResult]) -> float:
    """The widest of a tensor's power (NaN where no element agreed) and its agreeing directions' allowances
    against their :func:`~.tolerance.reference` magnitude: the relative error its check could have detected."""
    allowed = np.array([d.allowed for d in agreeing])
    magnitude = reference(np.array([d.analytic for d in agreeing]), np.array([d.numeric for d in agreeing]))
    with np.errstate(invalid="ignore", divide="ignore"):
        relative = allowed / magnitude
    finite = [float(p) for p in (power, *relative) if math.isfinite(p)]
    return max(finite) if finite else math.nan


def direction_difference(directions: Sequence[DirectionResult]) -> float:
    """The seed's normalized difference over directional derivatives (a run that checks no element)."""
    a = np.array([d.analytic for d in directions])
    n = np.array([d.numeric for d in directions])
    return normalized_difference(float(np.linalg.norm(a - n)), float(np.linalg.norm(a) + np.linalg.norm(n)))


def with_directions(
    tensors: tuple[TensorReport, ...], directions: Sequence[DirectionResult]
) -> tuple[TensorReport, ...]:
    """The tensors with their random-direction checks counted in; a disagreeing direction makes its tensor wrong.

    A tensor with a wrong direction gets a sentence on its wrong directions, after what its elements showed:
    a common factor is said to hold "along every random direction" only when every one of them is wrong.
    """
    if not directions:
        return tensors

    def badness(d: DirectionResult) -> float:
        error = abs(d.analytic - d.numeric) / max(d.allowed, 1e-300)
        return math.inf if math.isnan(error) else error

    def sentences(mine: Sequence[DirectionResult], wrong: Sequence[DirectionResult]) -> tuple[str, ...]:
        unfinite = [d for d in wrong if not math.isfinite(d.analytic)]
        if unfinite:  # NaN or inf somewhere in the tensor's gradient: every direction's g·v is not finite
            return (
                f"the analytic gradient is not finite: g·v = {unfinite[0].analytic:.6g} along "
                f"{len(unfinite)} of {len(mine)} random directions",
            )
        # the loss not finite at a direction's steps, and not finer ones that decide (past its domain's edge)
        lost = [d for d in wrong if not math.isfinite(d.numeric)]
        said = (
            (
                f"the numeric gradient is not finite (a non-finite loss) along {len(lost)} of {len(mine)} random directions",
            )
            if lost
            else ()
        )
        measured = [d for d in wrong if math.isfinite(d.numeric)]
        return (*said, sentence(mine, measured)) if measured else said

    def sentence(mine: Sequence[DirectionResult], wrong: Sequence[DirectionResult]) -> str:
        ratios = [d.analytic / d.numeric for d in wrong if d.numeric != 0 and math.isfinite(d.analytic / d.numeric)]
        every = len(wrong) == len(mine)
        common = len(ratios) == len(wrong) and max(ratios) - min(ratios) <= 1e-3 * max(abs(r) for r in ratios)
        if common and (every or len(wrong) > 1):
            scope = (
                "along every random direction"
                if every
                else f"along the {len(wrong)} wrong random directions (of {len(mine)})"
            )
            if ratios[0] == 0:
                return f"g·v is 0 {scope}, the loss changes: a missing term"
            if abs(ratios[0] + 1) <= 1e-3:
                return f"the sign is flipped: analytic = -1 x numeric {scope}"
            if abs(ratios[0] - 1) > 1e-3:
                return f"analytic is {ratios[0]:.4g}x the numeric gradient {scope}"
            # a factor close to 1 (it read "1x": held-out sweep 49), where the ratios agree far better than that
            off = ratios[0] - 1
            if max(ratios) - min(ratios) <= 0.1 * abs(off):
                return f"analytic is the numeric gradient times 1 {'+' if off > 0 else '-'} {abs(off):.2g} {scope}"
        worst = max(wrong, key=badness)
        digits = digits_apart(worst.analytic, worst.numeric)
        return (
            f"{len(wrong)} of {len(mine)} random directions disagree; along direction {worst.number}, "
            f"g·v = {worst.analytic:.{digits}g} but the loss changes at {worst.numeric:.{digits}g}"
        )

    updated = []
    for tensor in tensors:
        mine = [d for d in directions if d.tensor == tensor.name]
        wrong = [d for d in mine if d.status == WRONG]
        # A direction that decided nothing may hold a wrong gradient that the agreeing directions, and a sample of
        # elements, need not see (review 53: a max-pool routed to the wrong element): then only every element
        # checked verifies the tensor.
        undecided = any(d.undecided for d in mine)
        agreeing = [d for d in mine if d.status == AGREE] if not undecided else []
        every = tensor.n_checked == math.prod(tensor.shape)
        # ...and not even every element where a direction was wrong on a kink that shows as a change of sign of its
        # slopes' gap: such bugs lie within each element's slopes (review 57)
        crossing = any(d.undecided == "crossing" for d in mine)
        by_elements = tensor.verified and bool(tensor.n_checked) and (every or not undecided) and not crossing
        # verified when an element or a direction agrees within a narrow enough bar; a tensor without elements has
        # nothing that could be wrong; beside elements that withdraw verification, nothing verifies
        verified = (by_elements or bool(agreeing) or not math.prod(tensor.shape)) and not _withdrawn(tensor)
        updated.append(
            replace(
                tensor,
                passed=tensor.passed and not wrong,
                n_directions=len(mine),
                n_directions_wrong=len(wrong),
                n_directions_inconclusive=sum(d.status == INCONCLUSIVE for d in mine),
                verified=verified,
                power=_widest(tensor.power, agreeing) if verified else math.nan,
                diagnosis=(*tensor.diagnosis, *sentences(mine, wrong)) if wrong else tensor.diagnosis,
            )
        )
    return tuple(updated)
