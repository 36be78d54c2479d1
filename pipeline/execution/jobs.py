"""Detached jobs: a whole check submitted to an existing cluster, followed and cancelled through its output.

``submit`` validates the check on the client and probes the model at θ on
the cluster (a model that cannot be checked fails there, before any job
exists). It then hands the cluster one driver task, held by Dask's
``fire_and_forget`` so that it outlives the submitter. On a worker, the driver
runs :func:`pipeline.api.run` through that worker's client, exactly as
``gradcheck run`` would, and records its state in the output group. The driver
only orchestrates: :mod:`pipeline.execution.dask`'s tasks stay the only code that computes on workers. ``status`` reads only the output; ``cancel`` raises the job's
Dask ``Event``, which the driver watches between shards. A cancelled job
resumes with ``gradcheck run`` on the same config: its finished shards are kept.
"""

from __future__ import annotations

import dataclasses
import math
import time
import uuid
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from distributed import Event, fire_and_forget, worker_client

from .. import api
from ..config import ClusterConfig, Config
from ..errors import ClusterError, ConfigError, GradcheckError, OutputExistsError, StoreError, StoreNotFoundError
from ..model import ModelRef
from ..report import Report
from ..storage import Options
from ..storage import output as stores
from .cluster import connect, resolved
from .dask import PROBE, importable_everywhere, killed_by_model, probe_task

__all__ = ["JobStatus", "cancel", "format_status", "status", "submit"]

#: Seconds ``cancel`` waits for the driver to acknowledge.
CANCEL_WAIT_SECONDS = 60.0


def submit(config: Config, *, overwrite: bool = False) -> str:
    """Start the check on ``config.cluster`` (an existing one) and return its job id once it is handed over.

    Raises
    ------
    GradcheckError
        As :func:`pipeline.api.run` would before computing anything: a bad store,
        model (probed at θ on the cluster) or output, a local cluster, or a cluster
        that cannot be reached.
    """
    cluster = resolved(config.cluster)
    if cluster.is_local or cluster.inline:
        raise ConfigError(
            "`gradcheck submit` runs the check on an existing cluster, which outlives this process: "
            "give --scheduler, --scheduler-file or `cluster.address`."
        )
    inputs, model, _ = api.validate(config)
    layout = inputs.layout
    # An output another run is writing is refused here, in one line, not by a job that would fail on the
    # cluster where only a worker's log would say so (while `status` went on showing the other run).
    stores.refuse_if_locked(config.output, config.storage_options)
    stores.check_output(
        config.output,
        api.identity(config, inputs),
        sampled=config.sample is not None,
        overwrite=overwrite,
        options=config.storage_options,
        parts=api.identity_parts(config, inputs),
    )
    job = f"gradcheck-{uuid.uuid4().hex[:12]}"
    with connect(cluster, layout.n_params) as client:
        _refuse_if_submitted(config, client)
        importable_everywhere(client, model)
        # The model at θ, probed on the cluster as the run will: a model that cannot be
        # checked (a non-finite or random loss, a wrong gradient shape) fails here, in one
        # line, before there is a job whose output would never be created.
        with killed_by_model(PROBE):  # review 93: exit 3 here, where `run` said exit 2 in one line
            client.submit(probe_task, api.make_problem(config, layout, model), pure=False).result()
        address = str(client.scheduler_info(n_workers=0)["address"])
        # How `cancel` reaches this scheduler again: its address (even if given by file), timeout and TLS files.
        where = dataclasses.replace(cluster, address=address, scheduler_file=None)
        record = {"id": job, "cluster": dataclasses.asdict(where)}
        # An output already there (resumed or replaced) says at once that it waits for this job,
        # not what its last run ended with; the driver records "running" when it starts.
        with suppress(StoreNotFoundError):
            stores.update_attrs(config.output, {"state": {"state": "submitted", "job": record}}, config.storage_options)
        future = client.submit(_drive, config, model, overwrite, record, key=job, pure=False)
        fire_and_forget(future)  # type: ignore[no-untyped-call]
        # The scheduler holds the task before this client (and maybe its process) goes.
        deadline = time.monotonic() + cluster.timeout
        while not client.run_on_scheduler(_known, job):  # type: ignore[no-untyped-call]
            if time.monotonic() > deadline:
                raise ClusterError(f"The scheduler at {address} did not take job {job}.")
            time.sleep(0.05)
    return job


def _refuse_if_submitted(config: Config, client: Any) -> None:
    """Refuse an output that a job submitted before this one, to this cluster, is still waiting to write.

    A job whose cluster went away (or that this scheduler no longer knows) is waiting for nothing:
    its record must not block the output for good.
    """
    with suppress(StoreNotFoundError):
        state = stores.read_output_attrs(config.output, config.storage_options).get("state") or {}
        recorded = (state.get("job") or {}).get("cluster") or {}
        here = str(client.scheduler_info(n_workers=0)["address"])
        if (
            state.get("state") == "submitted"
            and recorded.get("address") == here
            and client.run_on_scheduler(_known, state["job"]["id"])
        ):
            raise OutputExistsError(
                f"The output '{config.output}' is waiting for job {state['job']['id']}, submitted before this one; "
                f"wait for it (gradcheck status {config.output}), or cancel it (gradcheck cancel {config.output})."
            )


def _known(key: str, dask_scheduler: Any = None) -> bool:
    return key in dask_scheduler.tasks


def _drive(config: Config, model: ModelRef, overwrite: bool, job: Mapping[str, Any]) -> bool:
    """The job, on a worker: the whole run through the worker's client."""
    with worker_client() as client:  # secedes: this task holds no worker thread while shards run
        cancelled = Event(job["id"], client=client)  # type: ignore[no-untyped-call]
        if cancelled.is_set():  # type: ignore[no-untyped-call]  # cancelled while it waited for a worker
            with suppress(StoreError):  # the output is not there unless it was submitted over one
                ended = {"state": "cancelled", "message": "Cancelled before it started.", "at": time.time()}
                stores.update_attrs(config.output, {"state": ended}, config.storage_options)
            return False
        try:
            # The run records its own end (finished, cancelled or failed) in the output once it runs...
            report = api.run(config, model=model, overwrite=overwrite, client=client, stop=cancelled.is_set, job=job)
        except Exception as e:
            _failed_before_running(config, job, e)
            raise
    return report.passed


def _failed_before_running(config: Config, job: Mapping[str, Any], error: Exception) -> None:
    """...and before that (the output locked, a store gone), the job says so here: `status` must never go on
    showing a job as submitted when it has failed."""
    with suppress(StoreError):
        state = stores.read_output_attrs(config.output, config.storage_options).get("state") or {}
        if state.get("state") == "submitted" and state.get("job", {}).get("id") == job["id"]:
            message = str(error) if isinstance(error, GradcheckError) else f"{type(error).__name__}: {error}"
            failed = {"state": "failed", "message": message, "at": time.time(), "job": dict(job)}
            stores.update_attrs(config.output, {"state": failed}, config.storage_options)


@dataclass(frozen=True, slots=True)
class JobStatus:
    """What an output says of the run writing it. Rates and ETA are None until a shard is done.

    ``state`` is ``submitted`` (waiting for a worker), ``running``, ``finished``,
    ``cancelled``, ``failed`` (``message`` says why) or ``interrupted`` (Ctrl-C, or recorded as
    running while no live process holds the output's lock: it was killed). ``cluster``
    is where a submitted job runs, as ``cancel`` reaches it (None for a foreground run). ``writer``: who holds the
    output's lock where the output says its run ended (another run writing it again, on this host or another).
    """

    output: str
    state: str
    job: str | None
    done: int
    total: int
    resumed: int
    evaluations_per_second: float | None
    eta_seconds: float | None
    message: str | None
    report: Report | None
    cluster: Mapping[str, Any] | None = None
    writer: str | None = None


def status(output: str, options: Options = None) -> JobStatus:
    """Read the state, the shards done and the report of the run writing ``output``."""
    attrs = stores.read_output_attrs(output, options)
    state = dict(attrs.get("state") or {})
    if state.get("state") in ("submitted", "failed") and "job" in state:
        # A job that is waiting, or that failed before it ran: what the output holds is the last run's.
        job = state["job"]
        return JobStatus(
            output, state["state"], job["id"], 0, 0, 0, None, None, state.get("message"), None, job["cluster"]
        )
    progress = attrs.get("progress")
    if not isinstance(progress, Mapping):
        raise StoreError(f"The output '{output}' has no progress record: its run has not started its shards.")
    total, resumed = int(progress["shards"]), int(progress["resumed"])
    done = len(stores.completed_shards(output, options))
    elapsed = float(state.get("at", time.time())) - float(progress["started"])  # until it ended, if it did
    computed = done - resumed
    rate = eta = None
    if computed > 0 and elapsed > 0:
        rate = float(progress["evaluations"]) * computed / max(1, total - resumed) / elapsed
        eta = (total - done) * elapsed / computed
    recorded = str(state.get("state", "running"))
    if recorded == "running" and not stores.lock_held(output, options):
        # A run records how it ended before it lets go of the lock: read again, in case it ended between
        # the two reads; still "running" with no lock held means its process is gone without a word.
        attrs = stores.read_output_attrs(output, options)
        state = dict(attrs.get("state") or {})
        recorded = str(state.get("state", "running"))
        if recorded == "running":
            recorded = "interrupted"  # `gradcheck run` resumes it
    running = recorded == "running"
    # (an output whose run ended, its lock held: another run writing it again; review 126: `status` said finished
    # where `run` refused it as being written)
    writer = None if running else stores.lock_holder(output, options)
    job = progress.get("job") or {}
    return JobStatus(
        output=output,
        state=recorded,
        job=job.get("id"),
        cluster=job.get("cluster"),
        done=done,
        total=total,
        resumed=resumed,
        evaluations_per_second=rate,
        eta_seconds=eta if running else None,
        message=state.get("message"),
        report=Report.from_dict(attrs["report"]) if state.get("state") == "finished" and "report" in attrs else None,
        writer=writer,
    )


def format_status(s: JobStatus) -> str:
    """A few lines for a terminal."""
    who = f"job {s.job}" if s.job else "run (not a submitted job)"
    lines = [f"{s.output}: {who}, {s.state}"]
    if s.state == "submitted":
        return "\n".join([*lines, "waiting for the cluster to start it"])
    if s.state == "failed" and not s.total:
        return "\n".join([*lines, f"it failed before it ran: {s.message}"])
    shards = f"shards {s.done}/{s.total} done" + (f" ({s.resumed} resumed)" if s.resumed else "")
    if s.evaluations_per_second is not None:
        shards += f", {s.evaluations_per_second:.0f} evaluations/s"
    if s.eta_seconds is not None and math.isfinite(s.eta_seconds):
        shards += f", ETA {s.eta_seconds:.0f} s"
    lines.append(shards)
    if s.message:
        lines.append(s.message)
    if s.state == "interrupted":
        lines.append("its process is gone; the same `gradcheck run` resumes it from the shards done")
    if s.report is not None:
        verdict = "passed" if s.report.passed else f"FAILED ({', '.join(s.report.failing) or 'threshold'})"
        difference = "n/a" if s.report.difference is None else f"{s.report.difference:.3e}"
        lines.append(f"verdict: {verdict}; difference {difference}")
    if s.writer is not None:
        lines.append(f"another gradcheck run is writing it now ({s.writer}): what is shown is the last run's")
    return "\n".join(lines)


def cancel(output: str, cluster: ClusterConfig | None = None, options: Options = None) -> JobStatus:
    """Stop the submitted job writing ``output``; return its status once it has stopped.

    ``cluster`` reaches the scheduler when the recorded one cannot (another
    address, TLS files); by default the job's own record is used.
    """
    current = status(output, options)
    if current.job is None or current.cluster is None:
        raise ConfigError(f"The output '{output}' is written by a foreground run, not a submitted job: stop it there.")
    if current.state not in ("running", "submitted"):
        raise ConfigError(f"Job {current.job} writing '{output}' is not running: it is {current.state}.")
    if cluster is None:
        cluster = ClusterConfig.from_value({k: v for k, v in current.cluster.items() if v is not None})
    with connect(cluster, 1) as client:
        Event(current.job, client=client).set()  # type: ignore[no-untyped-call]
    deadline = time.monotonic() + CANCEL_WAIT_SECONDS
    while (current := status(output, options)).state in ("running", "submitted"):
        if time.monotonic() > deadline:
            raise ClusterError(f"Job {current.job} did not stop within {CANCEL_WAIT_SECONDS:g} s of being cancelled.")
        time.sleep(0.1)
    return current
