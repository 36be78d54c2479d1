"""The only code that runs on workers.

A task receives a :class:`Problem` (plain, picklable data: the model reference
and store paths, never big arrays) and loads parameters and data once per run,
then reuses them across all its tasks. Entries are perturbed in place, so each
worker thread keeps its own copy (threads of one worker must not perturb the
same array at once).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import stores
from .errors import GradcheckError, ModelError, StoreError
from .fd import batched_central_differences, central_differences
from .layout import Layout
from .model import ModelRef, as_loss_value, check_gradient, load_model
from .plan import Shard
from .reduce import ShardResult, summarize_shard

__all__ = ["ProbeResult", "Problem", "analytic_task", "probe_task", "shard_task", "summary_task"]


@dataclass(frozen=True, slots=True)
class Problem:
    """Everything a worker needs, as plain data. ``run_id`` keys the worker's cache."""

    run_id: str
    model: ModelRef
    params: str
    data: str
    gradient: str | None
    output: str
    layout: Layout
    epsilon: float
    worst: int


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What the probe task learned at θ: the loss, how long one evaluation takes there, and
    how many loss-equivalents an index costs (2, or fewer for a staged model)."""

    loss: float
    loss_seconds: float
    loss_equivalents_per_index: float
    seconds: float


class _Loaded:
    """One thread's copy of a run's model, parameters, data and output handles."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.model = load_model(problem.model)
        self.params = stores.read_arrays("params", problem.params, problem.layout.names)
        self.data = stores.read_arrays("data", problem.data)
        # reshape(-1) of a C-contiguous array is a view: writes reach self.params.
        self.flat = {name: array.reshape(-1) for name, array in self.params.items()}
        self.row_bytes = max(1, sum(array.nbytes for array in self.params.values()))  # one parameter copy
        self.analytic: dict[str, np.ndarray] | None = None
        self.stages: list[tuple[tuple[str, ...], Callable[..., Any]]] = []
        self.stage_of: dict[str, int] = {}
        self.stage_inputs: list[Any] = []
        if getattr(self.model, "stages", None) is not None:
            self._prepare_stages()

    def _prepare_stages(self) -> None:
        """Check the model's stages and compute every stage's input at θ, now, before any perturbation."""
        stages = _call("stages", lambda: list(self.model.stages))  # type: ignore[attr-defined]
        for s, stage in enumerate(stages):
            if not (isinstance(stage, tuple) and len(stage) == 2 and callable(stage[1])):
                raise ModelError(
                    f"Model stage {s} must be (tensor names, forward(carry, params, data)). Got {stage!r} instead."
                )
            for name in stage[0]:
                if name in self.stage_of:
                    raise ModelError(f"Model stages {self.stage_of[name]} and {s} both own tensor '{name}'.")
                self.stage_of[name] = s
        mismatch = self.problem.layout.name_mismatch(self.stage_of)
        if mismatch:
            raise ModelError(f"Model stages must own every parameter tensor once: {mismatch}.")
        self.stages = [(tuple(names), forward) for names, forward in stages]
        carry: Any = None
        for s, (_, forward) in enumerate(self.stages[:-1]):
            self.stage_inputs.append(carry)
            carry = _call(f"stage {s} at θ", forward, carry, self.params, self.data)
        self.stage_inputs.append(carry)

    def loss_from(self, stage: int) -> Any:
        """The loss, re-evaluating only stages ``stage`` on from their input at θ."""
        carry = self.stage_inputs[stage]
        for _, forward in self.stages[stage:]:
            carry = forward(carry, self.params, self.data)
        return carry

    def loss(self) -> Any:
        return self.model.loss(self.params, self.data)

    def loss_batch(self, batch: dict[str, np.ndarray]) -> Any:
        """The model's optional batched loss (every tensor with a leading axis of K)."""
        return getattr(self.model, "loss_batch")(batch, self.data)  # noqa: B009  (optional: not in the protocol)

    @property
    def batched(self) -> bool:
        """Whether to use the model's ``loss_batch(params_batch, data)``: it offers one, and
        batches of at least ``MIN_BATCH_ROWS`` parameter copies fit in ``BATCH_BYTES``."""
        return callable(getattr(self.model, "loss_batch", None)) and MIN_BATCH_ROWS * self.row_bytes <= BATCH_BYTES

    def batch_rows(self, wanted: int) -> int:
        """How many perturbed parameter sets one batch may hold: each row copies every tensor."""
        return max(2, min(wanted, BATCH_BYTES // self.row_bytes))

    @property
    def output(self) -> stores.OutputArrays:
        """Handles on the output arrays (opened on first use: the output is created after the probe)."""
        return _output_arrays(self.problem)

    def analytic_gradient(self) -> dict[str, np.ndarray]:
        """The analytic gradient per tensor (float64), from the gradient store or ``model.grad``.

        Computed once per run and thread, and kept only until it is written: it is
        the size of the parameters, and the shards read it back from the output.
        """
        if self.analytic is None:
            problem = self.problem
            if problem.gradient is not None:
                self.analytic = stores.read_gradient(problem.gradient, problem.layout)
            else:
                raw = _call("grad at θ", self.model.grad, self.params, self.data)
                self.analytic = check_gradient(raw, problem.layout, "model.grad")
        return self.analytic


def _call(what: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn(*args)``, which calls the user's model; its exceptions become one-line model errors."""
    try:
        return fn(*args)
    except GradcheckError:
        raise
    except Exception as e:
        raise ModelError(f"Model {what} raised {type(e).__name__}: {e}") from e


#: The most memory one batch of perturbed parameter copies may take...
BATCH_BYTES = 64 * 2**20
#: ...and the fewest rows worth a batch: a model too large for that is evaluated plainly,
#: in place, whatever it offers (no allocation proportional to its size per index).
MIN_BATCH_ROWS = 4

_local = threading.local()


def _output_arrays(problem: Problem) -> stores.OutputArrays:
    """This thread's handles on the run's output arrays, opened once per run."""
    cached: tuple[str, stores.OutputArrays] | None = getattr(_local, "output", None)
    if cached is None or cached[0] != problem.run_id:
        cached = (problem.run_id, stores.OutputArrays(problem.output))
        _local.output = cached
    return cached[1]


def _load(problem: Problem) -> tuple[_Loaded, bool]:
    """This thread's loaded problem, and whether this call had to load it."""
    loaded: _Loaded | None = getattr(_local, "loaded", None)
    if loaded is not None and loaded.problem.run_id == problem.run_id:
        return loaded, False
    _local.loaded = None  # release the previous run's arrays before loading
    _local.loaded = _Loaded(problem)
    return _local.loaded, True


def probe_task(problem: Problem) -> ProbeResult:
    """Check the model at θ before anything is written: a finite scalar loss, a gradient of the right shapes."""
    start = time.perf_counter()
    loaded, _ = _load(problem)
    for name, array in loaded.params.items():
        bad = np.flatnonzero(~np.isfinite(array.reshape(-1)))
        if bad.size:
            first = [int(k) for k in np.unravel_index(int(bad[0]), array.shape)]
            raise StoreError(
                f"The params store '{problem.params}': array '{name}' holds {bad.size} non-finite value(s), "
                f"the first at {first}; parameters must be finite."
            )
    loss = as_loss_value(_call("loss at θ", loaded.loss), "at θ")
    loaded.analytic_gradient()
    return ProbeResult(
        loss=loss,
        loss_seconds=_time_loss(loaded),
        loss_equivalents_per_index=_loss_equivalents(loaded, loss),
        seconds=time.perf_counter() - start,
    )


def _loss_equivalents(loaded: _Loaded, loss: float) -> float:
    """Loss evaluations an index costs: 2, or for a staged model 2 × the share of the
    stage costs (timed here at θ) that perturbing its tensor re-evaluates."""
    if not loaded.stages:
        return 2.0
    staged = as_loss_value(_call("stages at θ", loaded.loss_from, 0), "from its stages at θ")
    if abs(staged - loss) > 1e-12 * max(1.0, abs(loss)):
        raise ModelError(
            f"Model stages evaluate the loss at θ to {staged!r}, but loss gives {loss!r}; they must agree."
        )
    costs = [
        _fastest(functools.partial(forward, loaded.stage_inputs[s], loaded.params, loaded.data))
        for s, (_, forward) in enumerate(loaded.stages)
    ]
    share_from = [sum(costs[s:]) / sum(costs) for s in range(len(costs))]
    layout = loaded.problem.layout
    return 2 * sum(spec.size * share_from[loaded.stage_of[spec.name]] for spec in layout.tensors) / layout.n_params


def _time_loss(loaded: _Loaded, budget_seconds: float = 0.2, at_most: int = 20) -> float:
    """Seconds per loss evaluation at θ, in this worker, the way the shards will evaluate it.

    The fastest of a few runs: one loss, or one batch of losses divided by its rows.
    """
    if not loaded.batched:
        return _fastest(loaded.loss, budget_seconds, at_most)
    rows = loaded.batch_rows(2 * min(loaded.problem.layout.n_params, 64))
    batch = {name: np.repeat(array[np.newaxis], rows, axis=0) for name, array in loaded.params.items()}
    return (
        _fastest(functools.partial(_call, "loss_batch at θ", loaded.loss_batch, batch), budget_seconds, at_most) / rows
    )


def _fastest(evaluate: Callable[[], Any], budget_seconds: float = 0.1, at_most: int = 50) -> float:
    """The fastest of repeated calls (at least 3, then until the budget is spent): robust to a noisy machine."""
    fastest, spent, runs = float("inf"), 0.0, 0
    while runs < at_most and (runs < 3 or spent < budget_seconds):
        start = time.perf_counter()
        evaluate()
        took = time.perf_counter() - start
        fastest, spent, runs = min(fastest, took), spent + took, runs + 1
    return fastest


def analytic_task(problem: Problem, resuming: bool) -> bool:
    """Write the analytic gradient to the output's ``analytic`` array, once per run.

    When resuming, the array is already written: compare instead, and return
    whether the model still gives the same gradient (a changed model must not
    be mixed with the shards of the old one).
    """
    loaded, _ = _load(problem)
    analytic, target = loaded.analytic_gradient(), loaded.output.analytic
    same = True
    for spec in problem.layout.tensors:  # tensor by tensor: no flat copy of the whole gradient
        window = slice(spec.offset, spec.stop)
        if resuming:
            same = same and bool(
                np.array_equal(np.asarray(target[window]), analytic[spec.name].reshape(-1), equal_nan=True)
            )
        else:
            target[window] = analytic[spec.name].reshape(-1)
    loaded.analytic = None  # written (or compared): free it
    return same


def shard_task(problem: Problem, shard: Shard) -> ShardResult:
    """Centered differences over one shard; writes its chunks, then marks the shard done."""
    start = time.perf_counter()
    loaded, fresh = _load(problem)
    numeric = np.empty(shard.size, dtype=np.float64)
    nonfinite = np.zeros(shard.size, dtype=np.int8)
    evaluating = time.perf_counter()
    if loaded.stages:  # fewest evaluations
        _staged_shard(loaded, shard, numeric, nonfinite)
    elif loaded.batched:  # least overhead per evaluation
        _batched_shard(loaded, shard, numeric, nonfinite)
    else:
        _plain_shard(loaded, shard, numeric, nonfinite)
    evaluated = time.perf_counter()
    output = loaded.output
    output.numeric[shard.start : shard.stop] = numeric
    output.nonfinite[shard.start : shard.stop] = nonfinite
    # Last: a shard marked done has all its chunks written. A crash before this
    # line leaves the shard to be computed again, with the same values.
    output.done[shard.index] = 1
    analytic = np.asarray(output.analytic[shard.start : shard.stop])
    return summarize_shard(
        problem.layout,
        shard,
        analytic,
        numeric,
        nonfinite,
        worst=problem.worst,
        seconds=time.perf_counter() - start,
        loaded=fresh,
        evaluate_seconds=evaluated - evaluating,
    )


def _plain_shard(loaded: _Loaded, shard: Shard, numeric: np.ndarray, nonfinite: np.ndarray) -> None:
    """Two losses per index, perturbing the worker's own parameters in place."""
    problem = loaded.problem

    def loss() -> float:
        return float(loaded.loss())

    for spec, lo, hi in problem.layout.segments(shard.start, shard.stop):
        at = slice(spec.offset + lo - shard.start, spec.offset + hi - shard.start)
        numeric[at] = _call(
            f"loss near θ (tensor {spec.name}, elements {lo}..{hi - 1})",
            central_differences,
            loss,
            loaded.flat[spec.name],
            range(lo, hi),
            problem.epsilon,
            nonfinite[at],
        )


def _staged_shard(loaded: _Loaded, shard: Shard, numeric: np.ndarray, nonfinite: np.ndarray) -> None:
    """Two partial losses per index: only the stages from the one owning the tensor on."""
    problem = loaded.problem
    for spec, lo, hi in problem.layout.segments(shard.start, shard.stop):
        at = slice(spec.offset + lo - shard.start, spec.offset + hi - shard.start)
        numeric[at] = _call(
            f"stages near θ (tensor {spec.name}, elements {lo}..{hi - 1})",
            central_differences,
            functools.partial(_float_loss_from, loaded, loaded.stage_of[spec.name]),
            loaded.flat[spec.name],
            range(lo, hi),
            problem.epsilon,
            nonfinite[at],
        )


def _float_loss_from(loaded: _Loaded, stage: int) -> float:
    return float(loaded.loss_from(stage))


def _batched_shard(loaded: _Loaded, shard: Shard, numeric: np.ndarray, nonfinite: np.ndarray) -> None:
    """The same differences through ``loss_batch``: as many indices per call as the memory budget allows."""
    problem = loaded.problem
    entries = [
        (spec.name, k) for spec, lo, hi in problem.layout.segments(shard.start, shard.stop) for k in range(lo, hi)
    ]
    per_call = loaded.batch_rows(2 * len(entries)) // 2
    for first in range(0, len(entries), per_call):
        part = entries[first : first + per_call]
        at = slice(first, first + len(part))
        numeric[at] = _call(
            f"loss_batch near θ (indices {shard.start + first}..{shard.start + first + len(part) - 1})",
            batched_central_differences,
            loaded.loss_batch,
            loaded.params,
            part,
            problem.epsilon,
            nonfinite[at],
        )


def summary_task(problem: Problem, shard: Shard) -> ShardResult:
    """The summary of a shard an earlier, interrupted run completed: read back, not recomputed."""
    start = time.perf_counter()
    output = _output_arrays(problem)  # no params or data: nothing is evaluated
    window = slice(shard.start, shard.stop)
    return summarize_shard(
        problem.layout,
        shard,
        np.asarray(output.analytic[window]),
        np.asarray(output.numeric[window]),
        np.asarray(output.nonfinite[window]),
        worst=problem.worst,
        seconds=time.perf_counter() - start,
        loaded=False,
    )
