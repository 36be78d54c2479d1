"""Per-element verdicts: does an element's analytic value agree with its numeric estimate?

Pure numpy. An element agrees when

    |a − n| <= atol + rtol·|n| + safety·bar

where ``bar`` is the numeric estimate's own error bar (the loss's measured
noise carried through the scheme, plus the truncation error where the scheme
measures it; see :mod:`pipeline.fd`). The error bar does the work; ``atol`` and
``rtol`` are small floors, kept as data per dtype and scheme below, and
overridable in the config.

An element that disagrees is *non-differentiable* rather than wrong when θ sits
on a kink: its one-sided slopes disagree with each other (beyond the allowance),
the analytic value lies between them (ReLU at 0: any value in between is a valid
subgradient), and the losses do not show the function smooth there (richardson
compares the second differences at h and 2h; two points cannot tell).

That first verdict is provisional for *suspects* (:func:`suspects`: elements that
disagree, are called kinks, or whose bar is wide): they are estimated again over a
sequence of steps (:mod:`.refine`) and judged by :func:`judge_again`. An agreeing
element whose bar stays wider than :data:`VERIFY_LIMIT` of its own magnitude is
*inconclusive* (:func:`inconclusive`): it agrees, but could not have shown a bug.

A float32 element still wrong after that is *wrong in float32 only* (:func:`float32_only`) when the same model
computing in float64 gets it right: the dtype made the difference (rounding in an ill-conditioned layer, or
code that computes otherwise by dtype), and its tensor is not verified rather than wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "AGREE",
    "CONVERGED",
    "DEFAULTS",
    "DTYPE_SHARE",
    "FLOAT32_ONLY",
    "INCONCLUSIVE",
    "NONDIFFERENTIABLE",
    "SUSPECT",
    "TOGETHER",
    "UNCHECKED",
    "UNSETTLED",
    "VERIFY_LIMIT",
    "WRONG",
    "Tolerance",
    "default_tolerance",
    "float32_only",
    "inconclusive",
    "judge",
    "judge_again",
    "noise_dominated",
    "reference",
    "suspects",
    "unproven",
    "verifying",
]

#: Element status codes, as stored in the output's ``status`` array. ``INCONCLUSIVE``: the
#: analytic value lies within the allowance, but the error bar (even after a second look) is
#: too wide to call that a verification (see :data:`VERIFY_LIMIT`).
AGREE, WRONG, NONDIFFERENTIABLE, UNCHECKED, INCONCLUSIVE = 0, 1, 2, 3, 4
#: A float32 element wrong in float32 but right when the same model computes in float64 (:func:`float32_only`).
FLOAT32_ONLY = 5
#: An element the second look did not settle at its finest steps (a feature closer to θ than the steps resolve: a
#: square root or a logarithm a hair above its guard): its analytic value lies outside one-sided slopes that were
#: still moving, or its table of differences never converged. Neither wrong (finer steps may reach it) nor verified,
#: and its tensor is not verified either. Inconclusive, it let a tensor pass on its other elements: review 59 found
#: sign flips and doubled values passing so, 1e-12 to 3e-10 from a guarded float64 square root, where correct values
#: fall outside such slopes too; and where the table never converged, the first pass's verdict stood, failing the
#: correct value 1.8e-9 above the guard and passing a zeroed one (review 60) (:func:`judge_again`).
UNSETTLED = 6
#: An element on a kink (its value between its one-sided slopes) among kinks of its tensor that, moved together, do
#: not bear the gradient out: along that line ``g·u`` lies beyond the loss's one-sided slopes, the kinks all of one
#: sign (:func:`.together.judge_lines`). A backward pass giving each tied input of a maximum the whole gradient does
#: this (a max-pool's ``window == window.max()`` mask: each tie alone is a kink its value suits, together they double
#: it; a held-out review passed it on integer images, 20 seeds of 20). Kinks that interact other than a maximum's do
#: could do it with a correct gradient: not wrong, but its tensor is not verified.
TOGETHER = 7

#: A disagreement the second look could not prove wrong (its rows' curvature changed over the steps, as kinks inside
#: them make it, or finer rows moved toward the analytic value) but beyond this many of its allowances is ``unsettled``
#: (:func:`judge_again`): its tensor is not verified by its other elements (review 99: a camera 1e-4 from a point, whose
#: table measured X[0, 0]'s derivative to 4e-7; a 1e-4 error, 1000 allowances off, passed beside the verified others).
UNPROVEN_FAR = 10.0

#: An element is verified when its measured uncertainty (``safety·bar``) is within this fraction
#: of its reference magnitude (:func:`reference`); otherwise it is inconclusive.
VERIFY_LIMIT = 1e-2
#: An element whose measured uncertainty exceeds this fraction of its reference magnitude (or the
#: tolerance's ``rtol``, if larger) gets a second look, as does every element that disagrees or is
#: called a kink: for float64 losses, and for float32 ones, whose bars are far wider (rounding of 6e-8
#: against steps of 4e-2): only those that would otherwise be inconclusive.
SUSPECT = {"float64": 1e-4, "float32": 1e-2}
#: A second look's table may stop early once its error is within this fraction of the element's
#: magnitude, for the loss's precision (else it goes on until the noise dominates).
CONVERGED = {"float64": 1e-8, "float32": 1e-4}


@dataclass(frozen=True, slots=True)
class Tolerance:
    """How far an analytic value may be from its numeric estimate."""

    atol: float
    rtol: float
    safety: float = 10.0

    def to_dict(self) -> dict[str, float]:
        """JSON-ready form."""
        return {"atol": self.atol, "rtol": self.rtol, "safety": self.safety}

    def allowance(self, numeric: Any, bar: Any) -> Any:
        """How far an analytic value may be from an estimate ``numeric`` with error bar ``bar``: ``atol +
        rtol·|numeric| + safety·bar``."""
        return self.atol + self.rtol * np.abs(numeric) + self.safety * bar

    def room(self, lower: Any, upper: Any, margin: Any) -> Any:
        """How far beyond one-sided slopes ``lower``/``upper`` (extrapolated, moved by up to ``margin``) a value
        may lie and still be between them: ``atol + rtol·max|slope| + margin`` (:func:`judge_again`)."""
        return self.atol + self.rtol * np.fmax(np.abs(lower), np.abs(upper)) + margin

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Tolerance:
        """Read back :meth:`to_dict`."""
        return cls(float(raw["atol"]), float(raw["rtol"]), float(raw.get("safety", 10.0)))


#: Defaults per (parameter dtype, scheme). The rtol floors cover what the error bar
#: cannot see: central differences do not measure their truncation error, and no
#: scheme sees rounding inside the analytic gradient itself. Measured on the accuracy
#: zoo (benchmarks/accuracy.py): no false alarm, every planted bug found. float32's
#: richardson floor is 2e-4: a float32 analytic gradient's own rounding (against the
#: float64 one at the same point) was at most 7e-6 of its tensor's RMS on the 15 zoo
#: models and 13 held-out hand-written ones, and 2e-4 leaves a 1e-3 error visible.
DEFAULTS: dict[tuple[str, str], Tolerance] = {
    ("float64", "central"): Tolerance(atol=1e-12, rtol=1e-5),
    ("float64", "richardson"): Tolerance(atol=1e-13, rtol=1e-7),
    ("float64", "complex-step"): Tolerance(atol=1e-14, rtol=1e-10),
    ("float32", "central"): Tolerance(atol=1e-6, rtol=1e-2),
    ("float32", "richardson"): Tolerance(atol=1e-6, rtol=2e-4),
    ("float32", "complex-step"): Tolerance(atol=1e-6, rtol=1e-4),
}


def default_tolerance(dtype: str, scheme: str) -> Tolerance:
    """The default tolerance for tensors of ``dtype`` checked with ``scheme``."""
    return DEFAULTS[(dtype if dtype in ("float32", "float64") else "float64", scheme)]


def judge(
    analytic: np.ndarray,
    numeric: np.ndarray,
    bar: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    tolerance: Tolerance,
    smooth: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Each element's allowance and status (``AGREE``, ``WRONG`` or ``NONDIFFERENTIABLE``).

    A non-finite estimate is ``WRONG``; its allowance is NaN. Where ``smooth`` is True
    the losses rule a kink out, so a disagreement there is always ``WRONG``.
    """
    with np.errstate(invalid="ignore"):
        lost = ~np.isfinite(numeric)  # (an infinite estimate's allowance would be infinite too)
        allowed = np.where(lost, np.nan, tolerance.allowance(numeric, bar))
        error = np.abs(analytic - numeric)
        wrong = ~(error <= allowed)
        low, high = np.minimum(lower, upper), np.maximum(lower, upper)
        kink = (
            wrong
            & (high - low > allowed)
            & (True if smooth is None else ~smooth)
            & (analytic >= low - allowed)
            & (analytic <= high + allowed)
        )
    status = np.where(kink, NONDIFFERENTIABLE, np.where(wrong, WRONG, AGREE)).astype(np.int8)
    return allowed, status


def reference(analytic: np.ndarray, numeric: np.ndarray, scale: np.ndarray | float = 0.0) -> np.ndarray:
    """The magnitude an element's error bar is measured against: ``max(|a|, |n|)``, or ``scale`` where
    that is larger. Verdicts pass no ``scale`` (an element is verified against its own gradient, so a
    small element's large relative error is not excused by its neighbours'); which elements get a second
    look passes its tensor's root-mean-square gradient, so that dead units are not all looked at again."""
    with np.errstate(invalid="ignore"):
        return np.asarray(np.fmax(np.fmax(np.abs(analytic), np.abs(numeric)), scale), dtype=np.float64)


def suspects(
    analytic: np.ndarray,
    numeric: np.ndarray,
    bar: np.ndarray,
    status: np.ndarray,
    tolerance: Tolerance,
    scale: np.ndarray | float,
    precision: str = "float64",
    rounding: np.ndarray | None = None,
    kinked: np.ndarray | None = None,
) -> np.ndarray:
    """Which elements get a second look: those that disagree or are called kinks, and those whose
    measured uncertainty exceeds :data:`SUSPECT` for the loss's precision (or ``rtol``) of their
    :func:`reference` (``scale``: their tensor's RMS gradient) - unless that bar is mostly the loss's
    noise (``rounding``, its part of ``bar``; all of it where None): finer steps only add rounding. And those
    whose stencil holds a kink (``kinked``: richardson's second differences at h and 2h disagree), whose bar
    cannot see kinks that bend both steps alike. Never an element whose analytic value is not finite: it is wrong at
    any step, and a gradient of NaN would cost a second look per element."""
    fraction = max(SUSPECT.get(precision, SUSPECT["float32"]), tolerance.rtol)
    with np.errstate(invalid="ignore"):
        wide = ~(tolerance.safety * bar <= fraction * reference(analytic, numeric, scale))
    looked = (status == WRONG) | (status == NONDIFFERENTIABLE) | (wide & ~noise_dominated(bar, rounding))
    looked = looked if kinked is None else looked | kinked
    return np.asarray(looked & np.isfinite(analytic), dtype=bool)


def noise_dominated(bar: np.ndarray, rounding: np.ndarray | None) -> np.ndarray:
    """Whether each error bar is mostly the loss's noise over the step (``rounding``, its part of ``bar``; all of it
    where None): finer steps only add to it, coarser ones shrink it (:func:`suspects`,
    :func:`.judging.judge_group`)."""
    with np.errstate(invalid="ignore"):
        return np.asarray(bar <= 2 * (bar if rounding is None else rounding), dtype=bool)


def inconclusive(
    analytic: np.ndarray, numeric: np.ndarray, bar: np.ndarray, status: np.ndarray, tolerance: Tolerance
) -> np.ndarray:
    """``status`` with agreeing elements made ``INCONCLUSIVE`` where their measured uncertainty (``safety·bar``)
    exceeds :data:`VERIFY_LIMIT` of their own magnitude (:func:`reference`), or where they agree only through
    ``atol``: their disagreement exceeds that limit and all that ``rtol`` and the bar allow. ``atol`` excuses the
    rounding of an element too small to measure against; it verifies nothing: with a float32 loss of 1e-7 every
    gradient is below float32's 1e-6, and a doubled one agreed (review 40), and a gradient 8x too small "verified"
    its tensors, each element's bar wider than the element but below ``atol`` (review 71: a softmax classifier
    confident on every row, its loss 1.5e-7, its gradient divided by N twice, and its tensors' power 3e+30)."""
    with np.errstate(invalid="ignore"):
        measured = tolerance.safety * bar
        limit = VERIFY_LIMIT * reference(analytic, numeric)
        floored = ~(np.abs(analytic - numeric) <= np.fmax(limit, tolerance.rtol * np.abs(numeric) + measured))
    wide = ~verifying(analytic, numeric, bar, tolerance)
    return np.where((status == AGREE) & (wide | floored), INCONCLUSIVE, status).astype(np.int8)


def verifying(analytic: np.ndarray, numeric: np.ndarray, bar: np.ndarray, tolerance: Tolerance) -> np.ndarray:
    """Whether an estimate's measured uncertainty (``safety·bar``) is within :data:`VERIFY_LIMIT` of the element's
    own magnitude (:func:`reference`): narrow enough for an agreement to verify it, whatever ``atol`` allows."""
    with np.errstate(invalid="ignore"):
        magnitude = reference(analytic, numeric)
        # (0 against 0 verifies nothing, even with no noise to bar it: a loss 0 near θ, a gradient 0 with it; review 105)
        return np.asarray((tolerance.safety * bar <= VERIFY_LIMIT * magnitude) & (magnitude > 0), dtype=bool)


#: The most an element's float32 analytic value, and its float32 numeric estimate, may each differ from the
#: float64 ones for :func:`float32_only`, as a fraction of the larger of the float64 analytic value and its
#: tensor's RMS gradient. Rounding, even an ill-conditioned layer's, moves them a few percent of their tensor's
#: gradient (torch's layer norm of float32 inputs on an offset of 1000: about 1%); a value moved by more is more
#: likely code that computes otherwise in float32 (a bug in a float32 path, a clip at float32's EPS), and stays
#: wrong.
DTYPE_SHARE = 0.1


def unproven(analytic: np.ndarray, numeric: np.ndarray, allowed: np.ndarray, status: np.ndarray) -> np.ndarray:
    """Inconclusive elements that disagree beyond their allowance: not proven wrong (finer steps could not confirm it),
    and counted so in the report."""
    with np.errstate(invalid="ignore"):
        return np.asarray((status == INCONCLUSIVE) & (np.abs(analytic - numeric) > allowed), dtype=bool)


def float32_only(
    analytic: np.ndarray,
    numeric: np.ndarray,
    allowed: np.ndarray,
    status: np.ndarray,
    exact: np.ndarray,
    exact_numeric: np.ndarray,
    exact_allowed: np.ndarray,
    exact_status: np.ndarray,
    exact_kinked: np.ndarray,
    exact_interacting: np.ndarray,
    scale: np.ndarray,
    at_step: tuple[np.ndarray, np.ndarray],
    tolerance: Tolerance | None = None,
    kinks_judged: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """``status`` with each ``WRONG`` element of a float32 tensor (analytic, numeric, allowed) made
    ``FLOAT32_ONLY`` where the same model computing in float64 verifies it (``exact_status`` ``AGREE``: its
    analytic value ``exact`` against its own numeric estimate ``exact_numeric`` within ``exact_allowed``), with the
    power to have seen the float32 disagreement (``exact_allowed`` at most half of ``|analytic − numeric|``: a copy
    that still computes in float32 has not), and where the float32 analytic and numeric values are each within
    :data:`DTYPE_SHARE` of ``max(|exact|, scale)`` of the float64 ones (``scale``: the tensor's RMS gradient).

    Such an element decides nothing either way: its tensor is not verified (with ``unverified: warn`` it passes,
    named). A bug only in a float32 code path that small looks the same, and a check in float64 would not see it.

    Float64 may also find a kink there (``exact_status`` ``NONDIFFERENTIABLE``: the analytic value lies between
    its one-sided slopes), one float32's steps cannot resolve: a ReLU unit 1e-6 from θ beside many more within
    the float32 step, whose estimate at that step is their average slope. And the numeric values may differ
    because the steps do: ``at_step`` holds the central differences of the float32 loss and of the float64 one
    at the same points (float32's first step); where those are near, the float32 loss is the float64 one at that
    scale, and its disagreement is the step's (held-out: nnfs's float32 ReLU network, a correct gradient, failed
    so). A loss that differs by dtype (clipped at float32's EPS) differs at those points too, and stays wrong. Where
    the float32 loss was not finite (an ``exp`` past float32's range where float64's is not) there is no float32
    estimate to compare: the float64 verdict, where its allowance is within :data:`VERIFY_LIMIT` of the value, and
    the analytic value decide, and the tensor is not verified.

    The other way, each element float32 leaves undecided (``NONDIFFERENTIABLE``, ``INCONCLUSIVE`` or ``UNSETTLED``) is
    made ``WRONG``
    where the float64 model finds its formula wrong where the loss is smooth (``exact_status`` ``WRONG``, and no kink
    seen: ``exact_kinked``), the float32 analytic value near the float64 one and the losses the same (as above), and
    the float32 analytic value beyond the float64 estimate's allowance and beyond the float32 ``tolerance`` of it (a
    float32 check would call that much wrong: an analytic 0 beside a float64 derivative of 5e-8, a float32 parameter
    5e-9 off a kink, is within it). A float32 loss can move in steps at the scale of its finite differences: a layer
    norm of inputs ``100 + 1e-3·noise``, whose row mean moves by one float32 unit only every few steps of an element,
    is a sawtooth whose teeth have the slope of a gradient without the mean's share; a bug forgetting that share agreed
    at most elements, and the others sat on "kinks" (the teeth's jumps) or were inconclusive: it passed. At a kink
    float64 sees too, float32's verdict stands: beyond both slopes of several ReLUs exactly on their kink a correct
    value can lie, which float64 calls wrong where float32's wider slopes held it (review 63's integer convolutions).
    Unless ``kinks_judged``: the copy computes in float64 indeed, and its value outside a kink's slopes was judged at
    points near θ, where kinks that interact bear a correct one out (:mod:`.nearby`); a value they did not bear out is
    wrong in float32 too (review 102: a table interpolation's derivative 0 at a node, both slopes about -2, left
    inconclusive in float32 by an allowance of 4.8, passed).
    Where float64's derivatives at points near θ judged a wrong element on kinks that interact (:mod:`.nearby`: a
    kink, ``exact_interacting``, or :data:`TOGETHER`), it takes that verdict, the float32 values near the float64 ones:
    float32's rounding at steps that fine hides the derivative. An undecided element float64 leaves ``UNSETTLED`` is so.
    Returns the new status and which elements were so confirmed (their estimate and allowance are the float64 ones).
    """
    with np.errstate(invalid="ignore"):
        share = DTYPE_SHARE * np.fmax(np.abs(exact), scale)
        lost = ~np.isfinite(numeric)  # no float32 estimate: its loss not finite (a float32 exp past float32's range)
        same_loss = (np.abs(numeric - exact_numeric) <= share) | (np.abs(at_step[0] - at_step[1]) <= share) | lost
        near = (np.abs(analytic - exact) <= share) & same_loss
        # ...with the power to have seen the float32 disagreement, or, where float32 has no estimate, to verify it
        seen = np.where(
            lost, exact_allowed <= VERIFY_LIMIT * np.abs(exact), 2 * exact_allowed <= np.abs(analytic - numeric)
        )
    verified = (exact_status == AGREE) | (exact_status == NONDIFFERENTIABLE)
    excused = (status == WRONG) & verified & near & seen
    with np.errstate(invalid="ignore"):
        off = np.abs(analytic - exact_numeric) > exact_allowed
        if tolerance is not None:
            off &= np.abs(analytic - exact_numeric) > tolerance.atol + tolerance.rtol * np.abs(exact_numeric)
    undecided = np.isin(status, (NONDIFFERENTIABLE, INCONCLUSIVE, UNSETTLED))
    confirmed = undecided & (exact_status == WRONG) & (~exact_kinked | kinks_judged) & near & off
    nearby = (status == WRONG) & near & ((exact_status == TOGETHER) | exact_interacting)
    # and one float64 leaves unsettled is so in float32 too: its tensor is not verified by the others (review 108: a
    # term rounded to float32 inside, a staircase in float64 as well, left a 10% error inconclusive, and it passed)
    unsettled = undecided & (exact_status == UNSETTLED) & near
    status = np.where(unsettled, UNSETTLED, status)
    return (
        np.where(nearby, exact_status, np.where(excused, FLOAT32_ONLY, np.where(confirmed, WRONG, status))).astype(
            np.int8
        ),
        confirmed,
    )


#: A second look's moving slopes at a kink (:class:`.refine.Refined`): whether a slope still moved at the finest steps,
#: and where only one did, the other's value and margin.
Anchor = tuple[np.ndarray | bool, np.ndarray | float, np.ndarray | float]
NO_ANCHOR: Anchor = (False, np.nan, np.nan)
#: Its finest row (:class:`.refine.Refined`): whether the steps were entering a feature off θ, the row's slopes widened
#: by its noise, and whether the lower fell and the higher rose from the row before.
Finest = tuple[np.ndarray | bool, np.ndarray | float, np.ndarray | float, np.ndarray | bool, np.ndarray | bool]
NO_FINEST: Finest = (False, np.nan, np.nan, False, False)


def _within(
    analytic: np.ndarray, bounds: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None, tolerance: Tolerance
) -> np.ndarray:
    """Whether each value lies within ``bounds`` (``(low, high, low's margin, high's)``, a kink's slopes and each one's
    margin, widened as :meth:`Tolerance.room` does; NaN: unbounded on that side), or True where there are none."""
    if bounds is None:
        return np.asarray(True)
    low, high, low_margin, high_margin = bounds
    with np.errstate(invalid="ignore"):
        below = analytic < low - tolerance.room(low, np.where(np.isfinite(high), high, low), low_margin)
        above = analytic > high + tolerance.room(np.where(np.isfinite(low), low, high), high, high_margin)
    return np.asarray(~below & ~above)


def judge_again(
    analytic: np.ndarray,
    numeric: np.ndarray,
    bar: np.ndarray,
    kink: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    first: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    tolerance: Tolerance,
    margin: np.ndarray | float = 0.0,
    settled: np.ndarray | bool = True,
    hidden: np.ndarray | float = 0.0,
    curvature_held: np.ndarray | bool = True,
    unsettled: int = INCONCLUSIVE,
    unconverged: np.ndarray | bool = False,
    smooth_end: np.ndarray | bool = False,
    anchor: Anchor = NO_ANCHOR,
    inside: Finest = NO_FINEST,
    margins: tuple[np.ndarray, np.ndarray] | None = None,
    precise: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
    borne: np.ndarray | bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The verdict of a second look (:mod:`.refine`): ``(numeric, allowed, status)`` per suspect.

    ``lower``/``upper`` are the one-sided slopes extrapolated to step 0 and ``margin`` their uncertainty;
    they make the *room* ``atol + rtol·max|slope| + margin``. Where the slopes show a kink, the element is
    non-differentiable if its analytic value lies between them within that room, and beyond each slope within its own
    (``margins``, where given: ``lower``'s and ``upper``'s; beyond ``precise``, ``(low, high, low's margin, high's)``
    the slopes measured by coarser rows, it is ``unsettled``) (a valid subgradient),
    wrong if not (``unsettled``, :data:`UNSETTLED` for elements, where the slopes were still moving, ``settled`` False); its allowance is the room, and its estimate the first pass's. Elsewhere the refined
    estimate and its bar decide as in :func:`judge`, except that a disagreement within ``hidden`` (what a kink too
    small to see could make), or between the slopes where the curvature did not hold over the steps
    (``curvature_held`` False: kinks inside them), is inconclusive, not wrong (``unsettled`` beyond
    :data:`UNPROVEN_FAR` of its allowance); an agreeing element whose bar is still too wide,
    or whose refined estimate does not lie between the slopes (a table that cannot be trusted), is
    inconclusive. ``first`` is the first pass's ``(numeric, allowed, status, bar)``: it stands where the
    second look could not evaluate the loss, judged for its width; where the loss was finite but the table ran out
    of steps before it converged (``unconverged``), a first verdict of wrong stands where the rows finer than the
    first pass's bore its estimate out (``borne``) and any other makes the element
    ``unsettled`` (the first pass's steps, which the second look was to test, are not borne out: too coarse for a
    feature near θ; a pass there is no evidence). Where besides the finest slopes settled and halved their gap as a
    smooth function's do (``smooth_end``, :func:`.refine._smooth_end`), they decide instead: a value outside them
    (extrapolated, with their room) is wrong, its estimate their midpoint; one within is unsettled, even after a
    first verdict of wrong: one halving of the gap is less evidence than the table asks before it estimates, and the
    bracket is wide (6% at a square root 1.8e-9 above its guard: a 10% error inside it passed as inconclusive).
    At a kink where a slope still moved at the finest steps (``anchor``: whether one did, and where only one did the
    other's value and margin), a value between the slopes is non-differentiable only at the one that did not move
    (θ's side of a kink just off θ, which the moving slope crosses), and ``unsettled`` elsewhere between them.
    Where the table never converged and its finest steps were entering a feature off θ (``inside``: whether they
    were, the finest row's slopes widened by its noise, and whether the lower fell and the higher rose from the row
    before), a first verdict of wrong stands only where that row agrees: a value its slopes hold, or one beyond a
    slope still moving toward it, is ``unsettled``.
    """
    first_numeric, first_allowed, first_status, first_bar = first
    usable = np.isfinite(numeric) & np.isfinite(bar)
    with np.errstate(invalid="ignore"):
        room = tolerance.room(lower, upper, margin)
        allowed = tolerance.allowance(numeric, bar)
        agree = np.abs(analytic - numeric) <= allowed
        # A kink the slopes saw only at coarse steps, off θ (their gap flipped or held there, then was lost in
        # the noise), while the table, from finer steps, agrees with the analytic value: the function is smooth
        # at the table's scale, and the table decides. At a kink at θ itself the table converges on the mean
        # of the one-sided slopes, so agreeing with it is lying between them: no wrong value gets through.
        # Unless the table's bar is too wide to verify anything and the value lies between slopes that have
        # stopped moving: then the kink stands (review 72: a float32 max-pool's ties on a near-fit loss, each given
        # the whole gradient, a slope of each, "agreed" with tables of bars 7x their value, inconclusive, and no
        # line moved them together: the bug passed in 16 of 40 seeds).
        between = (analytic >= lower - room) & (analytic <= upper + room)
        # on a kink, a value beyond a slope is at it within that slope's own margin (``margins``, each at most
        # ``margin``), not the other's drift (a 1% error beyond the slope on θ's side of a where(x > 0) guard 1e-11 off
        # θ, the loss plus 1e3, lay within the drift of the slope crossing the guard: review 85)
        on_kink = between if margins is None else _within(analytic, (lower, upper, *margins), tolerance)
        # and one beyond a coarser row's slope, far more precise, that the finer rows bear out (``precise``) is
        # unsettled: a kink at θ, or one off θ closer than the finer rows resolve (review 86)
        doubtful = ~_within(analytic, precise, tolerance)
        stands = between & np.asarray(settled) & ~np.asarray(anchor[0])
        kink = kink & ~(usable & agree & (verifying(analytic, numeric, bar, tolerance) | ~stands))
        consistent = (numeric >= lower - room) & (numeric <= upper + room)
        # a disagreement a kink too small to see could make (``hidden``) is not wrong, only not verified; nor is
        # one where the curvature did not hold (kinks inside the steps) and the value lies between the slopes
        unproven = (np.abs(analytic - numeric) <= allowed + hidden) | (~np.asarray(curvature_held) & between)
    with np.errstate(invalid="ignore"):
        far = np.abs(analytic - numeric) > UNPROVEN_FAR * allowed  # not proven wrong, yet far off: unsettled
    undecided = np.where(far, unsettled, INCONCLUSIVE)
    status = np.where(agree, np.where(consistent, AGREE, INCONCLUSIVE), np.where(unproven, undecided, WRONG))
    status = status.astype(np.int8)
    status = inconclusive(analytic, numeric, bar, status, tolerance)
    before = inconclusive(analytic, first_numeric, first_bar, first_status, tolerance)
    # A table that ran out of steps before converging does not bear out a pass of the first pass (review 60: a
    # guarded sqrt 1.8e-9 above its guard, a zeroed value between the coarse steps' slopes passed as a kink's
    # subgradient); a first verdict of wrong stands (review 61: |x|^1.5 1e-10 from θ, measured to 1e-7 by the first
    # pass). Where the finest rows bracket the derivative, as a smooth function's slopes do, they decide: a value
    # outside is wrong (a doubled value 7e7 off, a log(max(x, 1e-8)) 1e-13 above its clip), one inside unsettled
    # (the correct value above the guarded sqrt, which the first pass failed).
    bounded = unconverged & np.asarray(settled) & np.asarray(smooth_end) & ~kink
    # Where the finest steps were entering a feature off θ that the first pass's steps spanned, a first verdict of
    # wrong stands only against the finest row too: a value outside its slopes that they were not heading for. One
    # they hold, or one beyond the slope still moving toward it, is unsettled (x·log x 5.6e-10 from 0, a log 4e-14
    # above its clip: the table ran out of rows there, and the correct values failed).
    entering, low, high, falling, rising = inside
    with np.errstate(invalid="ignore"):
        slack = tolerance.atol + tolerance.rtol * np.fmax(np.abs(low), np.abs(high))
        above, below = analytic > high + slack, analytic < low - slack
        stands = ~np.asarray(entering) | (above & ~np.asarray(rising)) | (below & ~np.asarray(falling))
    # and only where the finer rows bore the first pass's estimate out (:func:`.refine._borne`; review 94: a chaotic
    # loss, whose differences grew by orders of magnitude with every halving of the step, failed its exact gradient)
    stands &= np.asarray(borne)
    undone = np.select([bounded & between, bounded, (before == WRONG) & stands], [unsettled, WRONG, WRONG], unsettled)
    status = np.where(usable, status, np.where(unconverged, undone, before))
    # outside slopes that were still moving is not wrong: only not verified (they may reach it at finer steps)
    outside = np.where(settled, WRONG, unsettled)
    # where a slope still moved at the finest steps, a valid value is the other's (``anchor``: θ's side of a kink off
    # θ, which the moving slope crosses); between two still moving it is no evidence (a zeroed derivative between the
    # growing slopes of a √ cusp 3e-10 off θ passed as a kink's subgradient)
    drifting, slope, its_margin = anchor
    with np.errstate(invalid="ignore"):
        held = ~np.asarray(drifting) | (
            np.abs(analytic - slope) <= tolerance.atol + tolerance.rtol * np.abs(slope) + its_margin
        )
    status = np.where(
        kink, np.where(on_kink, np.where(held & ~doubtful, NONDIFFERENTIABLE, unsettled), outside), status
    )
    # a non-finite analytic value is wrong, whatever the slopes did (unsettled ones make a value outside ``unsettled``)
    status = np.where(np.isfinite(analytic), status, WRONG).astype(np.int8)
    with np.errstate(invalid="ignore", over="ignore"):  # slopes not finite where the loss was not
        middle, half = (lower + upper) / 2, (upper - lower) / 2
    numeric = np.where(usable & ~kink, numeric, np.where(bounded, middle, first_numeric))
    allowed = np.where(kink, room, np.where(bounded, half + room, np.where(usable, allowed, first_allowed)))
    return numeric, allowed, status
