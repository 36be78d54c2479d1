"""A group's elements judged on a worker: the first pass's verdicts, and the second look at its suspects.

Each suspect is evaluated again along its own line (:mod:`.refine`'s tables and one-sided slopes); one on a kink
whose value lies outside its slopes, or wrong where its own line shows no kink in a tensor that has kinks, at
points near θ (:mod:`.nearby`); and a float32 element wrong or undecided on the model computing in float64 (its
float64 twin), to tell a bug from float32's rounding (:func:`.tolerance.float32_only`). Every function returns the
losses it took: the second look's cost, which the report states.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from ..errors import ModelError
from ..model import as_loss_value
from .fd import noise_ceiling, noise_level, points, step_sizes, too_close
from .groups import FirstPass, Group, first_pass, losses_of, per_element, subgroup, values_of
from .nearby import (
    HIDDEN_POINTS,
    INTERACTING,
    LATE,
    ORDERED,
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
    ordered_part,
    partway,
    piecewise,
    precise,
    reach,
)
from .probe import measured_noise
from .problem import Loaded, ModelExited, call_model
from .refine import LEAP, START, Refined, Row, beyond_the_edge, known_rows, second_look
from .tolerance import (
    AGREE,
    CONVERGED,
    FLOAT32_ONLY,
    INCONCLUSIVE,
    NONDIFFERENTIABLE,
    TOGETHER,
    UNSETTLED,
    VERIFY_LIMIT,
    WRONG,
    Tolerance,
    float32_only,
    inconclusive,
    judge,
    noise_dominated,
    reference,
    suspects,
    unproven,
)

__all__ = ["LEAP_ROOM", "RECHECK_BATCH", "Sides", "judge_group", "kink_codes", "rechecked_in_float64"]

#: A second look's leaps (:data:`.refine.LEAP`) stop at steps this many rounding units of the parameter.
LEAP_ROOM = 2.0**10
#: A float64 kink whose analytic value is one of its slopes is looked at once more, at the step where the gap between
#: its slopes stands this many times above a central difference's noise (:func:`_kink_at_theta`)...
AT_THETA = 64.0
#: ...if that step is this many times finer than the second look's.
AT_THETA_FINER = 8.0
#: Where the tensor's noise leaves that step too coarse, the noise is measured along the element's own line, at this
#: many points on each side of θ (:func:`_own_noise`).
ONE_SIDE = 8
#: ...where the tensor's noise is more than this many rounding units of the loss; each element first at a step this
#: many times coarser (the look's own, for a value at a slope, is precise to 1/32 of the gap: enough to tell one slope
#: from the other, not a 1% error between them, nor in a value a tenth of the gap).
OWN_NOISE = 2.0**10
BETWEEN_PRECISE = 2.0**7
#: ...and that noise is taken only where one side of θ, at spacings over which the loss moves by about the tensor's
#: noise, is this many times quieter than that noise (the side away from a kink a hair off θ, beyond a cone's apex:
#: rounding; a staircase's noise is on both sides).
QUIET = 16.0
#: (Fractions of the step, not powers of two: a float32 term's rounding units are, and points a whole number of them
#: apart hide them; any power of two times 2/3 or 4/5 is at least a fifth of a unit from a whole number.)
UNEVEN = (2 / 3, 4 / 5)

#: A wrong element whose table's differences moved far beyond their rounding after they had settled
#: (:attr:`.refine.Refined.erratic`) is looked at again under the noise measured along its own line, where that is this
#: many times the noise it had (:func:`_louder_along`)...
REMEASURED = 4.0
#: ...measured on both sides of θ, at spacings this many times finer than the step too (two uneven: a staircase's
#: rounding can fall in step with evenly spaced points, and read smooth at one of them)...
SPACINGS = (1.0, 4.0, 1.5, 5.0)
#: ...the loudest at most this many times the quietest, but for one spacing a side (a kink off θ is seen at the
#: spacings whose points reach it, on its side: at most two or three of them)...
SYMMETRIC = 8.0
#: ...or but for all spacings a side save its loudest, where the loss stood still at θ at steps its value would move it
#: by 64 noises (:func:`_kink_at_theta`): a staircase, its stairs far coarser than that noise, or a flat between kinks
#: whose jumps the table would have seen.
QUIET_STILL = len(SPACINGS) - 1

#: The float64 copy's look at a float32 element leaps toward θ only where the copy's loss noise along its tensor is
#: within this many rounding units of the loss (:func:`_in_float64`): float32 rounding inside a float64 loss is
#: about 2**29 of them (review 90: a first layer computed in float32, 1.4e7 along its bias; a pure float64 copy, 0.2
#: to 1), and there the leaps land on its staircase.
APPROACH_NOISE = 2.0**12

#: A float64 element left inconclusive by its first pass's rounding (its bar mostly the loss's noise over the step) is
#: estimated again from steps up to this many times coarser (:func:`judge_group`): the noise over the step shrinks as
#: the step grows, and a smooth function's truncation is what the table measures (review 96: Lennard-Jones atoms, one
#: pair overlapping, the energy 1e9 and its rounding 3e-6, whose other forces had bars of 2% and more: 2% errors in
#: them passed, the tensor verified by the pair's forces)...
COARSER = 32
#: ...the step chosen so that the rounding alone would be this share of what verifies the element.
COARSER_SHARE = 1 / 8

#: A float64 element found wrong along a tensor whose measured noise is this many rounding units of the loss or more is
#: estimated again under the loss's rounding alone (:func:`_look_finer`): that noise is no rounding of float64 but
#: structure finer than the check's steps (a chaotic loss; a feature far narrower than the step, the features
#: benchmark's tanh of width 1e-6 to 1e-4 steps, 186 of whose correct derivatives failed), or float32 inside, which a
#: float64 loss rounds to about 2**29 units (:data:`APPROACH_NOISE`), or terms far larger than the loss (a loss exactly 0).
FINER_NOISE = 2.0**20
#: ...and one it does not verify is unsettled, not wrong, where the analytic values' rounding carried to the loss
#: (``eps·|θ|·|g|``, the group's largest) times this reaches that noise and the first estimate's allowance exceeds its
#: size: a derivative that large makes the loss that erratic, and shows only at steps finer than float64's (review 101:
#: Lorenz-63 summed to t = 30, derivatives of 3.5e11; the logistic map summed over 60 steps, 1e13 to 1e15). A loss
#: exactly 0 beside terms of 1e6 is as noisy, but its first estimates are precise, and its wrong elements stay wrong.
EXPLAINED = 2.0**20
#: A finer look whose noise is within this of the first's took no finer steps than it (:func:`_look_finer`).
NOT_FINER = 16.0

#: How many of a tensor's wrong float32 elements are judged again in float64 at a time (:func:`_float32_only`):
#: once one is wrong in float64 too, the rest are not judged again (the tensor is wrong either way), so a bug
#: everywhere costs one batch per tensor and shard, and the verdict does not depend on where shards end.
RECHECK_BATCH = 8


class Sides(NamedTuple):
    """Per element, what its second look found of its one-sided slopes (:class:`.refine.Refined`): whether they keep a
    gap (a kink), that gap signed (the slope moving up less the one moving down), its margin, and the way whose slope
    the analytic value is nearer (+1 up, -1 down: :mod:`.together` moves it so) and whether it is that slope
    (within the margin and the tolerance: the value a convention such as relu'(0) = 0 or the first maximum gives),
    and whether its kinks interact with other elements' (a value outside its slopes that derivatives at points near θ
    bear out: :mod:`.nearby`), the slopes moving down and up at its finest row, and the step of the loss where it moved
    along the element's line as a staircase far coarser than its noise (:attr:`.refine.Refined.quantum`); no kink, NaN
    (0, False) where there was no second look."""

    kink: np.ndarray
    gap: np.ndarray
    margin: np.ndarray
    toward: np.ndarray
    tight: np.ndarray
    interacting: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    quantum: np.ndarray

    @classmethod
    def none(cls, size: int) -> Sides:
        nan, no = np.full(size, np.nan), np.zeros(size, dtype=bool)
        return cls(no, nan, nan.copy(), np.zeros(size), no.copy(), no.copy(), nan.copy(), nan.copy(), nan.copy())


def kink_codes(status: np.ndarray, sides: Sides) -> np.ndarray:
    """Per element on a kink (``status`` non-differentiable, its gap found and not 0), what its second look found of
    its slopes (``sides``), in one byte: the sign of its gap, times 1 plus 1 where its value is nearer the slope
    moving up plus 2 where it is that slope (:attr:`Sides.tight`), or times :data:`INTERACTING` where its kinks
    interact (:attr:`Sides.interacting`); 0 elsewhere (decoded by :mod:`.together`)."""
    gap = np.where(np.isfinite(sides.gap), sides.gap, 0.0)
    on = (status == NONDIFFERENTIABLE) & ((gap != 0) | sides.interacting)
    magnitude = np.where(sides.interacting, INTERACTING, 1 + (sides.toward > 0) + 2 * sides.tight)
    # (an interacting element whose own line shows no kink has no gap: taken as convex, moved with both signs anyway)
    code = np.where(on, np.where(gap < 0, -1, 1), 0) * magnitude
    return np.asarray(code, dtype=np.int8)


def judge_group(
    loaded: Loaded,
    group: Group,
    first: FirstPass,
    analytic: np.ndarray,
    kinked: frozenset[str] = frozenset(),
    approach: bool | None = None,
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Sides], tuple[int, int]]:
    """A group's ``(numeric, allowed, status, steps, sides)``, judged from its first pass (:func:`first_pass`) and,
    for suspects, a second look (:func:`_look_again`; ``sides``: what it found of their one-sided slopes; ``kinked``:
    tensors known to have kinks; ``approach``: whether a kink's look may leap toward θ, by default where the group is
    float64, :func:`.refine.second_look`); and ``(how many suspects, the losses their look took)``."""
    settings, est = loaded.settings, first.est
    numeric, steps = est.numeric.copy(), first.h.copy()
    # one tolerance per group: it depends on the dtype and the scheme
    tolerance = settings.tolerance_for(group.dtype)
    allowed, status = judge(analytic, numeric, est.bar, est.lower, est.upper, tolerance, est.smooth)
    suspect, cost, sides = np.zeros(analytic.size, dtype=bool), 0, Sides.none(analytic.size)
    if settings.second_look and settings.scheme != "complex-step":
        precision = "float64" if settings.promote else group.dtype
        scale = per_element(loaded, settings.scale_of, group)
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
                group.dtype == "float64" if approach is None else approach,
            )
            for mine, found in zip(sides, looked, strict=True):
                mine[suspect] = found
    # (the looks below: float64 elements, or float32 ones judged in float64, at the automatic steps)
    looking = settings.second_look and settings.scheme != "complex-step" and settings.epsilon is None
    looking &= group.dtype == "float64" or settings.promote
    # a suspect along whose line the loss moved as a staircase far coarser than its noise: judged again under that step
    stairs = suspect & np.isfinite(sides.quantum) & (status != AGREE) & np.isfinite(analytic)
    if looking and stairs.any():
        cost += _look_stairs(loaded, group, first, analytic, stairs, (numeric, allowed, status, steps, sides), kinked)
    others = ~suspect
    status[others] = inconclusive(analytic[others], numeric[others], est.bar[others], status[others], tolerance)
    # inconclusive for the loss's noise over the step: estimated again from coarser steps (float64: float32's first
    # steps are already 0.04 of the parameter's scale)
    noisy = np.zeros(analytic.size, dtype=bool)
    if looking:
        noisy = others & (status == INCONCLUSIVE) & noise_dominated(est.bar, est.rounding) & np.isfinite(analytic)
        if noisy.any():
            cost += _look_coarser(
                loaded, group, first, analytic, noisy, (numeric, allowed, status, steps, sides), kinked
            )
    # wrong or inconclusive along a tensor whose noise is no float64 rounding: estimated again at the steps its
    # rounding allows (an inconclusive one too: a dropped element, 0, within a vague estimate's allowance, passed
    # beside elements the finer look verified; review 103)
    finer = np.zeros(analytic.size, dtype=bool)
    if looking:
        rounding = FINER_NOISE * settings.eps("float64") * abs(settings.loss0)
        # (an inconclusive one only where its first estimate was of no definite sign)
        finer = ((status == WRONG) | ((status == INCONCLUSIVE) & _vague(numeric, allowed))) & (first.noise > rounding)
        finer &= np.isfinite(analytic)
        if finer.any():
            cost += _look_finer(loaded, group, first, analytic, finer, (numeric, allowed, status, steps, sides), kinked)
    # a kink whose value is one of its slopes, as a convention at θ gives (relu'(0) = 0): is the kink at θ indeed?
    # and an inconclusive one whose estimate has no definite sign: is the loss smooth at far finer steps?
    at_theta = np.zeros(analytic.size, dtype=bool)
    if looking:
        # (and one outside its own kink's slopes that points near θ bore out: a kink 1e-8 off θ is near them too)
        near = sides.interacting & sides.kink
        kinks = (status == NONDIFFERENTIABLE) & ((sides.tight & ~sides.interacting) | near) & (np.abs(sides.gap) > 0)
        # (an analytic 0 too, beside an estimate not 0: a mask dropping a ReLU input 1e-9 above 0; review 110)
        vague = (status == INCONCLUSIVE) & _vague(numeric, allowed) & ((analytic != 0) | (numeric != 0))
        vague &= np.isfinite(analytic) & np.isfinite(numeric)
        # (and one between its kink's slopes, where the tensor's noise may be the kink's own: below)
        between = (status == NONDIFFERENTIABLE) & ~kinks & (np.abs(sides.gap) > 0) & np.isfinite(analytic)
        at_theta = kinks | vague | between
        if at_theta.any():
            cost += _kink_at_theta(
                loaded, group, first, analytic, (kinks, vague, between), (numeric, allowed, status, steps, sides)
            )
    # wrong: is the loss smooth at far finer steps, with another slope there?
    narrow = np.zeros(analytic.size, dtype=bool)
    if looking:
        narrow = (status == WRONG) & np.isfinite(analytic) & np.isfinite(numeric) & (analytic != 0)
        if narrow.any():
            cost += _narrower_than_the_step(loaded, group, first, analytic, narrow, (numeric, allowed, status, steps))
    again = suspect | noisy | finer | at_theta | narrow
    return (numeric, allowed, status, steps, sides), (int(np.count_nonzero(again)), cost)


def _kink_at_theta(
    loaded: Loaded,
    group: Group,
    first: FirstPass,
    analytic: np.ndarray,
    chosen: tuple[np.ndarray, np.ndarray, np.ndarray],
    judged: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Sides],
) -> int:
    """A float64 group's ``chosen`` ``(kinks, vague, between)`` elements. The kinks, each analytic value one of its
    slopes (a convention at θ: relu'(0) = 0, the first of tied maxima), or outside its own kink's slopes where points
    near θ bore it out (they lie beyond a kink 1e-8 off θ too: review 106's leaky ReLU, its mask on the wrong side,
    passed so), looked at once more: that slope at the step where the gap between the slopes stands :data:`AT_THETA`
    times above its noise (no finer than :data:`LEAP_ROOM` rounding units of the parameter in its own dtype: float32
    cannot tell a kink a few of its units off θ from one at θ, and its code takes the convention there). At a kink at θ
    it is the value's slope still: one loss. Where it is not, the slope on the other side, and both at twice the step:
    where each pair agrees within its noise and the two pairs' means agree, the loss is smooth over both steps, and the
    derivative at θ is that mean (review 104: a ReLU input 1e-8 above 0 whose backward mask, ``x > 2e-8``, said 0 passed
    as a kink's convention, as did a spline's knot 5e-9 off, its bin taken on the wrong side: errors of 100% and more).
    There the element is wrong, that mean its estimate. (Kinks on both sides of θ inside the steps, or a feature
    narrower than them, leave a pair apart or the means too.) Only where the step is :data:`AT_THETA_FINER` times finer
    than the second look's; what it does not find wrong stays a kink. And the ``vague`` inconclusive ones, their
    estimates of no definite sign, both sides at once, at the step where the value stands that far above the noise
    (review 106: a ReLU input 1e-9 above 0, no curvature, its mask on the wrong side: the value 1 where the derivative
    is 5 was inconclusive, 4.17 ± 4.33, and its tensor passed). Where the tensor's noise is :data:`OWN_NOISE` rounding
    units of the loss or more, an element still undecided, or one whose value lies between its kink's slopes, has its
    noise measured along its own line (:func:`_own_noise`), and is looked at once more where that allows a step
    :data:`AT_THETA_FINER` times finer: a value off the loss's slope there is unsettled, not wrong (a staircase the loss
    rounds a term to stands still at such steps). Updates ``judged`` ``(numeric, allowed, status, steps, sides)`` in
    place; returns the losses it took."""
    numeric, allowed, status, steps, sides = judged
    kinks, vague, between = chosen
    tolerance = loaded.settings.tolerance_for(group.dtype)
    resolved = loaded.settings.atol_scale > 0  # every tensor's noise measured, none moving in steps (review 71's did)
    atol = tolerance.atol if resolved or "atol" in dict(loaded.settings.tolerance) else 0.0
    values = first.values.astype(np.float64)
    room = _room(values, group.dtype)
    side = np.where(sides.toward > 0, 1.0, -1.0)  # the way whose slope the value is
    with np.errstate(invalid="ignore", divide="ignore"):
        # what the step must resolve: the value, or where it is 0 the estimate; a kink's gap
        size = np.where(vague, np.where(analytic != 0, np.abs(analytic), np.abs(numeric)), np.abs(sides.gap))

    def finest(noise: np.ndarray | float, at: np.ndarray) -> np.ndarray:
        """The steps at which the elements ``at``'s ``size`` stands :data:`AT_THETA` times above ``noise``."""
        return _finest(noise, size[at], room[at])

    def look(at: np.ndarray, noise: np.ndarray, fine: np.ndarray, verdict: int = WRONG) -> tuple[np.ndarray, int]:
        """The look at the elements ``at``, under ``noise`` at steps ``fine`` (each theirs), a value it finds off
        the smooth loss's derivative given ``verdict``: where it found the loss smooth, and the losses it took."""

        def slopes(moves: list[float]) -> tuple[list[np.ndarray], list[np.ndarray]]:
            """The slopes from θ to θ + move·side·fine, each move in turn, and their noise."""
            points = np.stack([values[at] + move * side[at] * fine for move in moves], axis=1)
            (losses,) = losses_of(loaded, [subgroup(group, np.isin(np.arange(values.size), at))], [points])
            with np.errstate(invalid="ignore", divide="ignore"):
                taken = points - values[at][:, None]
                found = (losses - loaded.settings.loss0) / taken
                spread = 2 * noise[:, None] / np.abs(taken)
            return list(found.T), list(spread.T)

        (own,), (own_noise,) = slopes([1.0])
        with np.errstate(invalid="ignore"):  # a kink goes on only where that is not the value's slope at that step
            going = vague[at] | between[at] | (np.abs(own - analytic[at]) > tolerance.safety * own_noise)
        found = np.zeros(at.size, dtype=bool)
        if not going.any():
            return found, int(at.size)
        cost = int(at.size)
        at, noise, fine, own, own_noise = at[going], noise[going], fine[going], own[going], own_noise[going]
        (other, own2, other2), (other_noise, own2_noise, other2_noise) = slopes([-1.0, 2.0, -2.0])
        # (a value between the slopes: their gap may be the curvature's too, twice as wide at twice the step; a kink's
        # stays as wide)
        mean, spread, smooth = _paired(
            np.stack([own, other, own2, other2], axis=1),
            np.stack([own_noise, other_noise, own2_noise, other2_noise], axis=1),
            between[at],
        )
        with np.errstate(invalid="ignore"):
            # (the atol too, where it follows the gradient's scale or the user set it: the analytic value's own
            # rounding, which no bar sees; review 123: sigmoid(z) - 1 at logits past 36, half a rounding unit of 1
            # off, failed beside 1.4e-18 allowed. Not the default's absolute 1e-13 where the noise was not measured:
            # it can exceed a whole gradient of 1e-14, and a 40% error in a leaky ReLU's mask passed; review 125)
            allowance = atol + tolerance.safety * spread + tolerance.rtol * np.abs(mean)
            wrong = smooth & (np.abs(mean - analytic[at]) > allowance)
            # a vague one only where the loss moved there: its step came from its value, not from a gap the coarser
            # rows measured, and a loss whose steps are far coarser than its noise measured stands still at it (a
            # classifier confident on every row, its loss 8e-17 moving in steps of 1e-17, its gradient 1e-16: review
            # 71's, failed)
            moved = (own != 0) | (other != 0) | (own2 != 0) | (other2 != 0)
            # (not where the probe measured every tensor's noise and no staircase showed along the element's line: the
            # loss resolves that noise, and one standing still where the value would move it 64 noises disproves the
            # value; review 125: Σ c·relu(z), z 1e-9 below 0, its mask z > -2e-9, 3 where the derivative is 0, passed)
            # (each of the four within the noise of θ's loss: one rounding unit of the other terms is a move)
            still = wrong & (np.abs(own) <= own_noise / 2) & (np.abs(other) <= other_noise / 2)
            still &= (np.abs(own2) <= own2_noise / 2) & (np.abs(other2) <= other2_noise / 2)
            wrong &= moved | ~vague[at] | (resolved & ~np.isfinite(sides.quantum[at]))
        # ...and where the loss stood still (a kink's value too) and the noise along its own line at the first pass's
        # step is far above that noise on both sides, unsettled, not wrong: a term the loss rounds to a staircase its
        # rows did not show, its stairs a kink's gap to them, which the probe's lines avoided as kinks (review 127:
        # np.round(t, 9) inside a float64 loss, its correct derivative of 0.99 called wrong), or kinks on both sides
        # of a flat, which read so too (review 128: a ReLU's mask on the wrong side of a kink 1e-9 off θ, two more
        # kinks 1e-3 off on either side; left inconclusive, its tensor passed)
        stood = np.flatnonzero(wrong & still)
        unsettled = np.zeros(at.size, dtype=bool)
        if stood.size:
            louder, spent = _louder_along(
                loaded, group, values, at[stood], first.h[at[stood]], noise[stood], QUIET_STILL
            )
            unsettled[stood[np.isfinite(louder)]] = True
            cost += spent
        judged = wrong | unsettled
        where = at[judged]
        numeric[where], allowed[where], status[where], steps[where] = (
            mean[judged],
            allowance[judged],
            np.where(unsettled[judged], UNSETTLED, verdict),
            fine[judged],
        )
        sides.kink[where] = False
        found[going] = smooth & moved
        return found, cost + 3 * int(at.size)

    everywhere = np.arange(values.size)
    fine = finest(first.noise, everywhere)
    # (a value between a kink's slopes is looked at only below, where the noise is measured again)
    at = np.flatnonzero((kinks | vague) & (fine * AT_THETA_FINER <= steps) & np.isfinite(fine))
    cost = look(at, first.noise[at], fine[at])[1] if at.size else 0
    # Where the tensor's noise is far above the loss's rounding, it may be a feature's: a kink a hair off θ, or a
    # cone's apex (|x − q|, q 1e-8 from x), crossed by the probe's lines, whose level became every element's noise,
    # and the step it allowed crosses the feature too (review 110: a ReLU input 1e-8 above 0, its mask x > 1e-7,
    # passed as a kink's convention, its noise 5e-10 where the loss's rounding is 7e-16; review 113: a point 1e-8 from
    # its target, its distance's derivative's sign flipped, passed as a value between a kink's slopes). Measured again
    # along the element's own line (:func:`_own_noise`), each element still undecided that a step far finer would
    # resolve is looked at once more at that step; first at a step :data:`BETWEEN_PRECISE` times coarser, where a smooth
    # loss's estimate is that much more precise against the value (a value between the slopes; and one at a slope of
    # kinks off θ: review 128, L1 residuals 1e-9 off 0, a 3% error a tenth of the gap passed). A value off the
    # loss's slope there is unsettled, not wrong: a term the loss rounds to a staircase may stand still at those
    # steps, and the slope there is the other terms' alone (reviews 114 and 115: float32 rounding, (s + 1e8) − 1e8 or
    # '%.12g' inside the loss failed correct values beside inputs 1e-9 to 1e-6 off |x|'s or relu's kink).
    unit = loaded.settings.eps("float64") * abs(loaded.settings.loss0)
    again = (kinks | vague | between) & (status != WRONG) & ~np.isfinite(sides.quantum)
    again &= first.noise > OWN_NOISE * unit
    with np.errstate(invalid="ignore"):
        again &= finest(unit, everywhere) * AT_THETA_FINER <= np.fmin(steps, fine)
    if not again.any():
        return cost
    at = np.flatnonzero(again)
    wide = np.fmin(fine[at], steps[at] / (2 * AT_THETA_FINER))  # (the step the tensor's noise allowed)
    own, spent = _own_noise(loaded, group, values, at, finest(unit, at), (wide, first.noise[at]))
    noise = np.fmin(first.noise[at], own)
    closer = finest(noise, at)
    with np.errstate(invalid="ignore"):
        finer = closer * AT_THETA_FINER <= np.fmin(steps[at], fine[at])
    # (precise against the value where it is the smaller: a 1% error in a value a tenth of the gap)
    value = np.where(analytic[at] != 0, np.fmin(np.abs(analytic[at]), size[at]), size[at])
    with np.errstate(invalid="ignore", divide="ignore"):
        coarser = _finest(BETWEEN_PRECISE * noise, value, room[at])
        precise = finer & (coarser * AT_THETA_FINER <= np.fmin(steps[at], fine[at]))
    if precise.any():
        smooth, used = look(at[precise], noise[precise], coarser[precise], UNSETTLED)
        spent += used
        finer[np.flatnonzero(precise)[smooth]] = False
    if finer.any():
        spent += look(at[finer], noise[finer], closer[finer], UNSETTLED)[1]
    return cost + spent


def _room(values: np.ndarray, dtype: str) -> np.ndarray:
    """:data:`LEAP_ROOM` rounding units of each parameter's value in its own dtype: no step is finer."""
    return np.asarray(LEAP_ROOM * np.spacing(np.abs(values).astype(dtype)).astype(np.float64))


def _finest(noise: np.ndarray | float, size: np.ndarray, room: np.ndarray) -> np.ndarray:
    """The steps, powers of two and no finer than ``room``, at which ``size`` stands :data:`AT_THETA` times above
    ``noise`` (each element's)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.fmax(2.0 ** np.ceil(np.log2(AT_THETA * noise / size)), room))


def _narrower_than_the_step(
    loaded: Loaded,
    group: Group,
    first: FirstPass,
    analytic: np.ndarray,
    wrong: np.ndarray,
    judged: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> int:
    """A float64 group's ``wrong`` elements looked at once more, each along its own line, at the step where its value
    stands :data:`AT_THETA` times :data:`BETWEEN_PRECISE` above the tensor's noise (no finer than :data:`LEAP_ROOM`
    rounding units of the parameter), where that is :data:`AT_THETA_FINER` times finer than the step of the estimate
    the verdict was made on: the slopes from θ to ``±`` that step and twice it (:func:`_slopes_around`), then at steps
    :data:`.refine.LEAP` times coarser, up to that verdict's, while the loss stays smooth there and the slope stays
    within both noises of the last (each as much more precise: review 131, a tanh 1e-6 of the step wide beside an
    exponential, its first estimate 0.12% off, within the finest step's allowance). Where each pair agrees within its
    noise and the two pairs' means agree (the loss smooth there), and the coarsest such slope bears the value out and
    contradicts that estimate, the element is unsettled, not wrong: a feature narrower than every step the check took bent all of them
    alike (review 130: the median of three values a hair, 1e-12 to 1e-9, from both others, whose derivative is the
    window's weight only between them; every step saw 0, and the correct value failed). A value it does not bear out
    stays wrong; a tensor's first such element (or one the look cannot take finer) ends its look, :data:`RECHECK_BATCH`
    at a time (the tensor is wrong either way: review 131, a bug everywhere in a loss of cancelling terms cost 4x the
    check). Updates ``judged`` ``(numeric, allowed, status, steps)`` in place; returns the losses it took."""
    numeric, allowed, status, steps = judged
    tolerance = loaded.settings.tolerance_for(group.dtype)
    values = first.values.astype(np.float64)
    unit = loaded.settings.eps("float64") * abs(loaded.settings.loss0)
    room = _room(values, group.dtype)

    def finest(noise: np.ndarray, at: np.ndarray, share: float = 1.0) -> np.ndarray:
        """The steps at which the elements ``at``'s values stand ``share`` of :data:`AT_THETA` times above ``noise``."""
        return _finest(share * noise, np.abs(analytic[at]), room[at])

    cost = 0
    for batches in _batches(group, wrong):
        for at in batches:
            # (the tensor's noise far above the loss's rounding may be the feature's own: measured along each line)
            noise = first.noise[at].copy()
            loud = noise > OWN_NOISE * unit
            if loud.any():
                wide = np.fmin(finest(noise[loud], at[loud]), steps[at[loud]] / (2 * AT_THETA_FINER))
                own, spent = _own_noise(
                    loaded, group, values, at[loud], finest(np.full(loud.sum(), unit), at[loud]), (wide, noise[loud])
                )
                noise[loud], cost = np.fmin(noise[loud], own), cost + spent
            fine = finest(noise, at, BETWEEN_PRECISE)
            kept = fine * AT_THETA_FINER <= steps[at]
            at, noise, fine = (part[kept] for part in (at, noise, fine))
            if not at.size:
                break
            mean, bar, smooth, spent = _slopes_around(loaded, group, values, at, fine, noise)
            cost += spent
            # (then at steps LEAP times coarser while the loss stays smooth and its slope stays put: as much more
            # precise; review 131: a tanh far narrower than the step, its first estimate 0.12% off, within the finest
            # step's allowance)
            step, going = fine.copy(), smooth.copy()
            while True:
                going &= step * LEAP * AT_THETA_FINER <= steps[at]
                if not going.any():
                    break
                wider, wider_bar, held, spent = _slopes_around(
                    loaded, group, values, at[going], LEAP * step[going], noise[going], curving=True
                )
                cost += spent
                with np.errstate(invalid="ignore"):
                    held &= np.abs(wider - mean[going]) <= 2 * (wider_bar + bar[going])
                moved = np.flatnonzero(going)[held]
                mean[moved], bar[moved], step[moved] = wider[held], wider_bar[held], LEAP * step[moved]
                going[np.flatnonzero(going)[~held]] = False
            with np.errstate(invalid="ignore"):
                allowance = tolerance.atol + tolerance.safety * bar + tolerance.rtol * np.abs(mean)
                borne = smooth & (np.abs(mean - analytic[at]) <= allowance) & (np.abs(mean - numeric[at]) > allowance)
            status[at[borne]], numeric[at[borne]], steps[at[borne]] = UNSETTLED, mean[borne], step[borne]
            allowed[at[borne]] = allowance[borne]
            if not (borne.all() and kept.all()):
                break
    return cost


def _slopes_around(
    loaded: Loaded,
    group: Group,
    values: np.ndarray,
    at: np.ndarray,
    step: np.ndarray,
    noise: np.ndarray,
    curving: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Along the elements ``at``'s own lines, the slopes from θ to ``±step`` and ``±2·step`` (each theirs, under their
    ``noise``): the mean of the first pair, its noise, whether the loss is smooth there (each pair agrees within four
    times its noise, or where ``curving``, their gaps grow with the step as curvature's do; and the two means agree),
    and the losses that took."""
    moves = np.array([1.0, -1.0, 2.0, -2.0])
    perturbed = values[at][:, None] + step[:, None] * moves
    (losses,) = losses_of(loaded, [subgroup(group, np.isin(np.arange(values.size), at))], [perturbed])
    with np.errstate(invalid="ignore", divide="ignore"):
        taken = perturbed - values[at][:, None]
        slope = (losses - loaded.settings.loss0) / taken
        spread = 2 * noise[:, None] / np.abs(taken)
    return (*_paired(slope, spread, curving), int(losses.size))


def _paired(
    slope: np.ndarray, spread: np.ndarray, curving: np.ndarray | bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From one-sided slopes along each element's line to ``+s, −s, +2s, −2s`` (columns; ``spread`` their noise):
    the mean of the first pair, its noise, and whether the loss is smooth there: each pair agrees within four times its
    noise (or, where ``curving``, their gaps grow with the step as curvature's do) and the two pairs' means agree."""
    with np.errstate(invalid="ignore"):
        mean, mean2 = (slope[:, 0] + slope[:, 1]) / 2, (slope[:, 2] + slope[:, 3]) / 2
        bar, bar2 = (spread[:, 0] + spread[:, 1]) / 2, (spread[:, 2] + spread[:, 3]) / 2
        gap, gap2 = slope[:, 0] - slope[:, 1], slope[:, 2] - slope[:, 3]
        smooth = (np.abs(gap) <= 4 * bar) & (np.abs(gap2) <= 4 * bar2)
        smooth |= curving & (np.abs(gap2 - 2 * gap) <= 4 * (bar2 + 2 * bar))
        smooth &= np.abs(mean - mean2) <= 2 * (bar + bar2)
    return mean, bar, np.asarray(smooth, dtype=bool)


def _own_noise(
    loaded: Loaded,
    group: Group,
    values: np.ndarray,
    at: np.ndarray,
    spacing: np.ndarray,
    coarse: tuple[np.ndarray, np.ndarray],
) -> tuple[np.ndarray, int]:
    """The loss's noise along the elements ``at``'s own lines, at ``spacing`` (a power of two, each), and the losses
    that took: on each side of θ, from θ, ECNoise's level (:func:`.fd.noise_level`), or where it gives none the least
    of the levels its differences of orders 2 to 4 put on it (:func:`.fd.noise_ceiling` from order 2: the first is the slope, no noise), or where those
    are all exactly 0 (the loss exact to its last unit along the line) one rounding unit of the loss; the larger
    side's. One rounding unit too where the loss stood still on both sides (a flat at θ: review 128's dead zone, its
    mask forgotten, whose edges 1e-7 off made the tensor's noise 1e-7 and passed ±1 where the derivative is 0; a
    staircase's stair shows as such below). Infinite where a side's losses moved in steps, or stood still on that side
    alone (:func:`.fd.too_close`), or were not finite;
    and where, given ``coarse`` ``(step, noise)`` (the tensor's noise and the step the look took under it), neither
    side of θ is :data:`QUIET` times quieter than that noise (and shows no noise that many times the fine spacing's)
    at the spacings over which the loss moves by about it (:data:`UNEVEN`, from 8 spacings off θ): the loss is smooth
    at the fine spacing, but its noise at the check's steps is real (a term rounded to float32, or ``(sin x + 1e8) −
    1e8``, stands still at the fine spacing, where the look measures the other terms' slope alone: review 114, correct
    gradients failed)."""
    levels = functools.partial(_line_noise, loaded, group, values, at)  # (step, first) -> (measured, found)
    up, down = levels(spacing, 1)[1], levels(-spacing, 1)[1]
    # (standing still on both sides: one rounding unit of the loss, a value that would move it by 64 disproved where the
    # loss is quiet beyond, below; on one side only, a stair's edge may lie on the other)
    unit = loaded.settings.eps("float64") * abs(loaded.settings.loss0)
    fine = np.where((up == 0) & (down == 0), unit, np.where((up == 0) | (down == 0), math.inf, np.fmax(up, down)))
    # (the loss moving by about that noise per step: a staircase's stands still at most of them, or is noise there far
    # above the fine spacing's; from 8 steps off θ: a cone's apex 1e-8 off bends the first, smoothly)
    wide, noise = coarse[0] / AT_THETA, coarse[1]
    quiet = np.zeros(at.size, dtype=bool)
    for side in (1.0, -1.0):
        still = np.ones(at.size, dtype=bool)
        # (at two spacings: at one, a staircase's every step may be the same whole number of its units)
        for uneven in UNEVEN:
            measured, found = levels(side * uneven * wide, ONE_SIDE)
            with np.errstate(invalid="ignore"):  # (a line standing still there shows nothing: not quiet)
                still &= (found * QUIET <= noise) & (found > 0) & ~(measured > QUIET * fine)
        quiet |= still
    return np.where(quiet, fine, math.inf), 6 * ONE_SIDE * int(at.size)


def _line_noise(
    loaded: Loaded, group: Group, values: np.ndarray, at: np.ndarray, step: np.ndarray, first: int
) -> tuple[np.ndarray, np.ndarray]:
    """Along the elements ``at``'s own lines, at ``ONE_SIDE`` points ``step`` apart from ``first`` steps off θ (from θ
    where ``first`` is 1): ECNoise's level (NaN where it gives none), and the level :func:`_own_noise` takes (0 where
    the loss stood still, infinite where it moved in steps)."""
    chosen = np.isin(np.arange(values.size), at)
    eps = loaded.settings.eps("float64")
    points = values[at][:, None] + step[:, None] * np.arange(first, first + ONE_SIDE, dtype=np.float64)
    (losses,) = losses_of(loaded, [subgroup(group, chosen)], [points])
    measured, found = np.full(at.size, math.nan), np.full(at.size, math.inf)
    for k, row in enumerate(losses):
        line = np.concatenate([[loaded.settings.loss0], row]) if first == 1 else row
        if np.all(np.isfinite(line)) and np.ptp(line) == 0:
            found[k] = 0.0  # it stood still: no noise at this spacing (a staircase's stair, or a flat)
        elif np.all(np.isfinite(line)) and not too_close(line):
            measured[k] = noise_level(line.tolist()) or math.nan
            bound = noise_ceiling(line, lowest=2)
            found[k] = np.nan_to_num(measured[k], nan=bound if np.isfinite(bound) else 0.0) or eps * float(
                np.max(np.abs(line))
            )
    return measured, found


def _louder_along(
    loaded: Loaded,
    group: Group,
    values: np.ndarray,
    at: np.ndarray,
    step: np.ndarray,
    noise: np.ndarray,
    quiet: int = 1,
) -> tuple[np.ndarray, int]:
    """The loss's noise along the elements ``at``'s own lines at ``step`` (rounded down to a power of two), from 2 to 9
    spacings off θ, where it is :data:`REMEASURED` times their ``noise`` or more, and alike on both sides of θ and at
    the :data:`SPACINGS` finer ones, within :data:`SYMMETRIC`, but for ``quiet`` spacings a side; NaN elsewhere. And
    the losses that took. Noise is alike everywhere; a kink reads as noise only on the side it is on, and at the spacings
    whose points reach it (its distance from θ within 2 to 9 of them): one between θ and its first point is seen at
    none (the features benchmark's two ReLUs either side of θ, 7e-8 and 2e-8 off, read so from θ on at both spacings,
    and a 3% error was left unsettled). One spacing a side may read smooth: a staircase's rounding at evenly spaced
    points of a nearly linear term can fall in step with them (review 127: np.round(t, 9) inside a float64 loss read
    smooth on one side at 2**-17, and its correct derivative failed)."""
    spacing = 2.0 ** np.floor(np.log2(step))
    levels = np.array(
        [[_line_noise(loaded, group, values, at, side * spacing / f, 2)[0] for f in SPACINGS] for side in (1, -1)]
    )
    measured = np.fmax(levels[0, 0], levels[1, 0])  # at the step itself
    with np.errstate(invalid="ignore"):
        kept = np.sort(np.nan_to_num(levels, nan=0.0), axis=1)[:, quiet]  # each side's, past its `quiet` quietest
        louder = (measured > REMEASURED * noise) & (np.fmin(kept[0], kept[1]) * SYMMETRIC >= measured)
    return np.where(louder, measured, np.nan), 2 * len(SPACINGS) * ONE_SIDE * int(at.size)


def _look_finer(
    loaded: Loaded,
    group: Group,
    first: FirstPass,
    analytic: np.ndarray,
    wrong: np.ndarray,
    judged: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Sides],
    kinked: frozenset[str],
) -> int:
    """A second look (:func:`_look_again`) at a float64 group's ``wrong`` elements (wrong, or inconclusive with a first
    estimate of no definite sign), along tensors whose measured noise is no float64 rounding (:data:`FINER_NOISE`), under
    the loss's rounding alone: each table goes on to the steps float64 resolves. A chaotic loss (an ODE integrated over a long horizon) changes erratically at the check's steps, which the
    probe measures as noise, and there its differences settle on a slope of that scale: review 101's Lorenz-63 by RK4
    to t = 15, its adjoint exact, failed on 144 against a derivative of 1.1e7, its noise 0.01 of the loss. Its
    derivative shows at finer steps, where the loss is smooth again. What the finer look finds, per element:

    - agreement, or an estimate within :data:`VERIFY_LIMIT` of the analytic value under a wider bar (a table converging
      slowly): that verdict, estimate and allowance replace the first; never an estimate of exactly 0 (review 103: a
      staircase at those steps, float32 inside or a loss quantised by huge terms, "verified" a dropped element so);
    - an inconclusive element found wrong at truly finer steps (:data:`NOT_FINER`), its estimate not 0: wrong;
    - wrong: the first verdict stands, with its numbers (a loss rounded to float32 inside is a staircase at those steps,
      whose differences there settle on 0);
    - nothing settled, but the analytic value held there, of its sign and order (an estimate within an allowance below
      the value's size, or between the finest row's slopes no farther apart): unsettled, its tensor not verified (the
      coarse steps' verdict was on a slope that is no derivative; a staircase's differences, 0 or a jump over the step,
      hold a wrong value so only by chance);
    - not agreeing where no step float64 takes could show the derivative (:data:`EXPLAINED`: the first estimate of no
      definite sign), unless a look at truly finer steps (:data:`NOT_FINER`) found it wrong: unsettled;
    - anything else: wrong, as the first verdict said.

    Tensor by tensor, :data:`RECHECK_BATCH` at a time: a tensor's first batch with an element still wrong ends its look
    (a bug everywhere costs one batch). Returns the losses it took."""
    numeric, allowed, status, steps, sides = judged
    tolerance, eps = loaded.settings.tolerance_for(group.dtype), loaded.settings.eps("float64")
    # the loss's rounding, and an element's own: its state's rounding carried to the loss as a step of its parameter
    # would be (a chaotic loss's: each step's rounding grows as its derivative does)
    rounding = 2 * eps * np.max(np.where(np.isfinite(first.table), np.abs(first.table), 0.0), axis=1, initial=0.0)
    carried = eps * np.abs(analytic) * np.maximum(1.0, np.abs(first.values.astype(np.float64)))
    own = np.fmax(np.fmax(rounding, carried), eps * abs(loaded.settings.loss0))
    fine = dataclasses.replace(first, noise=np.fmin(first.noise, own))
    # (the state's rounding is every element's: the largest derivative carries it to the loss), where the first
    # estimate was of no definite sign: no step float64 takes shows the derivative
    explained = EXPLAINED * float(np.max(carried, where=np.isfinite(carried), initial=0.0)) >= first.noise
    explained &= _vague(numeric, allowed)
    scale, cost = per_element(loaded, loaded.settings.scale_of, group), 0
    for batches in _batches(group, wrong):
        for at in batches:
            chosen = np.zeros(analytic.size, dtype=bool)
            chosen[at] = True
            (again_numeric, again_allowed, again, again_steps, again_sides), spent = _look_again(
                loaded,
                group,
                fine,
                chosen,
                analytic[chosen],
                (allowed[chosen], status[chosen]),
                tolerance,
                scale,
                "float64",
                kinked,
                True,
            )
            cost += spent
            mine = analytic[chosen]
            with np.errstate(invalid="ignore"):
                off = np.abs(mine - again_numeric)
                agreed = (again == AGREE) | (
                    (again == INCONCLUSIVE) & (off <= VERIFY_LIMIT * reference(mine, again_numeric))
                )
                agreed &= again_numeric != 0  # (a loss that did not move at those steps verifies nothing)
                held = (again == INCONCLUSIVE) & (off <= again_allowed) & (again_allowed < np.abs(mine))
                # or between the finest row's slopes, each a derivative within its step, no wider apart than the value
                low, high = np.fmin(again_sides.lower, again_sides.upper), np.fmax(again_sides.lower, again_sides.upper)
                held |= (again != WRONG) & (low <= mine) & (mine <= high) & (high - low < np.abs(mine))
                # (neither verifies a value of 0 beside differences of 0: a staircase at those steps, review 103)
                held &= ~agreed
            # an inconclusive element the finer steps find wrong, where they were finer, the loss moved there and their
            # estimate has a sign (a value beyond an estimate of no definite sign is one too large for any step taken
            # to show: review 101's logistic map iterated 60 times, derivatives of 1e13, read 387 ± 7,543 so)
            was_wrong = status[chosen] == WRONG
            finer_steps = fine.noise[chosen] * NOT_FINER < first.noise[chosen]
            finer_steps &= ~_vague(again_numeric, again_allowed)
            found_wrong = (
                ~was_wrong & (again == WRONG) & finer_steps & (again_numeric != 0) & np.isfinite(again_numeric)
            )
            adopted = agreed | (held & np.isfinite(again_numeric)) | found_wrong
            where = np.flatnonzero(chosen)[adopted]
            numeric[where], allowed[where], steps[where] = (
                again_numeric[adopted],
                again_allowed[adopted],
                again_steps[adopted],
            )
            status[where] = np.where(agreed | found_wrong, again, UNSETTLED)[adopted]
            for side, part in zip(sides, again_sides, strict=True):
                side[where] = part[adopted]
            # and where no step float64 takes can show the derivative, unless truly finer steps found it wrong
            unreached = ~agreed & explained[chosen] & ((again != WRONG) | ~finer_steps)
            status[np.flatnonzero(chosen)[(held | unreached) & ~found_wrong]] = UNSETTLED
            if np.any(status[chosen] == WRONG):
                break
    return cost


def _look_stairs(
    loaded: Loaded,
    group: Group,
    first: FirstPass,
    analytic: np.ndarray,
    stairs: np.ndarray,
    judged: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Sides],
    kinked: frozenset[str],
) -> int:
    """A float64 group's ``stairs``: suspects along whose lines the loss moved as a staircase far coarser than its noise
    (:attr:`.refine.Refined.quantum`), whose finest differences, exactly 0, said nothing of the derivative (review 107:
    ``sin(w[:3]) + float32(1e3 + exp(w[3]))``, its noise measured along ``w`` as float64's, failed w[3]'s exact
    derivative as "wrong: numeric 0"). Judged again from coarser steps (:func:`_look_coarser`) with that step as their
    noise; unsettled where that decides nothing, their tensor not verified: the staircase hides the derivative at every
    step that could resolve it. An analytic 0 is unsettled, not wrong, where they disagree with it. Updates ``judged``
    ``(numeric, allowed, status, steps, sides)`` in place; returns the losses it took."""
    numeric, allowed, status, steps, sides = judged
    tolerance, est = loaded.settings.tolerance_for(group.dtype), first.est
    raised = dataclasses.replace(first, noise=np.where(stairs, np.fmax(first.noise, sides.quantum), first.noise))
    with np.errstate(invalid="ignore", divide="ignore"):
        bar = np.fmax(est.bar, sides.quantum / first.h)  # (a staircase's step over the first pass's)
        numeric[stairs], steps[stairs], status[stairs] = est.numeric[stairs], first.h[stairs], UNSETTLED
        allowed[stairs] = tolerance.allowance(est.numeric[stairs], bar[stairs])
    cost = _look_coarser(loaded, group, raised, analytic, stairs, judged, kinked, bar)
    # a value of exactly 0 is not failed so: a quantiser with a step of 2^-k (fixed point) is a staircase whose
    # derivative, 0, is the loss's; the envelope the coarser steps see is not (review 108)
    status[stairs & (analytic == 0) & (status == WRONG)] = UNSETTLED
    return cost


def _vague(numeric: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Whether each estimate is of no definite sign: its allowance reaches its size (or either is NaN)."""
    with np.errstate(invalid="ignore"):
        return np.asarray(~(allowed < np.abs(numeric)), dtype=bool)


def _look_coarser(
    loaded: Loaded,
    group: Group,
    first: FirstPass,
    analytic: np.ndarray,
    noisy: np.ndarray,
    judged: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Sides],
    kinked: frozenset[str],
    bar: np.ndarray | None = None,
) -> int:
    """A second look (:func:`_look_again`) at a float64 group's ``noisy`` elements, inconclusive for the loss's noise
    over their step, from steps up to :data:`COARSER` times coarser: each starts where the rounding alone would be
    :data:`COARSER_SHARE` of what verifies it (its first pass's error bar, or ``bar``). What it decides (agrees, wrong)
    replaces the group's ``judged`` ``(numeric, allowed, status, steps, sides)`` in place; an element it leaves
    undecided keeps its verdict. Returns the losses it took."""
    numeric, allowed, status, steps, sides = judged
    tolerance, est = loaded.settings.tolerance_for(group.dtype), first.est
    bar = est.bar if bar is None else bar
    with np.errstate(invalid="ignore", divide="ignore"):
        needed = tolerance.safety * bar[noisy] / (VERIFY_LIMIT * reference(analytic[noisy], numeric[noisy]))
    multiple = np.clip(2.0 ** np.ceil(np.log2(needed / COARSER_SHARE)), 4.0, COARSER)
    scale = per_element(loaded, loaded.settings.scale_of, group)
    (again_numeric, again_allowed, again, again_steps, again_sides), cost = _look_again(
        loaded,
        group,
        first,
        noisy,
        analytic[noisy],
        (allowed[noisy], status[noisy]),
        tolerance,
        scale,
        "float64",
        kinked,
        True,
        multiple,
    )
    decided = np.isin(again, (AGREE, WRONG))
    at = np.flatnonzero(noisy)[decided]
    numeric[at], allowed[at] = again_numeric[decided], again_allowed[decided]
    status[at], steps[at] = again[decided], again_steps[decided]
    for mine, part in zip(sides, again_sides, strict=True):
        mine[at] = part[decided]
    return cost


def rechecked_in_float64(
    loaded: Loaded,
    group: Group,
    first: FirstPass,
    analytic: np.ndarray,
    judged: tuple[np.ndarray, np.ndarray, np.ndarray],
    sides: tuple[np.ndarray, np.ndarray],
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], tuple[int, int]]:
    """Part of the second look: a float32 group's elements judged again where the model computes in float64
    (:func:`_float32_only`), the wrong ones (excused where only float32 makes them wrong), then the undecided ones
    (confirmed wrong where float64 finds them so). ``judged``: the group's ``(numeric, allowed, status)`` after its
    own look (:func:`judge_group`); ``sides``: its ``(kink, interacting)`` (:class:`Sides`). Returns them again,
    ``(numeric, allowed, status, interacting)``, and ``(elements judged again, the losses that took)``."""
    numeric, allowed, status = (part.copy() for part in judged)
    kink, interacting = sides[0], sides[1].copy()
    kinked = frozenset(spec.name for spec, _ in subgroup(group, kink | (status == NONDIFFERENTIABLE)).segments)
    looked, evaluations = 0, 0
    exact: np.ndarray | None = None
    for round in ("wrong", "in float64", "undecided"):
        if round == "wrong":
            chosen = (status == WRONG) & np.isfinite(analytic)  # (a NaN or inf is wrong in any dtype)
        else:  # (not a kink float64's points near θ bore out: the float32 noise would blur them)
            if exact is None:
                # the twin's own noise judges what float32 could not decide where it computes in float64 (else
                # float32's does): asked only where something is left that it would judge, the twin made on first use
                everywhere = _disagreeing(analytic, numeric, allowed, status, np.ones(status.size, dtype=bool))
                left = _undecided(group, status, everywhere) & ~interacting
                exact = _in_float64_indeed(loaded, group, analytic) if left.any() else np.zeros(status.size, dtype=bool)
            disagreeing = _disagreeing(analytic, numeric, allowed, status, exact)
            undecided = _undecided(group, status, disagreeing) & np.isfinite(analytic) & ~interacting
            chosen = undecided & (exact if round == "in float64" else ~exact)
        if not chosen.any():
            continue
        (status[chosen], numeric[chosen], allowed[chosen], found), (n, cost) = _float32_only(
            loaded,
            subgroup(group, chosen),
            analytic[chosen],
            numeric[chosen],
            allowed[chosen],
            status[chosen],
            first.values[chosen].astype(np.float64)[:, None] + first.taken[chosen][:, :2],
            first.table[chosen][:, :2],
            loaded.settings.noise if round == "undecided" else None,
            kinked,
            round == "in float64",
        )
        looked, evaluations = looked + n, evaluations + cost
        interacting[chosen] |= found
    return (numeric, allowed, status, interacting), (looked, evaluations)


def _undecided(group: Group, status: np.ndarray, disagreeing: np.ndarray) -> np.ndarray:
    """The elements of a group that decide nothing, on a kink, unsettled or ``disagreeing`` (:func:`_disagreeing`), in
    tensors with no element wrong in the group."""
    tensor = np.repeat(np.arange(len(group.segments)), [positions.size for _, positions in group.segments])
    wrong = np.isin(tensor, tensor[status == WRONG])
    return np.asarray(((status == NONDIFFERENTIABLE) | (status == UNSETTLED) | disagreeing) & ~wrong, dtype=bool)


def _disagreeing(
    analytic: np.ndarray, numeric: np.ndarray, allowed: np.ndarray, status: np.ndarray, apart: np.ndarray
) -> np.ndarray:
    """Inconclusive elements that disagree without proof (beyond their allowance: :func:`.tolerance.unproven`), and,
    where ``apart``, those within it whose analytic and numeric values differ by more than would verify them
    (:data:`.tolerance.VERIFY_LIMIT` of their magnitude): within a wide allowance a few percent's error agrees."""
    with np.errstate(invalid="ignore"):
        beyond = np.abs(analytic - numeric) > VERIFY_LIMIT * reference(analytic, numeric)
    within = apart & (status == INCONCLUSIVE) & beyond
    return np.asarray(unproven(analytic, numeric, allowed, status) | within, dtype=bool)


def _in_float64_indeed(loaded: Loaded, group: Group, analytic: np.ndarray) -> np.ndarray:
    """Per element of a float32 group, whether the model's float64 twin computes its tensor in float64: its loss at θ
    is not a float32 value (a float64 loss is one by chance once in 2**29), and its gradient differs from the float32
    one (``analytic``) at some element of the tensor in the group. A model that casts what it is given to float32 is a
    staircase at float64's steps, whose noise measures as float64's, and its verdicts are no better than the float32
    check's, only finer-stepped: two ReLUs within 1e-3 of float32's step from θ (33 correct derivatives of the features
    benchmark), an MLP computing in float32 plus a float64 constant or reduced in float64 (review 84) were called
    wrong."""
    twin = loaded.float64_twin()
    differs = np.zeros(analytic.size, dtype=bool)
    loss = twin.settings.loss0 if twin is not None else math.nan
    if twin is None or not math.isfinite(loss) or float(np.float32(loss)) == loss:
        return differs
    try:
        gradient = twin.analytic_gradient()
    except ModelExited:  # (a model's sys.exit is no failure to look past: it ends the check, exit 2)
        raise
    except ModelError:  # the model cannot compute so in float64 (the re-judging drops the twin)
        return differs
    first = 0
    for spec, positions in group.segments:
        mine = slice(first, first + positions.size)
        exact = np.asarray(gradient[spec.name], dtype=np.float64).reshape(-1)[positions]
        differs[mine] = np.any(exact != analytic[mine])
        first += positions.size
    return differs


def _batches(group: Group, chosen: np.ndarray, names: frozenset[str] | None = None) -> Iterator[list[np.ndarray]]:
    """Per tensor of a group (of ``names`` only, where given), its ``chosen`` elements (a mask over the group), as
    indices into the group :data:`RECHECK_BATCH` at a time: a caller judging them again stops a tensor at its first
    batch that settles it."""
    first = 0
    for spec, positions in group.segments:
        mine = first + np.flatnonzero(chosen[first : first + positions.size])
        first += positions.size
        if names is None or spec.name in names:
            yield [mine[start : start + RECHECK_BATCH] for start in range(0, mine.size, RECHECK_BATCH)]


def _float32_only(
    loaded: Loaded,
    group: Group,
    analytic: np.ndarray,
    numeric: np.ndarray,
    allowed: np.ndarray,
    status: np.ndarray,
    at_step: np.ndarray,
    losses_at_step: np.ndarray,
    noise: tuple[float, ...] | None = None,
    kinked: frozenset[str] = frozenset(),
    approach: bool = False,
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
    its error, and to confirm an undecided one wrong where float64 has the power to (review 88: under float32's noise
    at float64's steps a kink's element had bars a quarter of its value, and 3% errors passed as the subgradients of
    kinks a hair off θ). Where the model does not compute in float64 indeed (:func:`_in_float64_indeed`), an undecided
    element is judged under the float32 check's noise (``loaded.settings.noise``), an upper bound of the float64
    loss's. ``approach``: where it computes in float64 indeed, the twin's look at a kink leaps toward θ
    (:func:`.refine.second_look`) and passes inside kinks a float32 unit or two off θ, which float32 cannot tell from
    kinks at θ (review 89: 3% errors between their slopes passed as their subgradients); only along tensors whose
    noise is float64's (:data:`APPROACH_NOISE`). And there a value float64 finds outside a kink's slopes, which its
    points near θ did not bear out, is wrong in float32 too (``kinks_judged``, :func:`.tolerance.float32_only`).

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
    scale = per_element(loaded, loaded.settings.scale_of, group)
    tolerance = loaded.settings.tolerance_for(group.dtype)
    for batches in _batches(group, np.ones(status.size, dtype=bool)):
        for at in batches:
            part = subgroup(group, np.isin(np.arange(status.size), at))
            try:
                exact, judged, spent = _in_float64(twin, part, noise, kinked, approach)
                (same_points,) = losses_of(twin, [part], [at_step[at]])
            except ModelExited:  # (a model's sys.exit is no failure to look past: it ends the check, exit 2)
                raise
            except ModelError:  # the model cannot compute so in float64: no twin for the rest of the run
                loaded.drop_float64_twin()
                return (status, numeric, allowed, interacting), (judged_again, cost)
            judged_again, cost = judged_again + at.size, cost + spent + same_points.size
            span = at_step[at, 0] - at_step[at, 1]
            with np.errstate(invalid="ignore", over="ignore"):  # (losses not finite: review 99's float32 overflow)
                at_h = (
                    (losses_at_step[at, 0] - losses_at_step[at, 1]) / span,
                    (same_points[:, 0] - same_points[:, 1]) / span,
                )
            status[at], confirmed = float32_only(
                analytic[at], numeric[at], allowed[at], status[at], exact, *judged, scale[at], at_h, tolerance, approach
            )
            interacting[at] = judged[4] & (status[at] == NONDIFFERENTIABLE)
            # and an element float64 verifies whose float32 loss was not finite at a step float32 took (a float32
            # exp overflowing where float64's does not) carries float64's estimate: no non-finite loss fails its run
            replaced = confirmed | ((status[at] == FLOAT32_ONLY) & ~np.isfinite(numeric[at]))
            # a confirmed element carries float64's estimate moved by the float32 analytic value's own rounding (its
            # distance from float64's), and float64's allowance: |a − n| is then the float64 gradient's disagreement,
            # the bug's own size and sign, and no part of that rounding (review 96: stiff pair forces in float32, a 1e-5
            # error, 7e-8, read as |a-n| 1.9e-5 where 9.9e-10 is allowed: a user would hunt a 0.3% bug; review 112: a
            # Gamma regression's 0.1% error, its float32 gradient 0.2% off float64's the other way, read as "1.001x"
            # and |a-n| 1.6e-4 where 2.9e-4 is allowed, called wrong)
            shift = np.where(confirmed, analytic[at] - exact, 0.0)
            numeric[at] = np.where(replaced, judged[0] + shift, numeric[at])
            allowed[at] = np.where(replaced, judged[1], allowed[at])
            if np.any(judged[2] == WRONG):
                break
    return (status, numeric, allowed, interacting), (judged_again, cost)


def _in_float64(
    twin: Loaded,
    group: Group,
    noise: tuple[float, ...] | None = None,
    kinked: frozenset[str] = frozenset(),
    approach: bool = False,
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray], int]:
    """A group judged on a run's float64 twin as `precision: float64` judges it: the loss's noise along its
    tensors measured once, as the probe does (or ``noise`` given, per tensor), then a first pass and a second look.
    Its float64 analytic values, ``(numeric, allowed, status, kinked, interacting)`` (``kinked``: where its second
    look saw a kink; ``interacting``: a kink whose value derivatives at points near θ bear out, :mod:`.nearby`), and
    the losses that took. ``approach``: see :func:`_float32_only`; only along tensors whose measured noise is within
    :data:`APPROACH_NOISE` rounding units of the loss (not where the copy rounds to float32 inside)."""
    cost, own = 0, twin.settings
    if noise is None:
        measured = list(own.noise or [math.nan] * len(own.layout.tensors))
        for number in {twin.number[spec.name] for spec, _ in group.segments}:
            if math.isnan(measured[number]):  # the float64 loss cancels where the model's does: its own noise
                measured[number], spent = measured_noise(twin, number)
                cost += spent
        own = twin.settings = dataclasses.replace(own, noise=tuple(measured))
        rounding = APPROACH_NOISE * float(np.finfo(np.float64).eps) * abs(own.loss0)
        approach &= all(own.noise_of(twin.number[spec.name]) <= rounding for spec, _ in group.segments)
    else:
        twin.settings = dataclasses.replace(own, noise=noise)
    try:
        (first,) = first_pass(twin, [group])
        gradient = twin.analytic_gradient()
        exact = np.concatenate(
            [np.asarray(gradient[spec.name]).reshape(-1)[positions] for spec, positions in group.segments]
        ).astype(np.float64)
        (numeric, allowed, status, _, sides), (_, looked) = judge_group(twin, group, first, exact, kinked, approach)
    finally:
        twin.settings = own
    return exact, (numeric, allowed, status, sides.kink, sides.interacting), cost + first.table.size + looked


def _look_again(
    loaded: Loaded,
    group: Group,
    first: FirstPass,
    suspect: np.ndarray,
    analytic: np.ndarray,
    judged: tuple[np.ndarray, np.ndarray],
    tolerance: Tolerance,
    scale: np.ndarray,
    precision: str,
    kinked: frozenset[str] = frozenset(),
    approach: bool = False,
    coarser: np.ndarray | None = None,
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Sides], int]:
    """The second look (:func:`.refine.second_look`) at a group's suspect elements, each along its own axis,
    and its verdicts (:func:`.tolerance.judge_again`). With ``coarser`` (per suspect), its table starts at that multiple
    of the first pass's step, not at the first pass's own rows (:data:`COARSER`).

    A float64 suspect found wrong whose table's differences moved far beyond their rounding after they had settled
    (:attr:`.refine.Refined.erratic`) is judged again under the noise measured along its own line, where that is far
    more than the tensor's (:func:`_louder_along`): where that does not say wrong, it is unsettled.

    ``suspect`` masks the group's elements; ``analytic`` and ``judged`` (the first pass's allowances and
    statuses) are the suspects'. ``kinked``: the tensors known to have kinks besides those the suspects show.
    Returns the suspects' ``(numeric, allowed, status, step)`` and the losses the second look took.
    """
    settings = loaded.settings
    k = np.flatnonzero(suspect)
    sub, values, est = subgroup(group, suspect), first.values[k], first.est
    # The table starts at the first pass's steps, and reuses its losses; but a fixed step may be far too fine
    # for the loss's noise: then it starts no finer than the automatic one.
    h, known = first.h[k], known_rows(first.table[k], first.taken[k], settings.scheme)
    if coarser is not None:
        h, known = h * coarser / START, []
    if settings.epsilon is not None:
        h, known = np.maximum(h, step_sizes(values, settings.scheme, None)), []
    # leaps stop where a step is within LEAP_ROOM rounding units of the parameter's value
    leap_floor = LEAP_ROOM * settings.eps(group.dtype) * np.maximum(1.0, np.abs(values.astype(np.float64))) / h

    def losses(which: np.ndarray, multiple: np.ndarray) -> Row:
        chosen = np.zeros(values.size, dtype=bool)
        chosen[which] = True
        perturbed, taken = points(values[which], multiple * h[which], "central")
        (table,) = losses_of(loaded, [subgroup(sub, chosen)], [perturbed])
        return table[:, 0], table[:, 1], taken[:, 0], taken[:, 1]

    converged = CONVERGED.get(precision, CONVERGED["float32"])
    past_edge = est.nonfinite[k] != 0  # its first-pass losses were not finite

    def look(which: np.ndarray, noise: np.ndarray) -> Refined:
        """The second look at the suspects ``which`` (indices into them) under ``noise`` (theirs)."""
        return second_look(
            lambda at, multiple: losses(which[at], multiple),
            which.size,
            h[which],
            settings.loss0,
            noise,
            scale[k][which],
            [tuple(column[which] for column in row) for row in known],
            converged,
            leap_floor[which],
            analytic[which],
            (est.numeric[k][which], est.bar[k][which], est.smooth[k][which]),
            past_edge[which],
            approach=approach,
            resolution=settings.eps(group.dtype) * abs(settings.loss0),
            first_step=first.h[k][which],
        )

    refined = look(np.arange(k.size), first.noise[k])
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
    numeric, allowed, status = beyond_the_edge(
        past_edge, est.numeric[k], (numeric, allowed, status), unsettled=UNSETTLED
    )
    steps = np.where(np.isfinite(numeric), steps, first.h[k])
    gap = np.broadcast_to(refined.gap, (k.size,)).astype(np.float64)
    margin = np.broadcast_to(refined.margin, (k.size,)).astype(np.float64)
    # each slope's margin for a value beyond it, where the look measured them (:attr:`.refine.Refined.margins`)
    low_margin, high_margin = (
        np.broadcast_to(side, (k.size,)).astype(np.float64) for side in refined.margins or (margin, margin)
    )
    cost, interacting = refined.evaluations, np.zeros(k.size, dtype=bool)
    # wrong on a kink, outside its own slopes: judged again where other elements' kinks may interact with its own
    again = (status == WRONG) & np.asarray(refined.kink, dtype=bool) & np.isfinite(analytic)
    if precision == "float64" and again.any():
        at = np.flatnonzero(again)
        lower, upper = (np.broadcast_to(side, (k.size,))[at] for side in (refined.lower, refined.upper))
        status[at], spent = _kinks_nearby(
            loaded,
            subgroup(sub, again),
            (values[at], analytic[at]),
            (lower, upper, margin[at]),
            first.noise[k][at],
            tolerance,
            margins=(low_margin[at], high_margin[at]),
        )
        interacting[at], cost = status[at] == NONDIFFERENTIABLE, cost + spent
    # wrong where its own line shows no kink, in a tensor that has kinks: judged again at points near θ too (review
    # 76: a max-pool's tie whose windows' gradients cancel along its line)
    kink = np.broadcast_to(np.asarray(refined.kink, dtype=bool), (k.size,))
    hidden = (status == WRONG) & ~kink & np.isfinite(analytic) & np.isfinite(numeric)
    if precision == "float64" and hidden.any():
        kinked = kinked | {spec.name for spec, _ in subgroup(sub, kink).segments}
        accepted, doubtful, spent = _hidden_kinks(
            loaded, sub, hidden, kinked, (values, analytic, numeric, steps), first.noise[k], tolerance
        )
        status[accepted], interacting[accepted], cost = NONDIFFERENTIABLE, True, cost + spent
        status[doubtful] = UNSETTLED
    # wrong where its table's differences moved far beyond their rounding after they had settled: the noise along its
    # own line is measured at that row's step, and where it is far more, its table is looked at again under it; where
    # that does not disagree, it is unsettled, not wrong (float64: float32's rows reach its noise within a few halvings)
    erratic = np.broadcast_to(refined.erratic, (k.size,))
    # (not one with no finite estimate: a loss not finite at its steps stays wrong, review 116)
    doubted = np.flatnonzero((status == WRONG) & np.isfinite(erratic) & np.isfinite(numeric) & (precision == "float64"))
    if doubted.size:
        louder, spent = _louder_along(loaded, sub, values, doubted, erratic[doubted], first.noise[k][doubted])
        redo = doubted[np.isfinite(louder)]
        if redo.size:
            again = look(redo, louder[np.isfinite(louder)])
            before = (est.numeric[k][redo], *(verdict[redo] for verdict in judged), est.bar[k][redo])
            status[redo[again.judge(analytic[redo], before, tolerance, UNSETTLED)[2] != WRONG]] = UNSETTLED
            spent += again.evaluations
        cost += spent
    with np.errstate(invalid="ignore"):
        up, down = np.where(gap >= 0, refined.upper, refined.lower), np.where(gap >= 0, refined.lower, refined.upper)
        toward = np.where(np.abs(analytic - up) <= np.abs(analytic - down), 1.0, -1.0)
        tight = np.fmin(np.abs(analytic - up), np.abs(analytic - down)) <= tolerance.room(up, down, margin)
    lower, upper = (np.broadcast_to(side, (k.size,)).astype(np.float64) for side in (refined.lower, refined.upper))
    quantum = np.broadcast_to(refined.quantum, (k.size,)).astype(np.float64)
    found = Sides(np.asarray(refined.kink, dtype=bool), gap, margin, toward, tight, interacting, lower, upper, quantum)
    return (numeric, allowed, status, steps, found), cost


def _kinks_nearby(
    loaded: Loaded,
    group: Group,
    at_theta: tuple[np.ndarray, np.ndarray],
    slopes: tuple[np.ndarray, np.ndarray, np.ndarray],
    noise: np.ndarray,
    tolerance: Tolerance,
    hidden: bool = False,
    margins: tuple[np.ndarray, np.ndarray] | None = None,
    part: float = 1.0,
) -> tuple[np.ndarray, int]:
    """The status of a group's elements on a kink whose analytic value lies outside their one-sided ``slopes``
    (``(lower, upper, margin)``; ``margins``: each slope's own, :attr:`.refine.Refined.margins`), judged
    on their derivatives at points near θ (:mod:`.nearby`), and the losses that took. ``at_theta``: their ``(values, analytic values)``; ``noise``: the loss's noise along each. ``hidden``: the
    elements' own lines show no kink (``slopes``: their derivative there twice, and 0), in a tensor that has kinks
    (:func:`.nearby.judge_hidden`). ``part``: of the points' move and their steps (:func:`.nearby.reach`)."""
    settings = loaded.settings
    values, analytic = at_theta
    eps = settings.eps(group.dtype)
    rng = np.random.default_rng(SEED)
    derivatives = np.full((POINTS, analytic.size), np.nan)
    rounding = np.full((POINTS, analytic.size), np.nan)
    # the loss's noise over the points' steps must leave their derivatives precise, or they stay wrong (review 76: a
    # loss exactly 0 at θ, or 1e7 beside a max-pool, widened an element's range by 5 and passed a sign flip)
    vague = ~precise(noise, values, eps, analytic, *slopes[:2], tolerance, part)
    # (the points that break ties by the flat index take their steps inside those ties: where that finer step leaves
    # an element's derivative there imprecise, it is left out)
    ordered = part * ordered_part(per_element(loaded, lambda number: settings.layout.tensors[number].size, group))
    ordered_precise = precise(noise, values, eps, analytic, *slopes[:2], tolerance, ordered)
    status, decided, cost = np.full(analytic.size, WRONG, dtype=np.int8), vague.copy(), 0
    matched, last = np.zeros(analytic.size, dtype=bool), HIDDEN_POINTS if hidden else POINTS
    # (whose first SETTLE points showed no interaction: drawn on to LATE, and there never a kink, below)
    late = np.zeros(analytic.size, dtype=bool)
    for point in range(last + 1):
        if point and point % ROUND == 0:
            if hidden:
                status, decided = judge_hidden(matched, slopes[0], derivatives, rounding, tolerance)
            else:
                status, decided = judge_nearby(analytic, *slopes, derivatives, rounding, tolerance, margins)
                if point == SETTLE:
                    late = (status == WRONG) & ~vague
                # an interaction the first points did not show may still be the kinks' (a tie split evenly among
                # its maxima: review 118), or a range the later points widen past what any one gradient at θ
                # gives (two tied pixels given d + e and -e: review 120): not verified either way
                status = np.where(late & (status != WRONG), TOGETHER, status)
            status = np.where(vague, WRONG, status).astype(np.int8)
            settled = np.where(late, LATE, SETTLE) <= point
            decided = (
                (decided & ((status == NONDIFFERENTIABLE) | settled | hidden)) | vague | (late & (status == TOGETHER))
            )
        if decided.all() or point == last:
            return status, cost
        near = Loaded(settings, loaded.model, moved(loaded.params, point, rng, eps, part), loaded.data)
        left = np.flatnonzero(~decided)
        steps, kept = (ordered[left], ordered_precise[left]) if point < ORDERED else (part, True)
        found, rounding[point, left], spent = _derivatives_near(near, group, left, noise[left], steps)
        derivatives[point, left] = np.where(kept, found, np.nan)
        cost += spent
        if hidden:  # a value seen there: the same part of the way there, else curvature or a kink off θ made it
            seen = left[
                matching(analytic[left], slopes[0][left], derivatives[point, left], rounding[point, left], tolerance)
            ]
            if seen.size:
                on_the_way = Loaded(settings, loaded.model, partway(loaded.params, near.params), loaded.data)
                finer = PART * (ordered[seen] if point < ORDERED else part)
                there, _, spent = _derivatives_near(on_the_way, group, seen, noise[seen], finer)
                matched[seen], cost = piecewise(derivatives[point, seen], there, slopes[0][seen]), cost + spent
    return status, cost


def _hidden_kinks(
    loaded: Loaded,
    group: Group,
    hidden: np.ndarray,
    kinked: frozenset[str],
    at_theta: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    noise: np.ndarray,
    tolerance: Tolerance,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Which of a group's ``hidden`` elements (wrong where their own line shows no kink) in the tensors ``kinked``
    (known to have kinks) their derivatives at points near θ bear out (:func:`_kinks_nearby`), tensor by tensor,
    :data:`RECHECK_BATCH` at a time (:func:`_batches`): a tensor's first element that stays wrong ends its re-judging
    (its tensor is wrong either way; a bug everywhere costs one batch); which of them are unsettled; and the losses
    that took. ``at_theta``: the group's ``(values, analytic values, derivatives at θ, the steps those were estimated
    at)``: the points stay within those steps (:func:`.nearby.reach`, in powers of two; the elements of a batch share
    their points), but for :data:`LEAP_ROOM` rounding units of the parameter in its own dtype (a float32 element's kink
    a unit or two off θ is at θ to float32, whose code takes a convention there: the features benchmark's kink 5e-9
    off float32's 0.37, its value the slope on the other side, was called wrong where its float64 twin's points stayed
    inside). Where the loss's noise leaves the derivatives there imprecise, the points move as far as ever, and a value
    borne out there is unsettled, not a kink (those points may lie beyond a kink off θ) nor wrong (review 129: a
    correct max-pool on an integer image, a pixel tied at θ in windows that cancel along its line and 1e-11 below
    another, its line smooth only at steps of 1e-11, failed)."""
    values, analytic, numeric, smooth = at_theta
    eps = loaded.settings.eps(group.dtype)
    room = _room(values, group.dtype)
    cap = reach(values, np.fmax(smooth, room), eps)
    parts = 2.0 ** np.floor(np.log2(cap))
    wide = (cap < 1) & ~precise(noise, values, eps, analytic, numeric, numeric, tolerance, parts)
    parts = np.where(wide, 1.0, parts)
    accepted, cost = np.zeros(hidden.size, dtype=bool), 0
    for part in np.unique(parts[hidden])[::-1]:
        for batches in _batches(group, hidden & (parts == part), kinked):
            for at in batches:
                status, spent = _kinks_nearby(
                    loaded,
                    subgroup(group, np.isin(np.arange(hidden.size), at)),
                    (values[at], analytic[at]),
                    (numeric[at], numeric[at], np.zeros(at.size)),
                    noise[at],
                    tolerance,
                    hidden=True,
                    part=float(part),
                )
                accepted[at], cost = status == NONDIFFERENTIABLE, cost + spent
                if not accepted[at].all():
                    break
    return accepted & ~wide, accepted & wide, cost


def _derivatives_near(
    near: Loaded, group: Group, chosen: np.ndarray, noise: np.ndarray, part: np.ndarray | float = 1.0
) -> tuple[np.ndarray, np.ndarray, int]:
    """The ``chosen`` (indices) of a group's elements' derivatives at a point near θ (``near``; ``part`` of the way
    to one, their steps as much finer: the ties it breaks are as much closer) and their rounding
    (:func:`.nearby.derivative_near`), and the losses that took."""
    loss = as_loss_value(call_model("loss near θ (kinks interacting)", near.loss), "near θ", finite=False)
    mask = np.zeros(group.columns.size, dtype=bool)
    mask[chosen] = True
    left = subgroup(group, mask)
    moved_values = values_of(near, left)
    steps = part * nearby_steps(moved_values, near.settings.eps(group.dtype))
    perturbed, taken = points(moved_values, steps, "central")
    (table,) = losses_of(near, [left], [perturbed])
    derivative, rounding = derivative_near(table[:, 0], table[:, 1], loss, taken[:, 0], taken[:, 1], noise)
    return derivative, rounding, 1 + table.size
