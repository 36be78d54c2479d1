"""The report: the verdict as plain data, its JSON form, and its terminal form."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .numerics.fd import AUTO_POWER, COMPLEX_STEP
from .numerics.probe import JUMP, ONE_SIDED, QUANTISED
from .numerics.problem import PLAIN_EVALUATION, Settings
from .numerics.reduce import sampled_kinks
from .numerics.taylor import TAYLOR_WRONG
from .numerics.tolerance import VERIFY_LIMIT
from .numerics.verdict import NonFinite, NonFiniteLoss, TensorReport, WorstElement, json_float, read_float

__all__ = [
    "RULE",
    "NonFinite",
    "NonFiniteLoss",
    "Report",
    "TensorReport",
    "WorstElement",
    "format_report",
    "sample_statement",
    "step_rule",
    "text_table",
    "tolerance_statement",
]

REPORT_VERSION = 2

#: How elements and tensors are judged; stored in every report and explained in the README.
RULE = (
    "Each element agrees when |a - n| <= atol + rtol*|n| + safety*bar, where bar is the numeric estimate's own "
    "error bar: the loss's noise along its tensor (measured, a kink on the probe's line set aside) carried through "
    "the scheme, plus the truncation error where the scheme measures it (richardson). Every suspect element (it "
    "disagrees, is called a kink, or its bar is wide) is estimated again over a sequence of steps (a Richardson "
    "table in the regime where the one-sided slopes' gap shrinks with the step) before its verdict. It is "
    "non-differentiable, not wrong, when that gap does not shrink (a kink) and the analytic value lies between the "
    "slopes; inconclusive when its bar stays above 1% of max(|a|, |n|) (and above atol). A tensor is "
    "wrong when one of its elements (or random directions) is; not verified when none of its checked elements or "
    "directions could be verified, when a random direction decided nothing (a kink at θ, a loss not finite) and "
    "not every element was checked, or when an element is unsettled (its derivative not settled at the finest "
    "steps: its table did not converge, or its analytic value lies outside one-sided slopes still moving, or between "
    "them but not at the one that stopped moving). The check passes when no tensor is wrong, every tensor is verified (unless "
    "unverified: warn) and, if a threshold is set, the normalized difference ||g - g~|| / (||g|| + ||g~||) is "
    "at most the threshold. With a threshold, each tensor's contribution is ||g_t - g~_t|| / (||g|| + ||g~||), "
    "its own error over the whole gradient's scale; the squares of the contributions add up to the square of the "
    "difference. When the difference exceeds the threshold, the largest contributors are wrong too, taken in turn "
    "until what remains is within the threshold: exactly the tensors to fix for the check to pass. A tensor's own "
    "normalized difference is shown too, but not judged: on a tensor with a small gradient it is dominated by "
    "rounding noise."
)


@dataclass(frozen=True, slots=True)
class Report:
    """The outcome of one gradient check.

    ``difference`` is the seed's normalized difference over the whole gradient;
    ``tensors`` are in flattening order; ``worst`` is worst first. ``timings``
    holds seconds and counts (``total_seconds``, ``loss_evaluations``, ...).
    """

    model: str
    difference: float
    passed: bool
    epsilon: float | str
    threshold: float | None
    n_params: int
    n_checked: int
    loss: float
    tensors: tuple[TensorReport, ...]
    worst: tuple[WorstElement, ...]
    nonfinite: NonFinite = field(default_factory=NonFinite)
    timings: Mapping[str, float] = field(default_factory=dict)
    rule: str = RULE
    scheme: str = "central"
    step_rule: str = ""
    tolerance: Mapping[str, Any] = field(default_factory=dict)
    noise: Mapping[str, Any] = field(default_factory=dict)
    sample: Mapping[str, Any] = field(default_factory=dict)
    n_wrong: int = 0
    n_nondifferentiable: int = 0
    directions: tuple[Mapping[str, Any], ...] = ()
    verdict: str = ""
    not_verified: tuple[str, ...] = ()
    n_inconclusive: int = 0
    evaluation: str = ""  # how the losses near θ were evaluated (one call each, batched, staged)
    cost: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # {estimated, actual}: see numerics.cost

    def __post_init__(self) -> None:
        if not self.verdict:  # a report without one (older, or made by hand): the verdict is passed or failed
            object.__setattr__(self, "verdict", "passed" if self.passed else "failed")

    @property
    def failing(self) -> tuple[str, ...]:
        """Names of the wrong tensors, in flattening order."""
        return tuple(t.name for t in self.tensors if not t.passed)

    def __str__(self) -> str:
        """The readable report, as :func:`format_report` writes it: ``print(report)`` shows the verdict."""
        # Defined here, not left to the dataclass: it generates __repr__ only, and str() would fall back to it.
        return format_report(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (non-finite numbers become null)."""
        return {
            "version": REPORT_VERSION,
            "model": self.model,
            "difference": json_float(self.difference),
            "passed": self.passed,
            "epsilon": self.epsilon,
            "threshold": self.threshold,
            "n_params": self.n_params,
            "n_checked": self.n_checked,
            "loss": json_float(self.loss),
            "failing": list(self.failing),
            "tensors": [t.to_dict() for t in self.tensors],
            "worst": [w.to_dict() for w in self.worst],
            "nonfinite": self.nonfinite.to_dict(),
            "timings": dict(self.timings),
            "rule": self.rule,
            "scheme": self.scheme,
            "step_rule": self.step_rule,
            "tolerance": dict(self.tolerance),
            "noise": dict(self.noise),
            "sample": dict(self.sample),
            "n_wrong": self.n_wrong,
            "n_nondifferentiable": self.n_nondifferentiable,
            "directions": [dict(d) for d in self.directions],
            "verdict": self.verdict,
            "not_verified": list(self.not_verified),
            "n_inconclusive": self.n_inconclusive,
            "evaluation": self.evaluation,
            "cost": {k: dict(v) for k, v in self.cost.items()},
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Report:
        """Read back :meth:`to_dict`."""
        return cls(
            model=raw["model"],
            difference=read_float(raw["difference"]),
            passed=bool(raw["passed"]),
            epsilon=raw["epsilon"] if isinstance(raw["epsilon"], str) else float(raw["epsilon"]),
            threshold=None if raw["threshold"] is None else float(raw["threshold"]),
            n_params=int(raw["n_params"]),
            n_checked=int(raw["n_checked"]),
            loss=read_float(raw["loss"]),
            tensors=tuple(TensorReport.from_dict(t) for t in raw["tensors"]),
            worst=tuple(WorstElement.from_dict(w) for w in raw["worst"]),
            nonfinite=NonFinite.from_dict(raw.get("nonfinite", {"count": 0, "elements": []})),
            timings=dict(raw.get("timings", {})),
            rule=raw.get("rule", RULE),
            scheme=raw.get("scheme", "central"),
            step_rule=raw.get("step_rule", ""),
            tolerance=dict(raw.get("tolerance", {})),
            noise=dict(raw.get("noise", {})),
            sample=dict(raw.get("sample", {})),
            n_wrong=int(raw.get("n_wrong", 0)),
            n_nondifferentiable=int(raw.get("n_nondifferentiable", 0)),
            directions=tuple(raw.get("directions", ())),
            verdict=str(raw.get("verdict", "")),
            not_verified=tuple(raw.get("not_verified", ())),
            n_inconclusive=int(raw.get("n_inconclusive", 0)),
            evaluation=str(raw.get("evaluation", "")),
            cost={str(k): dict(v) for k, v in raw.get("cost", {}).items()},
        )


def step_rule(scheme: str, epsilon: float | None, promote: bool = False) -> str:
    """How the steps were chosen, in words (``promote``: `precision: float64`)."""
    if promote:
        return (
            f"{step_rule(scheme, epsilon)}; checked in float64 (precision: float64; float32 parameters and data cast)"
        )
    if epsilon is not None:
        if scheme == "complex-step":
            return f"fixed step {epsilon:g}: Im J(θ + i·h) / h"
        return f"fixed step {epsilon:g}; the quotient divides by 2·epsilon, as the seed's formula does"
    if scheme == "complex-step":
        return f"{COMPLEX_STEP:g}·max(1, |θ_i|) per element; Im J(θ + i·h) / h"
    power = AUTO_POWER[scheme]
    return (
        f"EPS**(1/{round(1 / power)})·max(1, |θ_i|) per element, EPS of the parameter dtype; "
        "divided by the steps the floats actually took"
    )


def tolerance_statement(settings: Settings) -> dict[str, object]:
    """The tolerance per tensor dtype, as the report states it (empty when elements are not judged)."""
    if not settings.judged:
        return {}
    dtypes = sorted({t.dtype for t in settings.layout.tensors})
    # `precision: float64` judges every dtype by float64's tolerance: named so
    named = {dtype: f"{dtype} in float64" if settings.promote and dtype != "float64" else dtype for dtype in dtypes}
    return {named[dtype]: settings.tolerance_for(dtype).to_dict() for dtype in dtypes}


#: Confidence of the statement a clean sample supports.
SAMPLE_CONFIDENCE = 0.95


def sample_statement(sample: tuple[int, int] | None) -> dict[str, object]:
    """What a clean sample means, for a sampled run (``sample`` is ``(k, seed)``); empty when all are checked."""
    if sample is None:
        return {}
    k, seed = sample
    if k == 0:
        return {"per_tensor": 0, "statement": "no single element checked (indices: none): random directions only"}
    delta = 1 - SAMPLE_CONFIDENCE
    bound = math.log(1 / delta) / k
    return {
        "per_tensor": k,
        "seed": seed,
        "confidence": SAMPLE_CONFIDENCE,
        "bound": bound,
        "statement": (
            f"{k} random elements per tensor checked (seed {seed}); a tensor whose sampled elements all agree has "
            f"fewer than ln(1/δ)/k = {bound:.3g} of its elements wrong, at confidence 1 - δ = {SAMPLE_CONFIDENCE:g}"
        ),
    }


def text_table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows of cells as aligned lines (the first row is the header)."""
    widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


FLOAT32 = "float32"
#: What float64 offers a float32 check whose bars were too wide.
IN_FLOAT64 = "`precision: float64` checks a float32 model with finer steps"

#: Said once where a float32 check left elements inconclusive: the commonest reason, and the remedy.
FLOAT32_HINT = (
    "Checked in float32: its rounding (about 6e-8 of the loss) keeps the steps coarse and the error bars wide, the "
    'usual reason for inconclusive elements. `precision: float64` (`precision="float64"` in Python) re-checks a '
    "float32 model with its parameters and data cast to float64; for a hand-written backward pass, check in float64."
)

#: A float64 check's loss noise, relative to the loss, from which the report asks whether the model computes in float32
#: inside: float32's rounding is about 6e-8 of the loss, float64's 1e-16, and cancellation in a float64 loss reaches
#: about 2e-9 (a layer norm of inputs on an offset of 1e4).
NOISY_FLOAT64 = 1e-8
#: ...and from which it asks instead whether the loss is erratic at the check's steps: no float32 rounding is that large
#: (review 101's Lorenz-63 integrated to t = 15: 0.01 of the loss, which the question about float32 misdirected).
ERRATIC = 1e-4

#: A tensor none of whose elements could be verified, and whose gradient is at most this share of the whole gradient's
#: norm (analytic and numeric), is said to be too small to measure against rather than to have wide error bars.
NEGLIGIBLE_SHARE = 1e-6


def _unverified_why(
    t: TensorReport, directions: Sequence[Mapping[str, Any]], float32: bool, unsettled_said: str | None = None
) -> str:
    """Why one tensor could not be verified, and what that leaves unseen (``float32``: the check had float32
    tensors, which `precision: float64` would check with finer steps; ``unsettled_said``: the tensor above whose
    unsettled elements were explained, which this one's refer to)."""
    unseen = "a wrong gradient there would not have been seen"
    # Exactly 0 on both sides agrees, but leaves nothing to measure a relative error against: a
    # gradient wrong only where it is non-zero (a factor, a term, a transpose) passes there unseen.
    zero = (
        "the loss does not move with it at θ, or by less than 1% of the gradient's RMS would show (dead ReLU "
        "units, or unused), so a gradient wrong only where it is non-zero would not have been seen; check it at "
        "data or parameters where it matters"
    )
    if t.n_float32_only:
        return _float32_only_why(t)
    if t.n_unsettled:
        return _unsettled_why(t, unsettled_said)
    if t.noise_source == JUMP:  # (unsettled elements say it first: their differences ran away)
        return (
            f"the loss jumps at θ along it (each half of every line the noise probe drew through θ was smooth, the "
            f"whole was not: a tie in a top-k routing, a sort or an argmax, or kinks or a feature far narrower than the "
            f"steps beside θ), and {t.n_inconclusive} of its {t.n_checked} checked elements were not verified: their "
            "differences may be the jump's, not a derivative, so a wrong gradient there would not have been seen; "
            "check it at parameters where no tie or narrow feature sits at θ"
        )
    mine = [d for d in directions if d["tensor"] == t.name]
    said, why = _undecided(mine)
    if t.n_together and not any(d.get("undecided") == "crossing" for d in mine):
        return _together_why(t)
    if crossing := sum(d.get("undecided") == "crossing" for d in mine):
        return (
            f"{said} ({why}); of them, {crossing} disagreed with the loss's change along {'its' if crossing == 1 else 'their'} "
            "line beyond the allowance, on kinks at θ that show in its line's one-sided slopes (their gap changing "
            "sign, or no longer halving, toward a jump at θ): a wrong gradient that each element's own slopes allow "
            "looks the same (a max-pool tie routed to both elements), so not even every element verifies it; check it "
            "at parameters off every kink (no ReLU input exactly 0, no tied pair or maximum)"
        )
    if sampled_kinks(t.n_nondifferentiable, t.n_checked, math.prod(t.shape), t.noise_source == ONE_SIDED):
        return (
            f"{t.n_nondifferentiable} of its {t.n_checked} sampled elements sit on a kink, and it has kinks at θ "
            "itself (its noise probe's every line crossed one), each judged by its own one-sided slopes; a wrong "
            "value shared with elements not sampled (a max-pool tie given to every tied input) lies within them, "
            "and shows only where the kinks are moved together, all of them; check all its elements (`indices: all`)"
        )
    if said and t.n_checked < math.prod(t.shape):
        others = "the other directions and a sample of its elements" if t.n_checked else "the other directions"
        return (
            f"{said} ({why}): these decide nothing, and a wrong gradient there need not be "
            f"seen by {others} (a bug that moves a pair of elements, a max-pool routed to the wrong one, is missed by "
            "half of all directions); check all its elements (`indices: all`), each judged on its own"
        )
    if t.n_checked:
        if t.n_zero == t.n_checked:
            return f"analytic and numeric both exactly 0 at all {t.n_checked} checked elements: {zero}"
        # its share of the whole gradient's norm, (|g_t| + |g~_t|) / (|g| + |g~|): rounding residue where the loss does
        # not depend on it (a bias before a batch norm, whose hand-written gradient is 1e-18, not 0: held-out sweep 47)
        share = t.contribution / t.difference if t.difference > 0 else math.nan
        if share <= NEGLIGIBLE_SHARE:
            return (
                f"none of its {t.n_checked} checked elements could be verified: its gradient, analytic and numeric, "
                f"is {share:.1g} of the whole gradient's norm, too small to measure against at this precision: the "
                "loss may not depend on it (a bias before a batch norm, an attention key's bias, which the softmax over the "
                "keys cancels, dead units, unused), or its gradient is "
                f"genuinely tiny (vanishing through many layers, scaled down); {unseen}"
                + (f"; {IN_FLOAT64}" if float32 else "")
            )
        return f"none of its {t.n_checked} checked elements could be verified: {_inconclusive_and_kinks(t)}; {unseen}"
    # as for elements (n_zero): exactly 0 within allowances narrower than 1% of the largest |g·v| checked
    largest = max((abs(d["analytic"]) for d in directions), default=0.0)
    if mine and all(
        d["analytic"] == 0 and d["numeric"] == 0 and (d["allowed"] or math.inf) <= VERIFY_LIMIT * largest for d in mine
    ):
        return f"g·v and the loss's change both exactly 0 along all {len(mine)} random directions: {zero}"
    return f"none of its {t.n_directions} random directions could be verified (all inconclusive); {unseen}"


def _directions(count: int, plural: str = "cross", singular: str = "crosses") -> str:
    """ "1 random direction crosses", "3 random directions cross"."""
    return f"{count} random direction {singular}" if count == 1 else f"{count} random directions {plural}"


def _undecided(directions: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """How many of ``directions`` decided nothing, and for what ("3 random directions cross a kink at θ"), and why
    that is not wrong; both empty where none did."""
    kinks, edges = (sum(d.get("undecided") in whys for d in directions) for whys in (("kink", "crossing"), ("edge",)))
    said = (
        # (at θ as far as the finest steps tell: a float32 direction's steps cross ReLUs 2e-4 from θ, and review 133
        # read "a kink at θ" as false where no input was 0)
        f"{_directions(kinks)} a kink at θ or nearer θ than their finest steps resolve" if kinks else "",
        f"{_directions(edges, 'meet', 'meets')} a loss not finite at the first steps that finer steps do not decide"
        if edges
        else "",
    )
    why = (
        "several kinks at θ on one line can put a valid subgradient beyond its one-sided slopes, and a kink nearer θ "
        "than the steps looks like one at θ"
        if kinks
        else "",
        "a loss not finite says nothing of the gradient" if edges else "",
    )
    return "; ".join(filter(None, said)), " and ".join(filter(None, why))


def _float32_only_why(t: TensorReport) -> str:
    """What a tensor's elements wrong in float32 only are, and what checking them in float64 would not show."""
    return (
        f"{t.n_float32_only} of its {t.n_checked} checked elements disagree in float32 but agree when the same "
        "model computes in float64 (its gradient against its own differences, parameters and float32 data cast): "
        "float32 rounding in an ill-conditioned layer, or code that computes otherwise by dtype, made the "
        "difference, and a bug only in a float32 code path would look the same; `precision: float64` checks the "
        "model so, not its float32 code path"
    )


def _decided_by(direction: Mapping[str, Any]) -> str:
    """For a Taylor direction judged wrong whose orders never fell to the first (review 94: "2.00 2.00 ... (wrong)"
    under a header saying 2 means correct), what decided it: the central differences at finer steps."""
    first = any(o is not None and o <= TAYLOR_WRONG for o in direction["orders"])
    if direction["status"] != "wrong" or first or direction.get("numeric") is None:
        return ""
    analytic, numeric, allowed = direction["analytic"], direction["numeric"], direction.get("allowed")
    return (
        f": g·v {analytic:.8g}, central differences at finer steps {numeric:.8g}, |a-n| {abs(analytic - numeric):.3g}"
        + (f" where {allowed:.3g} is allowed" if allowed is not None else "")
    )


def _unsettled_why(t: TensorReport, said: str | None = None) -> str:
    """What a tensor's unsettled elements are, which one (its worst element, where that is one), and why its other
    elements do not verify it; where ``said`` names a tensor above whose unsettled elements were explained, a
    reference to it. Short: one paragraph listing every rule that leaves an element unsettled read as a wall of text,
    and did not say which element (review 133)."""
    some, one = f"{t.n_unsettled} of its {t.n_checked} checked elements", t.n_unsettled == 1
    w = t.worst
    which = (
        f" ({'one is ' if not one else ''}{w.tensor}{_index(w.index)}: analytic {w.analytic:.7g}, numeric "
        f"{w.numeric:.7g})"
        if w is not None and w.status == "unsettled"
        else ""
    )
    if said is not None:
        return (
            f"{some} {'was' if one else 'were'} not settled at the finest steps taken{which}, so its other elements "
            f"do not verify it (see {said}, above)"
        )
    return (
        f"{some} {'was' if one else 'were'} not settled at the finest steps taken{which}: {'its' if one else 'their'} "
        "table of differences did not converge, or ran away, or the one-sided slopes were still moving, or finer "
        "steps did not bear the estimate out, where the steps ended. The steps never resolved the derivative there, "
        "so such a value can be called neither wrong (finer steps may reach it) nor right, and the tensor's other "
        "elements do not verify it. The loss has a feature there that its steps "
        "do not resolve: a kink or a change of curvature a hair off θ (a ReLU, ELU or hinge input near 0, a cusp), a "
        "square root or a logarithm just above its guard, a jump or a pole inside the steps (a dihedral angle at a "
        "bond angle near straight, a nearly singular log-determinant), a term rounded to a staircase (a float32 cast "
        "inside a float64 loss), rounding amplified where a square root of a tiny argument cancels terms (a ray "
        "grazing a sphere), a loss not finite at the first steps, or a loss that changes erratically at every step "
        "taken (chaotic dynamics over a long horizon); check it at parameters farther from the feature"
    )


def _float32_inside(report: Report, float32: bool) -> str:
    """Where a float64 check's loss is as noisy as float32's, a question whether the model computes in float32 inside
    (a held-out review: a `.float()` in a torch model checked in float64 passed a 0.1% error, within its stated power
    and nothing said why that power was float32's); empty elsewhere."""
    loss = abs(report.loss)
    if float32 or not (0 < loss < math.inf):
        return ""
    noisy = [t for t in report.tensors if t.noise >= NOISY_FLOAT64 * loss]
    if not noisy:
        return ""
    names, largest = ", ".join(t.name for t in noisy), max(t.noise for t in noisy)
    share = largest / loss
    if all(t.noise_source == QUANTISED for t in noisy):  # (review 105: InfoNCE's 5e-14 in steps of 2.4e-15)
        return (
            f"The loss along {names} moves in steps of up to {largest:.2g} "
            f"({share:.1g} of the loss), far coarser than one rounding unit of it: a loss near 0 computed as the "
            "difference of large terms (a log-sum-exp less the largest logit, a confident classifier's "
            "cross-entropy) or summed in low precision resolves nothing finer, and a derivative that moves it by "
            "less than a step over the check's steps cannot be verified there. Computed so that small values keep "
            "their digits (log1p of a sum of exp of the margins), it can."
        )
    # no rounding of float32's either: structure finer than the steps (review 101: 0.01 of the loss)
    if share > ERRATIC:
        return (
            f"The loss's noise along {names} is up to {share:.1g} of the loss, far above "
            "float32's rounding (6e-8) as well as float64's (1e-16): does the loss change erratically at the check's "
            "steps (chaotic dynamics over a long horizon: an ODE or a map iterated far), or jump, or have a pole, "
            "within a step of θ far finer than the check's (a matrix nearly singular, an angle at a straight or "
            "collinear configuration), or compute to a loose tolerance (an iterative solver)? The probe takes such "
            "structure for noise. The second look estimates an element it leaves wrong again under the loss's "
            "rounding, at steps as fine as float64 resolves, where such a loss is smooth again: wrong stands only where "
            "those do not bear the analytic value out."
        )
    return (
        f"The loss's noise along {names} is up to "
        f"{share:.1g} of the loss, about float32's rounding (6e-8) and far above "
        "float64's (1e-16): does the model compute in float32 inside (a `.float()`, a float32 buffer or constant), or "
        "to a tolerance (an iterative solver), or solve a nearly singular system (a Cholesky of a kernel matrix with "
        "duplicated points)? The check then has that precision's power, not float64's (the power "
        "column). Or does the loss jump, or have a pole, within a step of θ far finer than the check's (a matrix "
        "nearly singular, an angle at a straight or collinear configuration)? The probe takes such a feature for "
        "noise, and no step the check takes resolves the derivative there."
    )


def _together_why(t: TensorReport) -> str:
    """What a tensor's kinks that disagree together are, and why they leave it not verified."""
    return (
        f"{t.n_together} of its {t.n_checked} checked elements sit on kinks the gradient does not bear out together: "
        "each one's value lies between its own one-sided slopes (or, where kinks interact, among the derivatives at "
        "points near θ), but moved together, through θ or at points near it, they change the loss at rates the "
        "gradient does not give; or, where kinks interact, a value lies beyond the derivatives at every point near θ "
        "drawn. A backward pass that gives each tied input of a maximum the whole gradient does this (a max-pool's mask "
        "`window == window.max()`: the ties each take it, but move the maximum once), or a share that does not add up "
        "to it; kinks that interact other than a maximum's do (ReLUs exactly on their kinks, composed) could do it "
        "with a right gradient; check it at parameters and data without ties or exact zeros"
    )


def _float32_only_part(report: Report) -> str:
    """The headline's count of elements wrong in float32 only; empty where there are none."""
    only = sum(t.n_float32_only for t in report.tensors)
    return f"{only} element{'s' if only > 1 else ''} wrong in float32 only (see below)" if only else ""


def _judged_in_float64(t: TensorReport, tolerance: Mapping[str, Mapping[str, float]]) -> bool:
    """Whether a float32 tensor's worst element was found wrong on the model computing in float64
    (:func:`.numerics.tolerance.float32_only`): it then carries float64's allowance, below the least a float32
    allowance can be, ``atol + rtol·|n|`` of the float32 tolerance (``t.rounding``, measured on that model, says the
    tensor is float32)."""
    w, float32 = t.worst, tolerance.get(FLOAT32)
    if w is None or float32 is None or not t.rounding > 0 or w.status != "wrong":
        return False
    return bool(w.allowed < float32["atol"] + float32["rtol"] * abs(w.numeric))


def _inconclusive_beyond_power(report: Report, thin: list[TensorReport]) -> list[TensorReport]:
    """The verified tensors, besides the ``thin`` ones, with inconclusive elements whose allowances are wider than the
    tensor's power: their power is the verified elements', not these."""
    return [
        t
        for t in report.tensors
        if t.passed and t.verified and t not in thin and t.inconclusive_power > (t.power if t.power > 0 else 0)
    ]


def _thinly_verified(report: Report) -> list[TensorReport]:
    """Tensors that pass on fewer than half of their checked elements: their power rests on those. Elements on a
    kink (judged against their slopes) and where the loss does not move (exactly 0 in both) are not counted."""
    return [
        t
        for t in report.tensors
        if t.passed and t.verified and t.n_checked and 2 * t.n_verified < t.n_checked - t.n_zero - t.n_nondifferentiable
    ]


def _inconclusive_and_kinks(t: TensorReport) -> str:
    """A tensor's inconclusive elements (why, and how many are exactly 0 in both) and its kinks."""
    zeros = f"; {t.n_zero} of them exactly 0 in both analytic and numeric" if t.n_zero else ""
    widest = f", up to {t.inconclusive_power:.2g}" if t.inconclusive_power > 0 else ""
    inconclusive = (
        f"{t.n_inconclusive} inconclusive (error bars wider than {VERIFY_LIMIT:g} of |n|{widest}, even after a second "
        f"look{zeros})"
    )
    kinks = f"{t.n_nondifferentiable} on a kink"
    return ", ".join(part for part, n in ((inconclusive, t.n_inconclusive), (kinks, t.n_nondifferentiable)) if n) or (
        inconclusive
    )


def _index(index: Sequence[int]) -> str:
    return "[" + ", ".join(str(k) for k in index) + "]"


def _headline(report: Report) -> str:
    """The verdict in one line; a failed check names what failed first, then what held."""
    elements = bool(report.tolerance) and report.n_checked > 0
    directions_wrong = sum(d["status"] == "wrong" for d in report.directions)
    # a run that checks no element: the seed's difference over the directions' g·u and their estimates
    along = " along the random directions" if report.directions and not report.n_checked else ""
    difference = f"difference{along} {report.difference:.3e}"
    if report.passed:
        parts = [f"{report.n_wrong} of {report.n_checked} elements wrong"] if elements else []
        if report.directions:
            parts.append(f"{directions_wrong} of {len(report.directions)} random directions wrong")
        if report.threshold is not None:
            difference += f" <= threshold {report.threshold:g}"
        if report.not_verified:  # unverified: warn
            parts.append(f"{len(report.not_verified)} tensor(s) not verified ({', '.join(report.not_verified)})")
        if only := _float32_only_part(report):
            parts.append(only)
        if unproven := sum(t.n_unproven for t in report.tensors):
            parts.append(f"{unproven} disagreeing but not proven wrong (see below)")
        if undecided := sum(bool(d.get("undecided")) for d in report.directions):
            parts.append(f"{undecided} random direction{'s' if undecided > 1 else ''} that decided nothing (see below)")
        if thin := _thinly_verified(report):
            shown = ", ".join(f"{t.name} {t.n_verified}/{t.n_checked}" for t in thin)
            parts.append(f"verified at fewer than half their elements: {shown} (see below)")
        if kinks := report.n_nondifferentiable:
            # a large difference beside a pass reads as a contradiction (held-out sweep 52: 0.39 on a correct ReLU)
            difference += (
                f" (with {kinks} element{'s' if kinks > 1 else ''} on a kink, whose numeric value is the central "
                "difference across it, not a derivative)"
            )
        return "gradcheck PASSED: " + "; ".join([*parts, difference])
    failed: list[str] = []  # each reason the check failed for, as the verdicts have it
    held: list[str] = []  # the rest, said so that no count reads as a reason
    if elements:
        if report.n_wrong:
            failed.append(f"{report.n_wrong} of {report.n_checked} elements wrong")
        else:
            held.append(f"none of the {report.n_checked} checked elements wrong")
    if report.nonfinite.count:
        failed.append(f"non-finite loss at {report.nonfinite.count} element{'s' if report.nonfinite.count > 1 else ''}")
    if report.directions:
        if directions_wrong:
            failed.append(f"{directions_wrong} of {len(report.directions)} random directions wrong")
        else:
            held.append(f"none of the {len(report.directions)} random directions wrong")
    over = report.threshold is not None and not report.difference <= report.threshold
    if over and not (math.isnan(report.difference) and report.nonfinite.count):
        failed.append(f"{difference} > threshold {report.threshold:g}")
    else:
        held.append(
            difference + (f" <= threshold {report.threshold:g}" if report.threshold is not None and not over else "")
        )
    if report.not_verified:
        names = report.not_verified
        (failed if report.verdict == "not verified" else held).append(
            f"{len(names)} tensor{'s' if len(names) > 1 else ''} not verified ({', '.join(names)})"
        )
    if only := _float32_only_part(report):  # not wrong, and not agreeing either
        (failed if report.verdict == "not verified" else held).append(only)
    verdict = "NOT VERIFIED" if report.verdict == "not verified" else "FAILED"
    return f"gradcheck {verdict}: " + "; ".join([*failed, *held])


def _unjudged_rule(report: Report) -> str:
    """What decides a check whose elements are not judged one by one (``tolerance: none``)."""
    deciders = []
    if report.directions:
        deciders.append("the random directions, each against its error bar,")
    if report.threshold is not None:
        deciders.append(f"the threshold {report.threshold:g} on the normalized difference")
    if not deciders:
        return (
            "Elements are not judged one by one (tolerance: none) and no threshold is set: "
            "nothing was judged, and PASSED only means the check ran."
        )
    return f"Elements are not judged one by one (tolerance: none): {' and '.join(deciders)} alone decide{'s' if len(deciders) == 1 else ''}."


def format_report(report: Report) -> str:
    """The report as a person reads it in a terminal."""
    epsilon = report.epsilon if isinstance(report.epsilon, str) else f"{report.epsilon:g}"
    lines = [
        _headline(report),
        f"  model {report.model}; {report.n_checked} of {report.n_params} parameters checked; loss at θ {report.loss:.6g}",
        f"  scheme {report.scheme}, epsilon {epsilon}: {report.step_rule}",
    ]
    for dtype, tolerance in report.tolerance.items():
        lines.append(
            f"  tolerance for {dtype}: atol {tolerance['atol']:.3g}, rtol {tolerance['rtol']:.3g}, "
            f"safety {tolerance['safety']:g}"
        )
    if report.evaluation and report.evaluation != PLAIN_EVALUATION:
        lines.append(f"  losses near θ: {report.evaluation}")
    unmeasured = [t for t in report.tensors if t.noise_source and t.noise_source != "measured"]
    for source in sorted({t.noise_source for t in unmeasured}):
        names = ", ".join(t.name for t in unmeasured if t.noise_source == source)
        lines.append(f"  loss noise along {names}: {source}")
    if report.sample:
        lines.append(f"  {report.sample.get('statement', '')}")
    judged = bool(report.tolerance)
    float32 = FLOAT32 in report.tolerance  # the check had float32 tensors
    if not judged:
        lines.append(f"  {_unjudged_rule(report)}")
    lines.append("")
    header = ["tensor", "shape", "difference", "contribution", "max |a-n|", "noise"]
    along = ["directions wrong"] if report.directions else []
    rows = [header + (["wrong", "kinks", "inconclusive", "power"] if judged else []) + along + ["verdict"]]
    thin = _thinly_verified(report)
    thinly = {t.name for t in thin}
    # a passing tensor beside elements that disagree but were not proven wrong: its power holds at the others only
    doubted = {t.name for t in report.tensors if t.passed and t.n_unproven} - thinly
    # ...and beside random directions that decided nothing: it verified on its elements alone
    doubted |= {d["tensor"] for d in report.directions if d.get("undecided")} & {
        t.name for t in report.tensors if t.passed and t.verified
    }
    # ...and beside inconclusive elements whose allowances are wider than its power (review 113: a float32 arm's 0.8%
    # error at one passed where the table said 7.6e-4, the paragraph below the only word of it)
    unsure = _inconclusive_beyond_power(report, thin)
    starred = thinly | doubted | {t.name for t in unsure}
    for t in report.tensors:
        # a tensor none of whose elements was checked (directions only) has no element figures: '-', not zeros
        elements = bool(t.n_checked)
        # inconclusive elements exactly 0 in both gradients are dead units, not bars too wide: say how many
        zeros = f" ({t.n_zero} zero)" if t.n_zero else ""
        tallies = [f"{t.n_wrong}/{t.n_checked}", str(t.n_nondifferentiable), f"{t.n_inconclusive}{zeros}"]
        counts = (
            [
                *(tallies if elements else ["-"] * 3),
                (f"{t.power:.1e}" if math.isfinite(t.power) else "-") + ("*" if t.name in starred else ""),
            ]
            if judged
            else []
        )
        counts += [f"{t.n_directions_wrong}/{t.n_directions}"] if report.directions else []
        rows.append(
            [
                t.name,
                "(" + ", ".join(map(str, t.shape)) + ")",
                *(
                    [f"{t.difference:.3e}", f"{t.contribution:.3e}", f"{t.max_abs_error:.3e}"]
                    if elements
                    else ["-"] * 3
                ),
                f"{t.noise:.1e}",
                *counts,
                "WRONG" if not t.passed else "ok" if t.verified else "NOT VERIFIED",
            ]
        )
    lines += ["  " + line for line in text_table(rows)]
    if judged:
        lines.append(
            "  power: the relative error each tensor's check could have detected (its widest allowance of an "
            "agreeing element or random direction, against max(|a|, |n|); - where none agreed, or the tensor is not verified)"
            + (
                "; * at the verified elements of a tensor verified at fewer than half of them (below): an error of "
                f"{VERIFY_LIMIT:.0%} or more at the others may not have been seen"
                if thinly
                else ""
            )
            + (
                "; * beside elements not proven wrong, or random directions that decided nothing (below): a wrong "
                "gradient there may not have been seen"
                if doubted
                else ""
            )
            + (
                "; * beside inconclusive elements whose allowances are wider (below): an error within those at them "
                "would not have been seen"
                if unsure
                else ""
            )
            + (
                "; (N zero): inconclusive elements exactly 0 in both analytic and numeric (dead units, an unused "
                "parameter: the loss does not move with them at θ)"
                if any(t.n_zero for t in report.tensors)
                else ""
            )
        )
    if report.failing:
        backwards = [t for t in reversed(report.tensors) if not t.passed]
        lines += ["", f"Wrong tensors, from the last layer back: {', '.join(t.name for t in backwards)}"]
        for t in backwards:
            lines += [f"  {t.name}: {sentence}" for sentence in t.diagnosis]
            if t.worst is not None and t.n_wrong and judged:
                w = t.worst
                # a numeric value of NaN is no estimate: the loss was not finite at its steps (review 99: "numeric nan,
                # allowed nan" where a float32 loss overflowed on both sides of the step)
                measured = (
                    f"numeric {w.numeric:.6g}, |a-n| {w.abs_error:.3g} where {w.allowed:.3g} is allowed"
                    if math.isfinite(w.numeric)
                    else "no numeric estimate (the loss was not finite at its steps: see the non-finite losses below)"
                )
                in_float64 = _judged_in_float64(t, report.tolerance)
                lines.append(
                    f"  {t.name}: worst element {w.tensor}{_index(w.index)}: analytic {w.analytic:.6g}, {measured}"
                    + (
                        " (judged on the model computing in float64, which finds it wrong too: the numeric value is "
                        "its estimate moved by this float32 gradient's own rounding, so |a-n| is the formula's error)"
                        if in_float64
                        else ""
                    )
                )
            else:
                in_float64 = False
            if t.n_wrong and judged and 2 * t.rounding >= t.max_abs_error and not in_float64:
                lines.append(
                    f"  {t.name}: its float32 gradient is itself up to {t.rounding:.3g} off the same model's in float64 "
                    f"at θ, and its largest |a-n| ({t.max_abs_error:.3g}) is within twice that: float32 rounding in an "
                    "ill-conditioned layer (`precision: float64` casts the parameters and float32 data to float64) or code that computes "
                    "otherwise by dtype can make a difference this large"
                )
            if t.n_wrong and judged and t.coarse_gradient:
                lines.append(
                    f"  {t.name}: model.grad returned {t.coarse_gradient} for it (computed in float32?) where the check "
                    "judges in float64: their own rounding (float32's is about 1e-7 of each value) is about float64's "
                    "whole tolerance, so a correct gradient can fail here; compute it in float64 (or check the model in "
                    "its own dtype)"
                )
            if t.n_float32_only:  # its other disagreements, which the dtype explains
                lines.append(f"  {t.name}: besides, {_float32_only_why(t)}")
    unverified = [t for t in reversed(report.tensors) if t.passed and not t.verified]
    if unverified:
        # a failed check failed for its wrong tensors: whether these would have failed it too is the setting's
        consequence = {
            "not verified": " (the check does not pass; `unverified: warn` lets it pass, these still named)",
            "passed": " (reported only: unverified: warn)",
        }
        lines += [
            "",
            f"Not verified, from the last layer back{consequence.get(report.verdict, '')}: "
            + ", ".join(t.name for t in unverified),
        ]
        said: str | None = None  # the first tensor whose unsettled elements were explained: the others refer to it
        for t in unverified:
            lines.append(f"  {t.name}: {_unverified_why(t, report.directions, float32, said)}")
            if said is None and t.n_unsettled and not t.n_float32_only:
                said = t.name
    if thin:
        lines += [
            "",
            "Verified at fewer than half their checked elements, from the last layer back (their power rests on "
            "those, and any random directions: a wrong gradient at their inconclusive elements may not have been "
            "seen):",
        ]
        for t in reversed(thin):
            lines.append(
                f"  {t.name}: {t.n_verified} of {t.n_checked} checked elements verified; {_inconclusive_and_kinks(t)}"
            )
    if unsure:
        lines += [
            "",
            "Inconclusive elements in verified tensors, from the last layer back (their power is their verified "
            "elements'; an error within these elements' allowances would not have been seen there):",
        ]
        for t in reversed(unsure):
            lines.append(
                f"  {t.name}: {t.n_inconclusive - t.n_zero} of {t.n_checked} checked elements, allowances up to "
                f"{t.inconclusive_power:.2g} of their values"
            )
    if float32 and any(t.n_inconclusive > t.n_zero for t in (*unverified, *thin)):
        lines += ["", FLOAT32_HINT]
    if hint := _float32_inside(report, float32):
        lines += ["", hint]
    if timings_looked := report.timings.get("second_look_elements"):
        lines += [
            "",
            f"Second look: {int(timings_looked)} suspect element(s) evaluated again over a sequence of steps, "
            f"{int(report.timings.get('second_look_evaluations', 0))} loss evaluations.",
        ]
    unproven = [t for t in report.tensors if t.n_unproven]
    if unproven:
        where = ", ".join(f"{t.n_unproven} of {t.name}" for t in unproven)
        lines += [
            "",
            f"Not proven wrong ({where}): elements that disagree beyond their allowance, but finer steps could not "
            "confirm it (kinks near θ inside the steps, or finer steps moving toward the analytic value): "
            "inconclusive, not wrong. A wrong gradient may hide there" + (f"; {IN_FLOAT64}." if float32 else "."),
        ]
    undecided = [d for d in report.directions if d.get("undecided")]
    if undecided:
        where = ", ".join(
            f"{sum(d['tensor'] == name for d in undecided)} of {name}"
            for name in dict.fromkeys(d["tensor"] for d in undecided)
        )
        said, why = _undecided(undecided)
        crossing = any(d.get("undecided") == "crossing" for d in undecided)
        lines += [
            "",
            f"Decided nothing ({where}): {said}. Not wrong: {why}. Nor verified: a wrong gradient can put g·v there too "
            "(a max-pool tie routed to both elements, which each element's own slopes allow), so their tensors "
            "verify on every element checked, or not at all"
            + (
                " (not at all for a tensor with a direction that disagreed on kinks at θ: check it at parameters off "
                "its kinks)."
                if crossing
                else "."
            ),
        ]
    orders = [d for d in report.directions if d.get("orders")]
    if orders:
        lines += [
            "",
            "Taylor test, observed orders of convergence (2 for a correct gradient, 1 for a wrong one whose error "
            "outweighs the curvature at these steps; a smaller error leaves them at 2, and the central differences "
            "at finer steps decide):",
        ]
        for d in orders:
            shown = " ".join("-" if o is None else f"{o:.2f}" for o in d["orders"])
            lines.append(f"  {d['tensor']} direction {d['number']}: {shown} ({d['status']}{_decided_by(d)})")
    if report.n_nondifferentiable:
        lines += [
            "",
            f"{report.n_nondifferentiable} element(s) sit on a kink (one-sided slopes disagree and the analytic value "
            "lies between them, or, where kinks interact, among the derivatives at points near θ): non-differentiable "
            "there, not wrong."
            + (
                f" Of them, {together} disagree moved together (above)."
                if (together := sum(t.n_together for t in report.tensors))
                else ""
            ),
        ]
    if report.nonfinite.count:
        shown = ", ".join(f"{e.tensor}{_index(e.index)} ({e.side})" for e in report.nonfinite.elements[:5])
        more = f" and {report.nonfinite.count - 5} more" if report.nonfinite.count > 5 else ""
        lines += ["", f"Non-finite loss at {report.nonfinite.count} element(s), side of θ in brackets: {shown}{more}"]
    if report.worst:
        # Without per-element verdicts no element has an allowance or a status: a column of nan
        # and "agrees" would read as a judgement that was never made.
        lines += ["", f"Worst elements (analytic a, numeric n{', allowed |a-n|' if judged else ''}):"]
        rows = [["element", "a", "n", "|a-n|", *(["allowed", "status"] if judged else [])]]
        for w in report.worst:
            rows.append(
                [
                    f"{w.tensor}{_index(w.index)}",
                    f"{w.analytic:.6e}",
                    f"{w.numeric:.6e}",
                    f"{w.abs_error:.3e}",
                    *([f"{w.allowed:.3e}", w.status] if judged else []),
                ]
            )
        lines += ["  " + line for line in text_table(rows)]
    timings = report.timings
    if timings.get("recomputed_shards"):
        lines += [
            "",
            f"{int(timings['recomputed_shards'])} shard(s) of the earlier run failed verification (a chunk cut short, "
            "missing or changed) and were computed again.",
        ]
    if timings:
        # In this process there is no cluster: what came before the probe is opening the inputs.
        where = "in this process: set-up" if timings.get("in_process") else "cluster"
        rate = timings.get("evaluations_per_second", math.nan)
        # a resumed run's shards read back were computed (and looked at again) by the run that wrote them
        read_back = int(timings.get("resumed_shards", 0) - timings.get("recomputed_shards", 0))
        if read_back and not rate:
            evaluated = " (the probe's alone: every shard was read back from the output, as an earlier run computed it)"
        else:
            evaluated = f", {rate:.0f}/s while the shards ran" + (
                f"; {read_back} shard(s) read back from the output, as an earlier run computed them"
                if read_back
                else ""
            )
        lines += [
            "",
            f"{timings.get('total_seconds', math.nan):.2f} s in all ({where} {timings.get('cluster_seconds', math.nan):.2f} s, "
            f"shards {timings.get('shards_seconds', math.nan):.2f} s); {int(timings.get('loss_evaluations', 0))} loss "
            f"evaluations{evaluated}",
        ]
    if report.cost.get("estimated") and report.cost.get("actual"):
        # the estimate is made before the shards run: it cannot know which elements will be suspects
        looked = int(report.timings.get("second_look_evaluations", 0))
        inline = bool(report.timings.get("in_process"))
        lines.append(
            f"estimated {_cost(report.cost['estimated'], inline=inline)}; "
            f"took {_cost(report.cost['actual'], looked, inline)}"
        )
    return "\n".join(lines)


def _cost(cost: Mapping[str, float], looked: int = 0, inline: bool = False) -> str:
    """A run's cost (:class:`~pipeline.numerics.cost.Cost` as a dict) in a few words; ``looked``: how many of its
    losses the second look took (no estimate foresees them). ``inline``: the run had no workers, so its memory is
    this process's peak (the larger of the two figures: the shards ran in the client)."""
    mb = 2**20
    second = f" ({looked} of them the second look's, not foreseen)" if looked else ""
    if inline:
        memory = f"{max(cost['worker_memory_bytes'], cost['client_memory_bytes']) / mb:.0f} MB in this process"
    else:
        memory = f"{cost['worker_memory_bytes'] / mb:.0f} MB a worker, {cost['client_memory_bytes'] / mb:.0f} MB client"
    return (
        f"{int(cost['loss_evaluations'])} losses{second}, {cost['wall_seconds']:.1f} s, {memory}, "
        f"{cost['output_bytes'] / mb:.1f} MB output"
    )
