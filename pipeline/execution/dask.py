"""The Dask executor: the numerics core inside tasks, on any Dask cluster.

Only plain, picklable data crosses to the workers: a :class:`Problem` (the model
reference, the store paths and the run's settings, never big arrays) and shards.
A worker thread loads parameters and data once per run and reuses them across
its tasks; each task calls the same numerics function (:mod:`pipeline.numerics.shards`...) the
in-process executor calls, on arrays read from the stores, and writes its
results to the output group. Entries are perturbed in place, so each worker
thread keeps its own copy.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import CancelledError
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from distributed import Client, Future, as_completed
from distributed.comm.core import CommClosedError
from distributed.protocol.pickle import dumps, loads
from distributed.scheduler import KilledWorker

from ..errors import ClusterError, ModelError, ModelImportError, exited, one_line
from ..model import ModelRef, ModelSource, load_model, missing_module
from ..numerics import shards
from ..numerics.directions import check_direction
from ..numerics.plan import Shard
from ..numerics.probe import ProbeResult, probe
from ..numerics.problem import Loaded, Settings
from ..numerics.reduce import DirectionResult, ShardResult
from ..numerics.together import Together, kinks_together
from ..storage import inputs, output
from .cluster import worker_addresses
from .driver import RunCancelled
from .inline import peak_rss_bytes, reset_peak_rss

__all__ = ["PROBE", "DaskExecutor", "Problem", "importable_everywhere", "killed_by_model", "probe_task"]

#: Seconds between two looks at ``stop`` while no shard arrives.
STOP_POLL_SECONDS = 0.1


@dataclass(frozen=True, slots=True)
class Problem:
    """Everything a worker needs, as plain data. ``run_id`` keys the worker's cache."""

    run_id: str
    model: ModelRef
    params: str
    data: str
    gradient: str | None
    output: str
    settings: Settings
    storage_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)


_local = threading.local()


def _load(problem: Problem) -> tuple[Loaded, bool]:
    """This thread's loaded problem, and whether this call had to load it."""
    loaded: Loaded | None = getattr(_local, "loaded", None)
    if loaded is not None and getattr(_local, "run_id", None) == problem.run_id:
        loaded.settings = problem.settings  # the same run, now with what the probe learned
        return loaded, False
    _local.loaded = None  # release the previous run's arrays before loading
    options = problem.storage_options
    gradient = problem.gradient
    _local.loaded = Loaded(
        problem.settings,
        load_model(problem.model),
        inputs.read_arrays("params", problem.params, problem.settings.layout.names, options),
        inputs.read_arrays("data", problem.data, options=options),
        gradient=None
        if gradient is None
        else functools.partial(inputs.read_gradient, gradient, problem.settings.layout, options),
        params_source=f"The params store '{problem.params}'",
    )
    _local.run_id = problem.run_id
    return _local.loaded, True


def _output_arrays(problem: Problem) -> output.OutputArrays:
    """This thread's handles on the run's output arrays, opened once per run."""
    cached: tuple[str, output.OutputArrays] | None = getattr(_local, "output", None)
    if cached is None or cached[0] != problem.run_id:
        cached = (problem.run_id, output.OutputArrays(problem.output, problem.storage_options))
        _local.output = cached
    return cached[1]


def probe_task(problem: Problem) -> ProbeResult:
    """:func:`~pipeline.numerics.probe.probe` on a worker."""
    return probe(_load(problem)[0])


def analytic_task(
    problem: Problem, done: Sequence[Shard], directions: Sequence[tuple[str, int]]
) -> tuple[bool, tuple[float, ...]]:
    """:func:`~pipeline.numerics.shards.write_analytic` on a worker, into the output group."""
    return shards.write_analytic(_load(problem)[0], _output_arrays(problem), done, directions)


def shard_task(problem: Problem, shard: Shard) -> ShardResult:
    """:func:`~pipeline.numerics.shards.run_shard` on a worker, into the output group."""
    start = time.perf_counter()
    loaded, fresh = _load(problem)
    result = shards.run_shard(loaded, shard, _output_arrays(problem), fresh=fresh)
    return dataclasses.replace(result, seconds=time.perf_counter() - start)  # loading included


def direction_task(problem: Problem, tensor: str, number: int, dot: float) -> DirectionResult:
    """:func:`~pipeline.numerics.directions.check_direction` on a worker."""
    return check_direction(_load(problem)[0], tensor, number, dot)


def together_task(problem: Problem, plan: Sequence[Shard]) -> Together:
    """:func:`~pipeline.numerics.together.kinks_together` on a worker, over the output group."""
    return kinks_together(_load(problem)[0], _output_arrays(problem), plan)


def resume_task(problem: Problem, shard: Shard) -> ShardResult:
    """:func:`~pipeline.numerics.shards.resume_shard` on a worker: params and data are loaded only for a
    shard whose chunks fail verification."""
    return shards.resume_shard(problem.settings, shard, _output_arrays(problem), functools.partial(_load, problem))


def importable_everywhere(client: Client, model: ModelRef) -> None:
    """Refuse a model object that cannot travel to the workers by pickle, and, naming the workers, a model
    module that some worker cannot import."""
    if not isinstance(model, (str, ModelSource)):
        try:
            loads(dumps(model))  # what sending it to a worker does
        except SystemExit as e:  # (its pickling hooks are the model's code too: their exit code is no verdict)
            raise ModelError(
                f"The model object cannot be sent to the cluster's workers: pickling it {exited(e)}."
            ) from None
        except Exception as e:
            raise ModelError(
                f"The model object cannot be sent to the cluster's workers: pickling it failed ({one_line(e)}). "
                "Define it in a file and name it as 'path/to/file.py:attr' (each worker then runs the file), "
                "or check it in this process (no client or cluster)."
            ) from e
    # a worker lost meanwhile answers nothing (it runs no task either): only the scheduler's loss raises
    answers = client.run(missing_module, model, on_error="ignore")
    missing = sorted(worker for worker, why in answers.items() if why)
    if missing:
        raise ModelImportError(
            f"{answers[missing[0]]} on {len(missing)} of the cluster's {len(answers)} workers "
            f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}): install it there, "
            "put it on their PYTHONPATH, or name the model by file path."
        )


class DaskExecutor:
    """Runs a check's steps as tasks on a client's cluster.

    ``stop`` is asked every :data:`STOP_POLL_SECONDS` while shards run; True cancels
    the run's tasks and raises :class:`RunCancelled`.
    """

    def __init__(self, client: Client, problem: Problem, stop: Callable[[], bool] | None = None) -> None:
        self.client, self.problem, self.stop = client, problem, stop
        self._prober: list[str] = []
        self._directions: list[Future[DirectionResult]] = []

    in_process = False

    @property
    def workers(self) -> int:
        """How many workers the cluster has now."""
        return len(worker_addresses(self.client))

    def probe(self) -> ProbeResult:
        """The probe, on one worker (which keeps the problem loaded for the analytic gradient)."""
        with _scheduler_lost(self.problem.output):
            importable_everywhere(self.client, self.problem.model)
            self.client.run(reset_peak_rss, on_error="ignore")  # the workers' peak memory counted from this run on
            future = self.client.submit(probe_task, self.problem, pure=False)
            with killed_by_model(PROBE):
                result: ProbeResult = future.result()
            self._prober = list(self.client.who_has(future).get(future.key, ()))
        return result

    def write_analytic(
        self, settings: Settings, done: Sequence[Shard], directions: Sequence[tuple[str, int]]
    ) -> tuple[bool, tuple[float, ...]]:
        """The analytic gradient written (or compared), and the directions' ``g·u``, from the probe's worker,
        which holds the gradient: it is computed once per run, and never shipped."""
        problem = dataclasses.replace(self.problem, settings=settings)
        with _scheduler_lost(problem.output):
            future = self.client.submit(
                analytic_task, problem, done, directions, pure=False, workers=self._prober, allow_other_workers=True
            )
            with killed_by_model("The analytic gradient (the model's grad at θ)"):
                same, dots = future.result()
            return bool(same), tuple(dots)

    def run(
        self,
        settings: Settings,
        todo: Sequence[Shard],
        resumed: Sequence[Shard],
        directions: Sequence[tuple[str, int, float]],
    ) -> Iterator[ShardResult]:
        """The shards' results as they arrive (resumed ones read back); directions run alongside."""
        client, problem = self.client, dataclasses.replace(self.problem, settings=settings)
        self._directions = [
            client.submit(direction_task, problem, name, j, dot, pure=False) for name, j, dot in directions
        ]
        futures = {
            **dict(zip(client.map(shard_task, [problem] * len(todo), todo, pure=False), todo, strict=True)),
            **{client.submit(resume_task, problem, s, pure=False): s for s in resumed},
        }
        with _scheduler_lost(problem.output):
            yield from self._arrivals(futures, problem, len(todo) + len(resumed))

    def _arrivals(
        self, futures: dict[Future[ShardResult], Shard], problem: Problem, total: int
    ) -> Iterator[ShardResult]:
        client = self.client
        arriving, next_look = as_completed(futures), time.monotonic()
        while not arriving.is_empty():
            if self.stop is not None:  # a detached job: look at `stop` every so often, busy or not
                if time.monotonic() >= next_look:
                    next_look = time.monotonic() + STOP_POLL_SECONDS
                    if self.stop():
                        client.cancel([*futures, *self._directions])
                        kept = len(output.completed_shards(problem.output, problem.storage_options))
                        raise RunCancelled(
                            f"Cancelled with {kept} of {total} shards done (and any that were running may finish); "
                            "they are kept, and the same run resumes from them."
                        )
                if not arriving.has_ready():
                    # Not shorter: the driver shares its worker's GIL with the shard being computed.
                    time.sleep(STOP_POLL_SECONDS)
                    continue
            future = next(arriving)
            try:
                yield future.result()
            except KilledWorker as e:
                raise _crashed(problem, futures[future], total) from e

    def peak_memory(self) -> int:
        """The largest peak resident memory of the cluster's worker processes, in bytes."""
        with _scheduler_lost(self.problem.output):
            # a worker lost near the end (its tasks done again elsewhere) must not fail a finished check: it answers
            # nothing (a broadcast to it raised CommClosedError, read as the scheduler's loss: a fault test, 1 run in 4)
            peaks = self.client.run(peak_rss_bytes, on_error="ignore")
        return max((int(peak) for peak in peaks.values()), default=0)

    def direction_results(self) -> list[DirectionResult]:
        """The direction checks, once the shards are done."""
        with _scheduler_lost(self.problem.output), killed_by_model("A direction check", self.problem.output):
            results: list[DirectionResult] = self.client.gather(self._directions)
        return results

    def together(self, settings: Settings, plan: Sequence[Shard]) -> Together:
        """The run's kinks moved together, on one worker, once every shard is done."""
        problem = dataclasses.replace(self.problem, settings=settings)
        with _scheduler_lost(problem.output), killed_by_model("Moving the run's kinks together", problem.output):
            together: Together = self.client.submit(together_task, problem, plan, pure=False).result()
        return together


@contextmanager
def _scheduler_lost(output_path: str) -> Iterator[None]:
    """The scheduler (or the way to it) gone, at any step of the run, as one line saying what to do."""
    try:
        yield
    except (CommClosedError, CancelledError) as e:
        raise ClusterError(
            f"Lost the cluster's scheduler while the check ran ({one_line(e)}). The shards finished so far are "
            f"kept in '{output_path}': run the same command again, on a cluster, to resume."
        ) from e


#: The probe, as a crash names it: it runs the model's import, loss and grad (review 93: a grad that crashed was
#: blamed on the loss).
PROBE = "The noise probe (the model loaded, its loss and grad at θ, and losses at steps along every tensor)"


@contextmanager
def killed_by_model(step: str, kept: str | None = None) -> Iterator[None]:
    """A step's task that killed every worker that ran it (the model crashing its process) as one line, not an
    internal error (review 92: a model dying in the probe gave exit 3, "please report it"). ``kept``: the output
    whose every shard is complete by then."""
    try:
        yield
    except KilledWorker as e:
        then = f"Every shard is complete and kept in '{kept}'; fix" if kept else "Fix"
        raise ClusterError(
            f"{step} killed the worker running it, as many times as Dask allows "
            "(distributed.scheduler.allowed-failures): the model may crash the process near θ. "
            f"{then} the model and run the same command again."
        ) from e


def _crashed(problem: Problem, shard: Shard, total: int) -> ClusterError:
    """The error for a shard whose task killed every worker that ran it."""
    completed = len(output.completed_shards(problem.output, problem.storage_options))  # on disk, not only reported
    layout = problem.settings.layout
    first, last = layout.locate(shard.start), layout.locate(shard.stop - 1)
    return ClusterError(
        f"Shard {shard.index} (indices {shard.start}..{shard.stop - 1}: {first[0]}{list(first[1])} to "
        f"{last[0]}{list(last[1])}) killed the worker running it, as many times as Dask allows "
        "(distributed.scheduler.allowed-failures): the model may crash the process there. "
        f"At least {completed} of {total} shards are complete and kept in '{problem.output}'; "
        "fix the model and run the same command again to resume."
    )
