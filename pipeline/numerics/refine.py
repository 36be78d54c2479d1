"""The second look: suspect derivatives estimated again, over a sequence of steps.

Pure numpy. One estimate at one step cannot tell a wrong gradient from a step too
coarse for the function (truncation), too fine for its noise (rounding), or a kink
(the function is not differentiable there): each of them makes the analytic value
disagree with the estimate or widens the estimate's error bar. So every suspect
element (or direction) is evaluated again along its own line ``t ↦ J(θ + t·u)``,
at central differences of steps shrinking by :data:`CON` from twice its first
step, and:

- **a Richardson table** (Ridders' method, as in Numerical Recipes' ``dfridr``)
  extrapolates them to step 0. Its error estimate is how much the table's best
  entry disagrees with its neighbours; the rounding of its finest difference is
  added. The table runs until its error grows again (noise dominates) once it has
  converged, or to :data:`ROWS` steps when it has not (the first step was far too
  coarse: the steps keep shrinking until the truncation error is small);
- **the one-sided slopes** ``(J(θ+h) − J(θ))/h`` and ``(J(θ) − J(θ−h))/h`` are
  compared at each step: their gap is about ``f''·h`` for a smooth function (it
  shrinks with h) and the jump of the slope at a kink (it does not). A kink is a
  gap that stays above its noise and keeps its size (within 20%) over 4x smaller steps, twice.

Cost: two losses per step per suspect; :attr:`Refined.evaluations` counts them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .tolerance import AGREE, INCONCLUSIVE, VERIFY_LIMIT, WRONG

__all__ = ["CON", "ROWS", "Refined", "Taylor", "second_look", "taylor"]

#: Each step is this much smaller than the one before...
CON = 2.0
#: ...starting from this multiple of the first pass's step (a larger step first: richardson's first
#: pass evaluated it, and its losses are the table's first row)...
START = 2.0
#: ...for at most this many steps (the last is 2**-20 of the first pass's step).
ROWS = 22
#: The table is not stopped before it has this many rows.
MIN_ROWS = 4
#: It stops once its error is this many times its best (the finest steps are noise).
SAFE = 2.0
#: In the asymptotic regime the slopes' gap halves with the step, to within this (its own noise included).
SMOOTH_GAP = 0.15
#: A gap between the one-sided slopes counts only when it is this many times its noise.
GAP_SIGNIFICANT = 4.0
#: A kink's gap keeps its size within this factor over a 4x smaller step, twice, to stop its table
#: early (a smooth function's gap shrinks 4x)...
KINK_RATIO = 0.8
#: ...and, to call a suspect a kink once its table has stopped, its finest two significant gaps 4x apart
#: in step are within this factor of each other (a kink a little off θ: the gap approaches the jump).
KINK_BAND = 0.5
#: The rounding of the table's best entry is its finest difference's times this
#: (extrapolation weights add up to about 2).
ROUNDING_GAIN = 2.0

#: ``losses(which, multiple)``: for the suspects ``which`` (indices into the suspects), the losses
#: at ``θ ± multiple·h·u`` and the steps the floats took on each side (``taken_minus`` negative).
Losses = Callable[[np.ndarray, float], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]


@dataclass(frozen=True, slots=True)
class Refined:
    """The second look's findings per suspect.

    ``numeric``: the table's best estimate. ``bar``: its error bar (the table's error estimate plus
    the rounding of its finest difference). ``kink``: the one-sided slopes keep a gap that does not
    shrink with the step. ``lower``/``upper``: the one-sided slopes extrapolated to step 0 from the two
    finest steps whose gap is still above its noise (a slope at step h is off by about f''·h/2, enough
    to put a valid subgradient outside), and ``margin`` how far that extrapolation moved them. ``step``: the step of the best estimate's
    finest difference. ``evaluations``: the losses evaluated, all suspects together.
    """

    numeric: np.ndarray
    bar: np.ndarray
    kink: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    step: np.ndarray
    evaluations: int
    margin: np.ndarray | float = 0.0


def second_look(
    losses: Losses,
    k: int,
    h: np.ndarray,
    loss0: float,
    noise: np.ndarray,
    scale: np.ndarray,
    known: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = (),
) -> Refined:
    """Estimate ``k`` suspects' derivatives again over a sequence of steps (see the module's text).

    Parameters
    ----------
    losses : callable
        See :data:`Losses`.
    k : int
        How many suspects.
    h : ndarray
        Each suspect's first-pass step (multiples are of it).
    loss0 : float
        The loss at θ.
    noise : ndarray
        Each suspect's loss noise (an absolute standard deviation).
    scale : ndarray
        The magnitude each estimate must be accurate against: a table whose error is below
        :data:`SAFE`·1e-3 of it has converged, and may stop once its error grows.
    known : sequence of tuples
        The first rows' ``losses(all, multiple)``, where the first pass already evaluated them (its
        stencil's 2h and h for richardson): not evaluated again, and the table starts there.
    """
    numeric = np.full(k, np.nan)
    error = np.full(k, np.inf)
    rounding_best = np.zeros(k)
    step_best = np.asarray(h, dtype=np.float64).copy()
    previous = np.full((ROWS, k), np.nan)  # the table's last column
    gaps = np.full((ROWS, k), np.nan)
    gap_noise = np.full((ROWS, k), np.inf)
    uppers = np.full((ROWS, k), np.nan)
    lowers = np.full((ROWS, k), np.nan)
    steps = np.full((ROWS, k), np.nan)
    diagonal = np.full(k, np.nan)  # the table's last diagonal entry, per suspect
    active = np.ones(k, dtype=bool)
    evaluations = 0
    for i in range(ROWS):
        which = np.flatnonzero(active)
        if not which.size:
            break
        if i < len(known):
            plus, minus, up, down = (column[which] for column in known[i])
        else:
            plus, minus, up, down = losses(which, START * CON**-i)
            evaluations += 2 * which.size
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            span = up - down
            column = np.full((ROWS, which.size), np.nan)
            column[0] = (plus - minus) / span
            upper = (plus - loss0) / up
            lower = (loss0 - minus) / -down
            gaps[i, which] = upper - lower
            gap_noise[i, which] = 2 * noise[which] * (1 / np.abs(up) + 1 / np.abs(down))
            lowers[i, which], uppers[i, which] = lower, upper
            steps[i, which] = span / 2
            rounding = noise[which] * math.sqrt(2) / np.abs(span)
            err, num, rnd, stp = error[which], numeric[which], rounding_best[which], step_best[which]
            # Only a row in the asymptotic regime may give the best estimate: there the slopes' gap shrinks with
            # the step (or is lost in noise). On a plateau reached by too coarse a step, J(θ±h) agree and the
            # table "converges" on nothing, while the gap grows as the step shrinks.
            with_gap = np.abs(gaps[i, which]) > GAP_SIGNIFICANT * gap_noise[i, which]
            asymptotic = ~with_gap
            if i:  # a smooth gap is about f''·h: it halves with the step, keeping its sign
                ratio = gaps[i, which] / gaps[i - 1, which]
                asymptotic |= (ratio >= 0.5 - SMOOTH_GAP) & (ratio <= 0.5 + SMOOTH_GAP)
            factor = CON * CON
            for j in range(1, i + 1):
                column[j] = (column[j - 1] * factor - previous[j - 1, which]) / (factor - 1)
                factor *= CON * CON
                trial = np.maximum(np.abs(column[j] - column[j - 1]), np.abs(column[j] - previous[j - 1, which]))
                better = (trial <= err) & asymptotic
                err, num = np.where(better, trial, err), np.where(better, column[j], num)
                rnd, stp = np.where(better, rounding, rnd), np.where(better, span / 2, stp)
            if i == 0:  # one difference: its own estimate, its error unknown until the next row
                num = np.where(asymptotic, column[0], np.nan)
            error[which], numeric[which], rounding_best[which], step_best[which] = err, num, rnd, stp
            previous[:, which] = column
            done = ~np.isfinite(column[0]) | (span == 0)  # no finer step is possible, or the loss failed
            if i >= 3:  # a gap that keeps its size over 4x smaller steps, twice: a kink, confirmed
                done |= _flat(gaps[i - 3 : i + 1, which], gap_noise[i - 3 : i + 1, which]).all(axis=0)
            if i + 1 >= MIN_ROWS:
                growing = np.abs(column[i] - diagonal[which]) >= SAFE * err
                converged = err <= 1e-3 * SAFE * scale[which]
                done |= growing & converged & asymptotic
                # noise dominates: finer steps can only be worse (unless the slopes' gap is still to be told
                # apart: a kink shows only at steps where the jump exceeds the noise)
                done |= (rounding > SAFE * err) & asymptotic
        diagonal[which] = column[i]
        active[which[done]] = False
    kink, lower, upper, margin = _kinks(gaps, gap_noise, lowers, uppers)
    with np.errstate(invalid="ignore"):
        bar = np.where(np.isfinite(error), error, np.abs(numeric)) + ROUNDING_GAIN * rounding_best
    return Refined(numeric, bar, kink, lower, upper, step_best, evaluations, margin)


def _flat(gaps: np.ndarray, gap_noise: np.ndarray) -> np.ndarray:
    """For 4 rows of ``gaps`` (steps shrinking by :data:`CON` per row): whether all 4 are significant and
    the gap kept its sign and size (within a factor 1/:data:`KINK_RATIO`) over a 4x smaller step, twice.
    A smooth function's gap shrinks 4x; a kink's stays; one that saturates at a coarse step grows, and
    passes through the band only briefly."""
    with np.errstate(invalid="ignore", divide="ignore"):
        significant = np.all(np.abs(gaps) > GAP_SIGNIFICANT * gap_noise, axis=0)
        ratio = gaps[2:] / gaps[:-2]
        kept = np.all((ratio >= KINK_RATIO) & (ratio <= 1 / KINK_RATIO), axis=0)
    return np.asarray(significant & kept)


def _kinks(
    gaps: np.ndarray, gap_noise: np.ndarray, lowers: np.ndarray, uppers: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per suspect: whether its one-sided slopes keep a gap that does not shrink with the step (the finest
    two significant gaps 4x apart in step, within a factor 1/:data:`KINK_BAND` of each other: a kink
    a little off θ makes the gap grow toward the jump as the step shrinks; or a significant gap that changed
    sign as the step shrank), and the slopes at the finest step
    whose gap is significant (the first step's when none is), extrapolated to step 0 with the row
    before: ``(kink, low, high, margin)``."""
    with np.errstate(invalid="ignore"):
        significant = np.abs(gaps) > GAP_SIGNIFICANT * gap_noise
    rows, k = gaps.shape
    kink = np.zeros(k, dtype=bool)
    finest = np.zeros(k, dtype=np.int64)
    flipped = np.zeros(k, dtype=bool)
    for i in range(rows):
        # a significant gap that changed sign since the last significant one: not smooth at this scale (a smooth
        # gap, about f''·h, keeps its sign as h shrinks; curvature outweighing a small jump at coarse steps flips)
        flipped |= significant[i] & (i > 0) & (np.sign(gaps[i]) * np.sign(gaps[finest, np.arange(k)]) < 0)
        finest = np.where(significant[i], i, finest)
        if i >= 2:  # the finest pair of significant gaps 4x apart in step decides (a looser band than _flat's)
            both = significant[i] & significant[i - 2]
            with np.errstate(invalid="ignore", divide="ignore"):
                ratio = gaps[i] / gaps[i - 2]
            kink = np.where(both, (ratio >= KINK_BAND) & (ratio <= 1 / KINK_BAND), kink)
    kink |= flipped
    at = np.arange(k)
    before = np.maximum(finest - 1, 0)
    with np.errstate(invalid="ignore"):
        # one-sided slopes are first order in h: s(0) ≈ 2·s(h) − s(2h)
        upper = np.where(finest > 0, 2 * uppers[finest, at] - uppers[before, at], uppers[finest, at])
        lower = np.where(finest > 0, 2 * lowers[finest, at] - lowers[before, at], lowers[finest, at])
        margin = np.fmax(np.abs(upper - uppers[finest, at]), np.abs(lower - lowers[finest, at]))
    return kink, np.fmin(lower, upper), np.fmax(lower, upper), margin


#: The Taylor test's multiples of the tangent, halving (pyadjoint's ``taylor_test`` takes 4 steps).
TAYLOR_MULTIPLES = (8.0, 4.0, 2.0, 1.0)
#: A remainder counts when it is this many times the loss's noise.
TAYLOR_SIGNIFICANT = 100.0
#: A correct gradient's remainders converge at order 2, a wrong one's at order 1: orders of at
#: least the first figure agree; an order at most the second disagrees; between, inconclusive.
TAYLOR_AGREE, TAYLOR_WRONG = 1.8, 1.3


@dataclass(frozen=True, slots=True)
class Taylor:
    """The Taylor test along one tangent: the observed orders of convergence and their verdict.

    ``numeric``: the one-sided slope at the finest step. ``allowed``: the error of ``g·u`` the finest
    remainder could hide (remainder / step). ``status``: a tolerance status code.
    """

    numeric: float
    allowed: float
    status: int
    orders: tuple[float, ...]


def taylor(along: Callable[[float], tuple[float | complex, float]], slope: float, loss0: float, noise: float) -> Taylor:
    """The Taylor test (pyadjoint's ``taylor_test``, as PETSc and Devito verify adjoints).

    ``along(m)`` gives the loss at ``θ + m·u`` and the multiple the floats took; ``slope`` is ``g·u``.
    The remainders ``|J(θ + m·u) − J(θ) − m·g·u|`` at :data:`TAYLOR_MULTIPLES` shrink at order 2 when
    ``g·u`` is right and at order 1 when it is not. Only remainders above the loss's noise count
    (:data:`TAYLOR_SIGNIFICANT`); where none does, the first-order term matched to rounding.
    """
    values, taken = zip(*(along(m) for m in TAYLOR_MULTIPLES), strict=True)
    t = np.array(taken, dtype=np.float64)
    remainders = np.abs(np.array([float(np.real(v)) for v in values]) - loss0 - t * slope)
    significant = remainders > TAYLOR_SIGNIFICANT * noise
    with np.errstate(divide="ignore", invalid="ignore"):
        orders = np.log2(remainders[:-1] / remainders[1:]) / np.log2(t[:-1] / t[1:])
    pairs = significant[:-1] & significant[1:]
    counted = orders[pairs]
    numeric = (float(np.real(values[-1])) - loss0) / t[-1]
    allowed = float(max(remainders[-1], TAYLOR_SIGNIFICANT * noise) / abs(t[-1]))
    if not significant.any():
        status = AGREE if allowed <= VERIFY_LIMIT * abs(slope) else INCONCLUSIVE
    elif counted.size and counted.min() >= TAYLOR_AGREE:
        status = AGREE
    elif counted.size and counted.min() <= TAYLOR_WRONG:
        status = WRONG
    else:
        status = INCONCLUSIVE
    return Taylor(numeric, allowed, status, tuple(float(o) for o in orders))
