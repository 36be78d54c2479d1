"""The in-process executor: the numerics core in the calling process, no cluster and no task.

It runs the same numerics functions (:mod:`~pipeline.numerics.probe`, :mod:`~pipeline.numerics.shards`,
:mod:`~pipeline.numerics.directions`) the Dask executor runs in its tasks, one after the other, on one
:class:`~pipeline.numerics.problem.Loaded`
problem, so its results are bit-identical to a Dask run's. Its output is a
stored group (a config's ``output``) or, for ``pipeline.check`` without one,
:class:`MemoryOutput`: numpy arrays that live as long as the check.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from ..numerics import shards
from ..numerics.directions import check_direction
from ..numerics.layout import Layout
from ..numerics.plan import Shard, Slots
from ..numerics.probe import ProbeResult, probe
from ..numerics.problem import Loaded, Output, Settings
from ..numerics.reduce import DirectionResult, ShardResult
from ..numerics.together import Together, kinks_together
from ..numerics.tolerance import UNCHECKED

__all__ = ["InlineExecutor", "MemoryOutput", "one_blas_thread", "peak_rss_bytes", "reset_peak_rss"]


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far, in bytes (0 where the platform does not say).

    On Linux, the kernel's high-water mark of this process image (``VmHWM``): ``getrusage`` would also count
    the process that started it, up to its ``exec`` (a large parent makes a small child look large).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import resource
    except ImportError:  # Windows
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB elsewhere


def reset_peak_rss() -> bool:
    """Start this process's peak resident memory afresh (Linux: ``/proc/self/clear_refs``), so that a run's
    figure is its own, not that of whatever this process (a notebook, a test session, a worker of an earlier
    job) did before; whether it could."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


def one_blas_thread() -> AbstractContextManager[Any]:
    """BLAS and OpenMP held to one thread while an in-process check runs, as in a local cluster's workers
    (see :mod:`.cluster`): a matrix product's bits depend on how many threads share it."""
    return threadpool_limits(limits=1)  # type: ignore[no-any-return]


class MemoryOutput:
    """An output in memory: the output group's arrays as numpy arrays, and nothing to resume."""

    def __init__(self) -> None:
        self.analytic = self.numeric = self.nonfinite = self.allowed = self.status = self.step = np.empty(0)
        self.kink = np.empty(0)
        self.done = np.empty(0)

    def __str__(self) -> str:
        return "in memory"

    def shard_size(self) -> int:
        """Never called: nothing in memory is resumed."""
        raise NotImplementedError("an output in memory is never resumed")

    def completed(self) -> frozenset[int]:
        """No shard was done before this check."""
        return frozenset()

    def create(self, layout: Layout, slots: Slots, shard_size: int, identity: str, *, overwrite: bool) -> bool:
        """The arrays, filled as a new output group's are (NaN, or "not checked"), one element per slot."""
        n = slots.size
        self.analytic, self.numeric, self.allowed, self.step = (np.full(n, np.nan) for _ in range(4))
        self.nonfinite, self.kink = np.zeros(n, dtype=np.int8), np.zeros(n, dtype=np.int8)
        self.status = np.full(n, UNCHECKED, dtype=np.int8)
        self.done = np.zeros(-(-n // max(1, shard_size)), dtype=np.int64)
        return True

    def remove(self) -> None:
        """Nothing to remove."""

    def ready_to_resume(self) -> None:
        """Never called: nothing in memory is resumed."""

    def record(self, attrs: Mapping[str, Any]) -> None:
        """Nothing to record: progress and state are for runs that others follow."""

    def recorded(self, key: str) -> Any:
        """Nothing was recorded before this check."""
        return None

    def size_bytes(self) -> int:
        """What the arrays take in memory."""
        return sum(array.nbytes for array in (*self.per_index, self.done))

    @property
    def per_index(self) -> tuple[np.ndarray, ...]:
        """The per-index arrays in the order :func:`~pipeline.numerics.reduce.summarize_shard` takes them."""
        return (self.analytic, self.numeric, self.nonfinite, self.allowed, self.status, self.step, self.kink)

    @property
    def arrays(self) -> MemoryOutput:
        """Itself: it holds its arrays."""
        return self


class InlineExecutor:
    """Runs a check's steps in this process, on ``loaded``, writing to ``output``'s arrays.

    ``output`` (a :class:`MemoryOutput` or a stored group) is read only once the driver
    has created it. Run it under :func:`one_blas_thread`.
    """

    workers = 1
    in_process = True

    def __init__(self, loaded: Loaded, output: Any) -> None:
        self.loaded, self.output = loaded, output
        self._directions: list[tuple[str, int, float]] = []

    @property
    def arrays(self) -> Output:
        return self.output.arrays  # type: ignore[no-any-return]

    def probe(self) -> ProbeResult:
        """The probe, here (this process's peak memory counted from now)."""
        reset_peak_rss()
        return probe(self.loaded)

    def write_analytic(
        self, settings: Settings, done: Sequence[Shard], directions: Sequence[tuple[str, int]]
    ) -> tuple[bool, tuple[float, ...]]:
        """The analytic gradient written (or compared), and the directions' ``g·u``, here."""
        self.loaded.settings = settings
        return shards.write_analytic(self.loaded, self.arrays, done, directions)

    def run(
        self,
        settings: Settings,
        todo: Sequence[Shard],
        resumed: Sequence[Shard],
        directions: Sequence[tuple[str, int, float]],
    ) -> Iterator[ShardResult]:
        """Each shard's result in turn, resumed ones read back."""
        self.loaded.settings = settings
        self._directions = list(directions)
        for shard in resumed:
            yield shards.resume_shard(settings, shard, self.arrays, lambda: (self.loaded, False))
        for shard in todo:  # loaded once before the probe: no shard loads (as in a Dask worker that probed)
            yield shards.run_shard(self.loaded, shard, self.arrays)

    def peak_memory(self) -> int:
        """This process's peak resident memory, in bytes: it is the worker."""
        return peak_rss_bytes()

    def direction_results(self) -> list[DirectionResult]:
        """The direction checks, here, once the shards are done."""
        return [check_direction(self.loaded, name, j, dot) for name, j, dot in self._directions]

    def together(self, settings: Settings, plan: Sequence[Shard]) -> Together:
        """The run's kinks moved together, here, once every shard is done."""
        self.loaded.settings = settings
        return kinks_together(self.loaded, self.arrays, plan)
