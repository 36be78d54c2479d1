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
from .fd import STENCILS, batched_stencil_losses, estimate, noise_level, points, stencil_losses, step_sizes
from .layout import Layout, TensorSpec
from .plan import Shard, sampled_positions
from .reduce import DirectionResult, ShardResult, summarize_shard
from .tolerance import UNCHECKED, Tolerance, default_tolerance, judge

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

    ``loss0`` and ``noise`` are filled in from the probe before the shards run, and
    ``identity`` (the run's, sealed into every shard's completion record) once it is known.
    ``tolerance`` holds the config's overrides of the per-dtype defaults, as pairs; ``judged`` is False when the
    config turned per-element verdicts off. ``sample`` is ``(k, seed)`` for
    ``k`` random elements per tensor, None for all. ``promote`` checks float32
    parameters in float64.
    """

    layout: Layout
    epsilon: float | None
    worst: int = 10
    scheme: str = "richardson"
    tolerance: tuple[tuple[str, float], ...] = ()
    judged: bool = True
    sample: tuple[int, int] | None = None
    promote: bool = False
    loss0: float = math.nan
    noise: float = math.nan
    identity: str = ""

    def tolerance_for(self, dtype: str) -> Tolerance:
        """The tolerance for tensors of ``dtype``: the default for it and the scheme, with the config's overrides."""
        default = default_tolerance("float64" if self.promote else dtype, self.scheme)
        return dataclasses.replace(default, **dict(self.tolerance))


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What the probe learned at θ: the loss (evaluated twice: ``spread`` is how far
    apart), the loss's noise level, how long one evaluation takes there, and how many
    loss-equivalents an index costs (the scheme's stencil, or fewer for a staged model)."""

    loss: float
    loss_seconds: float
    loss_equivalents_per_index: float
    seconds: float
    noise: float = math.nan
    noise_measured: bool = False
    spread: float = 0.0


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
        self.samples: dict[str, np.ndarray] = {}
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

    def positions(self, spec: TensorSpec, lo: int, hi: int) -> np.ndarray:
        """The elements ``lo..hi-1`` of a tensor that this run checks: all, or the sampled ones."""
        if self.settings.sample is None:
            return np.arange(lo, hi)
        if spec.name not in self.samples:
            k, seed = self.settings.sample
            number = self.settings.layout.names.index(spec.name)
            self.samples[spec.name] = sampled_positions(spec.size, k, seed, number)
        chosen = self.samples[spec.name]
        return chosen[(chosen >= lo) & (chosen < hi)]

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
    noise, measured = _noise(loaded, loss)
    return ProbeResult(
        loss=loss,
        loss_seconds=_time_loss(loaded),
        loss_equivalents_per_index=_loss_equivalents(loaded, loss),
        seconds=time.perf_counter() - start,
        noise=max(noise, spread),
        noise_measured=measured,
        spread=spread,
    )


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


def _noise(loaded: Loaded, loss: float) -> tuple[float, bool]:
    """The loss's evaluation noise at θ (Moré and Wild's ECNoise), and whether it was measured.

    The loss is evaluated at 9 points ``θ + j·δ·p`` along a fixed random direction ``p``
    over up to ``NOISE_ELEMENTS`` elements of each tensor, scaled like the parameters and
    set in place (no copy of the parameters; restored exactly). Falls back to one rounding
    unit of the loss when the points are too close or too far apart for a measurement,
    or the loss is not finite or raises there (the shards will say so per element).
    """
    settings = loaded.settings
    eps = _eps(settings)
    floor = eps * abs(loss)
    if settings.scheme == "complex-step":
        return floor, False
    rng = np.random.default_rng(NOISE_SEED)
    chosen = {}
    for name, flat in loaded.flat.items():
        at = rng.choice(flat.size, size=min(NOISE_ELEMENTS, flat.size), replace=False)
        original = flat[at].copy()
        chosen[name] = (at, original, rng.choice([-1.0, 1.0], size=at.size) * np.maximum(1.0, np.abs(original)))
    try:
        for delta in (eps ** (1 / 3) * 0.1, eps ** (1 / 3) * 10, eps ** (1 / 3) * 1e-3):
            values = []
            for j in range(-4, 5):
                for name, (at, original, p) in chosen.items():
                    flat = loaded.flat[name]
                    flat[at] = (original + j * delta * p).astype(flat.dtype)
                values.append(float(np.real(loaded.loss())))
            noise = noise_level(values) if all(np.isfinite(values)) else None
            if noise is not None:
                return max(noise, floor), True
    except Exception:  # a loss that fails off θ fails again in its shard, with the element named
        return floor, False
    finally:
        for name, (at, original, _) in chosen.items():
            loaded.flat[name][at] = original
    return floor, False


#: How many elements of each tensor the noise direction moves.
NOISE_ELEMENTS = 256


#: The noise direction's seed: the same direction every run, so the same check is repeatable.
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
    if not loaded.batched:
        return _fastest(loaded.loss, budget_seconds, at_most)
    layout = loaded.settings.layout
    width = len(STENCILS[loaded.settings.scheme])
    indices = max(1, loaded.batch_rows(width * min(layout.n_params, 64)) // width)
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


def write_analytic(loaded: Loaded, output: Output, done: Sequence[Shard] = ()) -> bool:
    """Write the analytic gradient to ``output.analytic``, once per run.

    When resuming (``done``: the shards an earlier run finished), first compare it over the finished
    shards, and return False where it differs in a shard that verifies: a changed model must not be
    mixed with the shards of the old one. Then write it whole: the same values where it agreed, and
    again where a damaged shard will be computed again. Only the analytic array is read, and a
    shard's other arrays only where it differs (to tell a changed model from a damaged chunk).
    """
    settings, analytic, target = loaded.settings, loaded.analytic_gradient(), output.analytic
    for shard in done:
        given = np.concatenate(
            [
                analytic[spec.name].reshape(-1)[lo:hi]
                for spec, lo, hi in settings.layout.segments(shard.start, shard.stop)
            ]
        )
        try:
            agrees = np.array_equal(np.asarray(target[shard.start : shard.stop]), given, equal_nan=True)
        except OSError:
            raise
        except Exception:  # a chunk that cannot be decoded: damaged, written again below
            agrees = False
        if not agrees and shard_intact(settings.identity, shard, output):
            return False
    for spec in settings.layout.tensors:  # tensor by tensor: no flat copy of the whole gradient
        target[spec.offset : spec.stop] = analytic[spec.name].reshape(-1)
    loaded.analytic = None  # written: free it
    return True


def run_shard(loaded: Loaded, shard: Shard, output: Output, *, fresh: bool = False) -> ShardResult:
    """Derivative estimates over one shard, judged; writes its chunks to ``output``, then marks the shard done.

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
    segments = [
        (spec, loaded.positions(spec, lo, hi)) for spec, lo, hi in settings.layout.segments(shard.start, shard.stop)
    ]
    groups = _by_dtype(segments)
    evaluating = time.perf_counter()
    estimates = _evaluate(loaded, groups)
    evaluated = time.perf_counter()
    for group, (h, est) in zip(groups, estimates, strict=True):
        at = group.columns - shard.start
        numeric[at], nonfinite[at], steps[at] = est.numeric, est.nonfinite, h
        if settings.judged:  # one tolerance per group: it depends on the dtype and the scheme
            allowed[at], status[at] = judge(
                analytic[at],
                est.numeric,
                est.bar,
                est.lower,
                est.upper,
                settings.tolerance_for(group.dtype),
                est.smooth,
            )
        else:
            status[at] = 0
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
    return summarize_shard(
        settings.layout,
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
        evaluate_seconds=evaluated - evaluating,
    )


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


def _evaluate(loaded: Loaded, groups: list[_Group]) -> list[tuple[np.ndarray, Any]]:
    """Steps and estimates per group."""
    settings = loaded.settings
    batched = loaded.batched
    stencils = []
    for group in groups:
        if batched:  # one fancy index, not one per tensor (float32 values are exact in float64)
            values = loaded.theta[group.columns].astype(group.dtype, copy=False)
        else:  # no flat copy of the parameters
            values = np.concatenate(
                [loaded.params[spec.name].reshape(-1)[positions] for spec, positions in group.segments]
            )
        h = step_sizes(values, settings.scheme, settings.epsilon)
        stencils.append((h, *points(values, h, settings.scheme)))
    if batched:
        losses = _batched_losses(
            loaded, [group.columns for group in groups], [perturbed for _, perturbed, _ in stencils]
        )
    else:
        losses = [
            np.concatenate(
                [_segment_losses(loaded, spec, positions, rows) for spec, positions, rows in _rows(group, perturbed)]
            )
            for group, (_, perturbed, _) in zip(groups, stencils, strict=True)
        ]
    return [
        (
            h,
            estimate(
                table, taken, settings.scheme, epsilon=settings.epsilon, loss0=settings.loss0, noise=settings.noise
            ),
        )
        for table, (h, _, taken) in zip(losses, stencils, strict=True)
    ]


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


#: Directions are drawn and applied this many elements at a time: a direction costs one
#: perturbed copy of its tensor, not several float64 ones.
DIRECTION_CHUNK = 2**20


def _direction_chunks(size: int, tensor_number: int, number: int) -> Iterator[tuple[slice, np.ndarray]]:
    """The ``number``-th random direction of a tensor, unnormalized, chunk by chunk (each chunk seeded)."""
    for k, start in enumerate(range(0, size, DIRECTION_CHUNK)):
        stop = min(size, start + DIRECTION_CHUNK)
        yield (
            slice(start, stop),
            np.random.default_rng([DIRECTION_SEED, tensor_number, number, k]).standard_normal(stop - start),
        )


def check_direction(loaded: Loaded, tensor: str, number: int, analytic_store: Any) -> DirectionResult:
    """Compare ``g·v`` with the scheme's difference along a random unit direction ``v`` of one tensor.

    Costs the scheme's stencil in losses (2 for central) whatever the tensor's size, and one
    perturbed copy of that tensor at a time: the direction and the analytic gradient are
    read chunk by chunk from ``analytic_store`` (the output's ``analytic``). The step is the scheme's, scaled by the tensor's largest magnitude.
    """
    settings = loaded.settings
    layout = settings.layout
    number_of = layout.names.index(tensor)
    spec = layout.tensors[number_of]
    norm_sq, dot = 0.0, 0.0
    for at, v in _direction_chunks(spec.size, number_of, number):
        norm_sq += float(v @ v)
        dot += float(np.asarray(analytic_store[spec.offset + at.start : spec.offset + at.stop]) @ v)
    norm = max(np.sqrt(norm_sq), np.finfo(np.float64).tiny)
    theta = loaded.params[tensor]
    flat = theta.reshape(-1)
    scale = np.array([float(np.max(np.abs(theta), initial=0.0))], dtype=theta.dtype)
    h = float(step_sizes(scale, settings.scheme, settings.epsilon)[0])
    complex_step = settings.scheme == "complex-step"
    shifted = np.empty(theta.shape, dtype=np.complex128 if complex_step else theta.dtype)
    moved = shifted.reshape(-1)
    losses, taken = [], []
    for s in STENCILS[settings.scheme]:
        step = 1j * h if complex_step else s.real * h
        for at, v in _direction_chunks(spec.size, number_of, number):
            moved[at] = flat[at] + step * (v / norm)
        taken.append(h if complex_step else step.real)
        value = call_model(
            f"loss along direction {number} of {tensor}",
            loaded.model.loss,
            {**loaded.evaluated, tensor: shifted},
            loaded.data,
        )
        losses.append(complex(value) if complex_step else as_loss_value(value, f"along direction {number} of {tensor}"))
    est = estimate(
        np.array([losses]),
        np.array([taken]),
        settings.scheme,
        epsilon=settings.epsilon,
        loss0=settings.loss0,
        noise=settings.noise,
    )
    analytic = np.array([dot / norm])
    allowed, status = judge(
        analytic, est.numeric, est.bar, est.lower, est.upper, settings.tolerance_for(spec.dtype), est.smooth
    )
    return DirectionResult(
        tensor, number, float(analytic[0]), float(est.numeric[0]), float(allowed[0]), int(status[0]), h
    )


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
        return summarize_shard(
            settings.layout, shard, *stored, worst=settings.worst, seconds=time.perf_counter() - start, loaded=False
        )
    loaded, fresh = load()
    return dataclasses.replace(run_shard(loaded, shard, output, fresh=fresh), recomputed=True)
