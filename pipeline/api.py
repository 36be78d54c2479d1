"""The composition root: a config (or in-memory arrays) in, a report out.

``run`` opens the input stores once, chooses the executor (in this process, or
Dask tasks on a local or an existing cluster), lets the driver run the check's
steps, then reduces the shards' results to the report. ``check`` is the same
for dicts of arrays: in this process, with nothing written, unless a cluster or
an output is asked for.

Zarr and Dask are imported only by the runs that use them: an in-process check
of arrays in memory needs neither (and a script or a test suite starts faster).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import DEFAULT_SCHEME, Config
from .errors import ConfigError, ConfigTypeError, GradcheckError, ModelError, StoreError
from .execution.driver import Executed, Executor, Progress, RunCancelled, Target, execute
from .execution.inline import InlineExecutor, MemoryOutput, one_blas_thread, peak_rss_bytes, reset_peak_rss
from .model import Model, ModelRef, check_gradient, load_model, refuse_coarser_gradient, shipped
from .numerics.cost import Cost, estimate_cost
from .numerics.diagnose import diagnose_tensors
from .numerics.fd import STENCILS
from .numerics.layout import Layout
from .numerics.plan import plan_shards, slots_for
from .numerics.probe import JUMP, ONE_SIDED
from .numerics.probe import probe as core_probe
from .numerics.problem import Loaded, Output, Settings
from .numerics.reduce import combine, direction_difference, with_directions
from .report import Report, sample_statement, step_rule, tolerance_statement
from .storage import is_url, name_problem

if TYPE_CHECKING:
    from distributed import Client

    from .execution.dask import Problem
    from .storage.inputs import Inputs
    from .storage.output import StoredOutput

__all__ = ["Plan", "RunCancelled", "check", "identity", "make_problem", "plan", "run", "settings_for", "validate"]


def identity(config: Config, inputs: Inputs) -> str:
    """What makes two runs the same run: the settings that decide the numbers and the stores' contents.

    The model's code is not part of it, so that a run stopped by a crashing model
    resumes once the model is fixed; a changed gradient is caught on resume instead.
    An automatic shard size is part of it as ``auto``: a resumed run keeps the size
    its output was made with.
    """
    return hashlib.sha256(json.dumps(_identity_key(config, inputs), sort_keys=True).encode()).hexdigest()[:16]


def identity_parts(config: Config, inputs: Inputs) -> dict[str, str]:
    """Each part of :func:`identity`, hashed on its own: an output of another check then says which differ."""
    return {
        name: hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:12]
        for name, value in _identity_key(config, inputs).items()
    }


def _identity_key(config: Config, inputs: Inputs) -> dict[str, Any]:
    return {
        "model": config.model,
        "epsilon": config.epsilon,
        "scheme": config.scheme,
        "tolerance": config.tolerance,
        "indices": config.indices,
        "directions": config.directions,
        "direction_test": config.direction_test,
        "second_look": config.second_look,
        "precision": config.precision,
        "shard_size": config.shard_size or "auto",
        **inputs.fingerprints,
    }


def settings_for(config: Config, layout: Layout) -> Settings:
    """The numerics' view of a config."""
    return Settings(
        layout=layout,
        epsilon=config.epsilon,
        worst=config.worst,
        scheme=config.scheme,
        tolerance=tuple(config.tolerance.items()) if isinstance(config.tolerance, Mapping) else (),
        judged=config.tolerance != "none",
        sample=config.sample,
        promote=config.precision == "float64",
        second_look=config.second_look,
        taylor=config.direction_test == "taylor",
    )


def validate(config: Config, model: ModelRef | None = None) -> tuple[Inputs, ModelRef, Model]:
    """Check, before any cluster starts, what metadata can tell.

    Returns the opened inputs, the model as it travels and the model loaded here. Workers
    import the model themselves: a module by name, a file from the source read here; an
    object the caller handed us travels by pickle.
    """
    from .storage.inputs import Inputs

    if not is_url(config.output):
        folder = os.path.dirname(os.path.abspath(config.output))
        if not os.path.isdir(folder):
            raise ConfigError(
                f"`output`: the folder '{folder}' does not exist. Create it, or choose an `output` in an existing folder."
            )
    _refuse_output_among_inputs(config)
    inputs = Inputs(config.params, config.data, config.gradient, config.storage_options)
    if config.gradient is not None:
        refuse_coarser_gradient(
            inputs.dtypes("gradient"),
            {spec.name: spec.dtype for spec in inputs.layout.tensors},
            config.precision == "float64",
            f"The gradient store '{config.gradient}'",
            StoreError,
        )
    model_ref: ModelRef = model if model is not None else shipped(config.model)
    return inputs, model_ref, load_model(model_ref)


def _refuse_output_among_inputs(config: Config) -> None:
    """Refuse an ``output`` that is an input store, lies inside one or holds one: a run writes its arrays there, and
    would add them to the arrays the model is given, or replace an input with ``--overwrite`` (review 122: an output
    inside the params store left every later check of that store refused)."""

    def where(path: str) -> str:
        for local in ("file://", "local://"):  # a local path as a URL (review 123: not compared, and written into)
            path = path.removeprefix(local)
        return path.rstrip("/") if is_url(path) else os.path.realpath(path)

    output = where(config.output)
    for role in ("params", "data", "gradient"):
        store = getattr(config, role)
        if store is None:
            continue
        path = where(store)
        if output == path or output.startswith(path + "/") or path.startswith(output + "/"):
            relation = "is" if output == path else "lies inside" if output.startswith(path + "/") else "holds"
            raise ConfigError(
                f"`output` '{config.output}' {relation} the {role} store '{store}': a run writes its arrays there. "
                "Choose an `output` outside every input store."
            )


def make_problem(config: Config, layout: Layout, model: ModelRef) -> Problem:
    """What the workers get for this run, as plain data."""
    from .execution.dask import Problem

    return Problem(
        run_id=uuid.uuid4().hex,
        model=model,
        params=config.params,
        data=config.data,
        gradient=config.gradient,
        output=config.output,
        settings=settings_for(config, layout),
        storage_options=config.storage_options,
    )


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
        The validated run configuration. ``cluster: inline`` runs it in this process.
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
        keeping the finished shards (see :mod:`pipeline.execution.jobs`).
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
    from .storage import output

    started = time.perf_counter()
    reset_peak_rss()  # the client's peak memory is this run's
    inputs, model_ref, loaded_model = validate(config, model)
    layout = inputs.layout
    target = output.StoredOutput(config.output, config.storage_options)
    with _disk_errors(config.output), output.output_lock(config.output, config.storage_options):
        identity_, parts = identity(config, inputs), identity_parts(config, inputs)
        resuming = output.check_output(
            config.output,
            identity_,
            sampled=config.sample is not None,
            overwrite=overwrite,
            options=config.storage_options,
            parts=parts,
        )
        steps: dict[str, Any] = {
            "shard_size": config.shard_size,
            "directions": config.directions,
            "identity": identity_,
            "identity_parts": parts,
            "resuming": resuming,
            "overwrite": overwrite,
            "progress": progress,
            "started": started,
            "job": job,
            "data_bytes": inputs.data_bytes,
            "float32_data_bytes": inputs.float32_data_bytes,
        }
        settings = settings_for(config, layout)
        try:
            if client is None and config.cluster.inline:
                with one_blas_thread():
                    loaded = _loaded_here(config, inputs, settings, loaded_model)
                    executed = execute(InlineExecutor(loaded, target), target, settings, **steps)
            else:
                executed = _on_dask(config, layout, model_ref, client, stop, target, settings, steps)
        except BaseException as e:
            # Said while the lock is still held: `status` never sees a run that is neither running nor ended.
            _ended(target, e)
            raise
        # its output's size once it is in it; a wrong tensor's parameters read back for its diagnosis
        report = _report(config, executed, lambda: target.arrays, started, params=inputs.tensor)
        target.record({"config": config.to_dict(), "report": report.to_dict()})
        if report.cost:
            actual = {**report.cost["actual"], "output_bytes": target.size_bytes()}
            report = dataclasses.replace(report, cost={**report.cost, "actual": actual})
        target.record({"report": report.to_dict(), "state": {"state": "finished", "at": time.time()}})
    return report


def _loaded_here(config: Config, inputs: Inputs, settings: Settings, model: Model) -> Loaded:
    """A config's problem loaded into this process: its stores read, the gradient store (if any) on demand."""
    return Loaded(
        settings,
        model,
        inputs.read("params"),
        inputs.read("data"),
        gradient=None if config.gradient is None else functools.partial(inputs.read, "gradient"),
        params_source=f"The params store '{config.params}'",
    )


@contextlib.contextmanager
def _disk_errors(path: str) -> Iterator[None]:
    """A full or failing disk, wherever the run met it (the lock, the output, a worker's write), as one line."""
    from .storage.access import FULL_DISK

    try:
        yield
    except OSError as e:
        if e.errno not in FULL_DISK:
            raise
        raise StoreError(
            f"The output '{path}' cannot be written: {e.strerror or e}. Make room and run the same command "
            "again: the shards finished before are kept, and checked before they are trusted."
        ) from e


def _on_dask(
    config: Config,
    layout: Layout,
    model: ModelRef,
    client: Client | None,
    stop: Callable[[], bool] | None,
    target: Target,
    settings: Settings,
    steps: dict[str, Any],
) -> Executed:
    """The run's steps as Dask tasks, on ``client`` or on the cluster the config names."""
    from .execution.cluster import connect
    from .execution.dask import DaskExecutor

    problem = make_problem(config, layout, model)
    if client is not None:
        return execute(DaskExecutor(client, problem, stop), target, settings, **steps)
    with connect(config.cluster, layout.n_params) as own_client:
        executor: Executor = DaskExecutor(own_client, problem, stop)
        return execute(executor, target, settings, **steps, local_cluster=config.cluster.is_local)


def _ended(target: StoredOutput, error: BaseException) -> None:
    """Record how a run that had started its shards ended early (``cancelled``, ``interrupted`` by Ctrl-C as a killed
    run is, or ``failed``, with its error); an output it did not get to is left as it is."""
    from .storage.output import read_output_attrs

    # No output (yet, or any more), or a disk too full to say it on: nothing to say it in.
    with contextlib.suppress(GradcheckError, OSError):
        recorded = read_output_attrs(target.path, target.options).get("state") or {}
        if recorded.get("state") == "running":
            if isinstance(error, KeyboardInterrupt):  # `status` says what that is, and how it resumes (review 92)
                state, message = "interrupted", ""
            elif isinstance(error, GradcheckError):
                state, message = ("cancelled" if isinstance(error, RunCancelled) else "failed"), str(error)
            else:
                state, message = "failed", f"{type(error).__name__}: {error}"
            target.record({"state": {"state": state, "message": message, "at": time.time()}})


def _report(
    config: Config,
    executed: Executed,
    arrays: Callable[[], Output],
    started: float,
    output_bytes: int = 0,
    params: Callable[[str], np.ndarray] | None = None,
) -> Report:
    """The report of an executed run: the reduced verdict, wrong tensors diagnosed from the output's arrays
    (and ``params(name)``, a tensor's parameter values)."""
    settings, probe, directions = executed.settings, executed.probe, executed.directions
    layout = settings.layout
    sources = dict(zip(layout.names, probe.noise_sources, strict=True))
    at_theta = {name for name, source in sources.items() if source == ONE_SIDED}
    jumped = {name for name, source in sources.items() if source == JUMP}
    verdict = combine(
        layout, executed.results, threshold=config.threshold, worst=config.worst, at_theta=at_theta, jumped=jumped
    )
    slots = slots_for(layout, settings.sample)
    tensors = with_directions(diagnose_tensors(slots, verdict.tensors, arrays, params), directions)
    difference = verdict.difference
    if not verdict.n_checked and directions:  # directions only: the seed's difference over them
        difference = direction_difference(directions)
    timings = {**executed.timings, "total_seconds": time.perf_counter() - started}
    cost = {}
    if executed.estimated is not None:
        actual = Cost(
            loss_evaluations=int(timings["loss_evaluations"]),
            wall_seconds=timings["total_seconds"],
            worker_memory_bytes=executed.worker_memory_bytes,
            client_memory_bytes=peak_rss_bytes(),
            output_bytes=output_bytes,
        )
        cost = {"estimated": executed.estimated.to_dict(), "actual": actual.to_dict()}
    coarse = probe.coarse_gradient or ("",) * len(tensors)
    tensors = tuple(
        dataclasses.replace(t, noise=level, noise_source=source, rounding=rounding, coarse_gradient=dtype)
        for t, level, source, rounding, dtype in zip(
            tensors, probe.noise, probe.noise_sources, probe.rounding, coarse, strict=True
        )
    )
    agreed = verdict.passed and all(t.passed for t in tensors)  # a wrong direction makes its tensor wrong
    not_verified = tuple(t.name for t in tensors if t.passed and not t.verified)
    outcome = "failed" if not agreed else "not verified" if not_verified and config.unverified == "fail" else "passed"
    return Report(
        model=config.model,
        difference=difference,
        passed=outcome == "passed",
        verdict=outcome,
        not_verified=not_verified,
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
        step_rule=step_rule(config.scheme, config.epsilon, config.precision == "float64"),
        tolerance=tolerance_statement(settings),
        noise={"spread_at_theta": probe.spread, "evaluations": probe.noise_evaluations},
        sample=sample_statement(config.sample),
        n_wrong=verdict.n_wrong,
        n_nondifferentiable=verdict.n_nondifferentiable,
        n_inconclusive=verdict.n_inconclusive,
        directions=tuple(d.to_dict() for d in directions),
        evaluation=probe.evaluation,
        cost=cost,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """What ``gradcheck plan`` says of a config: the run's shape and its estimated :class:`~.numerics.cost.Cost`."""

    cost: Cost
    n_params: int
    n_checked: int
    directions: int
    shards: int
    workers: int
    loss_seconds: float
    loss_source: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: the cost's five figures first, then how they were reached."""
        return {
            **self.cost.to_dict(),
            "n_params": self.n_params,
            "n_checked": self.n_checked,
            "directions": self.directions,
            "shards": self.shards,
            "workers": self.workers,
            "loss_seconds": self.loss_seconds,
            "loss_source": self.loss_source,
        }


def plan(config: Config, *, loss_seconds: float | None = None, model: ModelRef | None = None) -> Plan:
    """Estimate a run's cost without running it (:func:`~.numerics.cost.estimate_cost`).

    The loss's time is ``loss_seconds`` when given (then nothing is evaluated and no parameter is read),
    else the probe's, run here (the parameters and data are read into this process, the model checked at θ).
    The workers are the config's local cluster's, or counted on the existing cluster it names.
    """
    from .execution.cluster import local_workers, resolved

    inputs, _, loaded_model = validate(config, model)
    layout = inputs.layout
    settings = settings_for(config, layout)
    slots = slots_for(layout, settings.sample)
    equivalents, noise_evaluations, source = None, None, "given (--t-loss)"
    if loss_seconds is None:
        with one_blas_thread():
            probed = core_probe(_loaded_here(config, inputs, settings, loaded_model))
        loss_seconds, equivalents, noise_evaluations = (
            probed.loss_seconds,
            probed.loss_equivalents_per_index,
            probed.noise_evaluations,
        )
        source = "measured by the probe in this process"
    cluster = config.cluster if config.cluster.inline else resolved(config.cluster)
    if cluster.inline:
        workers = 1
    elif cluster.is_local:
        workers = local_workers(cluster, layout.n_params)  # as the run's cluster is started
    else:
        workers = _count_workers(config)
    _, shards = plan_shards(
        slots,
        wanted=config.shard_size,
        seconds_per_index=loss_seconds * (equivalents or len(STENCILS[config.scheme])),
        workers=workers,
    )
    cost = estimate_cost(
        settings,
        slots,
        directions=config.directions,
        shards=len(shards),
        workers=workers,
        loss_seconds=loss_seconds,
        loss_equivalents_per_index=equivalents,
        noise_evaluations=noise_evaluations,
        data_bytes=inputs.data_bytes,
        float32_data_bytes=inputs.float32_data_bytes,
        local_cluster=cluster.is_local and not cluster.inline,
        in_process=cluster.inline,
    )
    return Plan(cost, layout.n_params, slots.size, config.directions, len(shards), workers, loss_seconds, source)


def _count_workers(config: Config) -> int:
    """The workers of the existing cluster a config names (connecting to it, as a run would)."""
    from .execution.cluster import connect, worker_addresses

    with connect(config.cluster, 1) as client:
        return len(worker_addresses(client))


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
    direction_test: str = "difference",
    second_look: bool = True,
    unverified: str = "fail",
    precision: str = "native",
    shard_size: int | None = None,
    worst: int = 10,
    progress: Progress | None = None,
    output: str | None = None,
    overwrite: bool = False,
    cluster: str | Mapping[str, Any] | None = None,
    workers: int | None = None,
    client: Client | None = None,
) -> Report:
    """Check a model's gradient on in-memory arrays; the notebook, script and pytest entry point.

    Runs in this process and writes nothing, unless a cluster or an output is asked for.

    Parameters
    ----------
    model : object or str
        An object with ``loss(params, data)`` and ``grad(params, data)``, or a
        reference ``package.module:attr`` / ``path/to/file.py:attr``.
    params : dict of str to ndarray
        The parameter tensors (float32 or float64); the dict's order is the
        flattening order. They are copied, never modified.
    data : dict of str to ndarray
        Passed to the model as it is.
    gradient : dict of str to ndarray, optional
        A precomputed analytic gradient; without it ``model.grad`` is called once.
    epsilon, threshold, scheme, tolerance, indices, directions, direction_test, second_look, unverified, \
    precision, shard_size, worst
        As in the config (see :class:`~pipeline.config.Config`).
    progress : callable, optional
        Called as ``progress(shards_done, shards_total)`` after each shard.
    output : str, optional
        Keep the output group there (a run that can be resumed, and read by
        ``gradcheck report``); by default nothing is written.
    overwrite : bool, optional
        Replace the result of another check at ``output`` (``--overwrite``); by default it is refused.
    cluster : str or mapping, optional
        As the config's ``cluster``: ``inline`` (the default: this process),
        ``local`` (a ``LocalCluster`` of worker processes), an address or a mapping.
    workers : int, optional
        Run on a local cluster of this many worker processes.
    client : distributed.Client, optional
        Run on this client's cluster (saves the start-up when checking many
        models on one).

    Returns
    -------
    Report
        ``print(report)`` shows it as ``gradcheck run`` does.
    """
    if not isinstance(params, Mapping) or not params:
        raise ConfigTypeError(f"`params` must be a non-empty dict of arrays. Got {params!r} instead.")
    if not isinstance(data, Mapping):
        raise ConfigTypeError(f"`data` must be a dict of arrays. Got {type(data).__name__} instead.")
    if gradient is not None and not isinstance(gradient, Mapping):
        raise ConfigTypeError(f"`gradient` must be a dict of arrays. Got {type(gradient).__name__} instead.")
    for role, arrays in (("params", params), ("data", data), ("gradient", gradient or {})):
        _check_names(role, arrays)
    if client is None and workers is None and cluster is None:
        cluster = "inline"
    if workers is not None:
        cluster = {**(cluster if isinstance(cluster, Mapping) else {}), "workers": workers}
    name = model if isinstance(model, str) else f"{type(model).__module__}.{type(model).__qualname__}"
    settings = {
        "model": name,
        "epsilon": epsilon,
        "threshold": threshold,
        "scheme": scheme,
        "tolerance": tolerance,
        "indices": indices,
        "directions": directions,
        "direction_test": direction_test,
        "second_look": second_look,
        "unverified": unverified,
        "precision": precision,
        "shard_size": shard_size,
        "worst": worst,
        "cluster": cluster,
    }
    obj = None if isinstance(model, str) else model
    in_memory = {"params": "memory://params", "data": "memory://data", "output": "memory://output"}
    config = Config.from_dict({**settings, **in_memory})  # validates the settings; the paths name nothing
    if gradient is not None:
        refuse_coarser_gradient(
            {n: np.asarray(g).dtype for n, g in gradient.items()},
            {n: np.asarray(p).dtype for n, p in params.items()},
            config.precision == "float64",
            "`gradient`",
            ConfigError,
        )
    if config.cluster.inline and client is None and output is None:
        return _check_in_memory(config, obj if obj is not None else shipped(model), params, data, gradient, progress)
    from .storage.inputs import write_group

    with tempfile.TemporaryDirectory(prefix="gradcheck-") as scratch:
        stores = {role: os.path.join(scratch, f"{role}.zarr") for role in ("params", "data", "gradient")}
        write_group(stores["params"], params, {"order": list(params)})
        write_group(stores["data"], data)
        if gradient is not None:
            write_group(stores["gradient"], gradient)
        config = dataclasses.replace(
            config,
            params=stores["params"],
            data=stores["data"],
            gradient=None if gradient is None else stores["gradient"],
            output=os.path.abspath(output) if output else os.path.join(scratch, "output.zarr"),
        )
        return run(config, model=obj, overwrite=overwrite, client=client, progress=progress)


def _check_in_memory(
    config: Config,
    model: ModelRef,
    params: Mapping[str, Any],
    data: Mapping[str, Any],
    gradient: Mapping[str, Any] | None,
    progress: Progress | None,
) -> Report:
    """``check`` in this process, on copies of the caller's arrays, into an output in memory."""
    started = time.perf_counter()
    reset_peak_rss()
    copies = {name: _parameter(name, value) for name, value in params.items()}
    # As a store gives them: C-ordered copies, by sorted name (a loss's rounding may depend on either).
    arrays = {name: np.array(data[name], order="C", copy=True) for name in sorted(data)}
    layout = Layout.from_shapes(
        list(copies), {n: a.shape for n, a in copies.items()}, {n: a.dtype.name for n, a in copies.items()}
    )
    settings = settings_for(config, layout)
    try:
        given = None if gradient is None else check_gradient(gradient, layout, "`gradient`")
    except ModelError as e:  # the caller's argument, not the model's doing
        raise ConfigError(str(e)) from e
    target = MemoryOutput()
    with one_blas_thread():
        loaded = Loaded(settings, load_model(model), copies, arrays, gradient=None if given is None else lambda: given)
        executed = execute(
            InlineExecutor(loaded, target),
            target,
            settings,
            shard_size=config.shard_size,
            directions=config.directions,
            progress=progress,
            started=started,
            data_bytes=sum(array.nbytes for array in arrays.values()),
            float32_data_bytes=sum(array.nbytes for array in arrays.values() if array.dtype == np.float32),
        )
    return _report(config, executed, lambda: target, started, target.size_bytes(), params=copies.__getitem__)


def _check_names(role: str, arrays: Mapping[Any, Any]) -> None:
    """Names a Zarr group can hold (the same call may be sent to a cluster through stores), and numeric values."""
    problem = name_problem(arrays)
    if problem is not None:
        raise ConfigTypeError(f"`{role}` names {problem}")
    for name, value in arrays.items():
        dtype = np.asarray(value).dtype
        if dtype.kind not in "biufc":
            raise ConfigTypeError(
                f"`{role}['{name}']` must be a numeric array. Got {type(value).__name__} of dtype {dtype} instead."
            )


def _parameter(name: str, value: Any) -> np.ndarray:
    """A private, writable, C-ordered copy of one parameter tensor, which must be float32 or float64."""
    array = np.asarray(value)
    if array.dtype not in (np.float32, np.float64):
        raise ConfigTypeError(
            f"`params['{name}']` must be a float32 or float64 array. Got dtype {array.dtype} instead."
        )
    return np.array(array, order="C", copy=True)
