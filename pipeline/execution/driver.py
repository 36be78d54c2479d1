"""A run's steps, the same whichever executor computes them.

Probe the model at θ; plan the shards; create the output (or reuse the same
run's); write the analytic gradient; run the shards that are missing and the
random directions; move the run's kinks together; time it all. An *executor* (:mod:`.inline` or :mod:`.dask`)
computes each step; a *target* (:class:`~pipeline.storage.output.StoredOutput`
or :class:`~.inline.MemoryOutput`) keeps the results.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import OVERWRITE, GradcheckError, OutputExistsError
from ..numerics.cost import Cost, estimate_cost
from ..numerics.fd import STENCILS
from ..numerics.layout import Layout
from ..numerics.plan import Shard, Slots, plan_shards, slots_for
from ..numerics.probe import NONDETERMINISM_ULPS, ProbeResult
from ..numerics.problem import Settings
from ..numerics.reduce import DirectionResult, ShardResult
from ..numerics.together import Together

__all__ = ["Executed", "Executor", "RunCancelled", "Target", "execute"]

EPS = sys.float_info.epsilon

#: ``progress(done, total)`` is called after each shard arrives.
Progress = Callable[[int, int], None]


class RunCancelled(GradcheckError):
    """``stop`` asked the run to end: its finished shards are kept, and the same run resumes them."""


class Executor(Protocol):
    """Computes a run's steps (see :mod:`.inline` and :mod:`.dask`)."""

    @property
    def workers(self) -> int: ...

    @property
    def in_process(self) -> bool: ...

    def probe(self) -> ProbeResult: ...

    def write_analytic(
        self, settings: Settings, done: Sequence[Shard], directions: Sequence[tuple[str, int]]
    ) -> tuple[bool, tuple[float, ...]]: ...

    def run(
        self,
        settings: Settings,
        todo: Sequence[Shard],
        resumed: Sequence[Shard],
        directions: Sequence[tuple[str, int, float]],
    ) -> Iterator[ShardResult]: ...

    def direction_results(self) -> list[DirectionResult]: ...

    def together(self, settings: Settings, plan: Sequence[Shard]) -> Together: ...

    def peak_memory(self) -> int: ...


class Target(Protocol):
    """Keeps a run's results (see :class:`~pipeline.storage.output.StoredOutput`)."""

    def shard_size(self) -> int: ...

    def completed(self) -> frozenset[int]: ...

    def create(self, layout: Layout, slots: Slots, shard_size: int, identity: str, *, overwrite: bool) -> bool: ...

    def remove(self) -> None: ...

    def ready_to_resume(self) -> None: ...

    def record(self, attrs: Mapping[str, Any]) -> None: ...

    def recorded(self, key: str) -> Any: ...


@dataclass(frozen=True, slots=True)
class Executed:
    """What a run computed: the probe, every shard's result, the directions, and the timings; its cost as
    estimated once the probe had timed the loss, and the workers' memory it took (the wall time and the
    output's size are the caller's to add)."""

    probe: ProbeResult
    settings: Settings
    results: tuple[ShardResult, ...]
    directions: tuple[DirectionResult, ...]
    timings: dict[str, float]
    estimated: Cost | None = None
    worker_memory_bytes: int = 0  # the largest peak of a worker's memory during the run


def execute(
    executor: Executor,
    target: Target,
    settings: Settings,
    *,
    shard_size: int | None,
    directions: int,
    identity: str = "",
    identity_parts: Mapping[str, str] | None = None,
    resuming: bool = False,
    overwrite: bool = False,
    progress: Progress | None = None,
    started: float | None = None,
    job: Mapping[str, object] | None = None,
    data_bytes: int = 0,
    float32_data_bytes: int = 0,
    local_cluster: bool = False,
) -> Executed:
    """Probe; then, only if the model is usable, plan, create the output and run the missing shards.

    Parameters
    ----------
    executor, target
        Where the steps run and where their results go.
    settings : Settings
        The run's numerics settings (the probe's loss and noise are added here).
    shard_size : int or None
        The config's; None for automatic.
    directions : int
        Random directions per tensor.
    identity, resuming, overwrite
        The run's identity, whether the target holds an interrupted run of it to resume,
        and whether to replace what the target holds.
    progress : callable, optional
        ``progress(shards_done, shards_total)`` after each shard.
    started : float, optional
        ``time.perf_counter()`` when the run started (for ``cluster_seconds``).
    job : mapping, optional
        The detached job running this check, recorded in the output's ``progress``.
    data_bytes, float32_data_bytes, local_cluster
        For the run's cost estimate (:func:`~pipeline.numerics.cost.estimate_cost`): the data's size, its float32
        arrays' size, and whether the run started its own cluster.
    """
    ready = time.perf_counter()
    probe = executor.probe()
    settings = dataclasses.replace(
        settings,
        loss0=probe.loss,
        noise=probe.noise,
        scales=probe.scales,
        atol_scale=probe.atol_scale,
        atol_rounding=probe.atol_rounding,
        identity=identity,
    )
    layout, workers = settings.layout, executor.workers
    slots = slots_for(layout, settings.sample)
    n_checked = slots.size
    size, plan = plan_shards(
        slots,
        wanted=shard_size,
        # An index costs loss_equivalents_per_index evaluations (the scheme's stencil, fewer if staged).
        seconds_per_index=probe.loss_seconds * probe.loss_equivalents_per_index,
        workers=workers,
        fixed=target.shard_size() if resuming else None,
    )
    done = target.completed() if resuming else frozenset()
    estimated = estimate_cost(
        settings,
        slots,
        directions=directions,
        shards=len(plan),
        workers=workers,
        loss_seconds=probe.loss_seconds,
        loss_equivalents_per_index=probe.loss_equivalents_per_index,
        noise_evaluations=probe.noise_evaluations,
        data_bytes=data_bytes,
        float32_data_bytes=float32_data_bytes,
        local_cluster=local_cluster,
        in_process=executor.in_process,
        remaining=1 - len(done) / max(1, len(plan)),
    )
    created = target.create(layout, slots, size, identity, overwrite=overwrite)
    # what the output holds: a run that ended, or one to resume
    held = "a finished run" if len(done) == len(plan) else "an interrupted run"
    if done:
        _same_loss(target, probe, held)
    # a tensor without elements has no direction (its g·u and its loss's change are both 0: nothing to check)
    along = [(spec.name, j) for spec in layout.tensors if spec.size for j in range(directions)]
    analytic_started = time.perf_counter()
    try:
        same, dots = executor.write_analytic(settings, [shard for shard in plan if shard.index in done], along)
    except BaseException:
        if created:  # nothing computed yet: leave nothing half-written where there was nothing before
            target.remove()
        raise
    if not same:
        raise OutputExistsError(
            f"The output {target} holds {held} whose analytic gradient differs from "
            f"what the model gives now: the model changed. Pass {OVERWRITE} to start again."
        )
    if done:  # the same run: an older format's shards that hold a kink are computed again (their slopes not kept)
        target.ready_to_resume()
        done = done & target.completed()
    shards_started = time.perf_counter()
    todo = [shard for shard in plan if shard.index not in done]
    resumed = [shard for shard in plan if shard.index in done]
    width = len(STENCILS[settings.scheme])
    target.record(
        {
            "progress": {
                "started": time.time(),
                "shards": len(plan),
                "resumed": len(done),
                "evaluations": width * (n_checked * len(todo) // max(1, len(plan)) + len(along)),
                "job": dict(job) if job else None,
            },
            "state": {"state": "running"},
            "identity_parts": dict(identity_parts or {}),  # what a refusal of another check names as different
            # what a resume compares: a loss edited since must not be mixed with this run's shards
            "at_theta": {
                "loss": probe.loss.hex(),
                "off_theta": probe.off_theta.hex(),
                "spread": probe.spread,
                "noise": max(probe.noise, default=0.0),
            },
        }
    )
    results: list[ShardResult] = []
    for result in executor.run(settings, todo, resumed, [(*d, dot) for d, dot in zip(along, dots, strict=True)]):
        results.append(result)
        if progress is not None:
            progress(len(results), len(plan))
    direction_results = executor.direction_results()
    # the run's kinks moved together, wherever shards ended: every shard is done (part of the second look); two or
    # more are needed (the counts include a resumed run's kinks marked together before)
    together = Together((), 0, 0, 0.0)
    if settings.judged and settings.second_look and sum(t.n_nondifferentiable for r in results for t in r.sums) >= 2:
        together = executor.together(settings, plan)
        again = {r.shard.index: r for r in together.shards}
        results = [
            dataclasses.replace(r, sums=again[r.shard.index].sums, worst=again[r.shard.index].worst)
            if r.shard.index in again
            else r
            for r in results
        ]
    finished = time.perf_counter()
    computed = [r for r in results if r.shard.index not in done or r.recomputed]
    evaluations = width * sum(t.n_checked for r in computed for t in r.sums)
    looked = sum(r.second_look[1] for r in computed) + together.evaluations
    evaluations += looked + sum(d.evaluations for d in direction_results)
    timings = {
        "cluster_seconds": ready - (ready if started is None else started),
        "probe_seconds": probe.seconds,
        "loss_seconds": probe.loss_seconds,
        "loss_equivalents_per_index": probe.loss_equivalents_per_index,
        "shard_size": float(size),
        "shards_seconds": finished - shards_started,
        "evaluate_seconds": math.fsum(r.evaluate_seconds for r in results),  # the losses alone, all shards
        "analytic_seconds": shards_started - analytic_started,  # the gradient written, and g·u per direction
        "directions_seconds": math.fsum(d.seconds for d in direction_results),  # all directions' checks
        "directions_evaluate_seconds": math.fsum(d.evaluate_seconds for d in direction_results),  # their losses
        "directions_move_seconds": math.fsum(d.move_seconds for d in direction_results),  # their tensors moved
        "loss_evaluations": float(evaluations + 2 + probe.noise_evaluations),
        "noise_evaluations": float(probe.noise_evaluations),
        "second_look_elements": float(sum(r.second_look[0] for r in computed) + together.lines),
        "together_seconds": together.seconds,  # the kinks moved together, once every shard was done
        "second_look_evaluations": float(looked),
        "evaluations_per_second": evaluations / (finished - shards_started) if finished > shards_started else 0.0,
        "resumed_shards": float(len(done)),
        "recomputed_shards": float(sum(r.recomputed for r in results)),  # resumed, but failed verification
        "worker_loads": float(sum(r.loaded for r in results)),
        "workers": float(workers),
        "in_process": float(executor.in_process),  # then cluster_seconds is the set-up alone
    }
    return Executed(
        probe, settings, tuple(results), tuple(direction_results), timings, estimated, executor.peak_memory()
    )


def _same_loss(target: Target, probe: ProbeResult, held: str) -> None:
    """Refuse to resume a run (``held``: "a finished run" or "an interrupted run") whose loss at θ differs from
    the loss now: the loss was edited (an L2 term added, say, with the gradient code unchanged), and its shards
    are of another function."""
    earlier = target.recorded("at_theta")
    if not earlier:
        return
    for key, where, now in (("loss", "at θ", probe.loss), ("off_theta", "near θ", probe.off_theta)):
        if key not in earlier:
            continue
        before = float.fromhex(earlier[key])
        spread = max(float(earlier.get("spread", 0.0)), probe.spread)
        noise = 10 * max(float(earlier.get("noise", 0.0)), max(probe.noise, default=0.0))
        allowed = max(spread, noise, NONDETERMINISM_ULPS * EPS * abs(before))
        same = before == now or (math.isnan(before) and math.isnan(now)) or abs(now - before) <= allowed
        if not same:
            raise OutputExistsError(
                f"The output {target} holds {held} whose loss {where} was {before!r}; the model's "
                f"loss there is {now!r} now: the loss changed. Pass {OVERWRITE} to start again."
            )
