"""Faults injected into real runs, for the fault tests and ``benchmarks/faults.py``.

Each scenario runs the same check (the slow smooth model: a millisecond per loss, 400 indices in
shards of 20) through the real ``gradcheck`` command, breaks it (SIGKILL of the client and its
workers, of a worker, of the scheduler; a full disk; a chunk cut short between a kill and the
resume), lets it finish with the same command, and says whether the final numeric gradient is
bit-identical to an uninterrupted run's.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import zarr

from pipeline.storage.inputs import write_group

from . import models
from .clusters import CLICluster, dask_cluster, wait_until

REPO = Path(__file__).resolve().parent.parent
MODELS_FILE = Path(models.__file__).resolve()


def write_problem(folder: Path, output: Path | None = None, n: int = 400) -> Path:
    """The slow model's stores (``n`` indices) and check.yaml in ``folder``; returns the config's path."""
    folder.mkdir(parents=True, exist_ok=True)
    params, data = models.slow_problem(n)
    write_group(str(folder / "params.zarr"), params)
    write_group(str(folder / "data.zarr"), data)
    config = folder / "check.yaml"
    config.write_text(
        f"model: {MODELS_FILE}:slow\nparams: params.zarr\ndata: data.zarr\noutput: {output or folder / 'out.zarr'}\n"
        "scheme: central\nepsilon: 1.0e-6\nshard_size: 20\n"
    )
    return config


def _command(config: Path, *where: str) -> list[str]:
    return [sys.executable, "-m", "pipeline.cli", "run", str(config), *where]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def run(config: Path, *where: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The check to its end (the exit code and output of the command)."""
    return subprocess.run(
        _command(config, *where), capture_output=True, text=True, env=_env(), timeout=timeout, check=False
    )


def numeric(output: Path) -> np.ndarray:
    return np.asarray(zarr.open_array(str(output), path="numeric", mode="r")[:])


def reference(folder: Path, n: int = 400) -> np.ndarray:
    """The uninterrupted run's numeric gradient."""
    config = write_problem(folder, n=n)
    done = run(config, "--inline")
    assert done.returncode == 0, done.stderr
    return numeric(folder / "out.zarr")


def _kill_after(config: Path, seconds: float, *where: str) -> bool:
    """Start the check and SIGKILL it, and every process it started, after ``seconds``; whether it was
    still running then."""
    process = subprocess.Popen(
        _command(config, *where),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=_env(),
        start_new_session=True,
    )
    time.sleep(seconds)
    running = process.poll() is None
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return running


def _cut_a_chunk(output: Path, rng: random.Random) -> None:
    """Cut one finished chunk short, as a disk fault or a partial copy leaves it."""
    chunks = sorted((output / "numeric" / "c").glob("*")) if (output / "numeric").exists() else []
    if chunks:
        chunk = rng.choice(chunks)
        chunk.write_bytes(chunk.read_bytes()[: rng.randrange(1, 8)])


def client_kills(
    folder: Path, expected: np.ndarray, kills: int, rng: random.Random, *where: str, n: int = 400
) -> tuple[bool, int]:
    """``kills`` SIGKILLs in a row at random moments, each run resuming the last, with a chunk cut short
    after every other kill; then the run to its end. Returns whether the result is bit-identical, and how
    many kills found the check still running (the others came after it had finished)."""
    config = write_problem(folder, n=n)
    interrupted = 0
    for k in range(kills):
        interrupted += _kill_after(config, rng.uniform(0.3, 1.0), *where)
        if k % 2:
            _cut_a_chunk(folder / "out.zarr", rng)
    done = run(config, *where)
    return done.returncode == 0 and bool(np.array_equal(numeric(folder / "out.zarr"), expected)), interrupted


def _on(cluster: CLICluster, config: Path) -> subprocess.Popen[str]:
    """The check started on ``cluster``, by its scheduler file."""
    return subprocess.Popen(
        _command(config, "--scheduler-file", str(cluster.scheduler_file)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )


def worker_kill(folder: Path, expected: np.ndarray, rng: random.Random, *, during_probe: bool) -> bool:
    """SIGKILL one of two ``dask worker`` processes during the probe or during the shards."""
    config = write_problem(folder)
    with dask_cluster(folder / "cluster", workers=2) as cluster:
        process = _on(cluster, config)
        time.sleep(rng.uniform(0.0, 0.3) if during_probe else rng.uniform(1.0, 2.0))
        victim = psutil.Process(cluster.workers[rng.randrange(2)].pid)
        for doomed in [*victim.children(recursive=True), victim]:  # the nanny and the worker it runs
            doomed.kill()
        process.communicate(timeout=300)
    return process.returncode == 0 and bool(np.array_equal(numeric(folder / "out.zarr"), expected))


def scheduler_kill(folder: Path, expected: np.ndarray, rng: random.Random) -> tuple[bool, str]:
    """SIGKILL the scheduler of a ``dask scheduler`` cluster mid-run: a clear error (exit 2); the same
    command on a new cluster resumes it. Returns whether all held, and the error line."""
    config = write_problem(folder)
    with dask_cluster(folder / "cluster", workers=2) as cluster:
        process = _on(cluster, config)
        wait_until(lambda: _done(folder / "out.zarr") >= 2, timeout=120)
        time.sleep(rng.uniform(0.0, 0.5))
        assert cluster.scheduler is not None
        cluster.scheduler.send_signal(signal.SIGKILL)
        _, err = process.communicate(timeout=300)
    said = err.strip()
    if process.returncode != 2 or "\n" in said:
        return False, said
    with dask_cluster(folder / "cluster-2", workers=2) as cluster:
        done = run(config, "--scheduler-file", str(cluster.scheduler_file))
    if done.returncode:
        return False, done.stderr
    return bool(np.array_equal(numeric(folder / "out.zarr"), expected)), said


def disk_full(folder: Path, expected: np.ndarray) -> tuple[bool, str] | None:
    """The output on a tmpfs too small for it: exit 2 in one line, and after making room the same
    command resumes it bit for bit. None where tmpfs cannot be mounted (not root)."""
    disk = folder / "disk"
    disk.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(disk)], check=False).returncode:
        return None
    try:
        config = write_problem(folder, output=disk / "out.zarr")
        first = run(config, "--inline")
        said = first.stderr.strip()
        ok = first.returncode == 2 and "\n" not in said
        subprocess.run(["mount", "-o", "remount,size=4m", str(disk)], check=True)
        done = run(config, "--inline")
        ok = ok and done.returncode == 0 and bool(np.array_equal(numeric(disk / "out.zarr"), expected))
        return ok, said
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def _done(output: Path) -> int:
    try:
        return int(np.count_nonzero(zarr.open_array(str(output), path="done", mode="r")[:]))
    except Exception:
        return 0
