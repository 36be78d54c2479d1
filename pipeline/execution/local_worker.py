"""Preloaded into the worker processes of the embedded local cluster (Dask calls ``dask_setup``)."""

from __future__ import annotations

import signal
from typing import Any


def dask_setup(worker: Any) -> None:
    """Ctrl-C reaches the terminal's whole process group, the workers too: they ignore it, and the check's own
    process stops them (review 92: each printed its KeyboardInterrupt traceback, 60 lines before
    "gradcheck: interrupted"). Run in the worker process's main thread, at its start and every restart."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
