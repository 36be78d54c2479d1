"""Kinks moved together: once every shard is done, its elements on kinks judged on lines through several at once.

A kink is a single element's test: a maximum's tied inputs are each a kink whose value the whole gradient suits,
but together they move the maximum once. Each shard records what the second look found of its kinks' slopes
(:func:`.judging.kink_codes`, the output's ``kink``); this step gathers them over the whole run, so that where shards
end decides nothing (ties split between shards, the two tensors of ``np.maximum(a, b)`` in different ones, a slow
loss's small automatic shards), draws the lines (:func:`judge_lines`), and marks the elements of a line that fails
:data:`~.tolerance.TOGETHER` in the shards that hold them, sealing those again. It runs again, from the recorded
kinks, whenever a run is resumed: its result depends only on them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..model import as_loss_value
from .directions import check_direction, element_steps
from .nearby import INTERACTING, LINE_POINTS, SEED, derivative_near, line_bears_out, moved, nearby_steps
from .plan import Shard
from .problem import Loaded, Output, call_model
from .reduce import DirectionResult, ShardResult, summarize_shard
from .shards import shard_seal, stored_shard
from .tolerance import NONDIFFERENTIABLE, TOGETHER, WRONG

__all__ = ["KINK_LINE", "Together", "kinks_together"]

#: The number that names a line through kinks where a direction's would.
KINK_LINE = -1
#: Where ``status`` lies among the per-index arrays (:data:`~pipeline.storage.output.PER_INDEX`).
_STATUS = 4
#: ``kink`` is read this many slots at a time at most (16 MB).
READ_SLOTS = 1 << 24


@dataclass(frozen=True, slots=True)
class Together:
    """What moving the kinks together did: the results of the shards holding a kink, summed again with their
    verdicts, the lines it drew, the losses they took, and how long it took."""

    shards: tuple[ShardResult, ...]
    lines: int
    evaluations: int
    seconds: float


@dataclass(frozen=True, slots=True)
class _Kinks:
    """One tensor's kinks of one sign: their slots in the output, positions in the tensor, steps (relative to a
    unit parameter's), the way whose slope each value is nearer (1 up, -1 down), whether each value is one of its
    slopes, the analytic values, and whether each one's kinks interact with other elements' (:mod:`.nearby`)."""

    slots: np.ndarray
    positions: np.ndarray
    steps: np.ndarray
    toward: np.ndarray
    tight: np.ndarray
    analytic: np.ndarray
    interacting: np.ndarray

    def where(self, chosen: np.ndarray) -> _Kinks:
        """The kinks ``chosen`` (a mask)."""
        return _Kinks(*(np.asarray(getattr(self, field))[chosen] for field in self.__dataclass_fields__))


def kinks_together(loaded: Loaded, output: Output, plan: Sequence[Shard]) -> Together:
    """The run's kinks (``output.kink`` over every shard of ``plan``) moved together (:func:`judge_lines`), and
    the verdicts of those whose lines fail written: ``kinks disagree together``, and those of an earlier pass over
    the same kinks (a resumed run) that do not, non-differentiable again."""
    start = time.perf_counter()
    found, holding = _gathered(loaded, output, plan)
    together, lines, evaluations = judge_lines(loaded, found, _whole(loaded, output, found))
    # every shard holding a kink summed again, rewritten or not: a stage run again (a Dask task retried after a lost
    # worker, a resumed run) finds some already rewritten, whose results the caller holds from before
    summed = tuple(
        _summed(loaded, output, shard, holding[shard.index], together) for shard in plan if shard.index in holding
    )
    return Together(summed, lines, evaluations, time.perf_counter() - start)


def _gathered(
    loaded: Loaded, output: Output, plan: Sequence[Shard]
) -> tuple[dict[str, dict[int, dict[str, _Kinks]]], dict[int, np.ndarray]]:
    """Per dtype, per sign of the gap, per tensor: its kinks (:class:`_Kinks`, decoded from ``kink``); and per shard
    holding any, their slots."""
    layout, slots = loaded.settings.layout, loaded.slots
    parts: dict[tuple[str, int, str], list[tuple[np.ndarray, ...]]] = {}
    kink_slots: dict[int, np.ndarray] = {}
    # ``kink`` read in large pieces, many shards' chunks at a time (an object store's requests run together)
    holding: dict[int, np.ndarray] = {}
    for piece in _pieces(plan):
        codes = np.asarray(output.kink[piece[0].start : piece[-1].stop])
        for shard in piece:
            code = codes[shard.start - piece[0].start : shard.stop - piece[0].start]
            if code.any():
                holding[shard.index] = code
    for shard in plan:
        if shard.index not in holding:
            continue
        code = holding[shard.index]
        on = np.flatnonzero(code)
        kink_slots[shard.index] = shard.start + on
        analytic = np.asarray(output.analytic[shard.start : shard.stop])[on]
        first = 0
        for spec, positions in slots.segments(layout, shard.start, shard.stop):
            mine = (on >= first) & (on < first + positions.size)
            first += positions.size
            if not mine.any():
                continue
            where, codes = positions[on[mine] - (first - positions.size)], code[on[mine]]
            magnitude = np.abs(codes.astype(np.int16)) - 1
            toward = np.where(magnitude & 1, 1, -1)
            steps = element_steps(loaded, spec.name, where)
            for sign in (1, -1):
                chosen = np.sign(codes) == sign
                if chosen.any():
                    parts.setdefault((spec.dtype, sign, spec.name), []).append(
                        (
                            shard.start + on[mine][chosen],
                            where[chosen],
                            steps[chosen],
                            toward[chosen],
                            (magnitude[chosen] & 2) != 0,
                            analytic[mine][chosen],
                            np.abs(codes[chosen]) == INTERACTING,
                        )
                    )
    found: dict[str, dict[int, dict[str, _Kinks]]] = {}
    for (dtype, sign, name), pieces in parts.items():
        found.setdefault(dtype, {}).setdefault(sign, {})[name] = _Kinks(
            *(np.concatenate(p) for p in zip(*pieces, strict=True))
        )
    return found, kink_slots


def _whole(loaded: Loaded, output: Output, found: dict[str, dict[int, dict[str, _Kinks]]]) -> dict[str, np.ndarray]:
    """Per tensor holding a kink, every element checked (no sample): its analytic gradient, flat, from the output."""
    if loaded.slots.checked is not None:
        return {}
    layout = loaded.settings.layout
    names = {name for by_sign in found.values() for tensors in by_sign.values() for name in tensors}
    return {
        spec.name: np.asarray(output.analytic[spec.offset : spec.offset + spec.size], dtype=np.float64)
        for spec in layout.tensors
        if spec.name in names
    }


def _pieces(plan: Sequence[Shard]) -> list[list[Shard]]:
    """Consecutive shards, grouped into pieces of at most :data:`READ_SLOTS` slots (a shard larger alone)."""
    pieces: list[list[Shard]] = []
    for shard in plan:
        if pieces and shard.stop - pieces[-1][0].start <= READ_SLOTS and pieces[-1][-1].stop == shard.start:
            pieces[-1].append(shard)
        else:
            pieces.append([shard])
    return pieces


def judge_lines(
    loaded: Loaded, found: dict[str, dict[int, dict[str, _Kinks]]], whole: dict[str, np.ndarray] | None = None
) -> tuple[np.ndarray, int, int]:
    """The slots of the kinks whose lines fail, the lines drawn and the losses they took.

    The kinks are drawn by the sign of their gap (the slope moving up less the one moving down), convex ones apart
    from concave ones. Lines per tensor and sign with two or more, then per dtype and sign through every such kink
    where two or more tensors hold one (the ties of ``np.maximum(a, b)`` lie in two). Each is judged as a direction
    is (a second look included: :func:`.directions.check_direction`); a line that fails makes its kinks
    :data:`~.tolerance.TOGETHER`, and the group's second is not drawn. The first is drawn where some value is not
    one of its slopes, the second where two or more are:

    - every kink of the group, each moved up by its step, judged where the line is smooth: ``g·u`` must match its
      derivative. A maximum's tied inputs are each a kink whose value the whole gradient suits, but moved up
      together they move the maximum once, smoothly, and ``g·u`` counts its rise twice. On a kink the line decides
      nothing: interacting kinks (a weight feeding max-pool ties of both signs) need not keep a correct ``g·u``
      between a line's slopes (review 68's max-pool over a convolution: its correct gradient was not verified so).
    - the kinks whose value is one of their slopes (relu'(0) = 0, the first maximum, each tie given the whole
      gradient), each moved the way of that slope, judged by the line's slopes, on a kink too: ``g·u`` must lie
      between them. Where kinks of one sign do not interact (ReLUs of separate units), the line's slopes are the sum
      of theirs, and ``g·u`` the sum of values at one of theirs; where they interact as a maximum's do (convex
      together), a valid gradient is a subgradient, whose ``g·u`` lies between the line's slopes. Each kink adds its
      whole gap to the line's span, but no slack between its value and the slope it moves along: a tie bug beside
      an unrelated kink (an L1 term at a zero weight, review 68) is seen, where the first line, on that kink,
      decided nothing.

    First, per tensor holding a kink whose every element the run checks (``whole``: their analytic values), the line
    moving every element up by its own step, weighted by its value (:func:`_every_element`): tied values move alike,
    so every tie stays one and the line is smooth where only ties make the loss kinked; any valid gradient's ``g·u``
    is its derivative. On a kink it decides nothing. Where it fails, the same line at points near θ
    (:func:`_near_line`) must fail too, its derivatives agreeing, before every kink of the tensor is not verified:
    kinks at one value crossed at θ can cancel (a clip's lower bound at 0 beside another element's upper bound at
    0), and near θ they scatter. A tie bug whose every line through kinks crossed ties of elements that are not
    kinks passed before it (integer upstream gradients).

    Kinks of opposite signs are never moved together: their gaps cancel along a line (a clip's bounds, a
    soft-threshold at ±λ) and each valid value takes its own side (review 68 found correct ones not verified so).
    """
    together, lines, evaluations = [], 0, 0
    for dtype, by_sign in found.items():
        for name, analytic in sorted((whole or {}).items()):
            mine = [tensors[name] for tensors in by_sign.values() if name in tensors]
            if not mine:
                continue
            weights = value_weights(loaded.params[name].reshape(-1))
            line = _every_element(loaded, name, analytic, weights)
            lines, evaluations = lines + 1, evaluations + line.evaluations
            if line.status != WRONG:
                continue
            # wrong through θ: kinks at one value crossed at once, their gaps cancelling, would do that too (a clip's
            # lower bound and another element's upper bound both at 0: review 77). At points near θ, where every kink
            # is off, a tie bug is off the derivatives of every point alike; there they scatter
            every = (name, np.arange(analytic.size), analytic)
            bears_out, spent = _near_line(loaded, every, dtype, weights)
            lines, evaluations = lines + 1, evaluations + spent
            if bears_out is False:
                together.append(np.concatenate([k.slots for k in mine]))
        for every_kink, slots, interacting in _interacting(by_sign):
            # where some kinks interact (:mod:`.nearby`), every kink of the tensor moved up at once, at points near θ:
            # where it cannot bear them out, the interacting ones are not verified (their ranges need not be the
            # tensor's valid gradient jointly: review 76's ties given half their window's gradient passed so)
            bears_out, spent = _near_line(loaded, every_kink, dtype)
            lines, evaluations = lines + 1, evaluations + spent
            if bears_out is False:
                together.append(slots)
            elif bears_out is None:
                together.append(interacting)
        for sign, everything in by_sign.items():
            # interacting kinks are not moved along a line through θ: a valid value need not lie between its slopes
            tensors = {name: k.where(~k.interacting) for name, k in everything.items() if not k.interacting.all()}
            groups = [[name] for name in tensors if tensors[name].slots.size >= 2]
            if len(tensors) >= 2:
                groups.append(list(tensors))
            for names in groups:
                kinks = [tensors[name] for name in names]
                tight, toward = (np.concatenate([getattr(k, field) for k in kinks]) for field in ("tight", "toward"))
                everyone, up = np.ones(tight.size, dtype=bool), np.ones(tight.size, dtype=np.int8)
                # (elements, their ways, the sign judging a kinked line by its slopes, or 0: smooth only, and whether
                # it is drawn only where the one before decided nothing, on a kink). Where every value is a slope, the
                # last alone (a value not at a slope is what the first two are for: review 63's sign flip and 3%
                # error on a kink); the second, where the first sat on the kinks of values at a slope (ReLU inputs at
                # exactly 0 beside ties each given a share of the gradient: review 70)
                lines_through = []
                if not tight.all():
                    lines_through.append((everyone, up, 0, False))
                    if tight.any() and np.count_nonzero(~tight) >= 2:
                        lines_through.append((~tight, up, 0, True))
                if np.count_nonzero(tight) >= 2:
                    lines_through.append((tight, toward, sign, False))
                undecided = False
                for chosen, ways, regular, only_after_a_kink in lines_through:
                    if only_after_a_kink and not undecided:
                        continue
                    line, slots = _line(loaded, kinks, names, chosen, ways, regular)
                    lines, evaluations = lines + 1, evaluations + line.evaluations
                    undecided = line.status == NONDIFFERENTIABLE
                    if line.status == WRONG:
                        together.append(slots)
                        break
    return (np.unique(np.concatenate(together)) if together else np.empty(0, np.int64)), lines, evaluations


def _interacting(
    by_sign: dict[int, dict[str, _Kinks]],
) -> list[tuple[tuple[str, np.ndarray, np.ndarray], np.ndarray, np.ndarray]]:
    """Per tensor some of whose kinks interact: its name, every kink's position and analytic value (both signs),
    their slots, and the interacting ones' slots."""
    names = {name for tensors in by_sign.values() for name, kinks in tensors.items() if kinks.interacting.any()}
    found = []
    for name in sorted(names):
        mine = [tensors[name] for tensors in by_sign.values() if name in tensors]
        positions, analytic, slots, interacting = (
            np.concatenate([getattr(k, f) for k in mine]) for f in ("positions", "analytic", "slots", "interacting")
        )
        found.append(((name, positions, analytic), slots, slots[interacting]))
    return found


def _near_line(
    loaded: Loaded, kinks: tuple[str, np.ndarray, np.ndarray], dtype: str, weights: np.ndarray | None = None
) -> tuple[bool | None, int]:
    """Whether the line moving every kink of a tensor (``(name, positions, analytic values)``) up by its step (times
    ``weights``), at points near θ, bears ``g·u`` out (None: it cannot tell; :func:`.nearby.line_bears_out`), and the
    losses that took. In float64, as :mod:`.nearby` judges elements: a float32 model's float64 twin (none without
    one)."""
    settings = loaded.settings
    model = loaded if settings.promote or dtype != "float32" else loaded.float64_twin()
    if model is None or settings.scheme == "complex-step" or kinks[1].size < 2:
        return None, 0
    name, positions, analytic = kinks
    eps = float(np.finfo(np.float64).eps)
    rng = np.random.default_rng([SEED, int(positions[0])])
    derivatives, rounding = np.full(LINE_POINTS, np.nan), np.full(LINE_POINTS, np.nan)
    measured = settings.noise_of(loaded.number[name]) if model is loaded else math.nan
    measured = measured if math.isfinite(measured) else 0.0
    u = nearby_steps(model.params[name].reshape(-1)[positions], eps) * (1.0 if weights is None else weights)
    norm_sq = float(u @ u)
    where = f"along the kinks of {name} near θ"
    for point in range(LINE_POINTS):
        near = moved(model.params, point, rng, eps)
        flat = near[name].reshape(-1)
        losses = [as_loss_value(call_model(where, model.model.loss, near, model.data), where, finite=False)]
        taken = []
        for way in (1.0, -1.0):
            shifted = flat.copy()
            shifted[positions] = flat[positions] + way * u
            taken.append(np.array([(shifted[positions] - flat[positions]) @ u / norm_sq]))
            value = call_model(where, model.model.loss, {**near, name: shifted.reshape(near[name].shape)}, model.data)
            losses.append(as_loss_value(value, where, finite=False))
        if losses[0] == losses[1] == losses[2]:
            continue  # the loss did not move at all: rounded coarser than these steps (a float32 cast inside the twin)
        # the loss's rounding there (a float64 loss's, at the largest of the three), or its noise measured along the
        # tensor where the run's own losses are float64
        noise = np.array([max(2 * eps * max(abs(value) for value in losses), measured)])
        (derivatives[point],), (rounding[point],) = derivative_near(
            np.array([losses[1]]), np.array([losses[2]]), losses[0], taken[0], taken[1], noise
        )
    dot = math.fsum(analytic * u)
    magnitude = math.fsum(np.abs(analytic * u))
    bears_out = line_bears_out(dot, derivatives, rounding, magnitude, float(np.mean(u)), settings.tolerance_for(dtype))
    return bears_out, 3 * LINE_POINTS


def _every_element(loaded: Loaded, name: str, analytic: np.ndarray, weights: np.ndarray) -> DirectionResult:
    """The line moving every element of a tensor up by its own step times ``weights`` (:func:`value_weights`), given
    its ``analytic`` gradient (flat), judged where it is smooth (:func:`.directions.check_direction`)."""
    positions = np.arange(analytic.size)
    steps = (element_steps(loaded, name, positions) * weights).astype(loaded.params[name].dtype)
    g_u = math.fsum(analytic * steps.astype(np.float64))
    # it crosses kinks that are not ties (a ReLU input at exactly 0), as a random direction does: a jump at θ there
    # decides nothing (a correct ReLU before a max-pool under a strong quadratic term failed it)
    return check_direction(loaded, name, KINK_LINE, g_u, {name: (positions, steps)}, jumps_cross=True)


def value_weights(values: np.ndarray) -> np.ndarray:
    """A weight between 0.5 and 1.5 per element that only its value decides (a hash of its bits; 0 and -0 alike):
    equal values move alike along :func:`_every_element`'s line, so ties stay ties, while kinks at different values
    (a clip's two bounds, +1 and -1 slopes) are crossed at rates that do not cancel (moved alike, the clip's line was
    smooth, and both its valid masks put ``g·u`` a whole slope off it). Kinks at one value can still cancel: the line's
    failure is confirmed at points near θ (:func:`judge_lines`)."""
    bits = (np.asarray(values, dtype=np.float64) + 0.0).view(np.uint64)
    with np.errstate(over="ignore"):
        mixed = bits * np.uint64(0x9E3779B97F4A7C15)
    return 0.5 + (mixed >> np.uint64(44)).astype(np.float64) / 2.0**20


def _line(
    loaded: Loaded,
    kinks: Sequence[_Kinks],
    names: Sequence[str],
    chosen: np.ndarray,
    ways: np.ndarray,
    regular: int,
) -> tuple[DirectionResult, np.ndarray]:
    """The line through the ``chosen`` of the tensors' ``kinks`` (concatenated in ``names``' order), each moved by
    its step the way ``ways`` says, judged (:func:`.directions.check_direction`); and those kinks' slots."""
    through, slots, dot, offset = {}, [], [], 0
    for name, mine in zip(names, kinks, strict=True):
        at, ahead = chosen[offset : offset + mine.slots.size], ways[offset : offset + mine.slots.size]
        offset += mine.slots.size
        if at.any():
            values = (mine.steps[at] * ahead[at]).astype(mine.steps.dtype)
            through[name] = (mine.positions[at], values)
            slots.append(mine.slots[at])
            dot.append(mine.analytic[at] * values.astype(np.float64))
    g_u = math.fsum(np.concatenate(dot))
    line = check_direction(loaded, next(iter(through)), KINK_LINE, g_u, through, regular=regular)
    return line, np.concatenate(slots)


def _summed(loaded: Loaded, output: Output, shard: Shard, at: np.ndarray, together: np.ndarray) -> ShardResult:
    """A shard's result summed from what it stored, its kinks (slots ``at``) marked together where ``together`` holds
    them and non-differentiable elsewhere; where that changes what it stored, written and sealed again. A crash
    between the two writes leaves its seal broken: a resumed run computes it again."""
    settings, slots = loaded.settings, loaded.slots
    stored = stored_shard(shard, output)
    if stored is None:
        raise RuntimeError(f"shard {shard.index} of the output could not be read back to mark its kinks")
    wanted = np.where(np.isin(at, together), TOGETHER, NONDIFFERENTIABLE).astype(np.int8)
    if not np.array_equal(stored[_STATUS][at - shard.start], wanted):
        stored[_STATUS] = stored[_STATUS].copy()
        stored[_STATUS][at - shard.start] = wanted
        output.status[shard.start : shard.stop] = stored[_STATUS]
        output.done[shard.index] = shard_seal(settings.identity, shard, stored)
    return summarize_shard(
        slots.layout,
        shard,
        *stored[:6],
        worst=settings.worst,
        seconds=0.0,
        loaded=False,
        indices=None if slots.checked is None else slots.indices(settings.layout, shard.start, shard.stop),
    )
