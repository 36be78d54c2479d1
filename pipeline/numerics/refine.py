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
  converged, or until it agrees with the analytic value to within what the loss's
  precision allows (finer rows could only narrow a bar already below it), or to
  :data:`ROWS` steps when it has not converged (the first step was far too
  coarse: the steps keep shrinking until the truncation error is small, by :data:`LEAP`
  at a time while the slopes' gap still grows, a plateau, and a new table starts);
- **the one-sided slopes** ``(J(θ+h) − J(θ))/h`` and ``(J(θ) − J(θ−h))/h`` are
  compared at each step: their gap is about ``f''·h`` for a smooth function (it
  shrinks with h) and the jump of the slope at a kink (it does not). A kink is a
  gap that stays above its noise and keeps its size (within 20%) over 4x smaller steps, twice, once
  neither slope still moves beyond its noise (a kink just off θ moves the slope that crosses it until
  the steps pass inside it). Where the analytic value lies off both slopes (outside them, or between
  them at neither) of a gap that keeps its size, or beside a slope moving ever faster, the kinks may be
  off θ, closer than the step: in float64 the steps leap by :data:`LEAP` toward θ while the slopes stay
  precise, and pass inside them where they are (ReLU inputs 1e-9 to 1e-7 from 0: the function is smooth
  at θ, and its derivative there is the value).

The finer steps carry more rounding, so where the loss's curvature held over the first rows (no kink
inside the steps) and this look corroborates the first pass's estimate (:meth:`Refined.confirming`),
that estimate and its narrower bar stand: a small error the first step measured is not lost in the
finer rows' noise.

Cost: two losses per step per suspect; :attr:`Refined.evaluations` counts them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from .tolerance import (
    AGREE,
    INCONCLUSIVE,
    NO_ANCHOR,
    NO_FINEST,
    NONDIFFERENTIABLE,
    WRONG,
    Anchor,
    Finest,
    Tolerance,
    judge_again,
    reference,
)

__all__ = ["CON", "ROWS", "Refined", "Row", "beyond_the_edge", "known_rows", "second_look"]

#: Each step is this much smaller than the one before...
CON = 2.0
#: ...starting from this multiple of the first pass's step (a larger step first: richardson's first
#: pass evaluated it, and its losses are the table's first row)...
START = 2.0
#: ...for at most this many steps (the last is 2**-20 of the first pass's step).
ROWS = 22
#: The table is not stopped before it has this many rows...
MIN_ROWS = 4
#: ...nor called a kink before this many (a 2**7 range of steps: a smooth feature narrower than the
#: first step must not pass for a kink).
KINK_ROWS = 8
#: ...unless its gap keeps its size to within this factor (2%), twice: a kink at θ itself, whose jump
#: outweighs the curvature at every step (a smooth feature narrower than the step is not that flat). Either
#: stops a table only where the analytic value lies between the slopes (:func:`_between`).
EXACT_KINK = 0.98
#: Rows whose losses are not finite, before any that are (steps past the edge of the loss's domain), are skipped,
#: at most this many, each :data:`LEAP` times finer than the one before (after the first pass's own two: an 8**10 range
#: of steps, from float64's first step of 7.4e-4·max(1, |θ|) to 7e-13 of it); the table's counts of rows start at its
#: first finite row.
NONFINITE_ROWS = 12
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
#: A kink is not at θ where a finer row's gap fell this many times below it, the kink's gap being as many times
#: that row's significance threshold (:func:`_kinks`).
PASSED_KINK = 4.0
#: Where two successive significant gaps changed sign, the jump they extrapolate to must be this many times a finer
#: row's noise for that row's gap, in its noise, to contradict a kink at θ (:func:`_kinks`; the gap lies 4 noises or
#: more below the jump: a float32 table's leap past a ReLU 0.54 first steps off θ left the next row 8 times finer, the
#: jump 8.8 noises there).
FLIP_SEEN = 8.0
#: ...or, where no finer row's gap stood above its noise, one fell this many times its noise below the line the two
#: gaps draw (jump + c·h at its step), to half of it or less.
FLIP_FELL = 3.0
#: A best estimate that disagrees with the analytic value is held to this many finer rows before the table
#: stops: many kinks at scales below the coarse steps (a hinge or ReLU summed over a batch) bend the loss like
#: a smooth function there, and the table converges on their value; the finer rows leave it.
CONFIRM_ROWS = 4
#: A finer row toward the analytic value by more than this many times its rounding contradicts the estimate.
CONTRADICTS = 2.0
#: The two rows finer than the first pass's (h/2, h/4) leave its estimate R (richardson's, from its rows at 2h and h)
#: where a central difference lies beyond this many times R's distance from D(h), plus both rows' rounding: a smooth
#: function's differences converge on R from D(h)'s side, the finer the nearer. Where a table never converged, a first
#: verdict of wrong stands only where the finer rows bear R out (:func:`_borne`; review 94: a chaotic loss, Lorenz-63
#: integrated to t = 30, whose differences grew from 4.7e3 at the first steps to 1.4e7 at h/8 and whose derivative,
#: 6e11, shows only at steps of 1e-12, was called wrong by the first pass's 4.7e3 ± 1.4e4).
BORNE = 4.0
#: ...and where the table did not start at the first pass's rows, two consecutive finer rows within this fraction of
#: the analytic value reach it.
REACHED = 1e-3
#: The central differences were still running away as the step shrank where, over this many moves from row to row
#: ending at the table's finest row, each moved the same way as the one before and each pair followed one law
#: ``D(h) = a + c·h^-p`` with p above :data:`RUNAWAY`, the exponents agreeing within :data:`RUNAWAY_LAW`: p = 1 for a
#: jump of the loss inside the steps (or kinks the steps approach), 2 for a pole of its derivative (``log|1 + h·g|``).
#: Noise draws no such sequence; a smooth function's moves shrink (by 4 in the regime), a kink's halve. The rows never
#: reached the derivative, and a value they disagree with is unsettled, not wrong (:func:`_runaway`; reviews 96 and 97:
#: a dihedral angle 1e-6 from a straight bond angle swings by O(1) within the steps, the probe took that swing for the
#: loss's noise, the rows' differences doubled with every halving of the step, and the correct gradient failed on the
#: first pass's estimate, -1.7e3 against 1.07e7; so did elements of a log-determinant at condition 1e10, their pole
#: 1e-10 from θ). A table that converged past such a run (a loss saturating within the first steps) is not affected.
RUNAWAY_ROWS = 4
RUNAWAY, RUNAWAY_LAW = 0.5, 1.35
#: ...each move, times its row's step (the loss's own change it stands for), beyond this many rounding units of the loss:
#: a rounding offset in the loss's differences draws the same law, p = 1, at a unit or two (the float64 copy of review
#: 87's float32 ReLU network, whose rows moved by 6e-13 at steps of 1e-4: without this, a 10% error there passed).
RUNAWAY_UNITS = 2.0**10
#: The one-sided slopes' change from one step to the next halves with the step for a smooth function beside
#: a kink (a slope at step h is off by about f''·h/2); where it shrank by less than this, the slopes are still
#: moving (other kinks nearby, at coarse steps), and their extrapolation cannot call a value wrong.
DRIFT_RATIO = 0.75
#: The first pass's estimate stands (its bar the narrower) only where this look's own estimate puts the
#: analytic value at least this many of its bars away: the finer rows corroborate the disagreement. Kinks
#: denser than every step (a ReLU layer summed over a batch, in float32) bend the coarse rows alike, and
#: the finer rows drift toward the analytic value, within their bars.
CORROBORATES = 3.0
#: ...and only where the loss's curvature (its second difference at each step) held within this fraction
#: over every row, at least :data:`HELD_ROWS` of them. A smooth function's changes by O(h²); kinks inside
#: the steps add about jump/h, which grows as the step shrinks (by 7% to 70% from 2h to h/4 on a float32
#: ReLU layer whose first pass called correct elements 1% wrong, against 0.6% on a smooth softmax). Where
#: it did not hold from the best estimate's rows on, a value between the one-sided slopes is not wrong
#: (:func:`.tolerance.judge_again`).
CURVATURE_HELD, HELD_ROWS = 0.02, 4
#: The finest gap fell faster than the row before's by at least this factor: the steps are entering a feature off θ.
ENTERING = 0.9
#: The rounding of the table's best entry is its finest difference's times this
#: (extrapolation weights add up to about 2).
ROUNDING_GAIN = 2.0

#: A suspect's loss moved as a staircase along its line where, at coarser rows, it moved in whole multiples of one step
#: at least this many times its noise, and at a finer row it stood still on both sides but for this many times less
#: (:func:`_staircase`): a term rounded to float32 inside a float64 loss, which the noise measured along its tensor,
#: moved by its smooth elements, does not show.
STAIRCASE = 2.0**10
#: ...each of its moves, less a smooth term's share, a whole multiple of the smallest to within this fraction of it.
STAIRCASE_SLACK = 1 / 64

#: One row of the table: the losses at ``θ + t·u`` and ``θ − t·u`` and the ``t`` the floats took on each side.
Row = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
#: ``losses(which, multiples)``: for the suspects ``which`` (indices into the suspects), the losses
#: at ``θ ± multiple·h·u`` (a multiple per suspect) and the steps the floats took on each side
#: (``taken_minus`` negative).
Losses = Callable[[np.ndarray, np.ndarray], Row]
#: Where the slopes' gap grew by more than this as the step halved, the step is still far too coarse
#: (J(θ±h) on a plateau of the function): the next step is :data:`LEAP` times smaller, not 2.
LEAP_RATIO, LEAP = 1.5, 8.0
#: A kink's table whose analytic value lies off its slopes leaps toward θ (:func:`_off_slopes`) while its gap would
#: stay this many times its noise at the finer step (:func:`_can_leap`).
LEAP_PRECISION = 64.0


@dataclass(frozen=True, slots=True)
class Refined:
    """The second look's findings per suspect.

    ``numeric``: the table's best estimate. ``bar``: its error bar (the table's error estimate plus
    the rounding of its finest difference). ``kink``: the one-sided slopes keep a gap that does not
    shrink with the step. ``lower``/``upper``: the one-sided slopes extrapolated to step 0 from the two
    finest steps whose gap is still above its noise (a slope at step h is off by about f''·h/2, enough
    to put a valid subgradient outside), and ``margin`` how far that extrapolation moved them. ``step``: the step of the best estimate's
    finest difference. ``evaluations``: the losses evaluated, all suspects together. ``settled``, ``hidden``:
    see :func:`.tolerance.judge_again`. ``coarse_hidden``: ``hidden`` for the first two rows' extrapolation
    (the first pass's richardson estimate). ``curvature_held``: the loss's curvature held from the best
    estimate's rows on (:func:`_curvature_held`): no kink was seen inside the steps; ``coarse_curvature_held``:
    the same from the first row on. ``crossing``: a gap that changed sign at coarse steps and has not halved on the
    other side, a jump at θ that the curvature outweighed there (:func:`_kinks`); a random direction's line
    (:mod:`.directions`), whose verdict turns on whether θ is on a kink, is on one where this or ``kink`` holds.
    ``unconverged``: the table gave no estimate though the loss was finite at its finest step (it ran out of steps
    before its rows reached the regime where a smooth function's slopes' gap halves): the first pass's verdict,
    which the second look was to test, is not borne out (:func:`.tolerance.judge_again`). ``smooth_end``: its finest
    two significant rows are consecutive, a halving of the step apart, and the gap halved between them, as a smooth
    function's does: the slopes there bracket the derivative (:func:`_smooth_end`). ``anchor``: whether a one-sided
    slope still moved beyond the rows' noise at the finest steps, and where only one did, the other's extrapolated
    value and margin: the derivative on θ's side of a kink just off θ (:func:`_kinks`), the only value between the
    slopes that is then valid (:func:`.tolerance.judge_again`). ``inside``: whether the finest steps were entering a
    feature off θ, the finest row's slopes, widened by its gap's noise, and whether the lower one fell and the higher
    one rose from the row before (:func:`_kinks`). ``gap``: the slope moving up less the slope moving down, both
    extrapolated as ``lower``/``upper`` are (signed: a kink's own, which kinks moved together add up to where they
    do not interact; :func:`.together.judge_lines`). ``jump``: the jump at θ that the rows show beside the curvature
    before it is a kink, NaN where they show none (:func:`_jump`). ``approached``: its
    table leapt toward θ, its value outside the slopes of a kink (:func:`_off_slopes`). ``margins``: ``lower``'s
    and ``upper``'s margin for a value beyond it: where one slope settled and the other did not, the settled one's own
    extrapolation's move plus the gap's noise, else ``margin``. ``precise``: ``(low, high, low's margin, high's)``, the
    slopes measured by a coarser row the finer rows bear out, in float64, where far narrower (:func:`_precise_slope`;
    NaN elsewhere): a value beyond it but within ``margins`` is unsettled (:func:`.tolerance.judge_again`).
    ``borne``: the rows finer than the first pass's bear its estimate out (:func:`_borne`). ``ran_away``: its
    differences were still running away by a steady law at its finest rows (:func:`_runaway`): no verdict of wrong.
    ``quantum``: the step of the loss where it moved along the line as a staircase far coarser than its noise, whose
    finest differences, 0 or a smooth term's slope beside it, say nothing of the derivative (:func:`_staircase`); NaN
    elsewhere. ``erratic``: the step of the row where the central differences moved far beyond their rounding after they
    had settled (:func:`_erratic`): a feature off θ, or noise along the line beyond the noise the look was given; NaN
    elsewhere.
    """

    numeric: np.ndarray
    bar: np.ndarray
    kink: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    step: np.ndarray
    evaluations: int
    margin: np.ndarray | float = 0.0
    settled: np.ndarray | bool = True
    hidden: np.ndarray | float = 0.0
    coarse_hidden: np.ndarray | float = 0.0
    curvature_held: np.ndarray | bool = False
    coarse_curvature_held: np.ndarray | bool = False
    crossing: np.ndarray | bool = False
    unconverged: np.ndarray | bool = False
    smooth_end: np.ndarray | bool = False
    anchor: Anchor = NO_ANCHOR
    inside: Finest = NO_FINEST
    gap: np.ndarray | float = math.nan
    jump: np.ndarray | float = math.nan
    approached: np.ndarray | bool = False
    margins: tuple[np.ndarray, np.ndarray] | None = None
    precise: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
    borne: np.ndarray | bool = True
    ran_away: np.ndarray | bool = False
    quantum: np.ndarray | float = math.nan
    erratic: np.ndarray | float = math.nan

    def confirming(
        self, numeric: np.ndarray, bar: np.ndarray, smooth: np.ndarray, step: np.ndarray, analytic: np.ndarray
    ) -> Refined:
        """This look with the first pass's estimate (``numeric``, ``bar``, ``step``) kept where this look
        corroborates it: the first pass's losses showed the function ``smooth``, the curvature held over
        all this look's rows (``coarse_curvature_held``), it found no kink, its estimate
        lies within the two bars of the first pass's and puts the ``analytic`` value at least
        :data:`CORROBORATES` of its own bars away, and the first pass's bar is the narrower. A smooth
        function is best measured at the coarsest step whose truncation is small (the loss's noise over
        the step grows as it shrinks): a disagreement the first pass measured must not be lost in the finer
        rows' rounding. The rows finer than the first pass's still test it (``coarse_hidden``)."""
        with np.errstate(invalid="ignore"):
            kept = (
                smooth
                & self.coarse_curvature_held
                & ~self.kink
                & (bar < self.bar)
                & (np.abs(numeric - self.numeric) <= bar + self.bar)
                & (np.abs(analytic - self.numeric) > CORROBORATES * self.bar)
            )
        return replace(
            self,
            numeric=np.where(kept, numeric, self.numeric),
            bar=np.where(kept, bar, self.bar),
            step=np.where(kept, step, self.step),
            hidden=np.where(kept, self.coarse_hidden, self.hidden),
            curvature_held=np.where(kept, self.coarse_curvature_held, self.curvature_held),
        )

    def judge(
        self,
        analytic: np.ndarray,
        first: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
        tolerance: Tolerance,
        unsettled: int = INCONCLUSIVE,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The suspects' ``(numeric, allowed, status)`` after this look (:func:`.tolerance.judge_again`);
        ``first`` is the first pass's ``(numeric, allowed, status, bar)``; ``unsettled`` the status of a value outside
        slopes still moving."""
        numeric, allowed, status = judge_again(
            analytic,
            self.numeric,
            self.bar,
            self.kink,
            self.lower,
            self.upper,
            first,
            tolerance,
            self.margin,
            self.settled,
            self.hidden,
            self.curvature_held,
            unsettled,
            self.unconverged,
            self.smooth_end,
            self.anchor,
            self.inside,
            self.margins,
            self.precise,
            self.borne,
        )
        # a table that leapt toward θ, its value outside the slopes of a kink, and decided nothing there is unsettled:
        # the kink's slopes, which it left, may have put the value wrong (a 1% error just beyond the slope on θ's side of
        # kinks 1e-10 off it, the finest steps' rounding 4% of the value: review 85), so its tensor is not verified
        # (not one exactly 0 where the loss does not move: a dead unit's weight, whose kinks are off θ); nor does the first
        # pass's verdict of wrong stand where the table gave no estimate (its steps spanned the kinks: review 85, a
        # correct ReLU network 1e-9 off its kinks, the loss plus 1e3, whose rounding stopped the leaps outside them)
        gave_none = (status == WRONG) & ~np.isfinite(self.numeric) & ~np.asarray(self.kink, dtype=bool)
        undecided = (
            np.asarray(self.approached, dtype=bool)
            & ((status == INCONCLUSIVE) | gave_none)
            & ((analytic != 0) | (numeric != 0))
        )
        # differences still running away at the finest rows never reached the derivative: a value they disagree with
        # is not shown wrong (:data:`RUNAWAY_ROWS`); a kink's slopes, which approaching kinks also make them do, decide
        # on their own
        kink = np.asarray(self.kink, dtype=bool)
        undecided |= np.asarray(self.ran_away, dtype=bool) & (status == WRONG) & ~kink & np.isfinite(analytic)
        return numeric, allowed, np.where(undecided, unsettled, status).astype(np.int8)


def beyond_the_edge(
    past_edge: np.ndarray,
    first: np.ndarray,
    judged: tuple[np.ndarray, np.ndarray, np.ndarray],
    stays: int = WRONG,
    unsettled: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The second look's ``judged`` ``(numeric, allowed, status)`` where the first pass's losses were not finite
    (``past_edge``; ``first``: its numeric values): a loss not finite at the first steps (past the edge of its
    domain) but finite at finer ones is judged on them where they decide (agrees, a kink, wrong). Else it stays
    wrong (``stays``), its losses not finite: finer steps in float32 are mostly rounding, and an inconclusive
    suspect would let its tensor pass on the others (review 51: a 10% error passed). With ``unsettled`` (an element's
    status that leaves its tensor not verified), one whose finer steps gave an estimate that decided nothing keeps that
    estimate and is ``unsettled``: neither wrong nor verified (review 94: a float32 Burgers solver whose viscosity's
    first step reached a negative viscosity, its loss inf there, failed its exact gradient as wrong)."""
    numeric, allowed, status = judged
    decided = np.isfinite(numeric) & np.isin(status, (AGREE, WRONG, NONDIFFERENTIABLE))
    kept = past_edge & ~decided
    if unsettled is not None:
        undecided = kept & np.isfinite(numeric)
        status = np.where(undecided, unsettled, status)
        kept &= ~undecided
    return (
        np.where(kept, first, numeric),
        np.where(kept, np.nan, allowed),
        np.where(kept, stays, status).astype(np.int8),
    )


def known_rows(table: np.ndarray, taken: np.ndarray, scheme: str) -> list[Row]:
    """The second look's first rows (steps 2h and h) where the first pass evaluated them: richardson's stencil."""
    if scheme != "richardson":
        return []
    return [(table[:, 2], table[:, 3], taken[:, 2], taken[:, 3]), (table[:, 0], table[:, 1], taken[:, 0], taken[:, 1])]


def second_look(
    losses: Losses,
    k: int,
    h: np.ndarray,
    loss0: float,
    noise: np.ndarray,
    scale: np.ndarray,
    known: Sequence[Row] = (),
    converged: float = 1e-6,
    leap_floor: np.ndarray | float = 0.0,
    analytic: np.ndarray | None = None,
    first: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    past_edge: np.ndarray | bool = False,
    follow: bool = True,
    approach: bool = False,
    resolution: float = 0.0,
    first_step: np.ndarray | None = None,
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
        ``converged`` of it may stop once its error grows (else it goes on until the noise dominates).
    known : sequence of tuples
        The first rows' ``losses(all, multiple)``, where the first pass already evaluated them (its
        stencil's 2h and h for richardson): not evaluated again, and the table starts there.
    converged : float
        See ``scale``: about what the loss's precision allows (a table stopped short of it may not
        have seen a finer feature of the function).
    leap_floor : ndarray or float
        The finest multiple a :data:`LEAP` may land on: leaps keep well clear of the steps the
        parameter's floats can no longer take evenly, where the table needs every halving it can get.
    analytic : ndarray, optional
        The suspects' analytic values. A table whose best estimate disagrees with one is not stopped
        (save by a kink, or when no finer step is possible) before :data:`CONFIRM_ROWS` finer rows: a
        verdict of wrong must hold at finer steps, which :func:`_contradicted` reads. One that agrees with
        it, in the regime, to within ``converged`` of their magnitude stops there.
    first : tuple of ndarrays, optional
        The first pass's ``(numeric, bar, smooth)`` per suspect, whose losses are the ``known`` rows: its
        estimate stands where this look corroborates it (:meth:`Refined.confirming`).
    past_edge : ndarray or bool, optional
        Per suspect, whether its first-pass losses were not finite (steps past the edge of the loss's domain):
        its rows of losses not finite before the first finite one are skipped (:data:`NONFINITE_ROWS`), where
        any other suspect's table stops at its first.
    follow : bool, optional
        Whether a kink's table goes on while a slope still moves (:func:`_moving`). A random direction's line
        (:mod:`.directions`) does not: it crosses every kink of its tensor, and finer steps past the ones off θ
        leave those at θ with a gap lost in the noise, where a valid g·u need not lie between the slopes (review 56:
        ReLU networks with exact zeros failed a direction so). Only such a line's look measures ``jump``
        (:func:`_jump`): an element's verdict never asks for it.
    approach : bool, optional
        Whether a kink's table whose analytic value lies off its slopes leaps toward θ (:func:`_off_slopes`), to pass
        inside kinks off θ closer than the step. Taken for float64 parameters, whose loss resolves steps far finer
        than the table's CON halvings reach. Not for float32 ones: their leap floor is near their first steps, and
        there the leaps reached only where a kink off θ still moved a slope within the noise, leaving 3% errors a
        kink at θ had failed unsettled (features benchmark: 48, none gained); nor on their float64 twin where it may
        round to float32 inside, its finest steps its rounding (a correct value the twin had excused then failed).
        Where the twin computes in float64 indeed (:func:`.judging._in_float64_indeed`) it is taken for the undecided
        float32 elements, along tensors whose noise is float64's (:data:`.judging.APPROACH_NOISE`: a layer rounded to
        float32 inside a float64 loss is a staircase there): a ReLU a float32 unit or two off θ is a kink at θ to
        float32 (review 89: 3% errors between its slopes passed), and the twin's leaps pass inside it.
        There too an estimate held while finer rows test it is withdrawn where a finer row diverges from it (a kink
        off θ whose jump the curvature hides: the coarse rows agree on a value half its jump off).
    first_step : ndarray, optional
        The first pass's step per suspect, where ``known`` is empty (a central first pass, or a table started
        elsewhere): rows finer than it that reach the analytic value do not bear out the first pass's estimate
        (:func:`_borne`).
    """
    numeric = np.full(k, np.nan)
    error = np.full(k, np.inf)
    rounding_best = np.zeros(k)
    step_best = np.asarray(h, dtype=np.float64).copy()
    previous = np.full((ROWS, k), np.nan)  # the table's last column
    gaps = np.full((ROWS, k), np.nan)
    steps = np.full((ROWS, k), np.nan)  # each row's step (half its span)
    gap_noise = np.full((ROWS, k), np.inf)
    uppers = np.full((ROWS, k), np.nan)
    lowers = np.full((ROWS, k), np.nan)
    moves = np.full((2, ROWS, k), np.nan)  # each row's losses less the loss at θ, up and down
    centrals = np.full((ROWS, k), np.nan)  # each row's central difference, and its rounding
    roundings = np.full((ROWS, k), np.nan)
    diagonal = np.full(k, np.nan)  # the table's last diagonal entry, per suspect
    streak = np.zeros(k, dtype=np.int64)  # consecutive rows whose gap halved (or was lost in noise)
    multiple = np.full(k, START)  # each suspect's next step, in units of its first-pass step
    leapt = np.zeros(k, dtype=bool)  # its last step was LEAP times smaller, not CON: a new table starts
    best_row = np.full(k, -1)  # the row of each suspect's best estimate
    coarse = np.full(k, np.nan)  # the extrapolation of the first two rows
    frozen = np.zeros(k, dtype=bool)  # it is kept while finer rows only test it (CONFIRM_ROWS)
    skipped = np.zeros(k, dtype=np.int64)  # rows of losses not finite before the first finite one (past the domain)
    finite_seen = np.zeros(k, dtype=bool)
    failed = np.zeros(k, dtype=bool)  # its table stopped at a row of losses not finite
    edge = np.broadcast_to(past_edge, (k,))
    leap_floor_k = np.broadcast_to(leap_floor, (k,))
    approaching = np.zeros(k, dtype=bool)  # a kink's table leapt toward θ (:func:`_off_slopes`)...
    approached = np.zeros(k, dtype=bool)  # ...its value outside the slopes
    active = np.ones(k, dtype=bool)
    evaluations = 0
    for i in range(ROWS):
        which = np.flatnonzero(active)
        if not which.size:
            break
        toward = np.zeros(which.size, dtype=bool)  # a kink's table leaping toward θ (:func:`_off_slopes`)
        if i < len(known):
            plus, minus, up, down = (column[which] for column in known[i])
        else:
            plus, minus, up, down = losses(which, multiple[which])
            evaluations += 2 * which.size
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            span = up - down
            column = np.full((ROWS, which.size), np.nan)
            column[0] = (plus - minus) / span
            upper = (plus - loss0) / up
            lower = (loss0 - minus) / -down
            gaps[i, which] = upper - lower
            gap_noise[i, which] = 2 * noise[which] * (1 / np.abs(up) + 1 / np.abs(down))
            steps[i, which] = span / 2
            lowers[i, which], uppers[i, which] = lower, upper
            rounding = noise[which] * math.sqrt(2) / np.abs(span)
            centrals[i, which], roundings[i, which] = column[0], rounding
            moves[0, i, which], moves[1, i, which] = plus - loss0, minus - loss0
            # A central difference's truncation error shrinks with the step: where it moved by more than it did
            # the row before (beyond both rows' rounding), the rows before were not converging, whatever their
            # gap, and an estimate ending there is withdrawn. On a plateau of a loss that saturates beyond the
            # step (an input on an offset into a layer norm) D(h) grows as 1/h while J(θ+h) and J(θ−h) stay
            # symmetric: a gap lost in the noise, and small estimates that agree with each other.
            if i >= 2:
                change = np.abs(column[0] - centrals[i - 1, which])
                before = np.abs(centrals[i - 1, which] - centrals[i - 2, which])
                diverging = (change > before) & (change > GAP_SIGNIFICANT * (rounding + roundings[i - 1, which]))
                # and in float64 an estimate disagreeing with the analytic value, held while finer rows test it: a
                # kink off θ whose jump the curvature hides from the slopes' gap bends the coarse rows alike (by half
                # its jump), and moves the finer ones ever faster, as 1/h, until the steps pass inside it
                withdrawn = which[diverging & ((best_row[which] >= i - 1) | (frozen[which] & approach))]
                error[withdrawn], numeric[withdrawn], best_row[withdrawn], frozen[withdrawn] = np.inf, np.nan, -1, False
            err, num, rnd, stp = error[which], numeric[which], rounding_best[which], step_best[which]
            # Only rows in the asymptotic regime may give the best estimate: there the slopes' gap halves with
            # the step, keeping its sign (a smooth gap is about f''·h), or is lost in noise. On a plateau reached
            # by too coarse a step J(θ±h) agree and the table "converges" on nothing while the gap grows; a
            # ratio near 1/2 can happen once by chance, so the regime needs two in a row.
            with_gap = np.abs(gaps[i, which]) > GAP_SIGNIFICANT * gap_noise[i, which]
            finite_row = np.isfinite(column[0])
            halving = ~with_gap & finite_row
            ratio = gaps[i, which] / gaps[i - 1, which] if i else np.full(which.size, np.nan)
            if i:
                halving |= (ratio >= 0.5 - SMOOTH_GAP) & (ratio <= 0.5 + SMOOTH_GAP)
            # after a leap the row before is not CON times coarser: no table entry spans the two
            halving &= ~leapt[which]
            previous[:, which] = np.where(leapt[which], np.nan, previous[:, which])
            streak[which] = np.where(halving, streak[which] + 1, 0)
            run = streak[which]  # rows i-run+1..i each halved the gap of the row before
            factor = CON * CON
            for j in range(1, i + 1):
                column[j] = (column[j - 1] * factor - previous[j - 1, which]) / (factor - 1)
                factor *= CON * CON
                trial = np.maximum(np.abs(column[j] - column[j - 1]), np.abs(column[j] - previous[j - 1, which]))
                # an entry of rows i-j..i, every one of them in the regime (and at least two ratios seen)
                better = (trial < err) & (run >= max(j, 2)) & ~frozen[which]  # a tie keeps the coarser entry
                err, num = np.where(better, trial, err), np.where(better, column[j], num)
                best_row[which] = np.where(better, i, best_row[which])
                rnd, stp = np.where(better, rounding, rnd), np.where(better, span / 2, stp)
            error[which], numeric[which], rounding_best[which], step_best[which] = err, num, rnd, stp
            previous[:, which] = column
            if i == 1:
                coarse[which] = column[1]
            # No finer step is possible, or the loss failed after finite rows. Rows before any finite one stepped
            # past the edge of the loss's domain (p·log p at p = 1e-3, whose first steps reach p < 0: held-out
            # sweep 49): they enter no table entry (theirs are NaN), and the steps go on shrinking.
            leading = ~finite_row & ~finite_seen[which] & edge[which]
            skipped[which] += leading
            failed[which] = ~finite_row & ~(leading & (skipped[which] < NONFINITE_ROWS))
            done = failed[which] | (span == 0)
            finite_seen[which] |= finite_row
            counted = i + 1 - skipped[which]  # rows since the first finite one
            ready = counted >= MIN_ROWS
            if i + 1 >= MIN_ROWS:  # a gap that keeps its size over 4x smaller steps, twice: a kink, confirmed
                # after a 2**7 range of steps; or at once where it keeps it exactly (a kink at θ itself)
                band = np.where(counted >= KINK_ROWS, KINK_RATIO, EXACT_KINK)
                flat = ready & _flat(gaps[i - 3 : i + 1, which], gap_noise[i - 3 : i + 1, which], band)
                # nor while a slope still moves (kinks near θ that finer steps pass inside): it would decide nothing
                for slopes in (uppers, lowers) if follow else ():
                    flat &= ~_moving(*_changes(slopes[i - 2 : i + 1, which]), gap_noise[i, which])
                if analytic is not None:  # a value outside the slopes would be wrong: finer steps confirm it
                    between = _between(analytic[which], lower, upper, gap_noise[i, which])
                    if follow and approach:  # and one off both beyond their drift: steps may pass inside its kinks
                        toward, outside = _toward_theta(
                            analytic[which],
                            (uppers[i - 2 : i + 1, which], lowers[i - 2 : i + 1, which]),
                            (gaps[i, which], gap_noise[i, which], steps[i - 2 : i + 1, which]),
                            (multiple[which], leap_floor_k[which]),
                            flat,
                            ready,
                        )
                        between &= ~toward
                        approached[which] |= toward & outside
                        approaching[which] |= toward
                        # past the leaps, a kink's table goes on finer than a table of CON steps ends only while its
                        # slopes stay precise (the loss's rounding grows as the step shrinks)
                        vague = ~(np.abs(gaps[i, which]) > LEAP_PRECISION * CON * gap_noise[i, which])
                        vague &= with_gap & (multiple[which] / CON < START * CON ** (1 - ROWS))
                        done |= approaching[which] & ~toward & vague
                    flat &= between
                done |= flat
            if i + 1 >= MIN_ROWS:
                growing = np.abs(column[i] - diagonal[which]) >= SAFE * err
                accurate = err <= converged * scale[which]
                settled = run >= 3  # two entries of the regime combined
                # noise dominates: finer steps can only be worse (once the slopes' gap is settled or lost in
                # noise: a kink shows only at steps where its jump exceeds the noise)
                enough = (growing & accurate & settled) | ((rounding > SAFE * err) & (settled | ~with_gap))
                if analytic is not None:  # a disagreement must be seen at finer steps too
                    with np.errstate(invalid="ignore"):
                        sure, off = err + ROUNDING_GAIN * rnd, np.abs(analytic[which] - num)
                        apart = off > sure
                        # agreement within what the loss's precision allows, in the regime: finer rows could only
                        # narrow a bar already below it (a value off by more is never this close to the estimate)
                        agreed = settled & (off <= sure) & (sure <= converged * reference(analytic[which], num))
                    confirming = enough & apart & (i - best_row[which] < CONFIRM_ROWS)
                    frozen[which] |= confirming  # the finer rows test the estimate; they do not replace it
                    enough = (enough & ~confirming) | agreed
                done |= enough & ready
        diagonal[which] = column[i]
        active[which[done]] = False
        with np.errstate(invalid="ignore"):
            leap = with_gap & (np.abs(ratio) > LEAP_RATIO) & (i + 1 >= len(known))
            # and on an element's line where the steps do not approach θ (float32), only while the gap would stand
            # far above the finer row's noise, LEAP times this one's: a kink at θ keeps its gap, and the rows past the
            # leap must be able to tell (a float32 ReLU 0.65 first steps off θ, its gap 4 noises at the leapt row,
            # where the rows it skipped would have shown 17: review 87). float64's leaps go on to where kinks a hair off
            # θ are passed inside; a direction's line, which crosses every kink of its tensor, is not followed there.
            if follow and not approach:
                leap &= np.abs(gaps[i, which]) > PASSED_KINK * GAP_SIGNIFICANT * LEAP * gap_noise[i, which]
            # past the domain's edge, a leap too: the edge may lie far inside the first steps (K(m) at 1e-6 below
            # its pole at m = 1, whose first steps of 7.4e-4 and twice that reach m > 1: review 83)
            leap |= leading & (i + 1 >= len(known))
            leap &= multiple[which] / LEAP >= leap_floor_k[which]
            leap |= toward
        leapt[which] = leap
        multiple[which] /= np.where(leap, LEAP, CON)
    kink, lower, upper, (margin, margins, precise), settled, crossing, anchor, inside, gap = _kinks(
        gaps, gap_noise, lowers, uppers, best_row, steps, (centrals, roundings) if approach else None
    )
    with np.errstate(invalid="ignore"):
        bar = np.where(np.isfinite(error), error, np.abs(numeric)) + ROUNDING_GAIN * rounding_best
    # What a disagreement must exceed to be called wrong (it never widens an agreement; see _hidden).
    hidden = _hidden(numeric, best_row, gaps, gap_noise, centrals, roundings, analytic)
    # the same for the first two rows' extrapolation (the first pass's richardson estimate, where they are its)
    coarse_hidden = _hidden(
        coarse, np.where(np.isfinite(coarse), 1, -1), gaps, gap_noise, centrals, roundings, analytic
    )
    # the curvature from the coarse rows on (for the first pass's estimate), and from the table's best
    held_coarse = _curvature_held(gaps, gap_noise, steps, np.where(np.isfinite(coarse), 0, -1))
    held = _curvature_held(gaps, gap_noise, steps, np.where(best_row >= 0, np.maximum(best_row - 1, 0), -1))
    refined = Refined(
        numeric,
        bar,
        kink,
        lower,
        upper,
        step_best,
        evaluations,
        margin,
        settled,
        hidden,
        coarse_hidden,
        held,
        held_coarse,
        crossing,
        ~np.isfinite(numeric) & finite_seen & ~failed,
        _smooth_end(gaps, gap_noise, steps),
        anchor,
        inside,
        gap,
        math.nan if follow else _jump(gaps, gap_noise, steps),
        approached,
        margins,
        precise,
        _borne(
            centrals, roundings, coarse, len(known), analytic, steps, None if first is None else (first[0], first_step)
        ),
        _runaway(centrals, steps, resolution),
        _staircase(moves, steps, noise, loss0),
        _erratic(centrals, roundings, steps),
    )
    if first is None or not known or analytic is None:
        return refined
    return refined.confirming(*first, np.asarray(h, dtype=np.float64), analytic)


def _borne(
    centrals: np.ndarray,
    roundings: np.ndarray,
    coarse: np.ndarray,
    known: int,
    analytic: np.ndarray | None,
    steps: np.ndarray | None = None,
    first: tuple[np.ndarray, np.ndarray | None] | None = None,
) -> np.ndarray | bool:
    """Per suspect, whether the rows finer than the first pass's (``known`` of them, richardson's 2h and h, extrapolated
    to ``coarse``) bear out its estimate. They do not where some finer row comes closer to the ``analytic`` value than
    half their disagreement, nor where the two next rows leave the estimate, each beyond :data:`BORNE` times its
    distance from D(h) plus both rows' rounding, by more than the estimate itself: the first pass's steps were not in
    the regime (a chaotic loss, whose differences grow by orders of magnitude as the step shrinks, and reach the
    derivative, if at all, only at steps far finer). A move within the estimate's own size, away from the analytic
    value, bears a disagreement of many times it out (review 95: a feature ``|x − 1e-10|^1.5`` beside ``x``, the first
    pass accurate to 1e-8, the finer rows moving by 1e-9, its zeroed derivative called wrong); and where the next two
    rows happen to lie near it, a finer one reaching the analytic value does not (the logistic map at 35 steps: 7.6,
    −1.6, 2.6, −4.7, then −3e2 ... −1.1e7). Rows not evaluated or not finite contradict nothing.

    Where the table did not start at the first pass's rows (``known`` 0: a central first pass), ``first`` is its
    ``(estimate, step)``, and only the rows finer than its step test it, by the second rule, two consecutive rows
    reaching the analytic value to within :data:`REACHED` of it (review 113: a ray grazing a sphere, the first pass's
    central difference across the hit/miss jump 2e5 where the finer rows, inside the hit, reached the analytic value
    -316.3 before the loss's rounding there stopped the table; the correct value failed. Half the disagreement alone is
    too wide there: a sign flipped, 2.3e4 against a difference of -1.2e6, lay within it of a row at the derivative,
    review 116; and one row alone, in rows the sqrt's amplified rounding scatters by 0.1% to 2%, came within 0.1% of
    a value 1% off by chance, review 117)."""
    if known != 2:
        if first is None or first[1] is None or analytic is None or steps is None:
            return True
        estimate, step = first[0], first[1]
        with np.errstate(invalid="ignore"):
            finer = np.isfinite(centrals) & (steps < step * (1 - 2.0**-20))
            off = np.abs(centrals - analytic)
            near = finer & (off <= np.abs(estimate - analytic) / 2) & (off <= REACHED * np.abs(analytic))
        return np.asarray(~np.any(near[1:] & near[:-1], axis=0), dtype=bool)
    with np.errstate(invalid="ignore"):
        reach = np.abs(centrals[1] - coarse) + roundings[1]
        rows = centrals[known : known + 2]
        moved = np.abs(rows - coarse)
        off = (moved > BORNE * (reach + roundings[known : known + 2])) & np.isfinite(rows)
        beyond = np.any(off & (moved > np.abs(coarse)), axis=0)
        toward = False
        if analytic is not None:
            toward = np.any(np.abs(centrals[known:] - analytic) <= np.abs(coarse - analytic) / 2, axis=0)
    return np.asarray(~((np.any(off, axis=0) & beyond) | toward), dtype=bool)


def _runaway(centrals: np.ndarray, steps: np.ndarray, resolution: float = 0.0) -> np.ndarray:
    """Per suspect, whether its central differences were still running away at its finest rows (:data:`RUNAWAY_ROWS`):
    over that many moves from row to row, the last to its finest finite row, each the same way as the one before and
    each pair following one law ``c·h^-p`` (:func:`_exponent`) with p above :data:`RUNAWAY` and the exponents within
    :data:`RUNAWAY_LAW` of each other, each move times its row's step beyond :data:`RUNAWAY_UNITS` of the loss's
    ``resolution`` (its rounding unit), and the law's share of the finest difference the larger: the rows never
    settled."""
    rows, k = centrals.shape
    finite = np.isfinite(centrals)
    last = np.where(finite.any(axis=0), rows - 1 - np.argmax(finite[::-1], axis=0), -1)  # the finest finite row
    found = np.zeros(k, dtype=bool)
    at = np.arange(k)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        moves = np.diff(centrals, axis=0)  # moves[i]: row i to row i + 1
        shrink = steps[:-1] / steps[1:]  # shrink[i]: row i's step over row i + 1's
        powers = _exponent(moves[1:] / moves[:-1], shrink[:-1], shrink[1:])  # powers[i]: moves i and i + 1
        felt = np.abs(moves) * steps[1:] > RUNAWAY_UNITS * resolution  # beyond the loss's rounding
        for first in range(rows - RUNAWAY_ROWS):
            law = powers[first : first + RUNAWAY_ROWS - 1]
            steady = np.all(law > RUNAWAY, axis=0) & (np.max(law, axis=0) <= RUNAWAY_LAW * np.min(law, axis=0))
            steady &= np.all(felt[first : first + RUNAWAY_ROWS], axis=0)
            found |= steady & (first + RUNAWAY_ROWS == last)
        # the law's own share of the finest difference, c·h^-p = move·r^p/(r^p − 1) over its last move (r: that move's
        # shrink), against what is left, a: it must be the larger. Where it is the smaller, the rows settled on a, and
        # the run is a feature beside θ they do not resolve (review 98: a jump of 1e-9 a hair off θ moved them by 2e-6
        # about 0.765; 100% and -50% errors there, and every element's sign flipped beside a jump crossing every line,
        # went from failed to unsettled). A steep feature at θ narrower than the steps draws the same rows, its slope
        # not theirs: failed, as before this rule, where a jump beside θ, far the commoner, leaves a its derivative.
        end = np.maximum(last, 1)
        move, r = moves[end - 1, at], shrink[end - 1, at]
        window = np.clip(end - RUNAWAY_ROWS + np.arange(RUNAWAY_ROWS - 1)[:, None], 0, powers.shape[0] - 1)
        law = powers[window, at]
        p = np.where(np.all(np.isfinite(law), axis=0), np.mean(law, axis=0), 1.0)
        share = move * r**p / (r**p - 1)
        dominant = np.abs(share) >= np.abs(centrals[end, at] - share)
    return np.asarray(found & dominant)


def _erratic(centrals: np.ndarray, roundings: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Per suspect, the step of the first row where its central differences moved by more than :data:`GAP_SIGNIFICANT`
    times both rows' rounding and more than they had the row before, after a row where they had moved less than the row
    before; NaN where none did. A smooth function's differences settle as the step shrinks (their truncation shrinking
    by 4 per halving), and their rounding, which grows as the step shrinks, moves them by about itself. A move far
    beyond it once they settled is a feature off θ the steps enter (kinks 1e-8 to 1e-6 off θ), or noise the look was not
    given (a ray grazing a sphere, whose depth's square root of a discriminant 1.5e-9 amplifies the rounding of its
    terms a thousandfold: review 113, where the noise measured along its tensor was one rounding unit of the loss, and a
    table that ran on into that noise called the correct value wrong)."""
    k = centrals.shape[1]
    found = np.full(k, np.nan)
    with np.errstate(invalid="ignore"):
        moves = np.abs(np.diff(centrals, axis=0))  # moves[i]: row i to row i + 1
        felt = moves > GAP_SIGNIFICANT * (roundings[:-1] + roundings[1:])
        settled = np.maximum.accumulate(moves[1:] < moves[:-1], axis=0)  # settled[i]: some move up to i + 1 shrank
        grew = felt[2:] & (moves[2:] > moves[1:-1]) & settled[:-1]  # grew[i]: move i + 2, into row i + 3
        hit = grew.any(axis=0)
        row = np.argmax(grew, axis=0) + 3
    found[hit] = steps[row[hit], np.flatnonzero(hit)]
    return found


def _staircase(moves: np.ndarray, steps: np.ndarray, noise: np.ndarray, loss0: float) -> np.ndarray:
    """Per suspect, the step of the loss where it moved along the line as a staircase (:data:`STAIRCASE`), else NaN.
    ``moves``: each row's losses less the loss at θ, up and down (rows from coarse to fine), ``steps`` its steps. A
    staircase: at a row the loss stood still on both sides but for :data:`STAIRCASE` times less than the smallest move
    by :data:`STAIRCASE` times its noise or more at the coarser rows: a smooth term beside the staircase, whose slope
    there, times each coarser row's step, is taken off their moves. What is left of each is then a whole multiple of the
    smallest, ``q``, within :data:`STAIRCASE_SLACK` of it, or still as that row is; two rows or more moved both ways,
    and some move is twice ``q`` or more; ``q`` is a power of two. A smooth function's moves shrink as its steps do (by
    2 or :data:`LEAP` from a row to the next), by way of moves between ``q`` and stillness; a kink off θ with a flat
    side moves one way only, and a dead zone's moves are no multiples."""
    rows, k = steps.shape
    found = np.full(k, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        size = np.abs(moves)
        big = size >= STAIRCASE * noise
        largest = np.max(np.where(np.isfinite(size), size, 0.0), axis=(0, 1))
        for row in range(2, rows):
            smallest = np.min(np.where(big[:, :row], size[:, :row], np.inf), axis=(0, 1))
            # (the parameter moved: a row that did not move it at all says nothing)
            still = (np.fmax(size[0, row], size[1, row]) <= smallest / STAIRCASE) & (steps[row] > 0)
            still &= np.isnan(found)
            if not still.any():
                continue
            slope = (moves[0, row] - moves[1, row]) / (2 * steps[row])
            left = np.abs(moves[:, :row] - slope * np.stack([steps[:row], -steps[:row]]))
            quantum = np.min(np.where(big[:, :row], left, np.inf), axis=(0, 1))
            units = left / quantum
            slack = 4 * float(np.finfo(np.float64).eps) * (abs(loss0) + largest) / quantum + STAIRCASE_SLACK
            whole = (np.round(units) >= 1) & (np.abs(units - np.round(units)) <= slack)
            fits = np.all(whole | (left <= quantum / STAIRCASE) | ~np.isfinite(left), axis=(0, 1))
            found_here = still & fits & (np.sum(whole[0] & whole[1], axis=0) >= 2) & np.isfinite(quantum)
            found_here &= np.max(np.where(whole, np.round(units), 0.0), axis=(0, 1)) >= 2
            # and a power of two, as floats' rounding units are: a quantiser's own step (floor(x/1e-4)·1e-4, whose
            # derivative, 0, is the loss's) is no rounding of a smooth function (review 108)
            found_here &= np.abs(quantum / 2.0 ** np.round(np.log2(quantum)) - 1) <= STAIRCASE_SLACK
            found[found_here] = quantum[found_here]
    return found


def _exponent(factor: np.ndarray, coarser: np.ndarray, finer: np.ndarray) -> np.ndarray:
    """The exponent p of a law ``D(h) = a + c·h^-p`` that makes two successive moves of D, over steps shrinking by
    ``coarser`` then by ``finer``, differ by ``factor`` (``coarser^p·(finer^p − 1)/(coarser^p − 1)``, which grows with
    p); NaN where no p in (0, 8] does (a move changing sign, or shrinking faster than any such law allows)."""
    low, high = np.zeros_like(factor), np.full_like(factor, 8.0)

    def law(p: np.ndarray) -> np.ndarray:
        return np.asarray(coarser**p * (finer**p - 1) / (coarser**p - 1))

    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        possible = (factor > law(np.full_like(factor, 1e-9))) & (factor <= law(high)) & (coarser > 1) & (finer > 1)
        for _ in range(40):
            middle = (low + high) / 2
            above = law(middle) < factor
            low, high = np.where(above, middle, low), np.where(above, high, middle)
    return np.asarray(np.where(possible, (low + high) / 2, np.nan))


def _smooth_end(gaps: np.ndarray, gap_noise: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Per suspect, whether its finest two significant rows are :data:`CON` apart in step (no leap between) and the
    slopes' gap halved from one to the other, keeping its sign, as a smooth function's does there (``f''·h``): the
    one-sided slopes, each a derivative somewhere within its step (the mean value theorem), bracket the derivative
    at θ where ``f''`` keeps its sign across the steps. One such ratio is less than the table asks before it
    estimates (two: one can happen by chance), so it only bounds: a value outside the bracket is wrong
    (:func:`.tolerance.judge_again`)."""
    _, (before, last) = _finest_significant(gaps, gap_noise, 2)
    at = np.arange(gaps.shape[1])
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = gaps[np.maximum(last, 0), at] / gaps[np.maximum(before, 0), at]
        halved = np.abs(ratio - 0.5) <= SMOOTH_GAP
    return np.asarray(_one_halving(steps, before, last) & halved)


def _one_halving(steps: np.ndarray, coarser: np.ndarray, finer: np.ndarray) -> np.ndarray:
    """Per suspect, whether rows ``coarser`` and ``finer`` (-1: none) are consecutive, :data:`CON` apart in step
    (no leap between them)."""
    at = np.arange(steps.shape[1])
    with np.errstate(invalid="ignore", divide="ignore"):
        apart = steps[np.maximum(coarser, 0), at] / steps[np.maximum(finer, 0), at]
    return np.asarray((coarser >= 0) & (finer - coarser == 1) & (np.abs(apart - CON) <= 0.1 * CON))


def _jump(gaps: np.ndarray, gap_noise: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Per suspect, the jump at θ that its significant rows, each :data:`CON` times finer than the one before, show
    beside the curvature (NaN where they show none). The gap ``f''·h + J`` of a smooth function with a kink at θ
    does not halve as the step shrinks (less and less where ``J`` has the curvature's sign, more and more where it
    has the other), and ``2·gap(h/2) − gap(h)`` is ``J`` from any pair of rows (a smooth function's falls 8x a row,
    as its gap's ``h³`` term does). Seen where two pairs of three consecutive rows give it within :data:`KINK_RATIO`
    of each other, the coarser above its noise as a gap's is and the finer above its own, and no finer row's gap is
    off the line ``f''·h + J`` they draw by more than its noise (a kink off θ, which the finer steps pass inside,
    leaves it).
    Kinks at θ of several ReLUs at exactly 0 on binary inputs, on a random direction's float32 line, make gaps of
    0.33, 0.20, 0.13, 0.094 (a jump of 0.06), or 0.72, 0.30, 0.089 (a jump of −0.12), and the rows finer are noise:
    neither flat enough for a kink nor changing sign among the significant rows (:func:`_kinks`), and judged smooth
    those directions were wrong. Ties of a float32 max-pool on a near-fit loss plus 10 make gaps of 0.60, 0.30, 0.15,
    0.078, 0.041 (jumps of 0.0031, 0.0031, 0.0036, 0.0033): the finest pairs' are below their noise, the coarsest
    ones' above (review 73)."""
    rows, k = gaps.shape
    significant, _ = _finest_significant(gaps, gap_noise, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        # the jump from rows i and i + 1, both significant and a halving apart; its noise is the finer gap's
        jumps = np.full((rows, k), np.nan)
        for i in range(rows - 1):
            pair = significant[i] & significant[i + 1] & _one_halving(steps, np.full(k, i), np.full(k, i + 1))
            jumps[i] = np.where(pair, 2 * gaps[i + 1] - gaps[i], np.nan)
        noise = np.vstack([gap_noise[1:], np.full((1, k), np.inf)])
        seen = np.full(k, np.nan)
        for i in range(rows - 2):
            coarser, finer = jumps[i], jumps[i + 1]
            kept = (finer / coarser >= KINK_RATIO) & (finer / coarser <= 1 / KINK_RATIO)
            above = (np.abs(coarser) > GAP_SIGNIFICANT * noise[i]) & (np.abs(finer) > noise[i + 1])
            # every finer row's gap on the line f''·h + J that its three rows draw, within its noise: a kink off θ
            # leaves it where the steps pass inside (its gap falls toward the curvature's)
            curvature = (gaps[i + 2] - coarser) / steps[i + 2]
            off = np.abs(gaps[i + 3 :] - coarser - curvature * steps[i + 3 :]) > GAP_SIGNIFICANT * gap_noise[i + 3 :]
            seen = np.where(kept & above & ~np.any(off, axis=0), coarser, seen)
    return seen


def _curvature_held(gaps: np.ndarray, gap_noise: np.ndarray, steps: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Per suspect, whether the loss's curvature (each row's slopes' gap over its step: a second difference)
    held from row ``start`` on: every row evaluated since within :data:`CURVATURE_HELD` of that row's and
    the two rows' noise, over at least :data:`HELD_ROWS` rows. A smooth function's curvature changes by
    O(h²) there; a kink inside the steps adds about jump/h, which grows as the step shrinks."""
    rows, k = gaps.shape
    at = np.arange(k)
    first = np.maximum(start, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        curvature, noise = gaps / steps, gap_noise / np.abs(steps)
        reference, reference_noise = curvature[first, at], noise[first, at]
        close = np.abs(curvature - reference) <= CURVATURE_HELD * np.abs(reference) + noise + reference_noise
    counted = (np.arange(rows)[:, None] >= first) & np.isfinite(curvature)
    return np.asarray(np.all(close | ~counted, axis=0) & (np.sum(counted, axis=0) >= HELD_ROWS) & (start >= 0))


def _hidden(
    numeric: np.ndarray,
    best_row: np.ndarray,
    gaps: np.ndarray,
    gap_noise: np.ndarray,
    centrals: np.ndarray,
    roundings: np.ndarray,
    analytic: np.ndarray | None,
) -> np.ndarray:
    """What a disagreement with ``numeric`` (an estimate whose finest row is ``best_row``) must exceed to be
    called wrong: how far a kink whose jump is below the slopes' noise at that row, not seen, could shift a
    central difference (up to half its jump), and how far finer rows moved toward the analytic value."""
    k = numeric.size
    at = np.arange(k)
    row = np.maximum(best_row, 0)
    with np.errstate(invalid="ignore"):
        unseen = (best_row >= 0) & ~(np.abs(gaps[row, at]) > GAP_SIGNIFICANT * gap_noise[row, at])
        hidden = np.where(unseen, GAP_SIGNIFICANT / 2 * gap_noise[row, at], 0.0)
    return np.asarray(np.fmax(hidden, _contradicted(numeric, best_row, centrals, roundings, analytic)))


def _contradicted(
    numeric: np.ndarray,
    best_row: np.ndarray,
    centrals: np.ndarray,
    roundings: np.ndarray,
    analytic: np.ndarray | None = None,
) -> np.ndarray:
    """How far the rows finer than the best estimate's put the derivative from it, where they contradict it
    (0 where none does): a disagreement within that is not proven wrong.

    For a smooth function a central difference's error shrinks with its step (about f3·h²/6, f3 the third
    derivative), so each finer row lies nearer the derivative than the best estimate's own finest row did,
    to within its rounding. A function with many kinks at scales below the first steps (a hinge loss or a
    ReLU layer summed over a batch, at float32's coarse steps) bends like a smooth one at coarse steps: the
    table converges there on a value the finer rows then leave, and its error estimate does not see it. Such
    an estimate cannot call a value wrong: the verdict is inconclusive. A row counts when it is off by more than :data:`GAP_SIGNIFICANT`
    times its rounding; given the analytic values, by more than :data:`CONTRADICTS` times it toward them
    (the direction a kink's bias takes as the steps leave it; a wrong value's finer rows scatter both ways).
    """
    rows, k = centrals.shape
    at = np.arange(k)
    own = np.maximum(best_row, 0)  # rows after it are finer (a leap only makes a step smaller)
    with np.errstate(invalid="ignore"):
        finer = np.isfinite(centrals) & (np.arange(rows)[:, None] > best_row) & (best_row >= 0)
        distance = np.where(finer, np.abs(centrals - numeric), 0.0)
        if analytic is None:
            off = distance > np.abs(centrals[own, at] - numeric) + GAP_SIGNIFICANT * roundings
        else:
            toward = np.sign(centrals - numeric) == np.sign(analytic - numeric)
            off = toward & (distance > np.abs(centrals[own, at] - numeric) + CONTRADICTS * roundings)
        off &= finer
        return np.asarray(np.max(np.where(off, distance, 0.0), axis=0))


def _between(analytic: np.ndarray, lower: np.ndarray, upper: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Whether each analytic value lies between the one-sided slopes at a step, within half their gap and
    the gap's noise: a kink there would make it a valid subgradient. A value well outside would be called
    wrong, which kinks on either side of θ closer than the step can fake (two ReLUs 1e-4 of the step
    either side: slopes c and c + 0.3 at every coarser step, the derivative c - 0.7): the table goes on to
    steps below them before a kink can stop it."""
    low, high = np.fmin(lower, upper), np.fmax(lower, upper)
    slack = 0.5 * (high - low) + noise
    with np.errstate(invalid="ignore"):
        return np.asarray((analytic >= low - slack) & (analytic <= high + slack))


def _toward_theta(
    analytic: np.ndarray,
    slopes: tuple[np.ndarray, np.ndarray],
    row: tuple[np.ndarray, np.ndarray, np.ndarray],
    multiples: tuple[np.ndarray, np.ndarray],
    flat: np.ndarray,
    ready: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Per suspect, whether its kink's table leaps toward θ next, and whether its value lies outside the slopes (where
    the kink would put it wrong). ``slopes``: the last 3 rows of the one-sided slopes (up, down); ``row``: the last
    row's gap and its noise, and the last 3 rows' steps; ``multiples``: each next step's multiple and the finest a
    leap may land on; ``flat``: the gap keeps its size (:func:`_flat`). It leaps where the value lies off both slopes
    (:func:`_off_slopes`) of a flat gap or beside a slope moving ever faster over two halvings of the step (a feature
    off θ: a leap moves any slope more), while the slopes stay precise (:func:`_can_leap`)."""
    uppers, lowers = slopes
    gap, noise, steps = row
    first, second, third = (np.full(analytic.size, row) for row in range(3))
    halvings = _one_halving(steps, first, second) & _one_halving(steps, second, third)
    closing = np.zeros(analytic.size, dtype=bool)
    for three in slopes:
        closing |= ready & halvings & _closing(*_changes(three), noise)
    off = (flat | closing) & _off_slopes(analytic, uppers[1:], lowers[1:], noise)
    toward = off & _can_leap(*multiples, gap, noise)
    low, high = np.fmin(uppers[2], lowers[2]), np.fmax(uppers[2], lowers[2])
    return toward, (analytic < low) | (analytic > high)


def _off_slopes(analytic: np.ndarray, uppers: np.ndarray, lowers: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Whether each analytic value lies off both one-sided slopes of the last of 2 rows (steps shrinking), outside them
    or between them, by more than 4 times each one's drift from the row before and ``noise``: a slope beside a kink at θ is
    off its limit by about f''·h/2, twice its last change, so a value by a convention (relu'(0) = 0, the first of tied
    maxima) lies within that of one of them. One off both is wrong, or a valid subgradient of kinks that interact, or
    the kinks are off θ, within the steps: steps finer than their distance pass inside them, where the function is
    smooth (ReLU inputs 1e-7 from 0 on integer data, review 83: correct values outside the slopes "wrong" by up to
    40%, and 3% errors between them passed as kinks' subgradients)."""
    with np.errstate(invalid="ignore"):
        near = [
            np.abs(analytic - slopes[1]) <= 4 * np.abs(slopes[1] - slopes[0]) + noise for slopes in (uppers, lowers)
        ]
        return np.asarray(~near[0] & ~near[1])


def _can_leap(multiple: np.ndarray, floor: np.ndarray, gap: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Whether a kink's table may take a step :data:`LEAP` times finer (``multiple`` of its first, at least ``floor``)
    where its ``gap`` (with its ``noise``) would stand :data:`LEAP_PRECISION` times above the noise there, as a kink's
    at θ does (the noise grows as the step shrinks): its slopes there precise enough to judge a value against."""
    with np.errstate(invalid="ignore"):
        return np.asarray((multiple / LEAP >= floor) & (np.abs(gap) > LEAP_PRECISION * LEAP * noise))


def _flat(gaps: np.ndarray, gap_noise: np.ndarray, band: float | np.ndarray = 0.8) -> np.ndarray:
    """For 4 rows of ``gaps`` (steps shrinking by :data:`CON` per row): whether all 4 are significant and
    the gap kept its sign and size (within a factor 1/``band``) over a 4x smaller step, twice.
    A smooth function's gap shrinks 4x; a kink's stays; one that saturates at a coarse step grows, and
    passes through the band only briefly."""
    with np.errstate(invalid="ignore", divide="ignore"):
        significant = np.all(np.abs(gaps) > GAP_SIGNIFICANT * gap_noise, axis=0)
        ratio = gaps[2:] / gaps[:-2]
        kept = np.all((ratio >= band) & (ratio <= 1 / band), axis=0)
    return np.asarray(significant & kept)


def _changes(slopes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For 3 rows of a one-sided slope (steps shrinking by :data:`CON`): its last change and the one before."""
    return np.abs(slopes[2] - slopes[1]), np.abs(slopes[1] - slopes[0])


def _moving(change: np.ndarray, change_before: np.ndarray, gap_noise: np.ndarray) -> np.ndarray:
    """Whether a slope's last change (:func:`_changes`) exceeded :data:`DRIFT_RATIO` of the one before and
    :data:`GAP_SIGNIFICANT` times the finest row's ``gap_noise``: still moving (crossing kinks near θ, or a cusp), not
    settling on a derivative (a change of a few noises, growing as 1/h with the noise, is the noise's own)."""
    with np.errstate(invalid="ignore"):
        return np.asarray((change > DRIFT_RATIO * change_before) & (change > GAP_SIGNIFICANT * gap_noise))


def _closing(change: np.ndarray, change_before: np.ndarray, gap_noise: np.ndarray) -> np.ndarray:
    """Whether a slope's last change (:func:`_changes`) grew to :data:`LEAP_RATIO` times the one before and
    :data:`GAP_SIGNIFICANT` times the finest row's ``gap_noise``: the slope crossing a kink (or a feature) at a distance
    d from θ far inside the step moves by about jump·d/h, ever faster as the step shrinks toward it."""
    with np.errstate(invalid="ignore"):
        return np.asarray((change >= LEAP_RATIO * change_before) & (change > GAP_SIGNIFICANT * gap_noise))


#: A coarser row's slopes stand for a kink's (:func:`_precise_slope`) only where this many finer rows tested them, and
#: its margin is this many times narrower than the finest significant row's (a float32 term inside a float64 loss,
#: whose noise has structure coarser than the probe's spacings, moved a coarse row's slope by 1.2 times its noise:
#: a correct value at it failed).
TESTED_ROWS, PRECISER = 2, 16.0


def _precise_slope(
    slopes: np.ndarray,
    gap_noise: np.ndarray,
    steps: np.ndarray,
    rows_seen: tuple[np.ndarray, np.ndarray],
    significant: np.ndarray,
    row: np.ndarray,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], np.ndarray]:
    """Per suspect, a one-sided slope's most precise extrapolation to step 0 that the finer rows bear out, and its margin
    (NaN and inf where none does): borne out by their slopes and central differences, and by their slopes alone; and
    whether a finer row's slope contradicted one (beyond those margins). From each row up to ``row`` whose gap is ``significant`` and whose row before is
    :data:`CON` times coarser (``steps``; ``rows_seen``: the rows' central differences and their rounding), ``2·s(h) −
    s(2h)``, its margin the move plus :data:`GAP_SIGNIFICANT` times the gap's noise there; borne out where at least :data:`TESTED_ROWS` finer rows
    were evaluated and every one's slope lies within that
    margin plus :data:`GAP_SIGNIFICANT` times its gap's noise, and its central difference within the row's change from
    the one before plus as many times both rows' rounding. A kink at θ keeps its slopes and its central difference at
    every step, and the coarse rows, whose noise is the least, measure them best; kinks off θ move the finer rows'
    central differences as 1/h (two ReLUs 1e-11 either side of θ, whose probe's noise the kinks inflated 1e4 times,
    moved the slopes within their noise and the central differences 8 times beyond their rounding)."""
    centrals, roundings = rows_seen
    rows, k = slopes.shape
    both, alone = (np.full(k, np.nan), np.full(k, np.inf)), (np.full(k, np.nan), np.full(k, np.inf))
    contradicted = np.zeros(k, dtype=bool)
    finite = np.isfinite(slopes) & np.isfinite(centrals)
    with np.errstate(invalid="ignore"):
        for r in range(1, rows):
            extrapolated = 2 * slopes[r] - slopes[r - 1]
            own = np.abs(slopes[r] - slopes[r - 1]) + GAP_SIGNIFICANT * gap_noise[r]
            change = np.abs(centrals[r] - centrals[r - 1])
            moved = np.abs(slopes - extrapolated) > own + GAP_SIGNIFICANT * gap_noise
            off = moved | (np.abs(centrals - centrals[r]) > change + GAP_SIGNIFICANT * (roundings + roundings[r]))
            finer = (np.arange(rows)[:, None] > r) & finite
            tested = (np.sum(finer, axis=0) >= TESTED_ROWS) & np.isfinite(own) & np.isfinite(change)
            pair = _one_halving(steps, np.full(k, r - 1), np.full(k, r)) & significant[r] & (r <= row) & tested
            contradicted |= pair & np.any(finer & moved, axis=0)
            both, alone = (
                _better(measure, (extrapolated, own), pair & ~np.any(finer & wrong, axis=0))
                for measure, wrong in ((both, off), (alone, moved))
            )
    return both, alone, contradicted


def _better(
    measure: tuple[np.ndarray, np.ndarray], candidate: tuple[np.ndarray, np.ndarray], valid: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A slope's ``(value, margin)`` with ``candidate``'s where ``valid`` and its margin is the narrower."""
    taken = valid & (candidate[1] < measure[1])
    return np.where(taken, candidate[0], measure[0]), np.where(taken, candidate[1], measure[1])


def _narrower(
    own: np.ndarray, other: tuple[np.ndarray, np.ndarray], allowed: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``other`` (a slope's ``(value, margin)``) where ``allowed`` and its margin is :data:`PRECISER` times narrower than
    ``own``, else NaN and inf."""
    return _better(
        (np.full(own.shape, np.nan), np.full(own.shape, np.inf)), other, allowed & (PRECISER * other[1] < own)
    )


def _last_flip(gaps: np.ndarray, significant: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per suspect, the finest two successive ``significant`` rows whose gaps have opposite signs, coarser first (-1
    where none)."""
    rows, k = gaps.shape
    coarser, finer = np.full(k, -1), np.full(k, -1)
    previous = np.full(k, -1)
    for i in range(rows):
        here = significant[i]
        with np.errstate(invalid="ignore"):
            opposite = (
                here & (previous >= 0) & (np.sign(gaps[i]) * np.sign(gaps[np.maximum(previous, 0), np.arange(k)]) < 0)
            )
        coarser, finer = np.where(opposite, previous, coarser), np.where(opposite, i, finer)
        previous = np.where(here, i, previous)
    return coarser, finer


def _finest_significant(gaps: np.ndarray, gap_noise: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Which rows' gaps stand above their noise (:data:`GAP_SIGNIFICANT`), and per suspect the finest ``n`` such
    rows, coarsest first (-1 where there are fewer)."""
    with np.errstate(invalid="ignore"):
        significant = np.abs(gaps) > GAP_SIGNIFICANT * gap_noise
    rows, k = gaps.shape
    finest = np.full((n, k), -1, dtype=np.int64)
    for i in range(rows):
        finest = np.where(significant[i], np.vstack([finest[1:], np.full(k, i)]), finest)
    return significant, finest


def _kinks(
    gaps: np.ndarray,
    gap_noise: np.ndarray,
    lowers: np.ndarray,
    uppers: np.ndarray,
    best_row: np.ndarray,
    steps: np.ndarray,
    rows_seen: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[
    np.ndarray,
    np.ndarray,
    np.ndarray,
    tuple[
        np.ndarray,
        tuple[np.ndarray, np.ndarray],
        tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None,
    ],
    np.ndarray,
    np.ndarray,
    tuple[np.ndarray, np.ndarray, np.ndarray],
    tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    np.ndarray,
]:
    """Per suspect: whether it sits on a kink, the one-sided slopes extrapolated to step 0, and their margin.

    Only the finest significant gaps decide: a kink when the finest two 4x apart in step are within a
    factor 1/:data:`KINK_BAND` of each other (a kink a little off θ makes the gap grow toward the jump), the row
    between them not halving it into the finer one, or the finest two changed sign (curvature outweighing a small
    jump at coarse steps); never when the finest three halve in turn (the asymptotic regime of a smooth function).
    The slopes are taken at the finest significant step (where none is, at the table's best estimate's,
    ``best_row``, or else the first step's) and extrapolated, s(0) ≈ 2·s(h) − s(2h);
    ``margin`` is how far that moved them plus the gap's noise there, with ``margins``, the low slope's and the high
    one's for a value beyond it: its own move and the noise where it settles and the other does not, else ``margin``;
    and given ``rows_seen`` (the rows' central differences and their rounding; ``steps``: each row's step), ``precise`` (else None):
    ``(low, high, low's margin, high's)`` from a coarser row where the finer rows bear it out and it is
    :data:`PRECISER` times narrower (:func:`_precise_slope`; NaN and inf elsewhere). ``settled``: each slope's last change
    was at most :data:`DRIFT_RATIO` of the one before, or lost in the noise (True with fewer than three rows);
    ``crossing``: see :class:`Refined`; ``anchor``: whether a slope still moved beyond the rows' noise, and the
    extrapolated slope that did not where the other did, with its own margin (NaN where both or neither moved);
    ``inside``: whether the steps were entering a feature off θ (past it, or the finest gap fell ever faster),
    the finest row's slopes widened by its gap's noise, and whether the lower fell and the higher rose; ``gap``: the
    extrapolated slope moving up less the one moving down:
    ``(kink, low, high, (margin, margins, precise), settled, crossing, anchor, inside, gap)``.
    """
    significant, (first, before, last) = _finest_significant(gaps, gap_noise, 3)
    rows, k = gaps.shape
    at = np.arange(k)
    with np.errstate(invalid="ignore", divide="ignore"):
        g_last = np.where(last >= 0, gaps[np.maximum(last, 0), at], np.nan)
        g_before = np.where(before >= 0, gaps[np.maximum(before, 0), at], np.nan)
        g_first = np.where(first >= 0, gaps[np.maximum(first, 0), at], np.nan)
        # the finest two successive significant gaps changed sign (``_last_flip`` at the finest pair)
        coarser, finer_flip = _last_flip(gaps, significant)
        flipped = (last >= 0) & (finer_flip == last)
        # the finest significant pair 4x apart in step
        two_back = np.maximum(last - 2, 0)
        pair = (last >= 2) & significant[two_back, at]
        ratio = g_last / gaps[two_back, at]
        kept = pair & (ratio >= KINK_BAND) & (ratio <= 1 / KINK_BAND)
        # ...unless the row between them halved the gap into the finer one, as a smooth function's does, beyond the
        # finer gap's noise: a kink at θ's gap, jump + f''·h, cannot do both (a halving bounds the jump below half the
        # finer gap, and puts the gap 4x coarser at 2.6 times it or more), so the coarser row crossed a kink off θ (a
        # float32 ReLU 0.72 first steps off θ: gaps 5.1e-4, 1.5e-3, 7.4e-4, the last two a smooth function's; a 3% error
        # passed as the kink's subgradient)
        halved = np.abs(g_last / g_before - 0.5) + gap_noise[np.maximum(last, 0), at] / np.abs(g_before) <= SMOOTH_GAP
        kept &= ~(_one_halving(steps, before, last) & halved)
        consecutive = (first >= 0) & (last - before == 1) & (before - first == 1)
        halving = (
            consecutive
            & (np.abs(g_last / g_before - 0.5) <= SMOOTH_GAP)
            & (np.abs(g_before / g_first - 0.5) <= SMOOTH_GAP)
        )
        # A row finer than the first of the finest three significant ones whose gap fell below a quarter of that
        # one's, where that gap would have stood far above the row's noise: the kink is off θ and the steps have
        # passed inside it (a kink at θ keeps its gap at every step). The function is smooth at θ at those steps.
        finer = (np.arange(rows)[:, None] > first) & np.isfinite(gaps)
        below = np.abs(gaps) <= np.abs(g_first) / PASSED_KINK
        visible = np.abs(g_first) > PASSED_KINK * GAP_SIGNIFICANT * gap_noise
        passed = (first >= 0) & np.any(finer & below & visible, axis=0)
        # Where two successive significant gaps changed sign, a kink at θ that the curvature outweighed at the coarser
        # step has the jump their line extrapolates to step 0 (gap ≈ jump + c·h), and every finer row would show it: a
        # finer row whose gap lies in its noise and below a quarter of it, where it stands FLIP_SEEN times that noise,
        # is the steps inside a kink off θ (float32 ReLUs 0.54 to 1.9 first steps off θ, which only the coarse rows
        # crossed: 3% to 20% errors passed as the kink's subgradient, review 87). A finer gap above its noise is a kink
        # at θ of its own, beside a larger one off θ that only the coarser row crossed (review 88)
        flip = finer_flip >= 0
        g_c, g_f = (np.where(flip, gaps[np.maximum(r, 0), at], np.nan) for r in (coarser, finer_flip))
        s_c, s_f = (np.where(flip, steps[np.maximum(r, 0), at], np.nan) for r in (coarser, finer_flip))
        signed = (g_f * s_c - g_c * s_f) / (s_c - s_f)
        jump = np.abs(signed)
        beyond = (np.arange(rows)[:, None] > finer_flip) & np.isfinite(gaps)
        seen = (np.abs(gaps) <= jump / PASSED_KINK) & (jump > FLIP_SEEN * gap_noise) & ~significant
        passed |= flip & np.any(beyond & seen, axis=0)
        # Where no finer row's gap stood above its noise (none showed the jump), one that fell FLIP_FELL noises below
        # the line itself, jump + c·h, and to half of it is the steps inside a kink off θ too (a float32 ReLU 0.41 first
        # steps off θ: the line at 1.1e-3 there, the gap 4.2e-4 and 3.2 noises below it, halving the finest significant
        # gap). Where finer rows showed it, the kink is at their scale, and one falling toward a kink off θ closer still
        # (1.5e-9 off θ, past the steps' reach in float64) leaves a value outside their slopes wrong.
        line = signed + (g_c - g_f) / (s_c - s_f) * steps
        fell = (np.sign(signed) * (line - gaps) > FLIP_FELL * gap_noise) & (np.abs(gaps) <= np.abs(line) / 2)
        fell &= (np.sign(line) == np.sign(signed)) & ~significant
        passed |= flip & np.any(beyond & fell, axis=0) & ~np.any(beyond & significant, axis=0)
    kink = (flipped | kept) & ~halving & ~passed
    # For a random direction's line (Refined.crossing): a gap that changed sign at a coarser significant row and has
    # not halved since is a jump at θ that the curvature outweighed at the coarse steps (a smooth function's gap ends
    # at f''·h, halving, whatever higher-order terms did at the coarse steps); unless the next finer row halved it (a
    # smooth function after all), or changed its sign by more than its significance (the steps passed inside a kink
    # off θ, where the function is smooth; one row in the noise changes sign by chance: review 56)
    with np.errstate(invalid="ignore", divide="ignore"):
        other_side = np.any(
            significant & (np.arange(rows)[:, None] < before) & (np.sign(gaps) * np.sign(g_last) < 0), axis=0
        )
        unhalved = np.abs(g_last) > (0.5 + SMOOTH_GAP) * np.abs(g_before)
        after = np.minimum(last + 1, rows - 1)
        g_after = np.where((last >= 0) & (last + 1 < rows), gaps[after, at], np.nan)
        after_ratio = g_after / g_last
        halved = (after_ratio > 0) & (after_ratio <= 0.5 + SMOOTH_GAP)
        fell = halved | ((after_ratio <= 0) & (np.abs(g_after - g_last) > GAP_SIGNIFICANT * gap_noise[after, at]))
    crossing = other_side & (before >= 0) & ~flipped & unhalved & ~(np.isfinite(g_after) & fell)
    # with no gap significant (an odd function about θ, whose slopes agree exactly), the slopes at the best estimate's
    # row (``best_row``; the first where there is none): the first step's carry its truncation error (a layer norm of a
    # constant row, 1.3% there: its converged estimate, right to 1e-14, was "not between the slopes", and every element
    # inconclusive), and the finest row's its noise (a loss cast to float32: a 3% error was "between" them)
    row = np.where(last >= 0, last, np.maximum(best_row, 0))
    # where the steps passed inside a kink off θ, the slopes at the table's best estimate there: the coarser rows'
    # are the kink's, between which a value the smooth rows put wrong would be "not proven wrong" (a 3% error 1e-11
    # above a where(x > 0) guard, its table converged inside on the derivative to 2e-5: review 85)
    row = np.where(passed & (best_row > 0), best_row, row)
    prior = np.maximum(row - 1, 0)
    with np.errstate(invalid="ignore"):
        extrapolated = (row > 0) & np.isfinite(gaps[prior, at])
        upper = np.where(extrapolated, 2 * uppers[row, at] - uppers[prior, at], uppers[row, at])
        lower = np.where(extrapolated, 2 * lowers[row, at] - lowers[prior, at], lowers[row, at])
        moved_up, moved_down = np.abs(upper - uppers[row, at]), np.abs(lower - lowers[row, at])
        noise_there = np.where(np.isfinite(gap_noise[row, at]), gap_noise[row, at], 0.0)
        margin = np.fmax(moved_up, moved_down) + noise_there
        earlier = np.maximum(row - 2, 0)
        steady, moving = [], []
        for slopes in (uppers, lowers):
            change, change_before = _changes(np.stack([slopes[earlier, at], slopes[prior, at], slopes[row, at]]))
            steady.append((change <= DRIFT_RATIO * change_before) | (change <= noise_there) | (row < 2))
            moving.append(_moving(change, change_before, noise_there) & (row >= 2))
        # each slope's value and margin for a value beyond it: a slope settling while the other is not has its own,
        # its value is at it within its own drift, not the other's (a 1% error beyond the slope on θ's side of a
        # where(x > 0) guard 1e-11 off θ, the loss plus 1e3, lay within the drift of the slope crossing the guard, and
        # passed as the kink's subgradient: review 85); and given the rows' steps, central differences and their
        # rounding (``rows_seen``), a coarser row's where the finer rows bear it out and it is far narrower
        # (:func:`_precise_slope`): the finest significant row's noise (5e-3 of the loss plus 1e3) held 3% errors
        # beyond a slope of a kink at θ, which the coarse rows measured to 1e-7 (review 86); the finer rows cannot
        # tell it from a kink off θ closer than they resolve (a ReLU 1e-6 off θ, the loss plus 1e6), so a value beyond
        # that but within ``margins`` is unsettled
        own_up = np.where(steady[0] & ~steady[1], moved_up + noise_there, margin)
        own_down = np.where(steady[1] & ~steady[0], moved_down + noise_there, margin)
        below_up = upper <= lower
        margins = (np.where(below_up, own_up, own_down), np.where(below_up, own_down, own_up))
        precise: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        anchored = (np.full(k, np.nan), np.full(k, np.inf))
        if rows_seen is not None:  # and a coarser row's, where the finer rows bear it out and it is far narrower
            (up_both, up_alone, up_moved), (down_both, down_alone, down_moved) = (
                _precise_slope(slopes, gap_noise, steps, rows_seen, significant, row) for slopes in (uppers, lowers)
            )
            precise_up, precise_down = (
                _narrower(own, measure, ~passed) for own, measure in ((own_up, up_both), (own_down, down_both))
            )
            precise = (
                np.where(below_up, precise_up[0], precise_down[0]),
                np.where(below_up, precise_down[0], precise_up[0]),
                np.where(below_up, precise_up[1], precise_down[1]),
                np.where(below_up, precise_down[1], precise_up[1]),
            )
            # where the finer rows contradicted every coarser row's measure of one slope and bore out the other's (its
            # slopes alone), the other is the derivative on θ's side of a kink off θ, which the first crosses: the
            # valid value (a 3% error beside the slope on θ's side of a where(x > 0) guard 1e-11 off θ, the loss
            # plus 1e3, lay between the slopes and passed; the crossing slope moved within the finest row's noise)
            only_down = up_moved & ~np.isfinite(up_alone[0]) & np.isfinite(down_alone[0]) & ~passed
            only_up = down_moved & ~np.isfinite(down_alone[0]) & np.isfinite(up_alone[0]) & ~passed
            anchored = (
                np.where(only_down, down_alone[0], np.where(only_up, up_alone[0], np.nan)),
                np.where(only_down, down_alone[1], np.where(only_up, up_alone[1], np.inf)),
            )
        # where one slope still moves and the other does not, the other is the derivative on θ's side of a kink off θ
        # (the moving one crosses it as the steps shrink toward it): its value, with its own margin
        only_upper, only_lower = moving[1] & ~moving[0], moving[0] & ~moving[1]
        anchor = np.where(only_upper, upper, np.where(only_lower, lower, np.nan))
        own = np.where(only_upper, np.abs(upper - uppers[row, at]), np.abs(lower - lowers[row, at]))
        anchor_margin = np.where(np.isfinite(anchor), own + noise_there, np.nan)
    settled = steady[0] & steady[1]
    drifting = moving[0] | moving[1]
    # the finest row's slopes, widened by its gap's noise, and whether the higher one rose (the lower fell) from the
    # row before by more than that noise: heading for values beyond them (the steps entering a feature off θ)
    finest = rows - 1 - np.argmax(np.isfinite(gaps)[::-1], axis=0)
    before_finest = np.maximum(finest - 1, 0)
    with np.errstate(invalid="ignore"):
        noise_finest = np.where(np.isfinite(gap_noise[finest, at]), gap_noise[finest, at], 0.0)
        up_high = uppers[finest, at] >= lowers[finest, at]
        high = np.where(up_high, uppers[finest, at], lowers[finest, at])
        low = np.where(up_high, lowers[finest, at], uppers[finest, at])
        high_before = np.where(up_high, uppers[before_finest, at], lowers[before_finest, at])
        low_before = np.where(up_high, lowers[before_finest, at], uppers[before_finest, at])
        rising = (finest > 0) & (high - high_before > noise_finest)
        falling = (finest > 0) & (low_before - low > noise_finest)
        # the steps entering a feature off θ: past it already, or the finest gap fell faster at each row, at last
        # faster than a cusp's (|x|^1.5 keeps falling by 0.71 a row, where the first pass's verdict of wrong stands)
        shrink, shrink_before = np.abs(g_last / g_before), np.abs(g_before / g_first)
        entering = passed | (consecutive & (shrink < 0.5 + SMOOTH_GAP) & (shrink < ENTERING * shrink_before))
    inside = (entering, low - noise_finest, high + noise_finest, falling, rising)
    return (
        kink,
        np.fmin(lower, upper),
        np.fmax(lower, upper),
        (margin, margins, precise),
        settled,
        crossing,
        (
            drifting | np.isfinite(anchored[0]),
            np.where(drifting, anchor, anchored[0]),
            np.where(drifting, anchor_margin, anchored[1]),
        ),
        inside,
        upper - lower,
    )
