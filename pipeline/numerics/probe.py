"""The probe: the model checked at θ before anything is written, and the loss's noise measured.

It evaluates the loss twice (a loss that differs is a model error), checks the gradient's
shapes, measures the loss's noise along each tensor (several directions, so that a kink on one
line is not every element's noise; a floor for a loss exactly 0), times one loss, and records
a loss near θ that a resume compares.
"""

from __future__ import annotations

import functools
import hashlib
import math
import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..errors import ModelError, StoreError
from ..model import as_loss_value
from .fd import STENCILS, batched_stencil_losses, close_enough, noise_ceiling, noise_level, step_sizes, too_close
from .groups import seconds_per_loss
from .problem import Float64Copy, Loaded, ModelExited, Settings, call_model, fastest, float64_copy, pieces

__all__ = ["NONDETERMINISM_ULPS", "ProbeResult", "measured_noise", "probe"]


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What the probe learned at θ: the loss (evaluated twice: ``spread`` is how far
    apart), the loss's noise along each tensor and where each figure came from (and the losses
    that cost), each tensor's root-mean-square analytic gradient, how long one evaluation takes
    there, and how many loss-equivalents an index costs (the scheme's stencil, or fewer for a
    staged model)."""

    loss: float
    loss_seconds: float
    loss_equivalents_per_index: float
    seconds: float
    noise: tuple[float, ...] = ()
    noise_sources: tuple[str, ...] = ()
    noise_evaluations: int = 0
    scales: tuple[float, ...] = ()
    spread: float = 0.0
    off_theta: float = math.nan  # the loss at a seeded point near θ: with the loss at θ, what a resume compares
    evaluation: str = ""  # how the losses near θ are evaluated (:attr:`.problem.Loaded.evaluation`)
    rounding: tuple[float, ...] = ()  # each float32 tensor's gradient against float64's (:func:`_analytic_rounding`)
    coarse_gradient: tuple[str, ...] = ()  # model.grad's dtype where coarser than the tensor is judged in, else ""

    @property
    def atol_scale(self) -> float:
        """The gradient's scale the default ``atol`` follows (:meth:`.problem.Settings.tolerance_for`): the largest
        tensor RMS gradient where every tensor's noise was measured; 0, the dtype's own ``atol``, where the loss's
        resolution is not known, its noise not measurable or the loss moving in steps (review 71: a confident
        softmax's loss of 8e-17 moves in steps of 1e-17, the rounding of 1 + e^-z, far above one rounding unit of
        it, and a correct gradient there is not verified, not wrong)."""
        unknown = any(source in (NOT_MEASURABLE, QUANTISED) for source in self.noise_sources)
        return 0.0 if unknown or not self.scales else max(self.scales)

    @property
    def atol_rounding(self) -> float:
        """The float32 analytic gradient's measured rounding: the least, over the tensors where it was measured, of
        the most a tensor's gradient differs from the same model's in float64 (:func:`_analytic_rounding`); 0 where
        nothing was measured, or the two are the same numbers (a model computing in float32 whatever it is given).
        The least: the floor is one ``atol`` for every tensor, and one tensor's difference (code that computes
        otherwise by dtype, a smoothing constant of the dtype's EPS) would excuse another's errors (reviews 81, 82)."""
        return min((gap for gap in self.rounding if gap > 0), default=0.0)


def probe(loaded: Loaded) -> ProbeResult:
    """Check the model at θ before anything is written: finite parameters, a finite real loss
    that is the same twice, a gradient of the right shapes; and measure the loss's noise."""
    start = time.perf_counter()
    settings = loaded.settings
    if settings.scheme == "complex-step" and getattr(loaded.model, "complex_step", False) is not True:
        raise ModelError(
            "scheme complex-step needs a model that declares `complex_step = True` (its loss computed in complex "
            "arithmetic, analytic in the parameters); this model does not. Choose scheme richardson or central."
        )
    for name, array in loaded.params.items():
        bad = np.flatnonzero(~np.isfinite(array.reshape(-1)))
        if bad.size:
            first = [int(k) for k in np.unravel_index(int(bad[0]), array.shape)]
            raise StoreError(
                f"{loaded.params_source}: array '{name}' holds {bad.size} non-finite value(s), "
                f"the first at {first}; parameters must be finite."
            )
    loss = _loss_value(loaded, "at θ")
    loaded.analytic_gradient()
    again = _loss_value(loaded, "at θ")
    spread = abs(again - loss)
    if spread > NONDETERMINISM_ULPS * _eps(settings) * max(abs(loss), np.finfo(np.float64).tiny):
        raise ModelError(_why_the_loss_changed(loaded, loss, again))
    spread = max(spread, _perturbed_at_theta(loaded, loss))
    reference = float64_copy(loaded)
    noise, sources, evaluations = _noise(loaded, loss, reference)
    spread = max(spread, _batch_at_theta(loaded, loss, noise, sources))
    if all(source == UNMOVED for source in sources):
        raise ModelError(
            "Model loss does not change when any parameter does (the probe moved every tensor and the loss stayed "
            f"exactly {loss!r}): the check would compare zero with zero. Does the loss use the parameters it is given?"
        )
    off_theta = _off_theta(loaded)
    analytic = loaded.analytic_gradient()
    scales = tuple(_root_mean_square(analytic[spec.name]) for spec in settings.layout.tensors)
    rounding = _analytic_rounding(loaded, reference, analytic)
    coarse = tuple(_coarser(loaded, spec.name, spec.dtype, analytic[spec.name]) for spec in settings.layout.tensors)
    loss_seconds = seconds_per_loss(loaded)  # first: it warms up (and settles) the model's batched path
    return ProbeResult(
        loss=loss,
        loss_seconds=loss_seconds,
        evaluation=loaded.evaluation,
        loss_equivalents_per_index=_loss_equivalents(loaded, loss),
        seconds=time.perf_counter() - start,
        noise=tuple(max(level, spread) for level in noise),
        noise_sources=sources,
        noise_evaluations=evaluations + 1,
        scales=scales,
        spread=spread,
        off_theta=off_theta,
        rounding=rounding,
        coarse_gradient=coarse,
    )


def _coarser(loaded: Loaded, name: str, dtype: str, gradient: np.ndarray) -> str:
    """The dtype of ``model.grad``'s array for tensor ``name`` where it is coarser than the dtype the tensor is judged
    in (float32 for float64 parameters, or under `precision: float64`), else "". Its own rounding, about 6e-8 of each
    value, is about float64's whole tolerance: a correct gradient can fail (review 67: a float32 nnfs network's
    gradient for float64 parameters failed, told of "a solver tolerance or a small term left out"). A `gradient`
    given to the check is refused so at once (:func:`~pipeline.model.refuse_coarser_gradient`)."""
    judged = np.dtype(np.float64 if loaded.settings.promote else dtype)
    mine = np.asarray(gradient).dtype
    if loaded.gradient is not None or mine.kind != "f" or judged.kind != "f":
        return ""
    if np.finfo(mine).eps > np.finfo(judged).eps:
        return mine.name
    if judged != np.float64 or mine != np.float64:
        return ""
    # float64 arrays of float32 numbers: computed in float32 and cast back (review 67's case). Most values of a
    # float64 computation take more than float32's 24 significant bits; most of a float32 one's more than 12 (not
    # small integers or halves, which a float64 gradient of integer data is made of).
    values = np.asarray(gradient).reshape(-1)[:COARSE_SAMPLE]
    values = values[np.isfinite(values) & (values != 0)]
    if values.size < COARSE_VALUES or np.any(values.astype(np.float32) != values):
        return ""
    fraction = np.frexp(values)[0] * 2.0**12
    return "float32 values" if 2 * np.count_nonzero(fraction != np.round(fraction)) >= values.size else ""


#: :func:`_coarser` reads at most this many of a gradient's values, and decides on no fewer non-zero ones.
COARSE_SAMPLE, COARSE_VALUES = 100_000, 8


def _root_mean_square(values: np.ndarray) -> float:
    """``sqrt(mean(values²))`` in float64, piece by piece: no float64 copy of a float32 gradient."""
    flat = values.reshape(-1)
    if not flat.size:
        return 0.0
    with np.errstate(over="ignore"):  # a gradient beyond 1e154: its scale is inf
        total = math.fsum(float(np.square(flat[at], dtype=np.float64).sum()) for at in pieces(flat.size))
    return math.sqrt(total / flat.size)


def _perturbed_at_theta(loaded: Loaded, loss: float) -> float:
    """How far the model's own batched path (``perturbed_losses``) puts the loss at θ from ``loss``, over
    every tensor (each element 0 set to its own value): 0 without one.

    Its losses are differenced against ``loss`` (the one-sided slopes), so the two must agree to rounding;
    the gap counts as the loss's noise. More than :data:`NONDETERMINISM_ULPS` rounding units is a model error.
    Each tensor's first call also settles how the model evaluates it (what the report says).
    """
    if not loaded.perturbs:
        return 0.0
    widest = 0.0
    for spec in loaded.settings.layout.tensors:
        if not spec.size:
            continue
        here = loaded.evaluated[spec.name].reshape(-1)[:1].reshape(1, 1)
        where = f"perturbed_losses at θ (tensor {spec.name})"
        value = float(call_model(where, loaded.perturbed_losses, spec.name, np.zeros(1, dtype=np.int64), here)[0, 0])
        gap = abs(value - loss)
        if not gap <= NONDETERMINISM_ULPS * _eps(loaded.settings) * max(abs(loss), np.finfo(np.float64).tiny):
            raise _not_the_same_function(where, value, loss)
        widest = max(widest, gap)
    return widest


def _batch_at_theta(loaded: Loaded, loss: float, noise: tuple[float, ...], sources: tuple[str, ...]) -> float:
    """How far the model's ``loss_batch`` puts the loss at θ from ``loss`` (two rows at θ: a model may squeeze a
    batch of one); 0 without one. The shards difference its losses and the noise was measured on ``loss``, so the
    gap counts as noise. Where every tensor's noise was measured, a gap more than :data:`NONDETERMINISM_ULPS`
    times the largest of them (and the loss's rounding unit) is a model error: a ``loss_batch`` computing in
    float32 where ``loss`` computes in float64 made a correct gradient fail. Against the measured noise, not the
    loss's size, and only where it was measured: a loss that cancels (a fit near exact) rounds far more than its
    size's unit, and the probe may see no noise at all (it then stays a noise figure)."""
    if not loaded.batched:
        return 0.0
    at, here = np.zeros(1, dtype=np.int64), np.repeat(loaded.theta[:1], 2).reshape(1, 2)
    rows = call_model("loss_batch at θ", batched_stencil_losses, loaded.loss_batch, loaded.params, at, here)
    value = float(rows[0, np.argmax(np.abs(rows[0] - loss))])
    gap = abs(value - loss)
    measured = all(source.startswith("measured") or source == UNMOVED for source in sources)
    floor = max(_eps(loaded.settings) * abs(loss), *noise, np.finfo(np.float64).tiny)
    if measured and not gap <= NONDETERMINISM_ULPS * floor:
        raise _not_the_same_function(
            "loss_batch at θ", value, loss, f", more than {NONDETERMINISM_ULPS} times the loss's noise"
        )
    return gap


def _not_the_same_function(where: str, value: float, loss: float, beyond: str = "") -> ModelError:
    """The error for a batched path whose loss at θ is not the model's ``loss`` (``beyond``: by what bound)."""
    return ModelError(
        f"Model {where} gave {value!r} where its loss gave {loss!r} (a gap of "
        f"{abs(value - loss) / max(abs(loss), 1e-300):.3g} relative{beyond}): the batched path must compute the "
        "same function."
    )


#: Two evaluations at θ may differ by this many units of rounding (summation order in a
#: threaded reduction); more is randomness.
NONDETERMINISM_ULPS = 64


def _eps(settings: Settings) -> float:
    """The machine epsilon of the coarsest parameter dtype the loss is evaluated in."""
    if settings.promote or settings.scheme == "complex-step":
        return float(np.finfo(np.float64).eps)
    return max(float(np.finfo(np.dtype(spec.dtype)).eps) for spec in settings.layout.tensors)


def _why_the_loss_changed(loaded: Loaded, before: float, after: float) -> str:
    """The message for a loss at θ that changed between two evaluations with the gradient computed between them:
    randomness where a third evaluation differs again; else the model's ``grad`` changing what the loss reads (the
    arrays it was given, named where running it again changes them: an LSTM step's ``dnext_c += ...`` on an array of
    the data, review 87; or state of its own), which "randomness" would misname."""
    spread = abs(after - before)
    third = _loss_value(loaded, "at θ")
    if third != after:
        return (
            f"Model loss is not deterministic: two evaluations at θ gave {before!r} and {after!r} "
            f"(spread {spread:.3g}, {spread / max(abs(before), 1e-300):.3g} relative). Dropout or other randomness "
            "makes gradient checking meaningless; fix the random state inside the loss (a torch module in training "
            "mode: module.eval() turns its dropout off) to check such a model."
        )
    arrays = {
        **{f"params['{k}']": v for k, v in loaded.params.items()},
        **{f"data['{k}']": v for k, v in loaded.data.items()},
    }
    digests = {name: _digest(array) for name, array in arrays.items()}
    call_model("grad at θ", loaded.model.grad, loaded.params, loaded.data)
    changed = [name for name, array in arrays.items() if _digest(array) != digests[name]]
    what = (
        f"modifies the arrays it is given in place ({', '.join(changed)})"
        if changed
        else "changes state the loss reads"
    )
    return (
        f"Model grad {what}: the loss at θ was {before!r} before grad ran and {after!r} after. grad must leave its "
        "inputs as they were; copy an array before updating it (`x = x + ...`, not `x += ...`)."
    )


def _digest(array: object) -> bytes:
    """A fingerprint of an array's values (its bytes), or of an object that is not an array (its repr)."""
    if isinstance(array, np.ndarray) and not array.dtype.hasobject:
        return hashlib.blake2b(np.ascontiguousarray(array).view(np.uint8).reshape(-1).data).digest()
    return hashlib.blake2b(repr(array).encode()).digest()


def _loss_value(loaded: Loaded, where: str) -> float:
    """The loss at the current parameters, checked to be a finite real scalar (its real part for complex-step)."""
    value = call_model(f"loss {where}", loaded.loss)
    if loaded.settings.scheme == "complex-step":
        if not isinstance(value, (complex, np.complexfloating)) and not np.iscomplexobj(value):
            raise ModelError(
                "scheme complex-step needs a loss computed in complex arithmetic: given complex parameters, "
                f"the model's loss returned {type(value).__name__}. Declare complex support or choose another scheme."
            )
        value = np.real(value)
    return as_loss_value(value, where)


def _noise(
    loaded: Loaded, loss: float, reference: Float64Copy | None
) -> tuple[tuple[float, ...], tuple[str, ...], int]:
    """The loss's evaluation noise along each tensor, where each figure came from, and the losses it cost.

    Per tensor, Moré and Wild's ECNoise on 9 losses at ``θ + j·δ·p`` along a seeded direction ``p``
    over some of its elements (:data:`NOISE_ELEMENTS`; scaled like them, set in place and restored
    exactly). A level is noise only if the same is measured at ``δ/16``: noise does not depend on
    the spacing, but a kink on the line (a ReLU, a max-pool tie) shows up as a level proportional
    to it; nor is one far above the bound a finer spacing's losses put on it (:func:`.fd.noise_ceiling`: a
    function saturating within the wider spacing), and where the line is smooth at every spacing, a finer one is
    tried. Such a level is set aside and another direction tried, over fewer elements; failing that, the smaller of
    those lines' level on one side of θ (:func:`_one_sided`: a kink at θ itself is crossed by every line through
    θ, not by either half) and the smallest level measured at a finer spacing is taken. Where nothing can be measured (the points too close or too far
    apart, a loss that fails off θ), one rounding unit of the loss. A float32 loss's level is at least its
    rounding error's against float64, at the first steps' scale (:func:`_against_float64`).
    """
    settings = loaded.settings
    names = settings.layout.names
    if settings.scheme == "complex-step":  # nothing cancels: rounding is all there is
        floor = _eps(settings) * abs(loss)
        return (floor,) * len(names), ("rounding of the loss (complex step)",) * len(names), 0
    levels, sources, evaluations = [], [], 0
    for number, spec in enumerate(settings.layout.tensors):
        level, source, cost = _tensor_noise(loaded, number, spec.name, settings.eps(spec.dtype), loss)
        if source != UNMOVED and reference is not None and settings.against_float64(spec.dtype):
            level, source, cost = _against_float64(loaded, reference, number, spec.name, (level, source, cost))
        levels.append(_floored(level, source, settings.eps(spec.dtype), loss))
        sources.append(source)
        evaluations += cost
    return tuple(levels), tuple(sources), evaluations


def measured_noise(loaded: Loaded, number: int) -> tuple[float, int]:
    """The loss's noise along tensor ``number`` as :func:`_noise` measures it (without a float64 reference), and
    the losses that took: for a run's float64 twin (:meth:`~.problem.Loaded.float64_twin`), whose loss cancels
    where the model's does."""
    spec = loaded.settings.layout.tensors[number]
    eps = loaded.settings.eps(spec.dtype)
    level, source, cost = _tensor_noise(loaded, number, spec.name, eps, loaded.settings.loss0)
    return _floored(level, source, eps, loaded.settings.loss0), cost


def _floored(level: float, source: str, eps: float, loss: float) -> float:
    """A tensor's noise level, at least one rounding unit of the loss in the tensor's own precision (``eps``);
    none where the loss does not depend on the tensor at all."""
    return level if source == UNMOVED else max(level, eps * abs(loss))


def _off_theta(loaded: Loaded) -> float:
    """The loss at a seeded point near θ: every tensor's first elements moved by ``EPS**(1/3)·max(1, |θ|)``
    times a seeded standard normal (an edit of the loss that vanishes at θ, a term λ·Σw with Σθ = 0, shows here). NaN
    where the loss fails or is not finite there."""
    moved = []
    for number, flat in enumerate(loaded.flat.values()):
        at = np.arange(min(NOISE_ELEMENTS[0], flat.size))
        original = flat[at].copy()
        v = np.random.default_rng([NOISE_SEED, number, 99]).standard_normal(at.size)
        step = _eps(loaded.settings) ** (1 / 3) * np.maximum(1.0, np.abs(original.real))
        flat[at] = (original + v * step).astype(flat.dtype)
        moved.append((flat, at, original))
    try:
        return float(np.real(loaded.loss()))
    except ModelExited:  # (a model's sys.exit is no failure to look past: it ends the check, exit 2)
        raise
    except Exception:  # a loss that fails off θ fails again in its shard, with the element named
        return math.nan
    finally:
        for flat, at, original in moved:
            flat[at] = original


def _tensor_noise(loaded: Loaded, number: int, name: str, eps: float, loss: float) -> tuple[float, str, int]:
    """:func:`_noise` for one tensor, whose values' machine epsilon is ``eps``, the loss at θ ``loss``: ``(level,
    source, losses evaluated)``."""
    flat = loaded.flat[name]
    # the lines along which the level shrank: the level at the finer spacing, the elements moved, the first spacing
    shrank: list[tuple[float, np.ndarray, np.ndarray]] = []
    evaluations = 0
    moved = False  # the loss moved along some direction tried
    quantum = 0.0  # the loss's step where it is a staircase along a line through θ (below)
    finest = tuple(s for s in NOISE_FINER if s * eps ** (1 / 3) >= NOISE_RESOLUTION * eps)  # in this dtype
    for attempt in range(len(NOISE_ELEMENTS)):
        at, p = _noise_direction(flat, number, attempt)
        unmoved = math.inf  # the finest spacing at which the loss did not move at all, the elements moved by many units
        steps: list[tuple[float, float]] = []  # the spacings at which it moved as a staircase, and its largest step
        still = True  # the loss has not moved at any spacing yet
        ceilings: dict[float, float] = {}  # each spacing's bound on the noise (:func:`.fd.noise_ceiling`)
        smooth = False  # the line was smooth at the finest of NOISE_SPACINGS: no order of its table was noise
        for spacing in NOISE_SPACINGS + finest + NOISE_QUANTISED * (attempt == 0):
            if spacing in NOISE_QUANTISED and not still:
                break
            step = spacing * eps ** (1 / 3) * p
            if spacing in finest:
                if not smooth:
                    continue
                # Powers of two, so that θ + j·step is exactly where it is meant to be: the floats' rounding of the
                # points, up to half a unit of each element, moves the loss by |g|·ulp(θ), an unevenness the check
                # does not suffer (it divides by the steps taken) and that a level this fine would take for noise
                # (an adversarial review: a steep element's 2e-5 widened every bar, and 3% bugs beside it passed)
                step = np.sign(step) * 2.0 ** np.round(np.log2(np.abs(step)))
            line = _noise_along(loaded, flat, at, step)
            coarse = line.level
            evaluations += line.cost
            if coarse == 0.0 and spacing * eps ** (1 / 3) >= NOISE_RESOLUTION * eps:
                unmoved = min(unmoved, spacing)
            elif line.staircase:
                # one step: a staircase's, or a threshold crossed once (review 106); a line 4x wider tells
                stairs = line if line.moves > 1 else _noise_along(loaded, flat, at, 4 * step)
                evaluations += 0 if stairs is line else stairs.cost
                if stairs.staircase and stairs.moves > 1:
                    steps.append((spacing, stairs.quantum))
            still &= coarse == 0.0
            moved |= coarse != 0.0
            smooth |= spacing == NOISE_SPACINGS[-1] and coarse is None and math.isfinite(line.bound)
            if coarse and coarse > _bound(ceilings, spacing):
                # Noise does not depend on the spacing: a level far above what a finer spacing's losses allow is the
                # function's own shape (a layer norm of spread 1e-3 on inputs of 1000, smooth at the first spacing and
                # saturating within the wider one, read as a level of 0.2 against a rounding of 1e-10: a correct
                # gradient failed). Not the other way: a finer spacing's level may be the floats' (float32
                # parameters moved by a few rounding units, irregularly), which the steps see too.
                coarse = None
            ceilings[spacing] = line.bound
            if not coarse:
                continue
            line = _noise_along(loaded, flat, at, step / 16)
            # moving in steps there, none of them smaller than the level: as if it did not move (a larger level is the
            # function's: a tanh 1e-4 of the first step wide, whose loss moves by one float32 unit at a time there)
            fine = 0.0 if line.stepped and coarse <= line.quantum else line.level
            evaluations += line.cost
            if fine and fine > _bound(ceilings, spacing / 16):
                fine = None
            ceilings[spacing / 16] = line.bound
            if fine is not None and fine >= coarse / 4:
                level = max(coarse, fine)
                if math.isfinite(level) and level > JUMP_NOISE * eps * abs(loss):  # no rounding of its dtype: a jump?
                    quiet, spent = _quiet_sides(loaded, flat, at, step, level)
                    evaluations += spent
                    if quiet is not None:
                        return quiet, JUMP, evaluations
                return level, FINER_SPACING if spacing in finest else "measured", evaluations
            if fine == 0.0:  # the loss does not move at the finer spacing: it is quantised at the coarse level
                return coarse, QUANTISED, evaluations
            if fine is not None:
                shrank.append((fine, at, step))
            break  # a level that shrinks with the spacing: a kink on this line; try another direction
        # a staircase: still at a spacing that moved the elements by many of their rounding units, in steps at a wider one
        quantum = max([quantum] + [size for spacing, size in steps if spacing > unmoved])
    # The loss moved along none of the lines tried (the first even 1e5 steps away): it does not depend on this tensor.
    # One still line decides nothing: it may miss the elements the loss depends on, or run along an invariance (review
    # 79: a softmax's 4 biases all moved alike; the second look then stepped one to where the loss stood still, at no
    # noise, and called its correct gradient wrong)
    if not moved:
        return 0.0, UNMOVED, evaluations
    if shrank:
        finer = min(fine for fine, _, _ in shrank)
        # A kink at θ itself (a ReLU at exactly 0, an L1 term at a zero weight) is crossed by every line through θ, but
        # not by those lines' halves on either side (the fewest elements' first: the fewest kinks off θ; the smaller
        # side's level: a feature off θ adds its own to one side's, and a jump beside θ passes for noise on that side
        # at every spacing: a guarded sqrt 3e-11 above its guard). Taken only where it is below the finer level.
        for _, at, step in reversed(shrank):
            sides = [_one_sided(loaded, flat, at, side * step) for side in (1, -1)]
            evaluations += sum(cost for _, cost in sides)
            one_sided = min((level for level, _ in sides if level is not None), default=math.inf)
            if one_sided < finer:
                return one_sided, ONE_SIDED, evaluations
        # a kink is the usual cause; rounding that grows with the parameters' size shrinks with the spacing too (a bias
        # the loss does not depend on, before a normalisation, in float32: held-out sweep 47)
        return (
            finer,
            "measured at a finer spacing (the level shrank with the spacing: a kink crossed the probe's line, or "
            "rounding that grows with the parameters)",
            evaluations,
        )
    # No level, but a staircase: its step is the loss's resolution, however far below it one rounding unit of the loss
    # is (review 105: InfoNCE at temperature 0.01, its loss 5e-14 the difference of terms near 100, stood still at the
    # first spacing and moved in steps of 2.4e-15 at a wider one; under a noise of 1e-29 every difference of exactly 0
    # at the first steps was "wrong"). Not a line that only moved in a step: a feature narrower than the spacing moves
    # so, smooth at the finer spacings (a tanh 1e-6 of the first step wide: 32 correct derivatives not verified)
    if quantum > 0.0:
        return quantum, QUANTISED, evaluations
    return 0.0, NOT_MEASURABLE, evaluations


def _bound(ceilings: dict[float, float], spacing: float) -> float:
    """The most a level measured at ``spacing`` may be and still be noise: :data:`NOISE_CEILING` times the least
    bound the losses at a finer spacing put on it (:func:`.fd.noise_ceiling`; ``ceilings`` by spacing)."""
    return NOISE_CEILING * min((bound for finer, bound in ceilings.items() if finer < spacing), default=math.inf)


def _noise_direction(flat: np.ndarray, number: int, attempt: int) -> tuple[np.ndarray, np.ndarray]:
    """Tensor ``number``'s ``attempt``-th noise direction: which of its elements (:data:`NOISE_ELEMENTS`)
    and, per element, a seeded sign times ``max(1, |θ|)`` (the elements move like their steps)."""
    rng = np.random.default_rng([NOISE_SEED, number, attempt])
    at = rng.choice(flat.size, size=min(NOISE_ELEMENTS[attempt], flat.size), replace=False)
    return at, rng.choice([-1.0, 1.0], size=at.size) * np.maximum(1.0, np.abs(flat[at].real))


def _analytic_rounding(
    loaded: Loaded, reference: Float64Copy | None, analytic: dict[str, np.ndarray]
) -> tuple[float, ...]:
    """Per tensor, the largest difference between the model's float32 analytic gradient and the same
    model's in float64 at the same parameter values (:class:`Float64Copy`); 0 where the tensor is not
    float32, there is no reference, the gradient was given to the check (not the model's own computation), or
    the model cannot compute its gradient so. The report shows it beside
    a wrong tensor it could explain: a layer norm of float32 inputs on a large offset (``X·W + 1000``)
    rounds its normalised values to about 1% of their spread, otherwise in torch's backward pass than in its
    forward pass, and its correct gradient is then 0.4% off the derivative of the float32 loss. It decides
    nothing: code that computes otherwise by dtype (a bug only in a float32 path, an ``eps`` clip of the
    dtype's own EPS) gives the same figure, and a wrong formula, as wrong in float64, does not show in it.
    """
    tensors = loaded.settings.layout.tensors
    none = (0.0,) * len(tensors)
    if reference is None or loaded.gradient is not None:
        # a gradient given to the check is not the model's float32 computation: against the model's float64 gradient
        # it would measure its own error (held-out sweep 47 saw a planted 0.1% reported as rounding), and the model's
        # own grad in float32 need not be the code that made it (review 50)
        return none
    try:
        exact = call_model("grad in float64", reference.model.grad, reference.params, reference.data)
        widest = []
        for spec in tensors:
            if not loaded.settings.against_float64(spec.dtype):
                widest.append(0.0)
                continue
            mine = np.asarray(analytic[spec.name], dtype=np.float64)
            gap = np.abs(mine - np.asarray(exact[spec.name], dtype=np.float64).reshape(mine.shape))
            widest.append(float(gap.max(initial=0.0)) if np.all(np.isfinite(gap)) else 0.0)
    except ModelExited:  # (a model's sys.exit is no failure to look past: it ends the check, exit 2)
        raise
    except Exception:  # a model that takes no float64 parameters: nothing measured
        return none
    return tuple(widest)


def _against_float64(
    loaded: Loaded, reference: Float64Copy, number: int, name: str, own: tuple[float, str, int]
) -> tuple[float, str, int]:
    """A float32 tensor's ``(level, source, losses evaluated)``, or the noise of the loss's rounding error
    itself where that is higher: ECNoise on ``J(θ_j) − J64(θ_j)`` at 9 points of the tensor's first noise
    direction, half the first step apart (:data:`REFERENCE_SPACINGS`), ``J64`` the same loss with the
    same parameter values in float64.

    A loss evaluated in float32 can move in steps that its noise at the probe's spacings does not show and
    a finite difference's steps cross: ``-log(1 - a)`` with ``a`` within a few hundred float32 units of 1
    moves by about 1% of that term each time ``a`` moves by one, so that J(θ ± h) is off by as much (an
    element 2.45x off a correct derivative, at finer steps that saw only the flat of one such step). Its
    error against float64 holds neither kinks nor curvature (``J64`` has them too), only the rounding the
    first pass's differences will see. It is taken only where the float32 loss is itself that rough at those
    points: where it is smooth, the float64 loss is the one moving in steps (a guard like ``log(1 - a +
    1e-15)`` with ``a`` rounded to 1 in float32, near 1 in float64). ``J64`` takes the float32 data in
    float64 too (the same values) and is a copy of the model (a buffer it casts, a cache, stays there).
    Where the model cannot evaluate its loss so (or does so in float32 anyway), cannot be copied, or its
    parameters and float32 data are large (a float64 copy of each is made), the level stands.
    """
    settings = loaded.settings
    flat, wide = loaded.flat[name], reference.params[name].reshape(-1)
    level, source, cost = own
    step = float(step_sizes(np.ones(1, flat.dtype), settings.scheme, settings.epsilon)[0])  # a unit element's
    at, direction = _noise_direction(flat, number, 0)
    original = flat[at].copy()
    for spacing in REFERENCE_SPACINGS:  # finer where a coarse point's loss is not finite in float32
        values, precise = [], []
        try:
            for j in range(-4, 5):
                flat[at] = (original + j * spacing * step * direction).astype(flat.dtype)
                wide[at] = flat[at]
                values.append(float(np.real(loaded.loss())))
                exact = call_model("loss in float64", reference.model.loss, reference.params, reference.data)
                precise.append(float(np.real(exact)))
        except ModelExited:  # (a model's sys.exit is no failure to look past: it ends the check, exit 2)
            raise
        except Exception:  # a model that takes no float64 parameters, or fails off θ (its shard names it)
            return level, source, cost + len(values) + len(precise)
        finally:
            flat[at] = original
            wide[at] = original
        cost += 2 * len(values)
        if np.all(np.isfinite(values + precise)) and close_enough(values):
            break
    else:
        return level, source, cost
    errors = [value - exact for value, exact in zip(values, precise, strict=True)]
    rounding = noise_level(errors, errors=True) if np.ptp(errors) > 0 else None
    if rounding is None or rounding <= level:
        return level, source, cost
    # ...and it is the float32 loss's only where the float32 loss itself is that rough at those points: one
    # that saturates (a sigmoid rounded to 1 beside a guard of float32's EPS) is flat where the float64 one,
    # with its own guard, moves in steps of its own; the difference is then the float64 loss's noise
    rough = noise_level(values)
    if rough is None or rough < rounding / 4:
        return level, source, cost
    return rounding, "the loss's rounding: its error against the same loss in float64", cost


#: The spacings of :func:`_against_float64`'s points, in first steps: the first at which the float32 loss is
#: finite at all 9 and varies by at most 10% (a rounding error grows with the loss: a loss that overflows, or
#: grows tenfold, far from θ is measured nearer).
REFERENCE_SPACINGS = (1 / 2, 1 / 8, 1 / 32)


def _one_sided(loaded: Loaded, flat: np.ndarray, at: np.ndarray, step: np.ndarray) -> tuple[float | None, int]:
    """ECNoise's level on one side of θ, at ``θ + j·step``, j = 0..8, where the same level is measured at
    ``step/16`` and ``step/256`` (as :func:`_tensor_noise` asks of a line through θ, once more), and the losses that
    took; None where it is not. From ``step`` itself, the spacing at which the line through θ saw the kink: a level
    that agrees only at finer spacings may be noise with structure coarser than they are (a float32 term inside a
    float64 loss, a table lookup), which the check's steps see and finer spacings resolve as smooth (an adversarial
    review: correct gradients failed on the rounding taken there). A narrow feature's tail beside θ, a jump at the
    coarse spacings, is smooth at the fine ones: it does not agree at all three."""
    levels: list[float] = []
    cost = 0
    for k in range(ONE_SIDED_SPACINGS):
        line = _noise_along(loaded, flat, at, step / 16**k, one_sided=True)
        cost += line.cost
        if not line.level:  # not measurable, or the loss did not move: finer spacings will not tell either
            return None, cost
        levels.append(line.level)
    return (max(levels), cost) if max(levels) <= 4 * min(levels) else (None, cost)


def _quiet_sides(
    loaded: Loaded, flat: np.ndarray, at: np.ndarray, step: np.ndarray, level: float
) -> tuple[float | None, int]:
    """Where a line through θ measured the noise ``level`` at ``step``: the larger of its two halves' levels (or
    bounds) at that step, where both are :data:`JUMP_QUIET` times below it (the line's "noise" is a jump at θ itself:
    a tie in a routing, a sort or an argmax, every line through θ crosses it), else None; and the losses that took."""
    found, cost = [], 0
    for side in (1, -1):  # (θ itself excluded: its loss is one side's, and the jump lies between it and the other's)
        line = _noise_along(loaded, flat, at, side * step, one_sided=True, first=1)
        cost += line.cost
        quiet = line.level if line.level is not None else line.bound
        if not quiet * JUMP_QUIET <= level:
            return None, cost
        found.append(quiet)
    return max(found), cost


class _Line(NamedTuple):
    """What 9 losses along a line told of the loss's noise: ECNoise's ``level`` (None where it cannot tell, or the
    loss fails or is not finite; 0 where the loss did not move at all), how many losses that took, the ``bound``
    they put on the noise (:func:`.fd.noise_ceiling`; infinite where they put none), and whether the loss moved in
    steps coarser than the spacing (``stepped``: ECNoise's points too close), and then its largest step
    (``quantum``), and whether every step is a whole multiple of the smallest (``staircase``: a rounded loss's steps
    are whole multiples of its rounding unit; a loss flat up to a kink then moves by steps of any size), and how many
    steps it moved by (``moves``)."""

    level: float | None
    cost: int
    bound: float = math.inf
    stepped: bool = False
    quantum: float = 0.0
    staircase: bool = False
    moves: int = 0


def _noise_along(
    loaded: Loaded, flat: np.ndarray, at: np.ndarray, step: np.ndarray, one_sided: bool = False, first: int = 0
) -> _Line:
    """The losses at ``θ + j·step`` (``step`` over the elements ``at`` of ``flat``), j = -4..4 (0..8 ``one_sided``, from
    ``θ + first·step`` rounded to the parameters' dtype), as a :class:`_Line`."""
    original = flat[at].copy()
    origin = (original + first * step).astype(flat.dtype)
    values: list[float] = []
    try:
        for j in range(0, 9) if one_sided else range(-4, 5):
            flat[at] = (origin + j * step).astype(flat.dtype)
            values.append(float(np.real(loaded.loss())))
    except ModelExited:  # (a model's sys.exit is no failure to look past: it ends the check, exit 2)
        raise
    except Exception:  # a loss that fails off θ fails again in its shard, with the element named
        return _Line(None, len(values) + 1)
    finally:
        flat[at] = original
    if not all(np.isfinite(values)):
        return _Line(None, len(values))
    if np.ptp(values) == 0:  # the loss did not move at all: 0, which no noise level can be
        return _Line(0.0, len(values))
    stepped = too_close(values)
    moves = np.abs(np.diff(values))
    moves = moves[moves > 0]
    quantum = float(np.max(moves)) if stepped else 0.0
    multiples = moves / np.min(moves) if moves.size else moves
    staircase = stepped and bool(np.all(np.abs(multiples - np.round(multiples)) <= 1e-9 * multiples))
    return _Line(noise_level(values), len(values), noise_ceiling(values), stepped, quantum, staircase, moves.size)


#: The noise's source where the loss did not move at any spacing: no noise, and no rounding floor (an
#: element whose losses are all J(θ) exactly has a numeric gradient of exactly 0, to be matched exactly).
UNMOVED = "none: the loss does not depend on this tensor"
NOT_MEASURABLE = "not measurable: one rounding unit of the loss"
QUANTISED = "measured (the loss moves in steps: quantised)"
#: The noise's source where every line through θ crossed a kink but its half on one side did not: a kink at θ.
ONE_SIDED = "measured on one side of θ (every line through θ crossed a kink: a kink at θ itself)"
#: ...at this many spacings, each 16x finer than the one before, the first the spacing at which the line through θ
#: saw the kink.
ONE_SIDED_SPACINGS = 3
#: How many elements of a tensor each noise direction moves, in turn until one is free of kinks
#: (fewer elements, fewer kinks to cross; a kink at θ itself is crossed by every line through it)...
NOISE_ELEMENTS = (256, 16, 1)
#: ...and the spacings tried, in units of ``EPS**(1/3)`` (times ``max(1, |θ|)``), first to last...
NOISE_SPACINGS = (0.1, 10.0, 1e-3)
#: ...and finer ones, only where the line was smooth at the finest of those (a loss near 0 at θ varies by more than
#: ECNoise's 10% of it at every one of them: a layer norm's, 0.007; before, one rounding unit of it was taken)...
NOISE_FINER = (1e-5,)
#: ...if they move the parameters by this many of their rounding units at least (float64: 1e-5 is 3e5 of them; in
#: float32 it is less than one, and the losses are the parameters' quantisation, not the loss's noise)
NOISE_RESOLUTION = 2**10
#: The noise's source where each half of the line through θ is far quieter than the whole (:func:`_quiet_sides`)...
JUMP = "measured on each side of θ (every line through θ crossed a jump, or kinks closer to θ than its spacing)"
#: ...by this factor; asked only of a level this many rounding units of the loss in the tensor's dtype (review 105:
#: a mixture of experts whose top-2 routing of one token ties at θ measured its jump, 0.025, as noise, and planted
#: errors at its tied elements, a sign flipped, 11 times the value, passed as inconclusive beside verified ones).
JUMP_QUIET = 64.0
JUMP_NOISE = 2.0**20
#: The noise's source where it was measured only at a spacing finer than the probe's.
FINER_SPACING = "measured at a finer spacing (the loss was smooth at the probe's own: near 0, or steep)"
#: A level is noise only if at most this many times every finer spacing's bound on it (:func:`.fd.noise_ceiling`:
#: noise of level σ puts each of ECNoise's first four orders near σ; of 20,000 pairs of lines of pure noise, 4 had a
#: level 16 times the other's bound, none 32 times)...
NOISE_CEILING = 32
#: ...and, where the loss did not move at all at those, far wider ones: a loss rounded to steps far
#: coarser than the tensor's contribution (a float32 sum of terms near 1e6) moves only there, by its
#: quantum, which is then its noise; a loss that does not move even there does not depend on the tensor.
NOISE_QUANTISED = (1e3, 1e5)
#: The noise directions' seed: the same directions every run, so the same check is repeatable.
NOISE_SEED = 20261128


def _loss_equivalents(loaded: Loaded, loss: float) -> float:
    """Loss evaluations an index costs: the scheme's stencil, or for a staged model the stencil
    × the share of the stage costs (timed here at θ) that perturbing its tensor re-evaluates."""
    width = float(len(STENCILS[loaded.settings.scheme]))
    if not loaded.stages:
        return width
    staged = as_loss_value(call_model("stages at θ", loaded.loss_from, 0), "from its stages at θ")
    if abs(staged - loss) > 1e-12 * max(1.0, abs(loss)):
        raise ModelError(
            f"Model stages evaluate the loss at θ to {staged!r}, but loss gives {loss!r}; they must agree."
        )
    costs = [
        fastest(
            functools.partial(
                call_model, f"stage {s} at θ", forward, loaded.stage_inputs[s], loaded.params, loaded.data
            )
        )
        for s, (_, forward) in enumerate(loaded.stages)
    ]
    share_from = [sum(costs[s:]) / sum(costs) for s in range(len(costs))]
    layout = loaded.settings.layout
    return width * sum(spec.size * share_from[loaded.stage_of[spec.name]] for spec in layout.tensors) / layout.n_params
