"""Kinks that interact: an element the second look calls wrong on a kink, judged again at points near θ.

Pure numpy; :func:`.judging._kinks_nearby` evaluates the losses. A kink is judged along the element's own line
``t ↦ J(θ + t·e_i)``: a valid subgradient lies between its one-sided slopes. That holds where its kinks do not
interact with other elements'. Where they do (an input tied in overlapping max-pool windows, a pixel feeding several
ReLUs exactly at 0 through weights of both signs), the derivative along ``e_i`` just off θ depends on which side of
each kink the *other* elements lie: its limiting values (Clarke's generalised gradient, projected on ``e_i``) span
more than the line's slopes, and a correct convention (the first maximum, relu'(0) = 0) can lie outside them. Review
74: numpy-ml's max-pool with overlapping windows on an integer image failed 40 seeds of 40, its gradient the exact
derivative at the nearby smooth point θ − 1e-3·rank.

So such an element is evaluated again at a few points ``θ + δ·v`` (:func:`moved`: ``v`` Gaussian over every
parameter, ``δ`` far below the first pass's steps), where the loss is differentiable: its central difference there,
at a step :data:`INSIDE` times below ``δ``, is one of those limiting values (a point whose own line still shows a
kink at that step is left out). Only where the loss's noise leaves that difference precise (:func:`precise`: review
76 found a loss exactly 0 at θ, and one of 1e7, widening a range by 5 and passing a sign flip). Then
(:func:`judge_nearby`):

- its analytic value lies within the range of those values and of its own slopes (widened by the kink's room and
  their rounding): a valid subgradient, non-differentiable, not wrong;
- else, where some value lay beyond its own slopes (its kinks interact), it is not verified
  (:data:`~.tolerance.TOGETHER`): neither wrong (the points drawn may miss the one whose derivative it is) nor a kink;
- else it stays wrong: the points nearby show no interaction, and its slopes bound every valid value.

An element wrong where its own line shows no kink, in a tensor that has kinks, is judged at the same points
(:func:`judge_hidden`): a pixel tied in two windows whose gradients cancel has one slope on both sides of its line.
There only a derivative seen at a point counts, the analytic value itself, and only one that is the same 1/64 of
the way there (:func:`piecewise`). No value beyond every derivative near θ (widened by a small part of the value) passes so. A range per element is not
the tensor's gradient jointly (a tie given half its window's gradient lies within each): :mod:`.together` moves every
kink of the tensor at once at such points (:func:`line_bears_out`), and where that cannot tell, the elements judged
here are not verified. Float64
losses only: at steps this fine float32's rounding hides the derivative (a float32 model's float64 twin does it, in
:func:`.judging._float32_only`). Cost: one loss per point and two per element still undecided; points are drawn
:data:`ROUND` at a time, up to :data:`POINTS`, until every element is in range or, after :data:`SETTLE`, shows no
interaction.
"""

from __future__ import annotations

import math

import numpy as np

from .refine import GAP_SIGNIFICANT
from .tolerance import NONDIFFERENTIABLE, TOGETHER, VERIFY_LIMIT, WRONG, Tolerance

__all__ = [
    "HIDDEN_POINTS",
    "INSIDE",
    "INTERACTING",
    "LATE",
    "LINE_POINTS",
    "ORDERED",
    "POINTS",
    "ROUND",
    "SEED",
    "SETTLE",
    "derivative_near",
    "judge_hidden",
    "judge_nearby",
    "line_bears_out",
    "matching",
    "moved",
    "nearby_steps",
    "ordered_part",
    "partway",
    "piecewise",
    "precise",
    "reach",
]

#: Points near θ, at most, drawn :data:`ROUND` at a time; an element whose derivatives at the first :data:`SETTLE`
#: show no interaction stops there, wrong. Ties of many elements in overlapping max-pool windows make a given
#: limiting value rare among random points (one in 64 in review 74's seed 1), hence the first two (:func:`moved`);
#: and an element tied in several windows shows its windows' interaction at one point in ten or fewer (review 118:
#: a tie split evenly among its maxima, jax's ``max``, failed 10 of 15 seeds of CS231n's 3x3 max-pool at stride 1
#: after 8 points). Such an element is drawn points on to :data:`LATE`, and where they show the interaction it is not
#: verified (:data:`~.tolerance.TOGETHER`), never a kink: a range widened by more points takes in values no gradient
#: at θ gives (review 120: two tied pixels given ``d + e`` and ``-e``, each within its range after 16 points, passed).
POINTS, ROUND, SETTLE, LATE = 64, 4, 8, 16
#: Each parameter moves by this times ``EPS**(1/3)·max(1, |θ_i|)``...
MOVE = 2.0**-4
#: ...and the derivative there is taken at a step this many times smaller (a tie broken by δ·|v_i − v_j| is
#: crossed by the step about once in this many points, and that point is left out).
INSIDE = 64.0
#: The first this many points near θ break ties by the flat index (:func:`moved`).
ORDERED = 2
#: Points 0 and 1 (:func:`moved`) break ties between neighbouring elements by ``2/(n - 1)`` of the move (``n`` their
#: tensor's size), closer than the steps :data:`INSIDE` allows once ``n`` exceeds ``2·INSIDE + 1``: there a
#: derivative's step is this part of that gap (:func:`ordered_part`).
ORDERED_GAP = 1 / 4
#: A line through a tensor's kinks is judged at this many points near θ, and only where this many are left
#: (:func:`line_bears_out`): the ReLUs of a convolution on zero biases interact at every point, and one whose
#: state the points never change (one chance in 2**15 each) is not seen.
LINE_POINTS, LINE_SEEN = 16, 12
#: Points near θ, at most, for an element whose own line shows no kink (:func:`judge_hidden`)...
HIDDEN_POINTS = 16
#: ...each parameter moved at most this part of the step at which that line was seen smooth (:func:`reach`).
WITHIN_SMOOTH = 1 / 8
#: A derivative at a point near θ is a piece's where :data:`PART` of the way there (its step as much finer) it moved by
#: at most :data:`PIECE` of its distance from the derivative at θ (:func:`piecewise`): curvature moves it by 63/64 of
#: that, a piece that kinks at θ bound by what curvature moves a derivative 4e-7 off θ; and a kink off θ that the point
#: lies beyond is taken for one at θ only if closer than 1/64 of the move (6e-9 for |θ_i| ≤ 1 and a unit move; review
#: 77: a ReLU input at -1e-7 with a mask bug there was accepted at an eighth of the way, and halfway).
PART, PIECE = 1 / 64, 0.25
#: The magnitude of an interacting kink's code in the output's ``kink`` (:func:`.judging.kink_codes`; 1 to 4 are the
#: others').
INTERACTING = 5
#: Where the points are drawn from: the same for every group, so that an element's verdict does not depend on the
#: shard it falls in (the first column of its group was added, and automatic shard sizes, from timings, moved the
#: columns: the same check of CS231n's max-pool on ties passed, failed or was not verified from run to run).
SEED = 0x6E6561


def _base(values: np.ndarray, eps: float) -> np.ndarray:
    return math.pow(eps, 1 / 3) * np.maximum(1.0, np.abs(np.asarray(values, dtype=np.float64)))


def moved(
    params: dict[str, np.ndarray], point: int, rng: np.random.Generator, eps: float, reach: float = 1.0
) -> dict[str, np.ndarray]:
    """Every parameter moved by ``MOVE·EPS**(1/3)·max(1, |θ_i|)`` times ``v_i`` (and ``reach``): a point near θ where
    ties and exact zeros are broken. Point 0 has ``v`` falling and point 1 rising with each tensor's flat index (between
    -1 and 1): every tie broken toward its first element, as the first maximum is (``argmax``), then toward its last;
    the others a standard normal. New C-contiguous arrays of the parameters' dtypes."""
    near = {}
    for name, array in params.items():
        if point < ORDERED:
            v = np.linspace(1.0, -1.0, array.size).reshape(array.shape) * (1 if point == 0 else -1)
        else:
            v = rng.standard_normal(array.shape)
        values = array + reach * MOVE * _base(array, eps) * v
        near[name] = np.ascontiguousarray(values.astype(array.dtype, copy=False))
    return near


def reach(values: np.ndarray, smooth: np.ndarray, eps: float) -> np.ndarray:
    """Per element whose own line was seen smooth at steps up to ``smooth`` (its values at θ ``values``), the part of
    :data:`MOVE` its points near θ move by (:func:`moved`): at most :data:`WITHIN_SMOOTH` of that step, where a tie with
    another element off θ is not crossed (a point moves each parameter by a standard normal times the move; review 128:
    a max-pool routed to its runner-up 1e-8 below the maximum, whose line the second look passed inside at steps of
    6e-9, was a piece of a tie at θ at points moved 4e-7, and passed). A tie at θ is crossed at any reach."""
    with np.errstate(invalid="ignore", divide="ignore"):
        part = WITHIN_SMOOTH * np.asarray(smooth, dtype=np.float64) / (MOVE * _base(values, eps))
    return np.asarray(np.fmin(1.0, np.where(np.isfinite(part) & (part > 0), part, 1.0)))


def partway(params: dict[str, np.ndarray], near: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The point :data:`PART` of the way from θ (``params``) to a point near it (``near``, from :func:`moved`)."""
    return {
        name: np.ascontiguousarray((array + PART * (near[name] - array.astype(np.float64))).astype(array.dtype))
        for name, array in params.items()
    }


def nearby_steps(values: np.ndarray, eps: float) -> np.ndarray:
    """The steps of the central differences at a point near θ (``values``: the elements' values there)."""
    return MOVE / INSIDE * _base(values, eps)


def ordered_part(sizes: np.ndarray) -> np.ndarray:
    """The part of :func:`nearby_steps` a derivative is taken at, per element (``sizes``: its tensor's size), at the
    first :data:`ORDERED` points near θ, whose ``v`` falls or rises with the flat index (:func:`moved`) and breaks ties
    between neighbours by ``2/(n - 1)`` of the move: :data:`ORDERED_GAP` of that where it is finer (1 at the Gaussian
    points; review 118: CS231n's max-pool backward on an integer image of 384 pixels, 3x3 windows at stride 2: the
    steps at point 0 crossed the ties it breaks, it was left out, and the first maximum's gradient failed)."""
    gap = 2.0 / np.maximum(np.asarray(sizes, dtype=np.float64) - 1, 1.0)
    return np.asarray(np.fmin(1.0, ORDERED_GAP * INSIDE * gap))


def derivative_near(
    plus: np.ndarray, minus: np.ndarray, loss: float, up: np.ndarray, down: np.ndarray, noise: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """At a point near θ (its loss ``loss``), each element's central difference from the losses at ``±`` its step (the
    steps the floats took, ``up`` and ``down`` negative), NaN where its one-sided slopes keep a gap above
    :data:`~.refine.GAP_SIGNIFICANT` times its noise, the second look's rule (its line crosses a kink within the step); and
    that difference's rounding."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        central = (plus - minus) / (up - down)
        gap = (plus - loss) / up - (loss - minus) / -down
        gap_noise = 2 * noise * (1 / np.abs(up) + 1 / np.abs(down))
        smooth = np.abs(gap) <= GAP_SIGNIFICANT * gap_noise
        rounding = noise * math.sqrt(2) / np.abs(up - down)
    return np.where(smooth, central, np.nan), rounding


def precise(
    noise: np.ndarray,
    values: np.ndarray,
    eps: float,
    analytic: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    tolerance: Tolerance,
    part: np.ndarray | float = 1.0,
) -> np.ndarray:
    """Whether the loss's ``noise`` leaves the derivatives at points near θ precise: their rounding at ``part`` of the
    steps of :func:`nearby_steps` (``values``: the elements' at θ), times the tolerance's safety, within
    :data:`~.tolerance.VERIFY_LIMIT` of the largest of the ``analytic`` value and the one-sided slopes. Else the
    points could widen the range by more than the value itself: such an element is not judged at them."""
    with np.errstate(invalid="ignore", divide="ignore"):
        rounding = noise * math.sqrt(2) / (2 * part * nearby_steps(values, eps))
        scale = np.fmax(np.abs(analytic), np.fmax(np.abs(lower), np.abs(upper)))
        return np.asarray(tolerance.safety * rounding <= VERIFY_LIMIT * scale)


def judge_nearby(
    analytic: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    margin: np.ndarray,
    derivatives: np.ndarray,
    rounding: np.ndarray,
    tolerance: Tolerance,
    margins: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The status of elements on a kink whose analytic value lies outside their one-sided slopes (``lower``,
    ``upper``, extrapolated, ``margin`` their uncertainty), from their ``derivatives`` at points near θ (one row per
    point, NaN where left out) and those derivatives' ``rounding`` (the same shape): ``NONDIFFERENTIABLE`` within
    the range, ``TOGETHER`` where the points show the kinks interacting, else ``WRONG`` (see the module's text).
    Also whether each is decided: in range, or with no interaction seen (the points drawn may stop for it).
    ``margins``: each slope's own, the low one's and the high one's (each at most ``margin``,
    :func:`.tolerance.judge_again`): in range beyond a slope only within its own; kinks interact beyond ``margin``."""
    with np.errstate(invalid="ignore"):
        slack = np.nanmax(np.where(np.isnan(derivatives), np.nan, rounding), axis=0, initial=0.0)
        widen = tolerance.room(lower, upper, margin) + tolerance.safety * slack
        below, above = (
            (widen, widen)
            if margins is None
            else (tolerance.room(lower, upper, side) + tolerance.safety * slack for side in margins)
        )
        low, high = np.fmin(lower, upper), np.fmax(lower, upper)
        seen = np.isfinite(derivatives)
        lowest = np.min(np.where(seen, derivatives, np.inf), axis=0, initial=np.inf)
        highest = np.max(np.where(seen, derivatives, -np.inf), axis=0, initial=-np.inf)
        in_range = (analytic >= np.fmin(low, lowest) - below) & (analytic <= np.fmax(high, highest) + above)
        interacting = (lowest < low - widen) | (highest > high + widen)
    status = np.where(in_range, NONDIFFERENTIABLE, np.where(interacting, TOGETHER, WRONG)).astype(np.int8)
    return status, in_range | ~interacting


def matching(
    analytic: np.ndarray, numeric: np.ndarray, derivatives: np.ndarray, rounding: np.ndarray, tolerance: Tolerance
) -> np.ndarray:
    """Where an element whose own line shows no kink (its derivative there ``numeric``) has its analytic value as its
    derivative at a point near θ (``derivatives``, NaN where left out; ``rounding`` theirs): within the line's room
    and ten times that rounding of the one, and beyond it from the other (:func:`judge_hidden`)."""
    with np.errstate(invalid="ignore"):
        widen = tolerance.room(numeric, numeric, 0.0) + tolerance.safety * rounding
        return np.asarray((np.abs(analytic - derivatives) <= widen) & (np.abs(derivatives - numeric) > widen))


def piecewise(there: np.ndarray, partway_there: np.ndarray, numeric: np.ndarray) -> np.ndarray:
    """Whether a derivative at a point near θ (``there``, beyond the derivative at θ ``numeric``) is a piece's that
    kinks at θ bound: it barely moves :data:`PART` of the way there (``partway_there``), where curvature, growing with
    the move, would have moved it by 63/64 of its distance from ``numeric``, and a kink off θ that the point lies beyond
    would not be crossed yet (:func:`judge_hidden`)."""
    with np.errstate(invalid="ignore"):
        return np.asarray(np.abs(partway_there - there) <= PIECE * np.abs(there - numeric))


def judge_hidden(
    matched: np.ndarray, numeric: np.ndarray, derivatives: np.ndarray, rounding: np.ndarray, tolerance: Tolerance
) -> tuple[np.ndarray, np.ndarray]:
    """The status of elements wrong where their own line shows no kink, in a tensor that has kinks: ``NONDIFFERENTIABLE``
    where their analytic value was the derivative at a point near θ (``matched``: :func:`matching`, then
    :func:`piecewise`), else ``WRONG``; and whether each is decided: matched, or no derivative near θ yet
    (``derivatives``, one row per point) left its own line's (``numeric``).

    Review 76: numpy-ml's max-pool on an integer image with integer upstream gradients. A pixel tied in two
    windows whose gradients cancel (+1 and -1) has one slope, 0, on both sides of its own line: no kink. Its
    first-maximum gradient, 1, is its derivative just off θ where ties break toward their first element. Only a
    derivative seen at a point, the analytic value exactly, counts (not a range of them, as on a kink): an element
    whose line is smooth has no slopes to widen its valid values, and a range of derivatives that curvature moves
    (every parameter of a large model moves) would take in small errors.

    And only where the points disagree among themselves (beyond their room and ten times their rounding): ties break
    toward different elements at different points, and a limiting value of a loss that is piecewise smooth and
    continuous is the derivative at θ along its own line too, unless another piece has another. A value every point
    shows alike, that the line does not, is a smooth feature narrower than the move, not a kink: review 78's
    ``w2·v²/(v² + 1e-24)`` at v = 0, whose derivative in w2 is 0 at θ and 1 at every point near it, passed a bug
    giving it 1."""
    with np.errstate(invalid="ignore"):
        widen = tolerance.room(numeric, numeric, 0.0) + tolerance.safety * rounding
        moved_off = np.any(np.abs(derivatives - numeric) > widen, axis=0)
        seen = np.isfinite(derivatives)
        lowest = np.min(np.where(seen, derivatives, np.inf), axis=0, initial=np.inf)
        highest = np.max(np.where(seen, derivatives, -np.inf), axis=0, initial=-np.inf)
        slack = np.max(np.where(seen, widen, 0.0), axis=0, initial=0.0)
        varied = highest - lowest > 2 * slack
    accepted = matched & varied
    status = np.where(accepted, NONDIFFERENTIABLE, WRONG).astype(np.int8)
    return status, accepted | ~moved_off


def line_bears_out(
    dot: float, derivatives: np.ndarray, rounding: np.ndarray, magnitude: float, unit: float, tolerance: Tolerance
) -> bool | None:
    """Whether ``g·u`` (``dot``) matches the derivatives along ``u`` at points near θ (``derivatives``, NaN where a
    point's own line crossed a kink; ``rounding`` theirs), where those all agree; None where they do not (the line
    cannot tell).

    ``u`` moves every kink of a tensor up at once (:func:`.together.judge_lines`). Where kinks interact as a
    maximum's do and every tie is among the kinks, every derivative near θ moves a tied window's maximum once, so they
    agree, and so does every valid subgradient: each gives a window's whole gradient to its ties. A tie given the
    gradient twice (or half of it, or none) is off by it. Where a tie is not among the kinks (float32 saw no kink
    there; its windows' gradients cancel along its own line), the points that break it toward that element differ by
    its window's share, and where ReLUs interact through weights of both signs they scatter: the line cannot tell (a
    range of them let a halved tie through: review 76). ``magnitude``: ``Σ|g_i·u_i|``; ``unit``: the mean ``|u_i|``
    (the tolerance's ``atol`` is per unit step)."""
    seen = np.isfinite(derivatives)
    if np.count_nonzero(seen) < LINE_SEEN:
        return None
    values = derivatives[seen]
    allowed = tolerance.atol * unit + tolerance.rtol * magnitude + tolerance.safety * float(np.max(rounding[seen]))
    spread = float(values.max() - values.min())
    if spread > allowed:
        return None
    return abs(dot - float(np.median(values))) <= allowed + spread
