"""Shards: the analytic gradient written once, then centred differences over each shard of indices.

A shard perturbs each of its entries in place (one loss per stencil point, or a batch of
perturbed copies where the model offers one), restores it exactly, estimates each derivative
with its error bar, judges it, gives every suspect a second look (:mod:`.refine`), writes its
own chunks of the output and returns partial sums for the reducer. Its seal records what it
wrote, so a resume computes again only the shards that are missing or damaged. Results are
written to an *output* (:class:`~.problem.Output`): arrays over the index space that take
numpy slicing, such as Zarr arrays or plain numpy arrays.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..errors import ModelError
from ..model import as_loss_value
from .directions import direction_dots
from .fd import STENCILS, Estimate, batched_stencil_losses, estimate, points, stencil_losses, step_sizes
from .layout import TensorSpec
from .nearby import (
    HIDDEN_POINTS,
    INTERACTING,
    PART,
    POINTS,
    ROUND,
    SEED,
    SETTLE,
    derivative_near,
    judge_hidden,
    judge_nearby,
    matching,
    moved,
    nearby_steps,
    partway,
    piecewise,
    precise,
)
from .plan import Shard, slots_for
from .problem import Loaded, Output, Settings, call_model, fastest
from .reduce import ShardResult, summarize_shard
from .refine import Row, beyond_the_edge, known_rows, second_look
from .tolerance import (
    CONVERGED,
    FLOAT32_ONLY,
    NONDIFFERENTIABLE,
    UNCHECKED,
    UNSETTLED,
    WRONG,
    Tolerance,
    float32_only,
    inconclusive,
    judge,
    suspects,
    unproven,
)

__all__ = [
    "kink_codes",
    "resume_shard",
    "run_shard",
    "seconds_per_loss",
    "shard_intact",
    "shard_seal",
    "stored_shard",
    "write_analytic",
]


#: A second look's leaps (:data:`.refine.LEAP`) stop at steps this many rounding units of the parameter.
LEAP_ROOM = 2.0**10


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


def seconds_per_loss(loaded: Loaded, budget_seconds: float = 0.2, at_most: int = 20) -> float:
    """Seconds per loss evaluation at θ, in this worker, the way the shards will evaluate it.

    The fastest of a few runs: one loss, or, for a batched model, the shards' own path
    (perturbation, one batch, estimates) over the first indices, divided by its losses.
    That also warms the path up in this worker before the shards time it.
    """
    if not (loaded.batched or loaded.perturbs):
        return fastest(loaded.loss, budget_seconds, at_most)
    layout = loaded.settings.layout
    width = len(STENCILS[loaded.settings.scheme])
    indices = min(layout.n_params, 64)
    if loaded.batched:
        indices = max(1, loaded.batch_rows(width * indices) // width)
    groups = _by_dtype([(spec, np.arange(lo, hi)) for spec, lo, hi in layout.segments(0, indices)])
    return fastest(functools.partial(_evaluate, loaded, groups), budget_seconds, at_most) / (width * indices)


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
    sides = _Sides.none(shard.size)  # what the second look found of the one-sided slopes (:func:`kink_codes`)
    slots = loaded.slots
    groups = _by_dtype(slots.segments(settings.layout, shard.start, shard.stop))
    evaluating = time.perf_counter()
    estimates = _evaluate(loaded, groups)
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
        (numeric[at], allowed[at], status[at], steps[at], found), (n, cost) = _judged(loaded, group, first, a)
        for mine, value in zip(sides, found, strict=True):
            mine[at] = value
        looked, looked_evaluations = looked + n, looked_evaluations + cost
        # part of the second look: its float32 elements judged again where the model computes in float64, the wrong
        # ones (excused where only float32 makes them wrong), then the undecided ones (confirmed wrong where float64
        # finds them so): :func:`_float32_only`
        if not (settings.second_look and settings.against_float64(group.dtype)):
            continue
        kinked = frozenset(
            spec.name for spec, _ in _subgroup(group, sides.kink[at] | (status[at] == NONDIFFERENTIABLE)).segments
        )
        for confirming in (False, True):
            if confirming:  # (not a kink float64's points near θ bore out: the float32 noise would blur them)
                chosen = _undecided(group, a, numeric[at], allowed[at], status[at]) & ~sides.interacting[at]
            else:
                chosen = (status[at] == WRONG) & np.isfinite(a)  # (a NaN or inf is wrong in any dtype)
            if not chosen.any():
                continue
            mine = at[chosen]
            (status[mine], numeric[mine], allowed[mine], interacting), (n, cost) = _float32_only(
                loaded,
                _subgroup(group, chosen),
                a[chosen],
                numeric[mine],
                allowed[mine],
                status[mine],
                first.values[chosen].astype(np.float64)[:, None] + first.taken[chosen][:, :2],
                first.table[chosen][:, :2],
                loaded.settings.noise if confirming else None,
                kinked,
            )
            looked, looked_evaluations = looked + n, looked_evaluations + cost
            sides.interacting[mine] |= interacting
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


Segment = tuple[TensorSpec, np.ndarray]

#: How many of a tensor's wrong float32 elements are judged again in float64 at a time (:func:`_float32_only`):
#: once one is wrong in float64 too, the rest are not judged again (the tensor is wrong either way), so a bug
#: everywhere costs one batch per tensor and shard, and the verdict does not depend on where shards end.
RECHECK_BATCH = 8


@dataclass(frozen=True, slots=True)
class _Group:
    """Consecutive segments (tensors and the positions checked in them) of one dtype, with their
    indices in the flat index space: stepped, evaluated, estimated and judged in one pass."""

    segments: tuple[Segment, ...]
    columns: np.ndarray

    @property
    def dtype(self) -> str:
        return self.segments[0][0].dtype


def _by_dtype(segments: list[Segment]) -> list[_Group]:
    """Consecutive segments of the same dtype, together: a shard of many small tensors would
    otherwise pay numpy's overhead per tensor."""
    runs: list[list[Segment]] = []
    for segment in segments:
        if runs and runs[-1][0][0].dtype == segment[0].dtype:
            runs[-1].append(segment)
        else:
            runs.append([segment])
    return [_Group(tuple(run), np.concatenate([spec.offset + positions for spec, positions in run])) for run in runs]


def _subgroup(group: _Group, chosen: np.ndarray) -> _Group:
    """The elements of ``group`` where ``chosen`` (a mask over them) is True."""
    segments, first = [], 0
    for spec, positions in group.segments:
        part = chosen[first : first + positions.size]
        first += positions.size
        if part.any():
            segments.append((spec, positions[part]))
    return _Group(tuple(segments), group.columns[chosen])


def _batches(group: _Group, chosen: np.ndarray, names: frozenset[str] | None = None) -> Iterator[list[np.ndarray]]:
    """Per tensor of a group (of ``names`` only, where given), its ``chosen`` elements (a mask over the group), as
    indices into the group :data:`RECHECK_BATCH` at a time: a caller judging them again stops a tensor at its first
    batch that settles it."""
    first = 0
    for spec, positions in group.segments:
        mine = first + np.flatnonzero(chosen[first : first + positions.size])
        first += positions.size
        if names is None or spec.name in names:
            yield [mine[start : start + RECHECK_BATCH] for start in range(0, mine.size, RECHECK_BATCH)]


def _undecided(
    group: _Group, analytic: np.ndarray, numeric: np.ndarray, allowed: np.ndarray, status: np.ndarray
) -> np.ndarray:
    """The elements of a group that decide nothing, on a kink or disagreeing without proof (inconclusive beyond their
    allowance), in tensors with no element wrong in the group."""
    tensor = np.repeat(np.arange(len(group.segments)), [positions.size for _, positions in group.segments])
    wrong = np.isin(tensor, tensor[status == WRONG])
    undecided = (status == NONDIFFERENTIABLE) | unproven(analytic, numeric, allowed, status)
    return np.asarray(undecided & ~wrong & np.isfinite(analytic), dtype=bool)


def _per_element(loaded: Loaded, per_tensor: Callable[[int], float], group: _Group) -> np.ndarray:
    """A per-tensor figure (``per_tensor(the tensor's number)``) repeated for each element of the group."""
    return np.concatenate(
        [
            np.full(positions.size, per_tensor(loaded.number[spec.name]), dtype=np.float64)
            for spec, positions in group.segments
        ]
    )


def _values(loaded: Loaded, group: _Group) -> np.ndarray:
    """The parameters' values at the group's elements, in their dtype."""
    if loaded.batched:  # one fancy index, not one per tensor (float32 values are exact in float64)
        dtype = np.float64 if loaded.settings.promote else group.dtype  # a promoted run's values are float64
        return np.asarray(loaded.theta[group.columns].astype(dtype, copy=False))
    # no flat copy of the parameters
    return np.concatenate([loaded.params[spec.name].reshape(-1)[positions] for spec, positions in group.segments])


def _losses(loaded: Loaded, groups: Sequence[_Group], perturbed: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Each group's losses with its elements set to their ``perturbed`` values, one row per element."""
    if loaded.batched:
        return _batched_losses(loaded, [group.columns for group in groups], list(perturbed))
    return [
        np.concatenate(
            [_segment_losses(loaded, spec, positions, rows) for spec, positions, rows in _rows(group, table)]
        )
        for group, table in zip(groups, perturbed, strict=True)
    ]


@dataclass(frozen=True, slots=True)
class _Evaluated:
    """One group's first pass: the parameters' values, their steps, the estimates, the loss's noise per
    element, and the stencil's losses and the steps they took (what a second look starts from)."""

    values: np.ndarray
    h: np.ndarray
    est: Estimate
    noise: np.ndarray
    table: np.ndarray
    taken: np.ndarray


def _evaluate(loaded: Loaded, groups: list[_Group]) -> list[_Evaluated]:
    """Each group's first pass (:class:`_Evaluated`).

    The noise is the tensor's (measured by the probe), but never below one rounding unit of the
    largest loss the element's stencil evaluated: a loss that is small at θ is not small nearby.
    """
    settings = loaded.settings
    stencils = []
    for group in groups:
        values = _values(loaded, group)
        h = step_sizes(values, settings.scheme, settings.epsilon)
        stencils.append((values, h, *points(values, h, settings.scheme)))
    losses = _losses(loaded, groups, [perturbed for _, _, perturbed, _ in stencils])
    evaluated = []
    for group, table, (values, h, _, taken) in zip(groups, losses, stencils, strict=True):
        with np.errstate(invalid="ignore"):
            rounding = settings.eps(group.dtype) * np.max(np.abs(table), axis=1, initial=0.0)
        measured = _per_element(loaded, settings.noise_of, group)
        # Never below one rounding unit, even along a tensor the loss ignores: an analytic value under the loss's
        # resolution there is rounding of a gradient that cancels (a bias before a batch norm), not a bug.
        noise = np.fmax(measured, rounding)
        est = estimate(table, taken, settings.scheme, epsilon=settings.epsilon, loss0=settings.loss0, noise=noise)
        evaluated.append(_Evaluated(values, h, est, noise, table, taken))
    return evaluated


class _Sides(NamedTuple):
    """Per element, what its second look found of its one-sided slopes (:class:`.refine.Refined`): whether they keep a
    gap (a kink), that gap signed (the slope moving up less the one moving down), its margin, and the way whose slope
    the analytic value is nearer (+1 up, -1 down: :mod:`.together` moves it so) and whether it is that slope
    (within the margin and the tolerance: the value a convention such as relu'(0) = 0 or the first maximum gives),
    and whether its kinks interact with other elements' (a value outside its slopes that derivatives at points near θ
    bear out: :mod:`.nearby`); no kink, NaN (0, False) where there was no second look."""

    kink: np.ndarray
    gap: np.ndarray
    margin: np.ndarray
    toward: np.ndarray
    tight: np.ndarray
    interacting: np.ndarray

    @classmethod
    def none(cls, size: int) -> _Sides:
        nan, no = np.full(size, np.nan), np.zeros(size, dtype=bool)
        return cls(no, nan, nan.copy(), np.zeros(size), no.copy(), no.copy())


def kink_codes(status: np.ndarray, sides: _Sides) -> np.ndarray:
    """Per element on a kink (``status`` non-differentiable, its gap found and not 0), what its second look found of
    its slopes (``sides``), in one byte: the sign of its gap, times 1 plus 1 where its value is nearer the slope
    moving up plus 2 where it is that slope (:attr:`_Sides.tight`), or times :data:`INTERACTING` where its kinks
    interact (:attr:`_Sides.interacting`); 0 elsewhere (decoded by :mod:`.together`)."""
    gap = np.where(np.isfinite(sides.gap), sides.gap, 0.0)
    on = (status == NONDIFFERENTIABLE) & ((gap != 0) | sides.interacting)
    magnitude = np.where(sides.interacting, INTERACTING, 1 + (sides.toward > 0) + 2 * sides.tight)
    # (an interacting element whose own line shows no kink has no gap: taken as convex, moved with both signs anyway)
    code = np.where(on, np.where(gap < 0, -1, 1), 0) * magnitude
    return np.asarray(code, dtype=np.int8)


def _judged(
    loaded: Loaded, group: _Group, first: _Evaluated, analytic: np.ndarray, kinked: frozenset[str] = frozenset()
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, _Sides], tuple[int, int]]:
    """A group's ``(numeric, allowed, status, steps, sides)``, judged from its first pass (:func:`_evaluate`) and,
    for suspects, a second look (:func:`_look_again`; ``sides``: what it found of their one-sided slopes; ``kinked``:
    tensors known to have kinks); and ``(how many suspects, the losses their look took)``."""
    settings, est = loaded.settings, first.est
    numeric, steps = est.numeric.copy(), first.h.copy()
    # one tolerance per group: it depends on the dtype and the scheme
    tolerance = settings.tolerance_for(group.dtype)
    allowed, status = judge(analytic, numeric, est.bar, est.lower, est.upper, tolerance, est.smooth)
    suspect, cost, sides = np.zeros(analytic.size, dtype=bool), 0, _Sides.none(analytic.size)
    if settings.second_look and settings.scheme != "complex-step":
        precision = "float64" if settings.promote else group.dtype
        scale = _per_element(loaded, settings.scale_of, group)
        suspect = suspects(analytic, numeric, est.bar, status, tolerance, scale, precision, est.rounding, est.kinked)
        if suspect.any():
            (numeric[suspect], allowed[suspect], status[suspect], steps[suspect], looked), cost = _look_again(
                loaded,
                group,
                first,
                suspect,
                analytic[suspect],
                (allowed[suspect], status[suspect]),
                tolerance,
                scale,
                precision,
                kinked,
            )
            for mine, found in zip(sides, looked, strict=True):
                mine[suspect] = found
    others = ~suspect
    status[others] = inconclusive(analytic[others], numeric[others], est.bar[others], status[others], tolerance)
    return (numeric, allowed, status, steps, sides), (int(np.count_nonzero(suspect)), cost)


def _float32_only(
    loaded: Loaded,
    group: _Group,
    analytic: np.ndarray,
    numeric: np.ndarray,
    allowed: np.ndarray,
    status: np.ndarray,
    at_step: np.ndarray,
    losses_at_step: np.ndarray,
    noise: tuple[float, ...] | None = None,
    kinked: frozenset[str] = frozenset(),
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], tuple[int, int]]:
    """The wrong (or undecided) elements of a float32 group judged again on the model computing in float64
    (:meth:`~.problem.Loaded.float64_twin`), tensor by tensor, :data:`RECHECK_BATCH` at a time; a tensor's
    first element wrong in float64 too (a bug in the formula) ends its re-judging, the rest keeping their verdict.
    Their ``(status, numeric, allowed, interacting)``, with those the dtype made wrong :data:`~.tolerance.FLOAT32_ONLY`,
    those on kinks that interact judged as float64 judges them (``interacting``: the kinks it bears out), and the
    undecided ones float64 finds wrong ``WRONG``, with its estimate (:func:`~.tolerance.float32_only`), and
    ``(elements judged again, the losses that took)``. Where the twin cannot compute (a model error in float64), it
    is dropped for the run, and the elements not yet judged again keep their float32 verdict.

    ``noise``: the loss's noise per tensor the float64 model is judged with; None measures its own (once per tensor
    and run), as finely as a float64 check would, to excuse a wrong element only where float64 has the power to see
    its error. An undecided element is confirmed wrong under the float32 check's noise (``loaded.settings.noise``),
    an upper bound of the float64 loss's: wider bars than float64's own, and no probe to pay for (it took about 100
    losses a tensor on a ReLU network's kinks).

    ``at_step`` holds each element's first float32 points ``θ ± h`` (in float64: they are float32 values) and
    ``losses_at_step`` the float32 losses there: the float64 model is evaluated at the same points, and their
    central differences compared (the float32 loss is the float64 one at the float32 step). ``kinked``: the tensors
    the float32 check found kinks in (:func:`_look_again`).
    """
    twin = loaded.float64_twin()
    interacting = np.zeros(status.size, dtype=bool)
    if twin is None:
        return (status, numeric, allowed, interacting), (0, 0)
    status, numeric, allowed = status.copy(), numeric.copy(), allowed.copy()
    judged_again, cost = 0, 0
    scale = _per_element(loaded, loaded.settings.scale_of, group)
    tolerance = loaded.settings.tolerance_for(group.dtype)
    for batches in _batches(group, np.ones(status.size, dtype=bool)):
        for at in batches:
            part = _subgroup(group, np.isin(np.arange(status.size), at))
            try:
                exact, judged, spent = _in_float64(twin, part, noise, kinked)
                (same_points,) = _losses(twin, [part], [at_step[at]])
            except ModelError:  # the model cannot compute so in float64: no twin for the rest of the run
                loaded.drop_float64_twin()
                return (status, numeric, allowed, interacting), (judged_again, cost)
            judged_again, cost = judged_again + at.size, cost + spent + same_points.size
            span = at_step[at, 0] - at_step[at, 1]
            at_h = (
                (losses_at_step[at, 0] - losses_at_step[at, 1]) / span,
                (same_points[:, 0] - same_points[:, 1]) / span,
            )
            status[at], confirmed = float32_only(
                analytic[at], numeric[at], allowed[at], status[at], exact, *judged, scale[at], at_h, tolerance
            )
            interacting[at] = judged[4] & (status[at] == NONDIFFERENTIABLE)
            # and an element float64 verifies whose float32 loss was not finite at a step float32 took (a float32
            # exp overflowing where float64's does not) carries float64's estimate: no non-finite loss fails its run
            replaced = confirmed | ((status[at] == FLOAT32_ONLY) & ~np.isfinite(numeric[at]))
            numeric[at] = np.where(replaced, judged[0], numeric[at])
            allowed[at] = np.where(replaced, judged[1], allowed[at])
            if np.any(judged[2] == WRONG):
                break
    return (status, numeric, allowed, interacting), (judged_again, cost)


def _in_float64(
    twin: Loaded, group: _Group, noise: tuple[float, ...] | None = None, kinked: frozenset[str] = frozenset()
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray], int]:
    """A group judged on a run's float64 twin as `precision: float64` judges it: the loss's noise along its
    tensors measured once, as the probe does (or ``noise`` given, per tensor), then a first pass and a second look.
    Its float64 analytic values, ``(numeric, allowed, status, kinked, interacting)`` (``kinked``: where its second
    look saw a kink; ``interacting``: a kink whose value derivatives at points near θ bear out, :mod:`.nearby`), and
    the losses that took."""
    from .probe import measured_noise  # here: the probe imports this module

    cost, own = 0, twin.settings
    if noise is None:
        measured = list(own.noise or [math.nan] * len(own.layout.tensors))
        for number in {twin.number[spec.name] for spec, _ in group.segments}:
            if math.isnan(measured[number]):  # the float64 loss cancels where the model's does: its own noise
                measured[number], spent = measured_noise(twin, number)
                cost += spent
        own = twin.settings = dataclasses.replace(own, noise=tuple(measured))
    else:
        twin.settings = dataclasses.replace(own, noise=noise)
    try:
        (first,) = _evaluate(twin, [group])
        gradient = twin.analytic_gradient()
        exact = np.concatenate(
            [np.asarray(gradient[spec.name]).reshape(-1)[positions] for spec, positions in group.segments]
        ).astype(np.float64)
        (numeric, allowed, status, _, sides), (_, looked) = _judged(twin, group, first, exact, kinked)
    finally:
        twin.settings = own
    return exact, (numeric, allowed, status, sides.kink, sides.interacting), cost + first.table.size + looked


def _look_again(
    loaded: Loaded,
    group: _Group,
    first: _Evaluated,
    suspect: np.ndarray,
    analytic: np.ndarray,
    judged: tuple[np.ndarray, np.ndarray],
    tolerance: Tolerance,
    scale: np.ndarray,
    precision: str,
    kinked: frozenset[str] = frozenset(),
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, _Sides], int]:
    """The second look (:func:`.refine.second_look`) at a group's suspect elements, each along its own axis,
    and its verdicts (:func:`.tolerance.judge_again`).

    ``suspect`` masks the group's elements; ``analytic`` and ``judged`` (the first pass's allowances and
    statuses) are the suspects'. ``kinked``: the tensors known to have kinks besides those the suspects show.
    Returns the suspects' ``(numeric, allowed, status, step)`` and the losses the second look took.
    """
    settings = loaded.settings
    k = np.flatnonzero(suspect)
    sub, values, est = _subgroup(group, suspect), first.values[k], first.est
    # The table starts at the first pass's steps, and reuses its losses; but a fixed step may be far too fine
    # for the loss's noise: then it starts no finer than the automatic one.
    h, known = first.h[k], known_rows(first.table[k], first.taken[k], settings.scheme)
    if settings.epsilon is not None:
        h, known = np.maximum(h, step_sizes(values, settings.scheme, None)), []
    # leaps stop where a step is within LEAP_ROOM rounding units of the parameter's value
    leap_floor = LEAP_ROOM * settings.eps(group.dtype) * np.maximum(1.0, np.abs(values.astype(np.float64))) / h

    def losses(which: np.ndarray, multiple: np.ndarray) -> Row:
        chosen = np.zeros(values.size, dtype=bool)
        chosen[which] = True
        perturbed, taken = points(values[which], multiple * h[which], "central")
        (table,) = _losses(loaded, [_subgroup(sub, chosen)], [perturbed])
        return table[:, 0], table[:, 1], taken[:, 0], taken[:, 1]

    converged = CONVERGED.get(precision, CONVERGED["float32"])
    past_edge = est.nonfinite[k] != 0  # its first-pass losses were not finite
    refined = second_look(
        losses,
        k.size,
        h,
        settings.loss0,
        first.noise[k],
        scale[k],
        known,
        converged,
        leap_floor,
        analytic,
        (est.numeric[k], est.bar[k], est.smooth[k]),
        past_edge,
    )
    # an element outside slopes still moving is UNSETTLED: its tensor is not verified (a direction stays inconclusive)
    numeric, allowed, status = refined.judge(analytic, (est.numeric[k], *judged, est.bar[k]), tolerance, UNSETTLED)
    steps = np.where(refined.kink | ~np.isfinite(refined.numeric), first.h[k], refined.step)
    if settings.epsilon is not None:
        # The step asked for: the numeric gradient stays its quotient (the seed's difference), and the
        # allowance widens by how far that is from the estimate the verdict was made on.
        shift = np.abs(numeric - est.numeric[k])
        allowed = allowed + np.where(np.isfinite(shift), shift, 0.0)
        numeric, steps = est.numeric[k], first.h[k]
    # With a fixed step, a quotient not finite stays wrong: its numeric value is the first pass's.
    numeric, allowed, status = beyond_the_edge(past_edge, est.numeric[k], (numeric, allowed, status))
    steps = np.where(np.isfinite(numeric), steps, first.h[k])
    gap = np.broadcast_to(refined.gap, (k.size,)).astype(np.float64)
    margin = np.broadcast_to(refined.margin, (k.size,)).astype(np.float64)
    cost, interacting = refined.evaluations, np.zeros(k.size, dtype=bool)
    # wrong on a kink, outside its own slopes: judged again where other elements' kinks may interact with its own
    again = (status == WRONG) & np.asarray(refined.kink, dtype=bool) & np.isfinite(analytic)
    if precision == "float64" and again.any():
        at = np.flatnonzero(again)
        lower, upper = (np.broadcast_to(side, (k.size,))[at] for side in (refined.lower, refined.upper))
        status[at], spent = _kinks_nearby(
            loaded,
            _subgroup(sub, again),
            (values[at], analytic[at]),
            (lower, upper, margin[at]),
            first.noise[k][at],
            tolerance,
        )
        interacting[at], cost = status[at] == NONDIFFERENTIABLE, cost + spent
    # wrong where its own line shows no kink, in a tensor that has kinks: judged again at points near θ too (review
    # 76: a max-pool's tie whose windows' gradients cancel along its line)
    kink = np.broadcast_to(np.asarray(refined.kink, dtype=bool), (k.size,))
    hidden = (status == WRONG) & ~kink & np.isfinite(analytic) & np.isfinite(numeric)
    if precision == "float64" and hidden.any():
        kinked = kinked | {spec.name for spec, _ in _subgroup(sub, kink).segments}
        accepted, spent = _hidden_kinks(
            loaded, sub, hidden, kinked, (values, analytic, numeric), first.noise[k], tolerance
        )
        status[accepted], interacting[accepted], cost = NONDIFFERENTIABLE, True, cost + spent
    with np.errstate(invalid="ignore"):
        up, down = np.where(gap >= 0, refined.upper, refined.lower), np.where(gap >= 0, refined.lower, refined.upper)
        toward = np.where(np.abs(analytic - up) <= np.abs(analytic - down), 1.0, -1.0)
        tight = np.fmin(np.abs(analytic - up), np.abs(analytic - down)) <= tolerance.room(up, down, margin)
    found = _Sides(np.asarray(refined.kink, dtype=bool), gap, margin, toward, tight, interacting)
    return (numeric, allowed, status, steps, found), cost


def _kinks_nearby(
    loaded: Loaded,
    group: _Group,
    at_theta: tuple[np.ndarray, np.ndarray],
    slopes: tuple[np.ndarray, np.ndarray, np.ndarray],
    noise: np.ndarray,
    tolerance: Tolerance,
    hidden: bool = False,
) -> tuple[np.ndarray, int]:
    """The status of a group's elements on a kink whose analytic value lies outside their one-sided ``slopes``
    (``(lower, upper, margin)``), judged on their derivatives at points near θ (:mod:`.nearby`), and the losses that
    took. ``at_theta``: their ``(values, analytic values)``; ``noise``: the loss's noise along each. ``hidden``: the
    elements' own lines show no kink (``slopes``: their derivative there twice, and 0), in a tensor that has kinks
    (:func:`.nearby.judge_hidden`)."""
    settings = loaded.settings
    values, analytic = at_theta
    eps = settings.eps(group.dtype)
    rng = np.random.default_rng([SEED, int(group.columns[0])])
    derivatives = np.full((POINTS, analytic.size), np.nan)
    rounding = np.full((POINTS, analytic.size), np.nan)
    # the loss's noise over the points' steps must leave their derivatives precise, or they stay wrong (review 76: a
    # loss exactly 0 at θ, or 1e7 beside a max-pool, widened an element's range by 5 and passed a sign flip)
    vague = ~precise(noise, values, eps, analytic, *slopes[:2], tolerance)
    status, decided, cost = np.full(analytic.size, WRONG, dtype=np.int8), vague.copy(), 0
    matched, last = np.zeros(analytic.size, dtype=bool), HIDDEN_POINTS if hidden else POINTS
    for point in range(last + 1):
        if point and point % ROUND == 0:
            if hidden:
                status, decided = judge_hidden(matched, slopes[0], derivatives, rounding, tolerance)
            else:
                status, decided = judge_nearby(analytic, *slopes, derivatives, rounding, tolerance)
            status = np.where(vague, WRONG, status).astype(np.int8)
            decided = (decided & ((status == NONDIFFERENTIABLE) | (point >= SETTLE) | hidden)) | vague
        if decided.all() or point == last:
            return status, cost
        near = Loaded(settings, loaded.model, moved(loaded.params, point, rng, eps), loaded.data)
        left = np.flatnonzero(~decided)
        derivatives[point, left], rounding[point, left], spent = _derivatives_near(near, group, left, noise[left])
        cost += spent
        if hidden:  # a value seen there: the same part of the way there, else curvature or a kink off θ made it
            seen = left[
                matching(analytic[left], slopes[0][left], derivatives[point, left], rounding[point, left], tolerance)
            ]
            if seen.size:
                on_the_way = Loaded(settings, loaded.model, partway(loaded.params, near.params), loaded.data)
                there, _, spent = _derivatives_near(on_the_way, group, seen, noise[seen], PART)
                matched[seen], cost = piecewise(derivatives[point, seen], there, slopes[0][seen]), cost + spent
    return status, cost


def _hidden_kinks(
    loaded: Loaded,
    group: _Group,
    hidden: np.ndarray,
    kinked: frozenset[str],
    at_theta: tuple[np.ndarray, np.ndarray, np.ndarray],
    noise: np.ndarray,
    tolerance: Tolerance,
) -> tuple[np.ndarray, int]:
    """Which of a group's ``hidden`` elements (wrong where their own line shows no kink) in the tensors ``kinked``
    (known to have kinks) their derivatives at points near θ bear out (:func:`_kinks_nearby`), tensor by tensor,
    :data:`RECHECK_BATCH` at a time (:func:`_batches`): a tensor's first element that stays wrong ends its re-judging
    (its tensor is wrong either way; a bug everywhere costs one batch); and the losses that took. ``at_theta``: the
    group's ``(values, analytic values, derivatives at θ)``."""
    values, analytic, numeric = at_theta
    accepted, cost = np.zeros(hidden.size, dtype=bool), 0
    for batches in _batches(group, hidden, kinked):
        for at in batches:
            status, spent = _kinks_nearby(
                loaded,
                _subgroup(group, np.isin(np.arange(hidden.size), at)),
                (values[at], analytic[at]),
                (numeric[at], numeric[at], np.zeros(at.size)),
                noise[at],
                tolerance,
                hidden=True,
            )
            accepted[at], cost = status == NONDIFFERENTIABLE, cost + spent
            if not accepted[at].all():
                break
    return accepted, cost


def _derivatives_near(
    near: Loaded, group: _Group, chosen: np.ndarray, noise: np.ndarray, part: float = 1.0
) -> tuple[np.ndarray, np.ndarray, int]:
    """The ``chosen`` (indices) of a group's elements' derivatives at a point near θ (``near``; ``part`` of the way
    to one, their steps as much finer: the ties it breaks are as much closer) and their rounding
    (:func:`.nearby.derivative_near`), and the losses that took."""
    loss = as_loss_value(call_model("loss near θ (kinks interacting)", near.loss), "near θ", finite=False)
    mask = np.zeros(group.columns.size, dtype=bool)
    mask[chosen] = True
    left = _subgroup(group, mask)
    moved_values = _values(near, left)
    steps = part * nearby_steps(moved_values, near.settings.eps(group.dtype))
    perturbed, taken = points(moved_values, steps, "central")
    (table,) = _losses(near, [left], [perturbed])
    derivative, rounding = derivative_near(table[:, 0], table[:, 1], loss, taken[:, 0], taken[:, 1], noise)
    return derivative, rounding, 1 + table.size


def _rows(group: _Group, perturbed: np.ndarray) -> Iterator[tuple[TensorSpec, np.ndarray, np.ndarray]]:
    """Each segment of a group with its rows of the group's perturbed values."""
    first = 0
    for spec, positions in group.segments:
        yield spec, positions, perturbed[first : first + positions.size]
        first += positions.size


def _segment_losses(loaded: Loaded, spec: TensorSpec, positions: np.ndarray, perturbed: np.ndarray) -> np.ndarray:
    """One tensor's stencil losses, in place: only the stages from the tensor's own on when the
    model is staged (fewest evaluations), else the whole loss."""
    if loaded.stages:
        return call_model(  # type: ignore[no-any-return]
            f"stages near θ (tensor {spec.name})",
            stencil_losses,
            functools.partial(_float_loss_from, loaded, loaded.stage_of[spec.name]),
            loaded.flat[spec.name],
            positions,
            perturbed,
        )
    if loaded.perturbs:
        return call_model(  # type: ignore[no-any-return]
            f"perturbed_losses near θ (tensor {spec.name})", loaded.perturbed_losses, spec.name, positions, perturbed
        )
    scalar = complex if loaded.settings.scheme == "complex-step" else float
    return call_model(  # type: ignore[no-any-return]
        f"loss near θ (tensor {spec.name})",
        stencil_losses,
        lambda: scalar(loaded.loss()),
        loaded.flat[spec.name],
        positions,
        perturbed,
    )


def _float_loss_from(loaded: Loaded, stage: int) -> float:
    return float(loaded.loss_from(stage))


def _batched_losses(loaded: Loaded, columns: list[np.ndarray], perturbed: list[np.ndarray]) -> list[np.ndarray]:
    """The stencil losses through ``loss_batch``, per group (its flat ``columns`` and perturbed values):
    as many points per call as the memory budget allows, across groups."""
    every = columns[0] if len(columns) == 1 else np.concatenate(columns)
    # float32 values are exact in float64, and written back as float32
    table = perturbed[0] if len(perturbed) == 1 else np.concatenate(perturbed)
    width = table.shape[1]
    per_call = max(1, loaded.batch_rows(width * every.size) // width)
    parts = []
    for first in range(0, every.size, per_call):
        part = slice(first, first + per_call)
        indices = every[part]
        parts.append(
            call_model(
                functools.partial(_batch_near, indices),
                batched_stencil_losses,
                loaded.loss_batch,
                loaded.params,
                indices,
                table[part],
                loaded.theta,
            )
        )
    losses = parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else np.empty((0, width))
    if len(perturbed) == 1:
        return [losses]
    bounds = np.cumsum([0, *(p.shape[0] for p in perturbed)])
    return [losses[bounds[j] : bounds[j + 1]] for j in range(len(perturbed))]


def _batch_near(indices: np.ndarray) -> str:
    return f"loss_batch near θ (indices {indices[0]}..{indices[-1]})"


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
