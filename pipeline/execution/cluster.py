"""The one module that creates or connects to a Dask cluster.

``connect`` yields a :class:`distributed.Client`: on an embedded
``LocalCluster`` of worker processes (one thread each) by default, or on an
existing cluster by scheduler address or scheduler file. Dask's own
configuration is honoured as ``Client()`` honours it: with no cluster named,
``scheduler-address`` (``DASK_SCHEDULER_ADDRESS``) is used when set, and
without ``cluster.security`` the TLS settings come from ``distributed.comm.tls``.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import dask
from distributed import Client, LocalCluster
from distributed.security import Security

from ..config import ClusterConfig
from ..errors import ClusterError, one_line

__all__ = ["UNGUARDED", "connect", "local_workers", "resolved", "security", "worker_addresses"]

#: What to do when a script starts a local cluster at its top level: each worker process imports it again.
UNGUARDED = (
    'put it under `if __name__ == "__main__":` (each worker process of a local cluster imports the script '
    "again, and would start a cluster of its own)"
)

# One thread per worker process: without this each worker's BLAS would start a
# thread per core and the workers would oversubscribe the machine.
_SINGLE_THREADED = {
    name: "1"
    for name in (
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "VECLIB_MAXIMUM_THREADS",
        "NUMEXPR_NUM_THREADS",
    )
}


def local_workers(cluster: ClusterConfig, n_tasks: int) -> int:
    """Worker processes of a local cluster: as configured, else one per core and at most one per task."""
    if cluster.workers is not None:
        return cluster.workers
    return max(1, min(os.cpu_count() or 1, n_tasks))


def worker_addresses(client: Client) -> list[str]:
    """The addresses of the workers a client's scheduler has now, asked of the scheduler.

    Not ``client.scheduler_info()["workers"]``: the client refreshes that cache every
    few seconds with the workers left out, and a refresh landing between the call's own
    fetch and its return gave an empty list (4 calls in 25,000 on a 2-worker cluster).
    """
    return list(client.nthreads())


def _preloads() -> dict[str, list[Any]]:
    """The local cluster's worker preloads: the user's own (``distributed.worker.preload``, which Dask reads only
    when none is given: review 93) and :mod:`pipeline.execution.local_worker`'s."""
    configured = dask.config.get("distributed.worker.preload", None) or []
    preload = [configured] if isinstance(configured, str) else list(configured)
    argv = dask.config.get("distributed.worker.preload-argv", None) or []
    argvs = [list(argv)] * len(preload) if argv and isinstance(argv[0], str) else [list(a) for a in argv]
    argvs += [[]] * (len(preload) - len(argvs))
    return {"preload": [*preload, "pipeline.execution.local_worker"], "preload_argv": [*argvs, []]}


def _scheduler_address(path: str, timeout: float) -> str:
    """The address a scheduler file holds, waited for up to ``timeout`` seconds (its scheduler may be starting):
    Dask's ``Client`` waits for the file without end (review 92: a misspelt one hung for 12 minutes, whatever the
    timeout), and one without an address was an internal error (review 93)."""
    deadline = time.monotonic() + timeout
    while not (address := _address_in(path)):
        if time.monotonic() > deadline:
            if not os.path.exists(path):
                raise ClusterError(
                    f"The scheduler file '{path}' does not exist (waited {timeout:g} s): start the scheduler with "
                    f"`dask scheduler --scheduler-file {path}`, or name the file it writes."
                )
            raise ClusterError(
                f"The scheduler file '{path}' holds no scheduler address (waited {timeout:g} s): name the file "
                "`dask scheduler --scheduler-file` writes."
            )
        time.sleep(0.1)
    return address


def _address_in(path: str) -> str:
    """The scheduler's address in a scheduler file; "" while it is absent, unreadable, half-written or holds none."""
    try:
        with open(path, encoding="utf-8") as f:
            content = json.load(f)
    except (OSError, ValueError):
        return ""
    address = content.get("address") if isinstance(content, dict) else None
    return address if isinstance(address, str) else ""


def resolved(cluster: ClusterConfig) -> ClusterConfig:
    """``cluster`` with Dask's ``scheduler-address`` filled in when it names no cluster at all."""
    default = dask.config.get("scheduler-address", None)
    if cluster.is_local and cluster.workers is None and default:
        return ClusterConfig(address=str(default), timeout=cluster.timeout)
    return cluster


def security(cluster: ClusterConfig) -> Security:
    """Mutual TLS from ``cluster.security``; otherwise whatever Dask's configuration says (plain TCP by default)."""
    if cluster.security is None:
        return Security()
    return Security(
        tls_ca_file=cluster.security.ca,
        tls_client_cert=cluster.security.cert,
        tls_client_key=cluster.security.key,
        require_encryption=True,
    )


@contextmanager
def _unset(name: str) -> Iterator[None]:
    """``name`` out of this process's environment (so out of the workers it spawns), restored on exit."""
    saved = os.environ.pop(name, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[name] = saved


@contextmanager
def connect(cluster: ClusterConfig, n_tasks: int) -> Iterator[Client]:
    """A client on the configured cluster with at least one worker; closed (a local cluster stopped) on exit.

    Raises
    ------
    ClusterError
        The scheduler cannot be reached, or has no worker, within ``cluster.timeout`` seconds.
    """
    if cluster.inline:  # a caller's bug: an in-process run has no cluster to connect to
        raise ValueError("`cluster: inline` runs in this process; there is no cluster to connect to.")
    cluster = resolved(cluster)
    if cluster.is_local:
        if getattr(multiprocessing.current_process(), "_inheriting", False):
            # A worker process importing the script that started it, which starts a cluster again: this process
            # cannot run, and its parent says why (below). One line here, not a traceback per worker.
            raise SystemExit(f"gradcheck: a worker process imported a script that starts a local cluster: {UNGUARDED}.")
        with ExitStack() as stack:
            # A nanny started earlier in this process (or its parent's) leaves the
            # variable in the environment, where our workers would inherit it.
            stack.enter_context(_unset("MALLOC_TRIM_THRESHOLD_"))
            stack.enter_context(
                dask.config.set(
                    {
                        # A worker holds only the task it runs (Dask would queue a second one on it):
                        # when a model crashes its process, Dask then blames exactly that shard.
                        "distributed.scheduler.worker-saturation": 1.0,
                        # The nanny sets MALLOC_TRIM_THRESHOLD_=65536 for its workers, which made a
                        # numpy MLP's loss 8-50% slower there than in a plain process (measured here).
                        "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
                    }
                )
            )
            try:
                local = LocalCluster(
                    n_workers=local_workers(cluster, n_tasks),
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=":0",  # a free port: never collide with another cluster
                    # Task errors come back to the client, which reports them; the workers'
                    # own "Compute Failed" log lines would put a traceback on the user's terminal.
                    silence_logs=logging.CRITICAL,
                    env=_SINGLE_THREADED,
                    **_preloads(),
                    timeout=cluster.timeout,
                )
            except RuntimeError as e:  # distributed's "Nanny failed to start."
                raise ClusterError(
                    f"The local cluster's worker processes did not start ({one_line(e)}); if a script "
                    f"starts the check at its top level, {UNGUARDED}."
                ) from None  # its chain is distributed's internals; the message holds its line
            stack.enter_context(local)
            yield stack.enter_context(Client(local, timeout=cluster.timeout))
        return
    where = f"scheduler at {cluster.address}" if cluster.address else f"scheduler file '{cluster.scheduler_file}'"
    # the file read here, once: the client is given the address it holds
    address = cluster.address or _scheduler_address(str(cluster.scheduler_file), cluster.timeout)
    start = time.monotonic()
    try:
        client = Client(
            address=address,
            timeout=cluster.timeout,
            security=security(cluster),
        )
    except (OSError, TimeoutError, ValueError, TypeError) as e:  # TypeError: a tls:// address without TLS
        hint = ""
        if cluster.security is None and ("tls://" in address or "TLS" in str(e)):
            hint = " (a tls:// scheduler needs `cluster.security`: ca, cert and key files)"
        # "within" only where it waited: an address that does not parse fails at once (review 92)
        waited = f" within {cluster.timeout:g} s" if time.monotonic() - start >= cluster.timeout / 2 else ""
        raise ClusterError(f"Cannot reach the {where}{waited}{hint}: {one_line(e)}") from e
    with client:
        try:
            client.wait_for_workers(1, timeout=cluster.timeout)
        except TimeoutError as e:
            raise ClusterError(f"The cluster of the {where} has no workers (waited {cluster.timeout:g} s).") from e
        yield client
