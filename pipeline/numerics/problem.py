"""A check's problem, loaded: its settings, its model, parameters and data as numpy arrays.

:class:`Settings` is what a run decided (plain, frozen, picklable: it goes to every worker);
:class:`Loaded` is the model with its parameters (perturbed in place and restored exactly) and
data, loaded once per process; :func:`call_model` is the one way the numerics call the user's
model. Every step of a check (:mod:`.probe`, :mod:`.shards`, :mod:`.directions`) takes a
:class:`Loaded` and returns plain results; none imports Dask or Zarr, so the in-process and Dask
executors run the same functions and get bit-identical results.

A :class:`Loaded` must not be shared between threads that evaluate at once.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np

from ..errors import GradcheckError, ModelError, exited
from ..model import Model, as_loss_value, check_gradient
from .layout import Layout
from .plan import Slots, slots_for
from .tolerance import Tolerance, default_tolerance

__all__ = [
    "REFERENCE_BYTES",
    "Float64Copy",
    "Loaded",
    "ModelExited",
    "Output",
    "Settings",
    "call_model",
    "fastest",
    "float64_copy",
    "pieces",
]


#: The default ``atol`` is at most this share of the gradient's scale (:meth:`Settings.tolerance_for`):
#: rounding inside a float32 analytic gradient, which no error bar sees, measured at most 7e-6 of its tensor's RMS on
#: 28 hand-written models.
ATOL_SHARE = 1e-3


@dataclass(frozen=True, slots=True)
class Settings:
    """What the numerics need to know of a run, as plain data.

    ``loss0``, ``noise`` (per tensor), ``scales`` (each tensor's root-mean-square analytic gradient) and
    ``atol_scale`` and ``atol_rounding`` (:meth:`tolerance_for`) are filled in from the probe before the shards run, and
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
    atol_scale: float = 0.0
    atol_rounding: float = 0.0
    identity: str = ""

    def tolerance_for(self, dtype: str) -> Tolerance:
        """The tolerance for tensors of ``dtype``: the default for it and the scheme, with the config's overrides.
        The default ``atol`` is at most :data:`ATOL_SHARE` of ``atol_scale`` (the largest tensor RMS gradient, where
        the probe measured every tensor's noise: :attr:`.probe.ProbeResult.atol_scale`): an absolute floor of 1e-6
        excuses 1% errors in a float32 gradient of 1e-4, and a loss and its gradient scaled by 2**-16, the same rounding
        at every element, passed a weight-decay term left out (review 79). Nor is it below the analytic gradient's own
        rounding: in float64, one rounding unit, what a formula like ``softmax − onehot`` loses where it cancels values
        near 1 (review 80: a confident classifier's correct gradient of 4e-15, 0.3% off, failed); in float32,
        ``atol_rounding``, where the probe measured the gradient against the same model's in float64. Where it could
        not, float32's rounding unit would be an absolute 1.2e-7, 1% of a gradient of 1e-5, and it would excuse review
        79's bugs again (review 81: a model computing in float32 whatever it is given, a gradient given to the check)."""
        default = default_tolerance("float64" if self.promote else dtype, self.scheme)
        if self.atol_scale > 0 and "atol" not in dict(self.tolerance):
            float32 = self.eps(dtype) > np.finfo(np.float64).eps
            rounding = self.atol_rounding if float32 else self.eps(dtype)
            default = dataclasses.replace(default, atol=min(default.atol, max(ATOL_SHARE * self.atol_scale, rounding)))
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

    def against_float64(self, dtype: str) -> bool:
        """Whether the probe measures the rounding of a tensor of ``dtype`` against the loss in float64: a
        float32 tensor checked in its own precision, by differences (the complex step has no cancellation)."""
        return dtype == "float32" and not self.promote and self.scheme != "complex-step"


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
    def kink(self) -> Any:
        """What the second look found of each kink's slopes (None for an older format's output)."""
        ...

    @property
    def per_index(self) -> tuple[Any, ...]:
        """The per-index arrays in the order :func:`~.reduce.summarize_shard` takes them, then ``kink``."""
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
        if settings.promote:  # re-check a float32 model in float64: its parameters and its float32 data cast
            self.params = {name: array.astype(np.float64) for name, array in self.params.items()}
            data = float64_data(data)
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
        self._twin: Loaded | bool | None = False  # False: not made yet (:meth:`float64_twin`)
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

    def float64_twin(self) -> Loaded | None:
        """This run on the model's float64 copy (:func:`float64_copy`: its parameters and its float32 data cast, as
        `precision: float64` casts them), judged by the float64 rules, with its own loss at
        θ and no noise yet (the shards measure it per tensor where they need it); made on first use, with the
        parameters at θ. None where there is no copy, the model cannot compute in float64, the analytic gradient
        was given (``gradient``: ``model.grad`` in float64 is then not its twin), or it was dropped."""
        if self._twin is False:
            self._twin = None
            made = None if self.gradient is not None else float64_copy(self)
            if made is not None:
                try:
                    value = call_model("loss at θ in float64", made.model.loss, made.params, made.data)
                    loss = as_loss_value(value, "at θ in float64")
                    settings = dataclasses.replace(self.settings, promote=True, noise=(), loss0=loss)
                    self._twin = Loaded(settings, made.model, made.params, made.data)
                except ModelExited:  # (a model's sys.exit is no failure to look past: it ends the check, exit 2)
                    raise
                except ModelError:  # a model that takes no float64 parameters: no twin
                    self._twin = None
        return self._twin if isinstance(self._twin, Loaded) else None

    def drop_float64_twin(self) -> None:
        """No float64 twin for the rest of the run (it failed to compute)."""
        self._twin = None

    def loss_from(self, stage: int) -> Any:
        """The loss, re-evaluating only stages ``stage`` on from their input at θ."""
        carry = self.stage_inputs[stage]
        try:
            for _, forward in self.stages[stage:]:
                carry = forward(carry, self.params, self.data)
        except SystemExit as e:  # (each of these four: the model's exit is no verdict, as in :func:`call_model`)
            raise ModelExited(f"stages {stage} on", e) from None
        return carry

    def loss(self) -> Any:
        try:
            return self.model.loss(self.evaluated, self.data)
        except SystemExit as e:  # (review 123: one in the noise probe's losses exited 0 or 1)
            raise ModelExited("loss", e) from None

    @property
    def slots(self) -> Slots:
        """Where this run keeps each checked element's results (:class:`~.plan.Slots`)."""
        return slots_for(self.settings.layout, self.settings.sample)

    def perturbed_losses(self, name: str, positions: np.ndarray, values: np.ndarray) -> np.ndarray:
        """The model's optional ``perturbed_losses``: tensor ``name``'s element ``positions[j]`` set to each
        ``values[j, s]`` in turn, the rest at θ; one loss per value, checked to be finite float64 of that shape."""
        method = getattr(self.model, "perturbed_losses")  # noqa: B009  (optional: not in the protocol)
        try:
            losses = np.asarray(method(self.evaluated, self.data, name, positions, values), dtype=np.float64)
        except SystemExit as e:
            raise ModelExited("perturbed_losses", e) from None
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
        try:
            return getattr(self.model, "loss_batch")(batch, self.data)  # noqa: B009  (optional: not in the protocol)
        except SystemExit as e:
            raise ModelExited("loss_batch", e) from None

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


def call_model(what: str | Callable[[], str], fn: Callable[..., Any], *args: Any, hint: str = "") -> Any:
    """Call ``fn(*args)``, which calls the user's model; its exceptions become one-line model errors.

    ``what`` names the call in the message; it may be a function that makes the name, called only on
    an error (formatting costs as much as a small model's batch). The message names the file and line
    where the model raised, then ``hint`` (what the user can do); the error's ``detail`` holds the whole
    traceback as text (it survives pickling, so it comes back from a worker too).
    """
    try:
        return fn(*args)
    except ModelExited as e:  # (a guarded call inside fn: named as this call)
        raise ModelExited(_named(what), e.exit) from None
    except GradcheckError:
        raise
    except SystemExit as e:  # the model's exit code is no verdict: 0 would read as "the gradients agree"
        raise ModelExited(_named(what), e) from None
    except Exception as e:
        named = _named(what)
        raise ModelError(
            f"Model {named} raised {type(e).__name__}: {e}{_raised_at(e)}{hint}",
            detail="".join(traceback.format_exception(e)),
        ) from e


def _named(what: str | Callable[[], str]) -> str:
    """:func:`call_model`'s name for the call, made only once an error needs it."""
    return what if isinstance(what, str) else what()


class ModelExited(ModelError):
    """The one-line model error a ``sys.exit`` in the model's ``what`` is (:func:`.errors.exited`), wherever the check
    calls the model (the noise probe's points, a shard's): its exit code is no verdict (review 123: one in the probe's
    losses exited 0 or 1, or killed the worker running it)."""

    def __init__(self, what: str, exit: SystemExit) -> None:
        super().__init__(
            f"Model {what} {exited(exit)}{_raised_at(exit)}", detail="".join(traceback.format_exception(exit))
        )
        self.exit = exit

    def __reduce__(self) -> Any:  # (it crosses from a worker pickled: a plain model error, its message kept)
        return ModelError, (str(self),), {"detail": self.detail}


#: What a loss that raises only off θ is asked to do (:func:`call_model`'s ``hint``): a step past the edge of its
#: domain (a Cholesky of a matrix no longer positive definite: review 97) is judged on finer steps where the loss is NaN.
OFF_THETA = (
    "; if a step left the loss's domain there (a matrix no longer positive definite, a log of a negative), return NaN "
    "instead of raising: the check then steps inside it"
)


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


#: How a model that offers nothing but ``loss`` is evaluated near θ (as the report says it).
PLAIN_EVALUATION = "one loss call per perturbation"

#: The most memory one batch of perturbed parameter copies may take...
BATCH_BYTES = 64 * 2**20
#: ...and the fewest rows worth a batch: a model too large for that is evaluated plainly,
#: in place, whatever it offers (no allocation proportional to its size per index).
MIN_BATCH_ROWS = 4


#: Work over a whole tensor (a direction's move, a float64 sum of a float32 gradient) is done this many
#: elements at a time: pieces that stay in cache, never a float64 copy of the tensor.
PIECE = 2**16


def pieces(size: int) -> Iterator[slice]:
    """``[0, size)`` in pieces of :data:`PIECE`."""
    for start in range(0, size, PIECE):
        yield slice(start, min(size, start + PIECE))


def fastest(evaluate: Callable[[], Any], budget_seconds: float = 0.1, at_most: int = 50) -> float:
    """The fastest of repeated calls (at least 3, then until the budget is spent): robust to a noisy machine."""
    best, spent, runs = float("inf"), 0.0, 0
    while runs < at_most and (runs < 3 or spent < budget_seconds):
        start = time.perf_counter()
        evaluate()
        took = time.perf_counter() - start
        best, spent, runs = min(best, took), spent + took, runs + 1
    return best


#: The most the float64 copies of the parameters and float32 data may take (and the model's copy is made only
#: then): a worker's peak stays within 1.5 × (params + data) + the gradient. At 64 MB a 7·10^6-parameter
#: float32 network's probe took its worker from 0.94 to 1.70 of that (`benchmarks/scale.py --sizes 2e6,7e6`);
#: larger models keep the measured level.
REFERENCE_BYTES = 8 * 2**20


class Float64Copy(NamedTuple):
    """The model (a copy) with the parameters and float32 data in float64: the probe's reference for the float32
    loss's rounding (:mod:`.probe`), and :meth:`Loaded.float64_twin`."""

    model: Any
    params: dict[str, np.ndarray]
    data: dict[str, Any]


def float64_copy(loaded: Loaded) -> Float64Copy | None:
    """The run's :class:`Float64Copy`; None where no tensor is float32, the check is
    promoted already, the copies would be large (over :data:`REFERENCE_BYTES`) or the model cannot be
    copied."""
    settings = loaded.settings
    narrow = [key for key, array in loaded.data.items() if getattr(array, "dtype", None) == np.float32]
    copied = 2 * loaded.row_bytes + 2 * sum(loaded.data[key].nbytes for key in narrow)
    if not any(settings.against_float64(spec.dtype) for spec in settings.layout.tensors) or copied > REFERENCE_BYTES:
        return None
    try:  # a copy: whatever the float64 evaluation changes in the model (a buffer cast, a cache) stays there
        model = copy.deepcopy(loaded.model)
    except SystemExit as e:  # (its __deepcopy__ is the model's code too: review 125)
        raise ModelExited("deep copy", e) from None
    except Exception:
        return None
    params = {key: array.astype(np.float64) for key, array in loaded.params.items()}
    return Float64Copy(model, params, float64_data(loaded.data))


def float64_data(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with its float32 arrays cast to float64 (exactly: the same values), the rest as they are: a model that
    computes in its data's dtype (scikit-learn casts its coefficients to ``X.dtype``) then computes in float64."""
    return {
        key: value.astype(np.float64) if getattr(value, "dtype", None) == np.float32 else value
        for key, value in data.items()
    }
