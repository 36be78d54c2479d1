"""The composition root: config -> plan -> cluster -> shard tasks -> report."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from distributed import Client, as_completed
from distributed.scheduler import KilledWorker

from . import kernel, stores
from .cluster import connect
from .config import DEFAULT_SCHEME, Config
from .diagnose import MAX_ELEMENTS, diagnose
from .errors import ClusterError, ConfigError, GradcheckError, ModelImportError, OutputExistsError
from .fd import AUTO_POWER, COMPLEX_STEP, STENCILS
from .layout import Layout
from .model import ModelRef, load_model, missing_module, shipped
from .plan import Shard, auto_shard_size, make_plan, sampled_positions
from .reduce import DirectionResult, ShardResult, Verdict, combine, direction_difference, with_directions
from .report import Report, TensorReport

__all__ = ["RunCancelled", "check", "identity", "importable_everywhere", "make_problem", "run", "validate"]

#: ``progress(done, total)`` is called after each shard arrives.
Progress = Callable[[int, int], None]
#: Seconds between two looks at ``stop`` while no shard arrives.
STOP_POLL_SECONDS = 0.1


class RunCancelled(GradcheckError):
    """``stop`` asked the run to end: its finished shards are kept, and the same run resumes them."""


def identity(config: Config) -> str:
    """What makes two runs the same run: the settings that decide the numbers and the stores' contents.

    The model's code is not part of it, so that a run stopped by a crashing model
    resumes once the model is fixed; a changed gradient is caught on resume instead.
    An automatic shard size is part of it as ``auto``: a resumed run keeps the size
    its output was made with.
    """
    key = {
        "model": config.model,
        "epsilon": config.epsilon,
        "scheme": config.scheme,
        "tolerance": config.tolerance,
        "indices": config.indices,
        "directions": config.directions,
        "precision": config.precision,
        "shard_size": config.shard_size or "auto",
        "params": stores.fingerprint("params", config.params, config.storage_options),
        "data": stores.fingerprint("data", config.data, config.storage_options),
        "gradient": None
        if config.gradient is None
        else stores.fingerprint("gradient", config.gradient, config.storage_options),
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def run(
    config: Config,
    *,
    model: ModelRef | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
    client: Client | None = None,
    stop: Callable[[], bool] | None = None,
    job: Mapping[str, object] | None = None,
) -> Report:
    """Run one gradient check and write its output group; resume it if it was interrupted.

    Parameters
    ----------
    config : Config
        The validated run configuration.
    model : object or ModelSource, optional
        The model object itself, or a file reference with the source to run,
        used instead of resolving ``config.model`` (which then only names it in
        the report).
    overwrite : bool
        Start afresh: replace whatever gradcheck output is at ``config.output``.
    progress : callable, optional
        Called as ``progress(shards_done, shards_total)``.
    client : distributed.Client, optional
        Use this client instead of the cluster that ``config.cluster`` describes.
    stop : callable, optional
        Asked while shards run; True ends the run with :class:`RunCancelled`,
        keeping the finished shards (see :mod:`pipeline.jobs`).
    job : mapping, optional
        The detached job running this check, recorded in the output's ``progress``.

    Returns
    -------
    Report
        Also stored in the output group's attributes.

    Raises
    ------
    GradcheckError
        Bad input: a store, the model or the output cannot be used, or the
        cluster cannot be reached. Shards completed before the error are kept.
    """
    started = time.perf_counter()
    options = config.storage_options
    layout, model_ref = validate(config, model)
    problem = make_problem(config, layout, model_ref)
    with stores.output_lock(config.output):
        identity_ = identity(config)
        resuming = stores.check_output(config.output, identity_, overwrite=overwrite, options=options)
        steps = _Run(problem, config, identity_, resuming, overwrite, progress, started, stop, job)
        try:
            if client is not None:
                timings, results, probe, directions = steps.execute(client)
            else:
                with connect(config.cluster, layout.n_params) as own_client:
                    timings, results, probe, directions = steps.execute(own_client)
        except BaseException as e:
            # Said while the lock is still held: `status` never sees a run that is neither running nor ended.
            _ended(config, "cancelled" if isinstance(e, (RunCancelled, KeyboardInterrupt)) else "failed", e)
            raise
        verdict = combine(layout, results, threshold=config.threshold, worst=config.worst)
        tensors = with_directions(_diagnosed(config.output, layout, verdict, options), directions)
        difference = verdict.difference
        if not verdict.n_checked and directions:  # directions only: the seed's difference over them
            difference = direction_difference(directions)
        timings["total_seconds"] = time.perf_counter() - started
        report = Report(
            model=config.model,
            difference=difference,
            passed=verdict.passed and all(t.passed for t in tensors),  # a wrong direction makes its tensor wrong
            epsilon="auto" if config.epsilon is None else config.epsilon,
            threshold=config.threshold,
            n_params=layout.n_params,
            n_checked=verdict.n_checked,
            loss=probe.loss,
            tensors=tensors,
            worst=verdict.worst,
            nonfinite=verdict.nonfinite,
            timings=timings,
            scheme=config.scheme,
            step_rule=_step_rule(config),
            tolerance=_tolerance_report(problem),
            noise={"level": probe.noise, "measured": probe.noise_measured, "spread_at_theta": probe.spread},
            sample=_sample_report(config),
            n_wrong=verdict.n_wrong,
            n_nondifferentiable=verdict.n_nondifferentiable,
            directions=tuple(d.to_dict() for d in directions),
        )
        stores.update_attrs(
            config.output,
            {"config": config.to_dict(), "report": report.to_dict(), "state": {"state": "finished", "at": time.time()}},
            options,
        )
    return report


def _ended(config: Config, state: str, error: BaseException) -> None:
    """Record how a run that had started its shards ended early; an output it did not get to is left as it is."""
    try:
        recorded = stores.read_output_attrs(config.output, config.storage_options).get("state") or {}
        if recorded.get("state") == "running":
            message = str(error) if isinstance(error, GradcheckError) else f"{type(error).__name__}: {error}"
            update = {"state": state, "message": message, "at": time.time()}
            stores.update_attrs(config.output, {"state": update}, config.storage_options)
    except GradcheckError:
        pass  # no output (yet, or any more): nothing to say it in


def validate(config: Config, model: ModelRef | None = None) -> tuple[Layout, ModelRef]:
    """Check, before any cluster starts, what metadata can tell; return the layout and the model as it travels.

    Workers import the model themselves: a module by name, a file from the source
    read here; an object the caller handed us travels by pickle.
    """
    options = config.storage_options
    layout = stores.read_layout(config.params, options)
    stores.validate_data(config.data, options)
    if config.gradient is not None:
        stores.validate_gradient(config.gradient, layout, options)
    model_ref: ModelRef = model if model is not None else shipped(config.model)
    load_model(model_ref)
    return layout, model_ref


def make_problem(config: Config, layout: Layout, model: ModelRef) -> kernel.Problem:
    """What the workers get for this run, as plain data."""
    return kernel.Problem(
        run_id=uuid.uuid4().hex,
        model=model,
        params=config.params,
        data=config.data,
        gradient=config.gradient,
        output=config.output,
        layout=layout,
        epsilon=config.epsilon,
        worst=config.worst,
        scheme=config.scheme,
        tolerance=tuple(config.tolerance.items()) if isinstance(config.tolerance, Mapping) else (),
        judged=config.tolerance != "none",
        sample=config.sample,
        promote=config.precision == "float64",
        storage_options=config.storage_options,
    )


def _tolerance_report(problem: kernel.Problem) -> dict[str, object]:
    """The tolerance per tensor dtype, as the report states it (empty when elements are not judged)."""
    if not problem.judged:
        return {}
    return {
        dtype: problem.tolerance_for(dtype).to_dict() for dtype in sorted({t.dtype for t in problem.layout.tensors})
    }


def _step_rule(config: Config) -> str:
    """How the steps were chosen, in words."""
    if config.epsilon is not None:
        if config.scheme == "complex-step":
            return f"fixed step {config.epsilon:g}: Im J(θ + i·h) / h"
        return f"fixed step {config.epsilon:g}; the quotient divides by 2·epsilon, as the seed's formula does"
    if config.scheme == "complex-step":
        return f"{COMPLEX_STEP:g}·max(1, |θ_i|) per element; Im J(θ + i·h) / h"
    power = AUTO_POWER[config.scheme]
    return (
        f"EPS**(1/{round(1 / power)})·max(1, |θ_i|) per element, EPS of the parameter dtype; "
        "divided by the steps the floats actually took"
    )


#: The most indices a shard of a sampled run spans (its chunk of each output array).
MAX_SAMPLED_SHARD = 2**16

#: Confidence of the statement a clean sample supports.
SAMPLE_CONFIDENCE = 0.95


def _sample_report(config: Config) -> dict[str, object]:
    """What a clean sample means, for a sampled run."""
    if config.sample is None:
        return {}
    k, seed = config.sample
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


def _diagnosed(
    output: str, layout: Layout, verdict: Verdict, options: stores.Options = None
) -> tuple[TensorReport, ...]:
    """The verdict's tensors, each wrong one with a diagnosis read from the output's arrays."""
    arrays: stores.OutputArrays | None = None  # opened only if a tensor is wrong
    tensors = []
    for spec, tensor in zip(layout.tensors, verdict.tensors, strict=True):
        if not tensor.passed and spec.size <= MAX_ELEMENTS:
            arrays = arrays or stores.OutputArrays(output, options)
            window = slice(spec.offset, spec.stop)
            a, n, allowed, status = (
                np.asarray(array[window]) for array in (arrays.analytic, arrays.numeric, arrays.allowed, arrays.status)
            )
            tensor = dataclasses.replace(tensor, diagnosis=diagnose(spec.shape, a, n, allowed, status))
        tensors.append(tensor)
    return tuple(tensors)


@dataclass(frozen=True, slots=True)
class _Run:
    """One run's plain settings, and its steps on a client."""

    problem: kernel.Problem
    config: Config
    identity: str
    resuming: bool
    overwrite: bool
    progress: Progress | None
    started: float
    stop: Callable[[], bool] | None
    job: Mapping[str, object] | None

    def execute(
        self, client: Client
    ) -> tuple[dict[str, float], list[ShardResult], kernel.ProbeResult, list[DirectionResult]]:
        """Probe; then, only if the model is usable, plan, create the output and run the missing shards."""
        problem, n = self.problem, self.problem.layout.n_params
        ready = time.perf_counter()
        importable_everywhere(client, problem.model)
        probe_future = client.submit(kernel.probe_task, problem, pure=False)
        probe: kernel.ProbeResult = probe_future.result()
        problem = dataclasses.replace(problem, loss0=probe.loss, noise=probe.noise)
        workers = len(client.scheduler_info(n_workers=-1)["workers"])
        checked = _checked(problem)
        n_checked = sum(positions.size for positions in checked.values()) if checked else n
        if self.resuming:
            shard_size = stores.output_shard_size(problem.output, problem.storage_options)
        else:
            # An index costs loss_equivalents_per_index evaluations (the scheme's stencil, fewer if staged).
            per_evaluation = probe.loss_seconds * probe.loss_equivalents_per_index / 2
            shard_size = self.config.shard_size or auto_shard_size(n_checked, per_evaluation, workers)
            if checked:  # the same number of tasks, each spanning its share of the whole index space...
                shard_size = math.ceil(n / max(1, math.ceil(n_checked / shard_size)))
                # ...but a chunk, and a shard's arrays, stay small: empty shards are never run.
                shard_size = min(shard_size, MAX_SAMPLED_SHARD)
        plan = make_plan(n, shard_size)
        if checked:
            plan = tuple(shard for shard in plan if _holds_sample(problem.layout, checked, shard))
        done = (
            frozenset(int(k) for k in stores.completed_shards(problem.output, problem.storage_options))
            if self.resuming
            else frozenset()
        )
        created = stores.prepare_output(
            problem.output,
            problem.layout,
            shard_size,
            self.identity,
            overwrite=self.overwrite,
            options=problem.storage_options,
        )
        # The probe's worker holds the analytic gradient: write (or, on resume, compare) it from there.
        prober = list(client.who_has(probe_future).get(probe_future.key, ()))
        try:
            same = client.submit(
                kernel.analytic_task, problem, bool(done), pure=False, workers=prober, allow_other_workers=True
            ).result()
        except BaseException:
            if created:  # nothing computed yet: leave nothing half-written where there was nothing before
                stores.remove_output(problem.output, problem.storage_options)
            raise
        if not same:
            raise OutputExistsError(
                f"The output '{problem.output}' holds an interrupted run whose analytic gradient differs from "
                "what the model gives now: the model changed. Pass --overwrite to start again."
            )
        shards_started = time.perf_counter()
        directions = [
            client.submit(kernel.direction_task, problem, spec.name, j, pure=False)
            for spec in problem.layout.tensors
            for j in range(self.config.directions)
        ]
        todo = [shard for shard in plan if shard.index not in done]
        futures = {
            **dict(zip(client.map(kernel.shard_task, [problem] * len(todo), todo, pure=False), todo, strict=True)),
            **{client.submit(kernel.summary_task, problem, s, pure=False): s for s in plan if s.index in done},
        }
        width = len(STENCILS[problem.scheme])
        stores.update_attrs(
            problem.output,
            {
                "progress": {
                    "started": time.time(),
                    "shards": len(plan),
                    "resumed": len(done),
                    "evaluations": width * (n_checked * len(todo) // max(1, len(plan)) + len(directions)),
                    "job": dict(self.job) if self.job else None,
                },
                "state": {"state": "running"},
            },
            problem.storage_options,
        )
        results: list[ShardResult] = []
        arriving, next_look = as_completed(futures), time.monotonic()
        while not arriving.is_empty():
            if self.stop is not None:  # a detached job: look at `stop` every so often, busy or not
                if time.monotonic() >= next_look:
                    next_look = time.monotonic() + STOP_POLL_SECONDS
                    if self.stop():
                        client.cancel([*futures, *directions])
                        kept = len(stores.completed_shards(problem.output, problem.storage_options))
                        raise RunCancelled(
                            f"Cancelled with {kept} of {len(plan)} shards done; they are kept, "
                            "and the same run resumes from them."
                        )
                if not arriving.has_ready():
                    # Not shorter: the driver shares its worker's GIL with the shard being computed.
                    time.sleep(STOP_POLL_SECONDS)
                    continue
            future = next(arriving)
            try:
                results.append(future.result())
            except KilledWorker as e:
                raise _crashed(problem, futures[future], len(plan)) from e
            if self.progress is not None:
                self.progress(len(results), len(plan))
        direction_results: list[DirectionResult] = client.gather(directions)
        finished = time.perf_counter()
        evaluations = width * sum(t.n_checked for r in results if r.shard.index not in done for t in r.sums)
        evaluations += width * len(direction_results)
        timings = {
            "cluster_seconds": ready - self.started,
            "probe_seconds": probe.seconds,
            "loss_seconds": probe.loss_seconds,
            "loss_equivalents_per_index": probe.loss_equivalents_per_index,
            "shard_size": float(shard_size),
            "shards_seconds": finished - shards_started,
            "evaluate_seconds": math.fsum(r.evaluate_seconds for r in results),  # the losses alone, all shards
            "loss_evaluations": float(evaluations + 2 + 9 * probe.noise_measured),
            "evaluations_per_second": evaluations / (finished - shards_started) if finished > shards_started else 0.0,
            "resumed_shards": float(len(done)),
            "worker_loads": float(sum(r.loaded for r in results)),
            "workers": float(workers),
        }
        return timings, results, probe, direction_results


def importable_everywhere(client: Client, model: ModelRef) -> None:
    """Refuse, naming the workers, a model module that some worker cannot import."""
    answers = client.run(missing_module, model)
    missing = sorted(worker for worker, why in answers.items() if why)
    if missing:
        raise ModelImportError(
            f"{answers[missing[0]]} on {len(missing)} of the cluster's {len(answers)} workers "
            f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}): install it there, "
            "put it on their PYTHONPATH, or name the model by file path."
        )


def _checked(problem: kernel.Problem) -> dict[str, np.ndarray]:
    """Per tensor, the elements a sampled run checks (sorted); empty when it checks all."""
    if problem.sample is None:
        return {}
    k, seed = problem.sample
    return {
        spec.name: sampled_positions(spec.size, k, seed, number) for number, spec in enumerate(problem.layout.tensors)
    }


def _holds_sample(layout: Layout, checked: dict[str, np.ndarray], shard: Shard) -> bool:
    """Whether a shard's range holds any sampled element."""
    return any(
        np.any((checked[spec.name] >= lo) & (checked[spec.name] < hi))
        for spec, lo, hi in layout.segments(shard.start, shard.stop)
    )


def _crashed(problem: kernel.Problem, shard: Shard, total: int) -> ClusterError:
    """The error for a shard whose task killed every worker that ran it."""
    completed = len(
        stores.completed_shards(problem.output, problem.storage_options)
    )  # on disk, not only those reported back
    first, last = problem.layout.locate(shard.start), problem.layout.locate(shard.stop - 1)
    return ClusterError(
        f"Shard {shard.index} (indices {shard.start}..{shard.stop - 1}: {first[0]}{list(first[1])} to "
        f"{last[0]}{list(last[1])}) killed the worker running it, as many times as Dask allows "
        "(distributed.scheduler.allowed-failures): the model may crash the process there. "
        f"At least {completed} of {total} shards are complete and kept in '{problem.output}'; "
        "fix the model and run the same command again to resume."
    )


def check(
    model: ModelRef,
    params: Mapping[str, np.ndarray],
    data: Mapping[str, np.ndarray],
    *,
    gradient: Mapping[str, np.ndarray] | None = None,
    epsilon: float | str | None = "auto",
    threshold: float | None = None,
    scheme: str = DEFAULT_SCHEME,
    tolerance: str | Mapping[str, float] = "auto",
    indices: str | Mapping[str, int] = "all",
    directions: int = 0,
    precision: str = "native",
    shard_size: int | None = None,
    worst: int = 10,
    workers: int | None = None,
    output: str | None = None,
    client: Client | None = None,
) -> Report:
    """Check a model's gradient on in-memory arrays; the notebook and pytest entry point.

    Parameters
    ----------
    model : object or str
        An object with ``loss(params, data)`` and ``grad(params, data)``, or a
        reference ``package.module:attr`` / ``path/to/file.py:attr``.
    params : dict of str to ndarray
        The parameter tensors (float32 or float64); the dict's order is the
        flattening order.
    data : dict of str to ndarray
        Passed to the model as it is.
    gradient : dict of str to ndarray, optional
        A precomputed analytic gradient; without it ``model.grad`` is called once.
    epsilon, threshold, scheme, tolerance, indices, directions, precision, shard_size, worst
        As in the config (see :class:`Config`).
    workers : int, optional
        Size of the local cluster started for this check.
    output : str, optional
        Where to keep the output group; a temporary folder by default.
    client : distributed.Client, optional
        Run on this client's cluster instead of starting one (saves the
        start-up when checking many models).

    Returns
    -------
    Report
    """
    if not isinstance(params, Mapping) or not params:
        raise ConfigError(f"`params` must be a non-empty dict of arrays. Got {params!r} instead.")
    if not isinstance(data, Mapping):
        raise ConfigError(f"`data` must be a dict of arrays. Got {type(data).__name__} instead.")
    name = model if isinstance(model, str) else f"{type(model).__module__}.{type(model).__qualname__}"
    with tempfile.TemporaryDirectory(prefix="gradcheck-") as scratch:
        stores.write_group(os.path.join(scratch, "params.zarr"), params, {"order": list(params)})
        stores.write_group(os.path.join(scratch, "data.zarr"), data)
        if gradient is not None:
            stores.write_group(os.path.join(scratch, "gradient.zarr"), gradient)
        config = Config.from_dict(
            {
                "model": name,
                "params": os.path.join(scratch, "params.zarr"),
                "data": os.path.join(scratch, "data.zarr"),
                "gradient": None if gradient is None else os.path.join(scratch, "gradient.zarr"),
                "output": output or os.path.join(scratch, "output.zarr"),
                "epsilon": epsilon,
                "threshold": threshold,
                "scheme": scheme,
                "tolerance": tolerance,
                "indices": indices,
                "directions": directions,
                "precision": precision,
                "shard_size": shard_size,
                "worst": worst,
                "cluster": {"workers": workers} if workers is not None else None,
            }
        )
        return run(config, model=None if isinstance(model, str) else model, client=client)
