"""Stores in S3: a local S3-compatible server (moto's server mode) on loopback, zarr over s3fs.

Credentials come from the environment only; the config holds the endpoint.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import s3fs

import pipeline
import pipeline.storage.inputs
import pipeline.storage.output
from pipeline.examples import seed_mlp

from .clusters import wait_until
from .conftest import run_cli
from .reference import seed_loop

#: What moto accepts; any value works, but it must come from the environment.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "not-a-real-secret"}


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url + "/moto-api/", timeout=1).close()
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on a free loopback port, with a bucket named `checks`."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(url))
        import s3fs

        s3fs.S3FileSystem(endpoint_url=url, key=CREDENTIALS["AWS_ACCESS_KEY_ID"], secret="x").mkdir("checks")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment a user would have: credentials set, no instance metadata to wait for."""
    for name, value in {**CREDENTIALS, "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(name, value)
    return dict(os.environ)


def _write_check(folder: Path, root: str, endpoint: str, model: str, settings: str) -> None:
    """The seed network's stores under ``root`` in S3, and ``folder/check.yaml`` checking ``model`` on them."""
    params, data = seed_mlp.problem()
    options = {"endpoint_url": endpoint}
    pipeline.storage.inputs.write_group(f"{root}/params.zarr", params, {"order": list(seed_mlp.ORDER)}, options)
    pipeline.storage.inputs.write_group(f"{root}/data.zarr", data, None, options)
    (folder / "check.yaml").write_text(
        f"model: pipeline.examples.seed_mlp:{model}\n"
        f"params: {root}/params.zarr\ndata: {root}/data.zarr\noutput: {root}/out.zarr\n{settings}"
        f"storage_options:\n  endpoint_url: {endpoint}\n"
    )


def test_a_check_reads_and_writes_its_stores_in_s3(s3_endpoint: str, s3_env: dict[str, str], tmp_path: Path) -> None:
    params, data = seed_mlp.problem()
    options = {"endpoint_url": s3_endpoint}
    root = "s3://checks/seed"
    _write_check(tmp_path, root, s3_endpoint, "planted", "scheme: central\nepsilon: 1.0e-7\n")
    result = run_cli("run", "check.yaml", "--workers", "2", "--json", cwd=tmp_path, env=s3_env)
    assert result.returncode == 1, result.stderr  # the planted bugs, found
    assert json.loads(result.stdout)["failing"] == ["b1", "W2"]
    numeric = pipeline.storage.inputs.read_arrays("output", f"{root}/out.zarr", ("numeric",), options)["numeric"]
    np.testing.assert_array_equal(numeric, seed_loop(seed_mlp.planted, params, data, seed_mlp.ORDER, 1e-7))

    # Every other command reads it too; fsspec's own variable gives the endpoint.
    report = run_cli("report", f"{root}/out.zarr", env={**s3_env, "FSSPEC_S3_ENDPOINT_URL": s3_endpoint})
    assert report.returncode == 1
    assert "analytic is 4x the numeric gradient at the 4 wrong elements (of 5 checked)" in report.stdout

    # The same run again resumes from what S3 holds: nothing is recomputed.
    again = run_cli("run", "check.yaml", "--workers", "1", "--json", cwd=tmp_path, env=s3_env)
    assert again.returncode == 1
    assert json.loads(again.stdout)["timings"]["resumed_shards"] >= 1

    # No secret reaches the output: the stored config has the endpoint and nothing else.
    attrs = pipeline.storage.output.read_output_attrs(f"{root}/out.zarr", options)
    assert attrs["config"]["storage_options"] == options
    assert CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in json.dumps(attrs)

    # Without credentials in the environment: one line naming the store, exit 2.
    bare = {k: v for k, v in s3_env.items() if k not in CREDENTIALS}
    refused = run_cli("run", "check.yaml", "--overwrite", cwd=tmp_path, env=bare)
    assert refused.returncode == 2
    assert refused.stderr == (
        f"gradcheck: error: The params store '{root}/params.zarr' cannot be read: "
        "NoCredentialsError: Unable to locate credentials\n"
    )


def test_a_remote_output_is_locked_by_a_conditional_create(
    s3_endpoint: str, s3_env: dict[str, str], tmp_path: Path
) -> None:
    root = "s3://checks/locked"
    _write_check(tmp_path, root, s3_endpoint, "correct", "")
    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint)
    lock = "checks/locked/out.zarr.lock"
    # Another run holds it: this very process, alive, on this host.
    fs.pipe_file(lock, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "now"}).encode())
    refused = run_cli("run", "check.yaml", "--inline", cwd=tmp_path, env=s3_env)
    assert refused.returncode == 2
    assert refused.stderr == (
        f"gradcheck: error: The output '{root}/out.zarr' is being written by another gradcheck run (pid {os.getpid()} "
        f"on {socket.gethostname()}, since now); wait for it, or remove '{root}/out.zarr.lock' if that run is gone.\n"
    )
    assert not fs.exists("checks/locked/out.zarr")  # nothing written
    # A lock left by a process that is gone from this host is taken over, and released at the end.
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    fs.pipe_file(lock, json.dumps({"pid": int(gone.stdout), "host": socket.gethostname(), "started": "then"}).encode())
    done = run_cli("run", "check.yaml", "--inline", cwd=tmp_path, env=s3_env)
    assert done.returncode == 0, done.stderr
    assert not fs.exists(lock)


def test_an_output_in_a_bucket_that_is_missing_or_an_endpoint_not_reached_is_one_line_and_nothing_written(
    s3_endpoint: str, s3_env: dict[str, str], tmp_path: Path
) -> None:
    # review 126: the output's lock is its first write, and its errors read "internal error", exit 3; a store not
    # reached also printed 100 lines of "Exception ignored in: <coroutine ...>" after its one line
    root = "s3://checks/unwritable"
    _write_check(tmp_path, root, s3_endpoint, "correct", "")
    missing = run_cli(
        "run", "check.yaml", "--inline", "--set", "output=s3://no-such-bucket/out.zarr", cwd=tmp_path, env=s3_env
    )
    assert missing.returncode == 2
    assert missing.stderr == (
        "gradcheck: error: The output 's3://no-such-bucket/out.zarr' cannot be written: "
        "FileNotFoundError: The specified bucket does not exist\n"
    )
    with socket.socket() as s:  # a loopback port nothing answers on
        s.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{s.getsockname()[1]}"
    for command in (("report", f"{root}/out.zarr"), ("verify", f"{root}/out.zarr")):
        unreached = run_cli(*command, env={**s3_env, "FSSPEC_S3_ENDPOINT_URL": nowhere})
        assert unreached.returncode == 2
        assert re.fullmatch(
            rf"gradcheck: error: The output store '{root}/out.zarr' cannot be read: EndpointConnectionError: .*\n",
            unreached.stderr,
        )
    assert not s3fs.S3FileSystem(endpoint_url=s3_endpoint).exists("checks/unwritable/out.zarr")
