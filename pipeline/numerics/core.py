"""The numerics core: a check's steps on loaded arrays, the same in every executor.

Everything here takes a :class:`Loaded` problem (a model, its parameters and data
as numpy arrays, and the run's :class:`Settings`) and returns plain results. It
imports no Dask and no Zarr: the in-process executor calls these functions in the
caller's process, the Dask executor calls the same functions inside tasks, and so
their results are bit-identical. Results are written to an *output*: any object
whose arrays (``analytic``, ``numeric``, ``nonfinite``, ``allowed``, ``status``,
``step`` over the index space, ``done`` per shard) take numpy slicing, such as
Zarr arrays or plain numpy arrays.

Entries are perturbed in place and restored exactly, so a :class:`Loaded` must not
be shared between threads that evaluate at once.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..errors import GradcheckError, ModelError, StoreError
from ..model import Model, as_loss_value, check_gradient
from .fd import STENCILS, Estimate, batched_stencil_losses, estimate, noise_level, points, stencil_losses, step_sizes
from .layout import Layout, TensorSpec
from .plan import Shard, Slots, slots_for
from .reduce import DirectionResult, ShardResult, summarize_shard
from .refine import second_look, taylor
from .tolerance import (
    CONVERGED,
    UNCHECKED,
    Tolerance,
    default_tolerance,
    inconclusive,
    judge,
    suspects,
)

__all__ = [
    "Loaded",
    "Output",
    "ProbeResult",
    "Settings",
    "call_model",
    "check_direction",
    "probe",
    "resume_shard",
    "run_shard",
    "shard_intact",
    "shard_seal",
    "write_analytic",
]


@dataclass(frozen=True, slots=True)
class Settings:
    """What the numerics need to know of a run, as plain data.

    ``loss0``, ``noise`` (per tensor) and ``scales`` (each tensor's root-mean-square analytic gradient) are
    filled in from the probe before the shards run, and
    ``identity`` (the run's, sealed into every shard's completion record) once it is known.
    ``tolerance`` holds the config's overrides of the per-dtype defaults, as pairs; ``judged`` is False when the
    config turned per-element verdicts off. ``sample`` is ``(k, seed)`` for
    ``k`` random elements per tensor, None for all. ``promote`` checks float32
    parameters in float64. ``second_look`` evaluates suspect elements again (:mod:`.refine`);
    ``taylor`` checks the random directions by the Taylor test instead of a difference.
    """

    layout: Layout
    epsilon: float | None
    worst: int = 10
    scheme: str = "richardson"
    tolerance: tuple[tuple[str, float], ...] = ()
    judged: bool = True
    sample: tuple[int, int] | None = None
    promote: bool = False
    second_look: bool = True
    taylor: bool = False
    loss0: float = math.nan
    noise: tuple[float, ...] = ()
    scales: tuple[float, ...] = ()
    identity: str = ""

    def tolerance_for(self, dtype: str) -> Tolerance:
        """The tolerance for tensors of ``dtype``: the default for it and the scheme, with the config's overrides."""
        default = default_tolerance("float64" if self.promote else dtype, self.scheme)
        return dataclasses.replace(default, **dict(self.tolerance))

    def noise_of(self, number: int) -> float:
        """The loss's noise along tensor ``number`` (NaN before the probe has measured it)."""
        return self.noise[number] if self.noise else math.nan

    def scale_of(self, number: int) -> float:
        """Tensor ``number``'s root-mean-square analytic gradient (0 before the probe has computed it)."""
        return self.scales[number] if self.scales else 0.0

    def eps(self, dtype: str) -> float:
        """The machine epsilon the loss is evaluated in for tensors of ``dtype``."""
        return float(np.finfo(np.float64 if self.promote else np.dtype(dtype)).eps)


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
    evaluation: str = ""  # how the losses near θ are evaluated (:attr:`Loaded.evaluation`)


class Output(Protocol):
    """Where results go: arrays over the index space (and ``done`` per shard) that take numpy slicing."""

    analytic: Any
    numeric: Any
    nonfinite: Any
    allowed: Any
    status: Any
    step: Any
    done: Any

    @property
    def per_index(self) -> tuple[Any, ...]:
        """The per-index arrays in the order :func:`~.reduce.summarize_shard` takes them."""
        ...


class Loaded:
    """A run's model, parameters (perturbed in place, restored exactly) and data, loaded once.

    Parameters
    ----------
    settings : Settings
    model : object
        Speaks the model protocol (see :mod:`pipeline.model`).
    params : dict of str to ndarray
        Writable, C-contiguous arrays in flattening order, owned by this object.
    data : dict of str to ndarray
    gradient : callable, optional
        Returns a precomputed analytic gradient (float64 arrays keyed like the params);
        without it ``model.grad`` is called.
    params_source : str
        How messages name where the parameters came from.
    """

    def __init__(
        self,
        settings: Settings,
        model: Model,
        params: dict[str, np.ndarray],
        data: dict[str, np.ndarray],
        gradient: Callable[[], dict[str, np.ndarray]] | None = None,
        params_source: str = "`params`",
    ) -> None:
        self.settings = settings
        self.model = model
        self.params = params
        self.gradient = gradient
        self.params_source = params_source
        if settings.promote:  # re-check a float32 model in float64
            self.params = {name: array.astype(np.float64) for name, array in self.params.items()}
        self.data = data
        # What the loss is evaluated on: the parameters, or a complex copy for complex-step.
        self.evaluated = self.params
        if settings.scheme == "complex-step":
            self.evaluated = {name: array.astype(np.complex128) for name, array in self.params.items()}
        # reshape(-1) of a C-contiguous array is a view: writes reach self.evaluated.
        self.flat = {name: array.reshape(-1) for name, array in self.evaluated.items()}
        self.row_bytes = max(1, sum(array.nbytes for array in self.params.values()))  # one parameter copy
        self._theta: np.ndarray | None = None
        self.number = {name: k for k, name in enumerate(settings.layout.names)}  # each tensor's place in the layout
        self.analytic: dict[str, np.ndarray] | None = None
        self.stages: list[tuple[tuple[str, ...], Callable[..., Any]]] = []
        self.stage_of: dict[str, int] = {}
        self.stage_inputs: list[Any] = []
        if getattr(self.model, "stages", None) is not None and settings.scheme != "complex-step":
            self._prepare_stages()

    def _prepare_stages(self) -> None:
        """Check the model's stages and compute every stage's input at θ, now, before any perturbation."""
        stages = call_model("stages", lambda: list(self.model.stages))  # type: ignore[attr-defined]
        for s, stage in enumerate(stages):
            if not (isinstance(stage, tuple) and len(stage) == 2 and callable(stage[1])):
                raise ModelError(
                    f"Model stage {s} must be (tensor names, forward(carry, params, data)). Got {stage!r} instead."
                )
            for name in stage[0]:
                if name in self.stage_of:
                    raise ModelError(f"Model stages {self.stage_of[name]} and {s} both own tensor '{name}'.")
                self.stage_of[name] = s
        mismatch = self.settings.layout.name_mismatch(self.stage_of)
        if mismatch:
            raise ModelError(f"Model stages must own every parameter tensor once: {mismatch}.")
        self.stages = [(tuple(names), forward) for names, forward in stages]
        carry: Any = None
        for s, (_, forward) in enumerate(self.stages[:-1]):
            self.stage_inputs.append(carry)
            carry = call_model(f"stage {s} at θ", forward, carry, self.params, self.data)
        self.stage_inputs.append(carry)

    def loss_from(self, stage: int) -> Any:
        """The loss, re-evaluating only stages ``stage`` on from their input at θ."""
        carry = self.stage_inputs[stage]
        for _, forward in self.stages[stage:]:
            carry = forward(carry, self.params, self.data)
        return carry

    def loss(self) -> Any:
        return self.model.loss(self.evaluated, self.data)

    @property
    def slots(self) -> Slots:
        """Where this run keeps each checked element's results (:class:`~.plan.Slots`)."""
        return slots_for(self.settings.layout, self.settings.sample)

    def perturbed_losses(self, name: str, positions: np.ndarray, values: np.ndarray) -> np.ndarray:
        """The model's optional ``perturbed_losses``: tensor ``name``'s element ``positions[j]`` set to each
        ``values[j, s]`` in turn, the rest at θ; one loss per value, checked to be finite float64 of that shape."""
        method = getattr(self.model, "perturbed_losses")  # noqa: B009  (optional: not in the protocol)
        losses = np.asarray(method(self.evaluated, self.data, name, positions, values), dtype=np.float64)
        if losses.shape != values.shape:
            raise ValueError(
                f"perturbed_losses must return one loss per value, shape {values.shape}. Got {losses.shape} instead."
            )
        return losses

    @property
    def perturbs(self) -> bool:
        """Whether the model evaluates a tensor's perturbations itself (``perturbed_losses``: a framework
        adapter's batched path) rather than one ``loss`` call each; not when staged or complex-step."""
        return (
            callable(getattr(self.model, "perturbed_losses", None))
            and not self.stages
            and self.settings.scheme != "complex-step"
        )

    @property
    def evaluation(self) -> str:
        """How the losses near θ are evaluated, as the report says it."""
        if self.stages:
            return f"staged: only the stages from the perturbed tensor's on ({len(self.stages)} stages)"
        if self.perturbs:
            said = getattr(self.model, "evaluation", None)
            return said if isinstance(said, str) and said else "the model's perturbed_losses"
        if self.batched:
            return f"batched: loss_batch, up to {self.batch_rows(1 << 30)} parameter sets a call"
        return PLAIN_EVALUATION

    def loss_batch(self, batch: dict[str, np.ndarray]) -> Any:
        """The model's optional batched loss (every tensor with a leading axis of K)."""
        return getattr(self.model, "loss_batch")(batch, self.data)  # noqa: B009  (optional: not in the protocol)

    @property
    def theta(self) -> np.ndarray:
        """The parameters flattened and concatenated (made on first use: only batches need it)."""
        if self._theta is None:
            self._theta = np.concatenate([array.reshape(-1) for array in self.params.values()])
        return self._theta

    @property
    def batched(self) -> bool:
        """Whether to use the model's ``loss_batch(params_batch, data)``: it offers one, it is not
        staged (stages cost the fewest evaluations; batches the least overhead per evaluation), and
        batches of at least ``MIN_BATCH_ROWS`` parameter copies fit in ``BATCH_BYTES``."""
        return (
            callable(getattr(self.model, "loss_batch", None))
            and not self.stages
            and not self.perturbs
            and self.settings.scheme != "complex-step"
            and MIN_BATCH_ROWS * self.row_bytes <= BATCH_BYTES
        )

    def batch_rows(self, wanted: int) -> int:
        """How many perturbed parameter sets one batch may hold: each row copies every tensor."""
        return max(2, min(wanted, BATCH_BYTES // self.row_bytes))

    def analytic_gradient(self) -> dict[str, np.ndarray]:
        """The analytic gradient per tensor (float64), from the given gradient or ``model.grad``.

        Computed once per run and kept only until it is written: it is the size of
        the parameters, and the shards read it back from the output.
        """
        if self.analytic is None:
            if self.gradient is not None:
                self.analytic = self.gradient()
            else:
                raw = call_model("grad at θ", self.model.grad, self.params, self.data)
                self.analytic = check_gradient(raw, self.settings.layout, "model.grad")
        return self.analytic


def call_model(what: str | Callable[[], str], fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn(*args)``, which calls the user's model; its exceptions become one-line model errors.

    ``what`` names the call in the message; it may be a function that makes the name, called only on
    an error (formatting costs as much as a small model's batch). The message names the file and line
    where the model raised; the error's ``detail`` holds the whole traceback as text (it survives
    pickling, so it comes back from a worker too).
    """
    try:
        return fn(*args)
    except GradcheckError:
        raise
    except Exception as e:
        named = what if isinstance(what, str) else what()
        raise ModelError(
            f"Model {named} raised {type(e).__name__}: {e}{_raised_at(e)}",
            detail="".join(traceback.format_exception(e)),
        ) from e


#: This package's folder: frames inside it are ours, not the model's.
_OURS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Installed libraries and the standard library: where a model's error may surface, but not where it is.
_LIBRARIES = tuple({os.path.dirname(os.__file__), *(p for p in sys.path if p.endswith("-packages"))})


def _raised_at(error: BaseException) -> str:
    """`` (at FILE:LINE)`` of the innermost frame of the model's own code where ``error`` was raised.

    The model's own code is any file outside this package and the installed libraries (numpy's
    frames are where a shape error surfaces, not where the bug is); failing that, any frame outside
    this package.
    """
    frames = [f for f in traceback.extract_tb(error.__traceback__) if not f.filename.startswith(_OURS)]
    own = [f for f in frames if not f.filename.startswith(_LIBRARIES)]
    candidates = own or frames
    return f" (at {candidates[-1].filename}:{candidates[-1].lineno})" if candidates else ""


#: A second look's leaps (:data:`.refine.LEAP`) stop at steps this many rounding units of the parameter.
LEAP_ROOM = 2.0**10


#: How a model that offers nothing but ``loss`` is evaluated near θ (as the report says it).
PLAIN_EVALUATION = "one loss call per perturbation"

#: The most memory one batch of perturbed parameter copies may take...
BATCH_BYTES = 64 * 2**20
#: ...and the fewest rows worth a batch: a model too large for that is evaluated plainly,
#: in place, whatever it offers (no allocation proportional to its size per index).
MIN_BATCH_ROWS = 4


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
        raise ModelError(
            f"Model loss is not deterministic: two evaluations at θ gave {loss!r} and {again!r} "
            f"(spread {spread:.3g}, {spread / max(abs(loss), 1e-300):.3g} relative). Dropout or other randomness "
            "makes gradient checking meaningless; fix the random state inside the loss to check such a model."
        )
    spread = max(spread, _perturbed_at_theta(loaded, loss))
    noise, sources, evaluations = _noise(loaded, loss)
    if all(source == UNMOVED for source in sources):
        raise ModelError(
            "Model loss does not change when any parameter does (the probe moved every tensor and the loss stayed "
            f"exactly {loss!r}): the check would compare zero with zero. Does the loss use the parameters it is given?"
        )
    off_theta = _off_theta(loaded)
    analytic = loaded.analytic_gradient()
    scales = tuple(_root_mean_square(analytic[spec.name]) for spec in settings.layout.tensors)
    loss_seconds = _time_loss(loaded)  # first: it warms up (and settles) the model's batched path
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
    )


def _root_mean_square(values: np.ndarray) -> float:
    """``sqrt(mean(values²))`` in float64, piece by piece: no float64 copy of a float32 gradient."""
    flat = values.reshape(-1)
    if not flat.size:
        return 0.0
    total = math.fsum(float(np.square(flat[at], dtype=np.float64).sum()) for at in _pieces(flat.size))
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
        value = float(
            call_model(
                f"perturbed_losses at θ (tensor {spec.name})",
                loaded.perturbed_losses,
                spec.name,
                np.zeros(1, dtype=np.int64),
                here,
            )[0, 0]
        )
        gap = abs(value - loss)
        if not gap <= NONDETERMINISM_ULPS * _eps(loaded.settings) * max(abs(loss), np.finfo(np.float64).tiny):
            raise ModelError(
                f"Model perturbed_losses at θ (tensor {spec.name}) gave {value!r} where its loss gave {loss!r} "
                f"(a gap of {gap / max(abs(loss), 1e-300):.3g} relative): the batched path must compute the same function."
            )
        widest = max(widest, gap)
    return widest


#: Two evaluations at θ may differ by this many units of rounding (summation order in a
#: threaded reduction); more is randomness.
NONDETERMINISM_ULPS = 64


def _eps(settings: Settings) -> float:
    """The machine epsilon of the coarsest parameter dtype the loss is evaluated in."""
    if settings.promote or settings.scheme == "complex-step":
        return float(np.finfo(np.float64).eps)
    return max(float(np.finfo(np.dtype(spec.dtype)).eps) for spec in settings.layout.tensors)


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


def _noise(loaded: Loaded, loss: float) -> tuple[tuple[float, ...], tuple[str, ...], int]:
    """The loss's evaluation noise along each tensor, where each figure came from, and the losses it cost.

    Per tensor, Moré and Wild's ECNoise on 9 losses at ``θ + j·δ·p`` along a seeded direction ``p``
    over some of its elements (:data:`NOISE_ELEMENTS`; scaled like them, set in place and restored
    exactly). A level is noise only if the same is measured at ``δ/16``: noise does not depend on
    the spacing, but a kink on the line (a ReLU, a max-pool tie) shows up as a level proportional
    to it. Such a level is set aside and another direction tried, over fewer elements; failing that,
    the smallest level measured at a finer spacing is taken. Where nothing can be measured (the points too close or too far
    apart, a loss that fails off θ), one rounding unit of the loss.
    """
    settings = loaded.settings
    names = settings.layout.names
    if settings.scheme == "complex-step":  # nothing cancels: rounding is all there is
        floor = _eps(settings) * abs(loss)
        return (floor,) * len(names), ("rounding of the loss (complex step)",) * len(names), 0
    levels, sources, evaluations = [], [], 0
    for number, spec in enumerate(settings.layout.tensors):
        level, source, cost = _tensor_noise(loaded, number, spec.name, settings.eps(spec.dtype))
        # one rounding unit of the loss at least, in the tensor's own precision; none where the loss
        # does not depend on the tensor at all
        levels.append(level if source == UNMOVED else max(level, settings.eps(spec.dtype) * abs(loss)))
        sources.append(source)
        evaluations += cost
    return tuple(levels), tuple(sources), evaluations


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
    except Exception:  # a loss that fails off θ fails again in its shard, with the element named
        return math.nan
    finally:
        for flat, at, original in moved:
            flat[at] = original


def _tensor_noise(loaded: Loaded, number: int, name: str, eps: float) -> tuple[float, str, int]:
    """:func:`_noise` for one tensor, whose values' machine epsilon is ``eps``: ``(level, source, losses
    evaluated)``."""
    flat = loaded.flat[name]
    finer: list[float] = []
    evaluations = 0
    moved = False  # the loss moved along some direction tried
    for attempt, elements in enumerate(NOISE_ELEMENTS):
        rng = np.random.default_rng([NOISE_SEED, number, attempt])
        at = rng.choice(flat.size, size=min(elements, flat.size), replace=False)
        p = rng.choice([-1.0, 1.0], size=at.size) * np.maximum(1.0, np.abs(flat[at].real))
        still = True  # the loss has not moved at any spacing yet
        for spacing in NOISE_SPACINGS + NOISE_QUANTISED * (attempt == 0):
            if spacing in NOISE_QUANTISED and not still:
                break
            coarse, cost = _noise_along(loaded, flat, at, spacing * eps ** (1 / 3) * p)
            evaluations += cost
            still &= coarse == 0.0
            moved |= coarse != 0.0
            if not coarse:
                continue
            fine, cost = _noise_along(loaded, flat, at, spacing * eps ** (1 / 3) / 16 * p)
            evaluations += cost
            if fine is not None and fine >= coarse / 4:
                return max(coarse, fine), "measured", evaluations
            if fine == 0.0:  # the loss does not move at the finer spacing: it is quantised at the coarse level
                return coarse, "measured (the loss moves in steps: quantised)", evaluations
            if fine is not None:
                finer.append(fine)
            break  # a level that shrinks with the spacing: a kink on this line; try another direction
        if still and not moved:  # the loss does not move even 1e5 steps away: it does not depend on this tensor
            return 0.0, UNMOVED, evaluations  # (a direction through a few of its elements may miss them all)
    if finer:
        return min(finer), "measured at a finer spacing (a kink crossed the probe's line)", evaluations
    return 0.0, "not measurable: one rounding unit of the loss", evaluations


def _noise_along(loaded: Loaded, flat: np.ndarray, at: np.ndarray, step: np.ndarray) -> tuple[float | None, int]:
    """ECNoise's level from the losses at ``θ + j·step`` (``step`` over the elements ``at`` of ``flat``),
    j = -4..4, and how many losses that took; None where it cannot tell, or the loss fails or is not finite;
    0 where the loss did not move at all."""
    original = flat[at].copy()
    values: list[float] = []
    try:
        for j in range(-4, 5):
            flat[at] = (original + j * step).astype(flat.dtype)
            values.append(float(np.real(loaded.loss())))
    except Exception:  # a loss that fails off θ fails again in its shard, with the element named
        return None, len(values) + 1
    finally:
        flat[at] = original
    if not all(np.isfinite(values)):
        return None, len(values)
    if np.ptp(values) == 0:  # the loss did not move at all: 0, which no noise level can be
        return 0.0, len(values)
    return noise_level(values), len(values)


#: The noise's source where the loss did not move at any spacing: no noise, and no rounding floor (an
#: element whose losses are all J(θ) exactly has a numeric gradient of exactly 0, to be matched exactly).
UNMOVED = "none: the loss does not depend on this tensor"
#: How many elements of a tensor each noise direction moves, in turn until one is free of kinks
#: (fewer elements, fewer kinks to cross; a kink at θ itself is crossed by every line through it)...
NOISE_ELEMENTS = (256, 16, 1)
#: ...and the spacings tried, in units of ``EPS**(1/3)`` (times ``max(1, |θ|)``), first to last...
NOISE_SPACINGS = (0.1, 10.0, 1e-3)
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
        _fastest(functools.partial(forward, loaded.stage_inputs[s], loaded.params, loaded.data))
        for s, (_, forward) in enumerate(loaded.stages)
    ]
    share_from = [sum(costs[s:]) / sum(costs) for s in range(len(costs))]
    layout = loaded.settings.layout
    return width * sum(spec.size * share_from[loaded.stage_of[spec.name]] for spec in layout.tensors) / layout.n_params


def _time_loss(loaded: Loaded, budget_seconds: float = 0.2, at_most: int = 20) -> float:
    """Seconds per loss evaluation at θ, in this worker, the way the shards will evaluate it.

    The fastest of a few runs: one loss, or, for a batched model, the shards' own path
    (perturbation, one batch, estimates) over the first indices, divided by its losses.
    That also warms the path up in this worker before the shards time it.
    """
    if not (loaded.batched or loaded.perturbs):
        return _fastest(loaded.loss, budget_seconds, at_most)
    layout = loaded.settings.layout
    width = len(STENCILS[loaded.settings.scheme])
    indices = min(layout.n_params, 64)
    if loaded.batched:
        indices = max(1, loaded.batch_rows(width * indices) // width)
    groups = _by_dtype([(spec, np.arange(lo, hi)) for spec, lo, hi in layout.segments(0, indices)])
    return _fastest(functools.partial(_evaluate, loaded, groups), budget_seconds, at_most) / (width * indices)


def _fastest(evaluate: Callable[[], Any], budget_seconds: float = 0.1, at_most: int = 50) -> float:
    """The fastest of repeated calls (at least 3, then until the budget is spent): robust to a noisy machine."""
    fastest, spent, runs = float("inf"), 0.0, 0
    while runs < at_most and (runs < 3 or spent < budget_seconds):
        start = time.perf_counter()
        evaluate()
        took = time.perf_counter() - start
        fastest, spent, runs = min(fastest, took), spent + took, runs + 1
    return fastest


def write_analytic(
    loaded: Loaded, output: Output, done: Sequence[Shard] = (), directions: Sequence[tuple[str, int]] = ()
) -> tuple[bool, tuple[float, ...]]:
    """Write the analytic gradient to ``output.analytic`` (at the run's slots), once per run, and compute
    ``g·u`` along each random direction while it is here (:func:`direction_dots`).

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
        # one tolerance per group: it depends on the dtype and the scheme
        tolerance, a = settings.tolerance_for(group.dtype), analytic[at]
        allowed[at], status[at] = judge(a, est.numeric, est.bar, est.lower, est.upper, tolerance, est.smooth)
        suspect = np.zeros(at.size, dtype=bool)
        if settings.second_look and settings.scheme != "complex-step":
            precision = "float64" if settings.promote else group.dtype
            scale = _per_element(loaded, settings.scale_of, group)
            suspect = suspects(
                a, est.numeric, est.bar, status[at], tolerance, scale, precision, est.rounding, est.kinked
            )
            if suspect.any():
                mine = at[suspect]
                (numeric[mine], allowed[mine], status[mine], steps[mine]), cost = _look_again(
                    loaded,
                    group,
                    first,
                    suspect,
                    a[suspect],
                    (allowed[mine], status[mine]),
                    tolerance,
                    scale,
                    precision,
                )
                looked, looked_evaluations = looked + mine.size, looked_evaluations + cost
        others = at[~suspect]
        status[others] = inconclusive(a[~suspect], est.numeric[~suspect], est.bar[~suspect], status[others], tolerance)
    second_look_seconds = time.perf_counter() - evaluated
    output.numeric[shard.start : shard.stop] = numeric
    output.nonfinite[shard.start : shard.stop] = nonfinite
    output.allowed[shard.start : shard.stop] = allowed
    output.status[shard.start : shard.stop] = status
    output.step[shard.start : shard.stop] = steps
    # Last: a shard marked done has all its chunks written. A crash before this
    # line leaves the shard to be computed again, with the same values.
    output.done[shard.index] = shard_seal(
        settings.identity, shard, (analytic, numeric, nonfinite, allowed, status, steps)
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
        return np.asarray(loaded.theta[group.columns].astype(group.dtype, copy=False))
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


def _known_rows(
    table: np.ndarray, taken: np.ndarray, scheme: str
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """The second look's first rows (steps 2h and h) where the first pass evaluated them: richardson's stencil."""
    if scheme != "richardson":
        return []
    return [(table[:, 2], table[:, 3], taken[:, 2], taken[:, 3]), (table[:, 0], table[:, 1], taken[:, 0], taken[:, 1])]


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
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], int]:
    """The second look (:func:`.refine.second_look`) at a group's suspect elements, each along its own axis,
    and its verdicts (:func:`.tolerance.judge_again`).

    ``suspect`` masks the group's elements; ``analytic`` and ``judged`` (the first pass's allowances and
    statuses) are the suspects'. Returns the suspects' ``(numeric, allowed, status, step)`` and the losses
    the second look took.
    """
    settings = loaded.settings
    k = np.flatnonzero(suspect)
    sub, values, est = _subgroup(group, suspect), first.values[k], first.est
    # The table starts at the first pass's steps, and reuses its losses; but a fixed step may be far too fine
    # for the loss's noise: then it starts no finer than the automatic one.
    h, known = first.h[k], _known_rows(first.table[k], first.taken[k], settings.scheme)
    if settings.epsilon is not None:
        h, known = np.maximum(h, step_sizes(values, settings.scheme, None)), []
    # leaps stop where a step is within LEAP_ROOM rounding units of the parameter's value
    leap_floor = LEAP_ROOM * settings.eps(group.dtype) * np.maximum(1.0, np.abs(values.astype(np.float64))) / h

    def losses(which: np.ndarray, multiple: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        chosen = np.zeros(values.size, dtype=bool)
        chosen[which] = True
        perturbed, taken = points(values[which], multiple * h[which], "central")
        (table,) = _losses(loaded, [_subgroup(sub, chosen)], [perturbed])
        return table[:, 0], table[:, 1], taken[:, 0], taken[:, 1]

    converged = CONVERGED.get(precision, CONVERGED["float32"])
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
    )
    numeric, allowed, status = refined.judge(analytic, (est.numeric[k], *judged, est.bar[k]), tolerance)
    steps = np.where(refined.kink | ~np.isfinite(refined.numeric), first.h[k], refined.step)
    if settings.epsilon is not None:
        # The step asked for: the numeric gradient stays its quotient (the seed's difference), and the
        # allowance widens by how far that is from the estimate the verdict was made on.
        shift = np.abs(numeric - est.numeric[k])
        allowed = allowed + np.where(np.isfinite(shift), shift, 0.0)
        numeric, steps = est.numeric[k], first.h[k]
    return (numeric, allowed, status, steps), refined.evaluations


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


#: Directions are seeded by (this, the tensor's number, the direction's number): every run
#: of the same check takes the same directions.
DIRECTION_SEED = 9001


#: Directions are applied this many elements at a time: float64 work in pieces that stay in cache.
DIRECTION_CHUNK = 2**16


def _signs(loaded: Loaded, tensor: str, number: int) -> np.ndarray:
    """The ``number``-th direction's signs over a tensor, one seeded random bit per element (1 is +), packed.

    A direction's tangent ``u`` is a sign per element (Rademacher: a direction of a 10^8-element tensor is drawn
    in milliseconds) times the element's own step relative to a unit parameter's (:func:`_ratios`), so every
    element moves by about its step and ``g·u`` keeps gradient units.
    """
    rng = np.random.default_rng([DIRECTION_SEED, loaded.number[tensor], number])
    return np.frombuffer(rng.bytes(-(-loaded.params[tensor].size // 8)), dtype=np.uint8)


def _bits(signs: np.ndarray, at: slice) -> np.ndarray:
    """The sign bits of elements ``at`` (a piece starting at a multiple of 8), as booleans."""
    return np.unpackbits(signs[at.start // 8 : -(-at.stop // 8)], count=at.stop - at.start).view(bool)


def _ratios(loaded: Loaded, tensor: str, uniform: bool) -> Iterator[tuple[slice, np.ndarray]]:
    """Each element's step relative to a unit parameter's, in the tensor's dtype, piece by piece (all 1 where
    ``uniform``: see :func:`_uniform`)."""
    settings = loaded.settings
    flat = loaded.params[tensor].reshape(-1)
    unit = _unit_step(loaded, tensor)
    ones = np.ones(min(flat.size, DIRECTION_CHUNK), dtype=flat.dtype)
    for at in _pieces(flat.size):
        if uniform:
            yield at, ones[: at.stop - at.start]
        else:
            yield at, (step_sizes(flat[at], settings.scheme, settings.epsilon) / unit).astype(flat.dtype)


def _uniform(loaded: Loaded, tensor: str) -> bool:
    """Whether every element's step ratio is 1: a fixed step, or no element beyond 1 in magnitude (the common
    case: a tangent is then its signs, drawn without a step per element and never held whole)."""
    flat = loaded.params[tensor].reshape(-1)
    if loaded.settings.epsilon is not None:
        return True
    return all(float(np.max(np.abs(flat[at]))) <= 1.0 for at in _pieces(flat.size))


def _unit_step(loaded: Loaded, tensor: str) -> float:
    """The step of an element of magnitude at most 1 in ``tensor``: a direction's ``t`` is in its units."""
    settings = loaded.settings
    one = np.ones(1, dtype=loaded.params[tensor].dtype)
    return float(step_sizes(one, settings.scheme, settings.epsilon)[0])


def direction_dots(
    loaded: Loaded, analytic: dict[str, np.ndarray], directions: Sequence[tuple[str, int]]
) -> tuple[float, ...]:
    """``g·u`` along each direction ``(tensor, number)``, from the analytic gradient ``analytic``: computed
    where the gradient is (once per run), piece by piece, so the gradient is never shipped or stored whole.

    One pass over each tensor serves all its directions: ``g·u = Σ ±(g_i·ratio_i)``, the sign a direction's bit.
    """
    dots: dict[tuple[str, int], float] = {}
    for tensor in dict.fromkeys(name for name, _ in directions):
        numbers = [number for name, number in directions if name == tensor]
        signs = {number: _signs(loaded, tensor, number) for number in numbers}
        g = analytic[tensor].reshape(-1)
        parts: dict[int, list[float]] = {number: [] for number in numbers}
        for at, ratio in _ratios(loaded, tensor, _uniform(loaded, tensor)):
            weighted = g[at].astype(np.float64) * ratio
            total = float(weighted.sum())
            for number in numbers:  # Σ w·(2·bit − 1) = 2·Σ w·bit − Σ w
                parts[number].append(2 * float(weighted @ _bits(signs[number], at)) - total)
        for number in numbers:
            dots[tensor, number] = math.fsum(parts[number])
    return tuple(dots[direction] for direction in directions)


def check_direction(loaded: Loaded, tensor: str, number: int, dot: float) -> DirectionResult:
    """Compare ``g·u`` (``dot``: :func:`direction_dots`) with the loss's change along a random tangent ``u``
    of one tensor (:func:`_signs`).

    The loss is evaluated at ``θ ± t·u`` for the scheme's multiples of the unit step: every element
    moves by about its own step, so the check's power does not fade with the tensor's size. Each
    quotient divides by the ``t`` the floats took along ``u`` (the projection of the move actually
    made). The direction is judged like an element: inconclusive when its bar exceeds
    :data:`~.tolerance.VERIFY_LIMIT` of ``|g·u|``, looked at again (:mod:`.refine`) when it disagrees or
    is that wide. With ``settings.taylor`` it is judged by the Taylor test instead (:func:`.refine.taylor`).

    Costs the scheme's stencil in losses (more for a second look or the Taylor test) whatever the
    tensor's size, and one copy of that tensor (the moved tensor) plus ``u``: one byte per element where no
    element exceeds 1 in magnitude (its signs), else a second copy.
    """
    started = time.perf_counter()
    settings = loaded.settings
    number_of = loaded.number[tensor]
    spec = settings.layout.tensors[number_of]
    theta = loaded.params[tensor]
    flat = theta.reshape(-1)
    unit, uniform, signs = _unit_step(loaded, tensor), _uniform(loaded, tensor), _signs(loaded, tensor, number)
    # ±1 held in one byte per element (a quarter of a float32 copy), or ±ratio in the tensor's dtype
    u = np.empty(flat.size, dtype=np.int8 if uniform else flat.dtype)
    for at, ratio in _ratios(loaded, tensor, uniform):
        u[at] = np.where(_bits(signs, at), ratio, -ratio)
    if uniform:
        norm_sq = float(flat.size)
    else:
        norm_sq = math.fsum(float(u[at].astype(np.float64) @ u[at].astype(np.float64)) for at in _pieces(flat.size))
    norm_sq = max(norm_sq, float(np.finfo(np.float64).tiny))

    complex_step = settings.scheme == "complex-step"
    shifted = np.empty(theta.shape, dtype=np.complex128 if complex_step else theta.dtype)
    moved = shifted.reshape(-1)
    evaluations, in_losses, moving = 0, 0.0, 0.0
    buffer = np.empty(min(flat.size, DIRECTION_CHUNK), dtype=flat.dtype)  # one piece of the move

    def along(multiple: complex) -> tuple[float | complex, float]:
        """The loss at ``θ + t·u`` for ``t = multiple·unit``, and the ``t`` the floats took along ``u``.

        The move is made in the tensor's own dtype, in cache-sized pieces: moving a 2.5·10^7-element float32
        tensor costs about a loss of a model that size, not several.
        """
        nonlocal evaluations, in_losses, moving
        began = time.perf_counter()
        projected = 0.0
        if complex_step:
            for at in _pieces(flat.size):
                moved[at] = flat[at] + (multiple * unit) * u[at]
        else:
            scale = flat.dtype.type(multiple.real * unit)
            for at in _pieces(flat.size):
                piece = buffer[: at.stop - at.start]
                np.multiply(u[at], scale, out=piece)
                np.add(flat[at], piece, out=moved[at])
                np.subtract(moved[at], flat[at], out=piece)  # the move the floats took, projected on u:
                np.multiply(piece, u[at], out=piece)
                # summed pairwise in the tensor's dtype (for float32, to about 1e-7: its own rounding)
                projected += float(piece.sum())
        before = time.perf_counter()
        moving += before - began
        value = call_model(
            f"loss along direction {number} of {tensor}",
            loaded.model.loss,
            {**loaded.evaluated, tensor: shifted},
            loaded.data,
        )
        in_losses += time.perf_counter() - before
        evaluations += 1
        if complex_step:
            return complex(value), multiple.imag * unit
        return as_loss_value(value, f"along direction {number} of {tensor}"), projected / norm_sq

    noise = settings.noise_of(number_of)
    step = unit
    analytic = np.array([dot])
    tolerance = settings.tolerance_for(spec.dtype)
    if settings.taylor and not complex_step:
        checked = taylor(along, dot, settings.loss0, noise)
        return DirectionResult(
            tensor,
            number,
            dot,
            checked.numeric,
            checked.allowed,
            checked.status,
            step,
            checked.orders,
            evaluations,
            time.perf_counter() - started,
            in_losses,
            moving,
        )
    points_ = [along(1j if complex_step else s.real) for s in STENCILS[settings.scheme]]
    losses = np.array([[value for value, _ in points_]])
    taken = np.array([[took for _, took in points_]])
    if not complex_step:
        noise = max(noise, settings.eps(spec.dtype) * float(np.max(np.abs(losses))))
    est = estimate(losses, taken, settings.scheme, epsilon=None, loss0=settings.loss0, noise=noise)
    allowed, status = judge(analytic, est.numeric, est.bar, est.lower, est.upper, tolerance, est.smooth)
    numeric = est.numeric
    precision = "float64" if settings.promote else spec.dtype
    if (
        settings.second_look
        and not complex_step
        and suspects(analytic, numeric, est.bar, status, tolerance, 0.0, precision, est.rounding, est.kinked)[0]
    ):

        def pair(_: np.ndarray, multiple: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
            (plus, up), (minus, down) = along(float(multiple[0])), along(-float(multiple[0]))
            return np.array([plus]), np.array([minus]), np.array([up]), np.array([down])

        converged = CONVERGED.get(precision, CONVERGED["float32"])
        known = _known_rows(losses, taken, settings.scheme)  # the first pass's points are not evaluated again
        refined = second_look(
            pair,
            1,
            np.ones(1),
            settings.loss0,
            np.array([noise]),
            np.abs(analytic),
            known,
            converged,
            0.0,
            analytic,
            (est.numeric, est.bar, est.smooth),
        )
        numeric, allowed, status = refined.judge(analytic, (numeric, allowed, status, est.bar), tolerance)
    else:  # a direction is always judged (by the dtype's tolerance even under `tolerance: none`)
        status = inconclusive(analytic, numeric, est.bar, status, tolerance)
    return DirectionResult(
        tensor,
        number,
        dot,
        float(numeric[0]),
        float(allowed[0]),
        int(status[0]),
        step,
        (),
        evaluations,
        time.perf_counter() - started,
        in_losses,
        moving,
    )


def _pieces(size: int) -> Iterator[slice]:
    """``[0, size)`` in pieces of :data:`DIRECTION_CHUNK`."""
    for start in range(0, size, DIRECTION_CHUNK):
        yield slice(start, min(size, start + DIRECTION_CHUNK))


def shard_seal(identity: str, shard: Shard, per_index: Sequence[np.ndarray]) -> int:
    """A shard's completion record: a digest of the run's identity, the shard, and every per-index value it
    wrote (in :data:`~pipeline.storage.output.PER_INDEX` order), as a positive int64 (0 means "not done").

    A record is trusted only when the chunks read back give the same seal: a chunk cut short, flipped,
    missing (read back as fill values) or written by another run does not.
    """
    digest = hashlib.blake2b(f"{identity}\0{shard.index}\0{shard.start}\0{shard.stop}".encode(), digest_size=8)
    for values in per_index:
        if values.dtype.kind == "f":  # every NaN as one: a chunk of fill values reads back the canonical NaN
            values = np.where(np.isnan(values), np.nan, values)
        digest.update(np.ascontiguousarray(values).tobytes())
    return (int.from_bytes(digest.digest(), "little") >> 1) | 1


def _stored(shard: Shard, output: Output) -> list[np.ndarray] | None:
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
    stored = _stored(shard, output)
    return stored is not None and _sealed(identity, shard, output, stored)


def resume_shard(
    settings: Settings, shard: Shard, output: Output, load: Callable[[], tuple[Loaded, bool]]
) -> ShardResult:
    """A shard an earlier run completed: read back when its chunks verify against its completion record,
    computed again (``load`` gives the problem and whether it had to be loaded) when they do not."""
    start = time.perf_counter()
    stored = _stored(shard, output)
    if stored is not None and _sealed(settings.identity, shard, output, stored):
        slots = slots_for(settings.layout, settings.sample)
        return summarize_shard(
            slots.layout,
            shard,
            *stored,
            worst=settings.worst,
            seconds=time.perf_counter() - start,
            loaded=False,
            indices=None if slots.checked is None else slots.indices(settings.layout, shard.start, shard.stop),
        )
    loaded, fresh = load()
    return dataclasses.replace(run_shard(loaded, shard, output, fresh=fresh), recomputed=True)
