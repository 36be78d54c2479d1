"""Shared fixtures: a real LocalCluster, the CLI as a subprocess, example folders."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pytest
import zarr
from distributed import Client, LocalCluster

from pipeline.examples import write_example
from pipeline.storage.inputs import write_group

from . import models

REPO = Path(__file__).resolve().parent.parent
MODELS_FILE = Path(models.__file__).resolve()


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 120, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``gradcheck ARGS`` in a fresh process, as a user would (in ``env``, by default this process's)."""
    env = {**(os.environ if env is None else env), "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
        check=False,
    )


def file_model_check(
    tmp_path: Path, source: str, attr: str, params: Mapping[str, np.ndarray], extra: str = ""
) -> tuple[Path, Path]:
    """A model written to ``tmp_path/net.py`` (``source``, naming ``attr``), its parameters and empty data
    as stores, and ``check.yaml`` naming them (plus ``extra`` config lines): ``(model file, config)``."""
    model = tmp_path / "net.py"
    model.write_text(source)
    write_group(str(tmp_path / "params.zarr"), dict(params))
    write_group(str(tmp_path / "data.zarr"), {})
    config = tmp_path / "check.yaml"
    config.write_text(f"model: {model}:{attr}\nparams: params.zarr\ndata: data.zarr\noutput: out.zarr\n{extra}")
    return model, config


@pytest.fixture(scope="session")
def _shared_client() -> Iterator[Client]:
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=logging.CRITICAL
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


@pytest.fixture
def client(_shared_client: Client) -> Client:
    """Two single-threaded worker processes, shared by the tests that take it: both on the scheduler's list when a
    test starts (a run counts the workers it starts on)."""
    _shared_client.wait_for_workers(2, timeout=120)
    return _shared_client


@pytest.fixture
def seed_example(tmp_path: Path) -> Path:
    """The seed network's example folder, as `gradcheck example seed-mlp` writes it."""
    folder = tmp_path / "example"
    write_example("seed-mlp", str(folder))
    return folder


def write_smooth_problem(folder: Path) -> Path:
    """Stores for tests/models.py's smooth model in ``folder``, and check.yaml naming it by file path."""
    params, data = models.problem()
    write_group(str(folder / "params.zarr"), params, {"order": list(models.SHAPES)})
    write_group(str(folder / "data.zarr"), data)
    (folder / "check.yaml").write_text(
        f"model: {MODELS_FILE}:smooth\nparams: params.zarr\ndata: data.zarr\noutput: out.zarr\n"
        "epsilon: 1.0e-6\nthreshold: 1.0e-8\n"
    )
    return folder


def shards_done(output: Path) -> int:
    """How many shards of ``output`` are marked done (0 while it does not exist yet)."""
    try:
        return int(np.count_nonzero(zarr.open_array(str(output), path="done", mode="r")[:]))
    except Exception:
        return 0


def write_gated_problem(folder: Path, settings: str) -> Path:
    """The gated model's stores and check.yaml (shards of 10: 0-9 over `early`, 10-19 over `late`,
    plus ``settings``, YAML lines) in ``folder``; returns the output's path."""
    params, data = models.gated_problem()
    write_group(str(folder / "params.zarr"), params, {"order": list(models.GATED_SHAPES)})
    write_group(str(folder / "data.zarr"), data)
    (folder / "check.yaml").write_text(
        f"model: {MODELS_FILE}:gated\nparams: params.zarr\ndata: data.zarr\noutput: out.zarr\n"
        f"epsilon: 1.0e-6\nshard_size: 10\n{settings}"
    )
    return folder / "out.zarr"


@pytest.fixture
def smooth_problem(tmp_path: Path) -> Path:
    """The smooth model's problem folder (see write_smooth_problem)."""
    return write_smooth_problem(tmp_path)
