"""Detached jobs on a real `dask scheduler` / `dask worker` cluster: submit, status, cancel, resume."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from distributed import Client

import pipeline
from pipeline.errors import OutputExistsError
from pipeline.examples import seed_mlp
from pipeline.execution import jobs
from pipeline.storage.output import update_attrs

from . import models
from .clusters import dask_cluster, wait_until
from .conftest import REPO, run_cli, shards_done, write_gated_problem, write_smooth_problem
from .reference import seed_loop


def _status(output: Path) -> subprocess.CompletedProcess[str]:
    return run_cli("status", str(output))


def test_a_submitted_job_finishes_after_its_submitter_exits(tmp_path: Path, seed_example: Path) -> None:
    with dask_cluster(tmp_path / "cluster", workers=2) as cluster:
        started = time.monotonic()
        submitted = run_cli("submit", str(seed_example / "planted.yaml"), "--scheduler", cluster.address)
        assert submitted.returncode == 0, submitted.stderr
        assert re.fullmatch(r"gradcheck-[0-9a-f]{12}\n", submitted.stdout)
        job = submitted.stdout.strip()
        output = seed_example / "planted-output.zarr"
        # The submitting process is gone; the job goes on, on the cluster.
        wait_until(lambda: _status(output).returncode == 1, timeout=120)
        assert time.monotonic() - started < 120
        final = _status(output)
        assert final.stdout.splitlines()[0] == f"{output}: job {job}, finished"
        assert final.stdout.splitlines()[1].startswith("shards 1/1 done")
        assert final.stdout.splitlines()[-1] == "verdict: FAILED (b1, W2); difference 2.851e-01"
    params, data = seed_mlp.problem()
    numeric = np.asarray(zarr.open_array(str(output), path="numeric", mode="r")[:])
    np.testing.assert_array_equal(numeric, seed_loop(seed_mlp.planted, params, data, seed_mlp.ORDER, 1e-7))
    report = run_cli("report", str(output), "--json")
    assert json.loads(report.stdout)["failing"] == ["b1", "W2"]


def test_a_cancelled_job_keeps_its_shards_and_resumes_with_run(tmp_path: Path) -> None:
    """The gated model: the 10 `early` shards finish, the 10 `late` ones wait for a file."""
    output = write_gated_problem(tmp_path, "scheme: central\n")
    params, data = models.gated_problem()
    gate = tmp_path / "gate"
    with dask_cluster(tmp_path / "cluster", workers=2, env={"GRADCHECK_TEST_GATE": str(gate)}) as cluster:
        submitted = run_cli("submit", str(tmp_path / "check.yaml"), "--scheduler-file", str(cluster.scheduler_file))
        assert submitted.returncode == 0, submitted.stderr
        job = submitted.stdout.strip()
        wait_until(lambda: shards_done(output) == 10, timeout=120)

        running = _status(output)
        assert running.returncode == 5  # no verdict yet: never 0, "the gradients agree"
        lines = running.stdout.splitlines()
        assert lines[0] == f"{output}: job {job}, running"
        assert re.fullmatch(r"shards 10/20 done, \d+ evaluations/s, ETA \d+ s", lines[1]), lines[1]

        cancelled = run_cli("cancel", str(output))
        assert cancelled.returncode == 0, cancelled.stderr
        assert cancelled.stdout.splitlines()[0] == f"{output}: job {job}, cancelled"
        assert (
            "Cancelled with 10 of 20 shards done (and any that were running may finish); they are kept, and the "
            "same run resumes from them." in cancelled.stdout
        )
        assert _status(output).stdout.splitlines()[0] == f"{output}: job {job}, cancelled"
        assert _status(output).returncode == 5
        again = run_cli("cancel", str(output))
        assert again.returncode == 2
        assert again.stderr == f"gradcheck: error: Job {job} writing '{output}' is not running: it is cancelled.\n"

        gate.touch()  # the `late` shards may finish now
        resumed = run_cli("run", str(tmp_path / "check.yaml"), "--scheduler", cluster.address, "--json")
        assert resumed.returncode == 0, resumed.stderr
        assert json.loads(resumed.stdout)["timings"]["resumed_shards"] >= 10
        assert _status(output).stdout.splitlines()[0] == f"{output}: run (not a submitted job), finished"

        # Submitted again over the finished output (its `late` shards wait again): from the moment submit
        # returns, status speaks of the new job, waiting or running, never of the last run's verdict.
        gate.unlink()
        again_submitted = run_cli("submit", str(tmp_path / "check.yaml"), "--overwrite", "--scheduler", cluster.address)
        assert again_submitted.returncode == 0, again_submitted.stderr
        new_job = again_submitted.stdout.strip()
        assert _status(output).stdout.splitlines()[0] in (
            f"{output}: job {new_job}, submitted",
            f"{output}: job {new_job}, running",
        )
        gate.touch()
        wait_until(lambda: "finished" in _status(output).stdout, timeout=120)
        assert _status(output).stdout.splitlines()[0] == f"{output}: job {new_job}, finished"
    # The same numbers as the analytic derivative's finite differences, computed here independently.
    reference = seed_loop(models.gated, params, data, ("early", "late"), 1e-6)
    np.testing.assert_array_equal(np.asarray(zarr.open_array(str(output), path="numeric", mode="r")[:]), reference)


def test_status_tells_a_killed_run_from_a_running_one(tmp_path: Path) -> None:
    output = write_gated_problem(tmp_path, "scheme: central\n")
    gate = tmp_path / "gate"
    run = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "run", str(tmp_path / "check.yaml"), "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO), "GRADCHECK_TEST_GATE": str(gate)},
    )
    try:
        wait_until(lambda: shards_done(output) == 10, timeout=120)
        running = _status(output)
        assert running.stdout.splitlines()[0] == f"{output}: run (not a submitted job), running"
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=30)
    killed = _status(output)
    assert killed.returncode == 5
    assert killed.stdout.splitlines() == [
        f"{output}: run (not a submitted job), interrupted",
        killed.stdout.splitlines()[1],
        "its process is gone; the same `gradcheck run` resumes it from the shards done",
    ]
    assert killed.stdout.splitlines()[1].startswith("shards 10/20 done")


def test_submit_needs_an_existing_cluster(seed_example: Path) -> None:
    result = run_cli("submit", str(seed_example / "correct.yaml"), "--set", "cluster.workers=2")
    assert result.returncode == 2
    assert result.stderr == (
        "gradcheck: error: `gradcheck submit` runs the check on an existing cluster, which outlives this process: "
        "give --scheduler, --scheduler-file or `cluster.address`.\n"
    )
    assert not (seed_example / "correct-output.zarr").exists()


def test_a_model_that_cannot_be_checked_is_refused_by_submit_before_any_job(tmp_path: Path) -> None:
    """The probe runs on the cluster before submit returns: a random loss is one line and exit 2."""
    config = write_smooth_problem(tmp_path) / "check.yaml"
    config.write_text(config.read_text().replace(":smooth", ":dropout"))
    with dask_cluster(tmp_path / "cluster", workers=1) as cluster:
        result = run_cli("submit", str(tmp_path / "check.yaml"), "--scheduler", cluster.address)
    assert result.returncode == 2
    assert result.stderr.startswith("gradcheck: error: Model loss is not deterministic: two evaluations at θ gave")
    assert result.stderr.count("\n") == 1
    assert result.stdout == ""
    assert not (tmp_path / "out.zarr").exists()


def test_status_of_a_foreground_run_and_of_no_run(seed_example: Path) -> None:
    assert run_cli("run", str(seed_example / "correct.yaml")).returncode == 0
    output = seed_example / "correct-output.zarr"
    shown = _status(output)
    assert shown.returncode == 0
    assert shown.stdout.splitlines()[0] == f"{output}: run (not a submitted job), finished"
    # The rate is over the run's own time, not until now: it does not fall as time passes (a timed bound
    # on it would fail on a loaded machine).
    before = re.fullmatch(r"shards 1/1 done, (\d+) evaluations/s", shown.stdout.splitlines()[1])
    time.sleep(1.5)
    after = re.fullmatch(r"shards 1/1 done, (\d+) evaluations/s", _status(output).stdout.splitlines()[1])
    assert before is not None
    assert after is not None
    assert int(after.group(1)) == int(before.group(1)) > 0
    assert shown.stdout.splitlines()[-1] == "verdict: passed; difference 1.189e-07"
    refused = run_cli("cancel", str(output))
    assert refused.returncode == 2
    assert "is written by a foreground run, not a submitted job" in refused.stderr
    missing = _status(seed_example / "nothing.zarr")
    assert missing.returncode == 2
    assert (
        missing.stderr
        == f"gradcheck: error: The output store '{seed_example / 'nothing.zarr'}' does not exist (or is not a Zarr group).\n"
    )


def test_status_names_a_run_on_another_host_writing_a_finished_output_again(seed_example: Path) -> None:
    """Review 126: a finished output whose lock a live run on another host holds read `finished` and nothing more,
    while `run` refused it as being written. Status says who writes it now; the verdict shown is the last run's."""
    assert run_cli("run", str(seed_example / "correct.yaml")).returncode == 0
    output = seed_example / "correct-output.zarr"
    lock = Path(f"{output}.lock")
    lock.write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "2026-12-06T07:00:00"}))
    shown = _status(output)
    assert shown.returncode == 0
    assert shown.stdout.splitlines()[0] == f"{output}: run (not a submitted job), finished"
    assert shown.stdout.splitlines()[-1] == (
        "another gradcheck run is writing it now (pid 1 on elsewhere, since 2026-12-06T07:00:00): "
        "what is shown is the last run's"
    )
    refused = run_cli("run", str(seed_example / "correct.yaml"))
    assert refused.returncode == 2
    assert "is being written by another gradcheck run (pid 1 on elsewhere, since 2026-12-06T07:00:00)" in refused.stderr
    lock.unlink()
    assert "another gradcheck run" not in _status(output).stdout


def test_submitting_over_an_output_another_job_is_writing_is_refused_at_once(tmp_path: Path) -> None:
    """The 'overwrite that never happened': refused at submit time, naming the run that holds the output."""
    output = write_gated_problem(tmp_path, "scheme: central\n")
    gate = tmp_path / "gate"
    config = str(tmp_path / "check.yaml")
    with dask_cluster(tmp_path / "cluster", workers=2, env={"GRADCHECK_TEST_GATE": str(gate)}) as cluster:
        where = ("--scheduler-file", str(cluster.scheduler_file))
        first = run_cli("submit", config, *where)
        assert first.returncode == 0, first.stderr
        job = first.stdout.strip()
        wait_until(lambda: shards_done(output) == 10, timeout=120)  # the `late` shards wait for the gate
        second = run_cli("submit", config, *where, "--overwrite", "--set", "epsilon=1.0e-5")
        assert second.returncode == 2
        assert second.stdout == ""
        assert re.fullmatch(
            rf"gradcheck: error: The output '{re.escape(str(output))}' is being written by another gradcheck run "
            r"\(pid \d+ on \S+, since \S+\); wait for it, or remove '.*\.lock' if that run is gone\.\n",
            second.stderr,
        ), second.stderr
        assert _status(output).stdout.splitlines()[0] == f"{output}: job {job}, running"
        gate.touch()
        wait_until(lambda: _status(output).returncode == 0, timeout=120)
        assert _status(output).stdout.splitlines()[0] == f"{output}: job {job}, finished"


def test_a_submitted_record_whose_cluster_is_gone_does_not_block_the_output(tmp_path: Path, seed_example: Path) -> None:
    config, output = str(seed_example / "correct.yaml"), seed_example / "correct-output.zarr"
    assert run_cli("run", config, "--inline").returncode == 0
    group = zarr.open_group(str(output), mode="r+")
    gone: dict[str, Any] = {"id": "gradcheck-000000000000", "cluster": {"address": "tcp://127.0.0.1:9"}}
    group.attrs["state"] = {"state": "submitted", "job": gone}  # its scheduler died before it started
    with dask_cluster(tmp_path / "cluster", workers=1) as cluster:
        submitted = run_cli("submit", config, "--scheduler", cluster.address, "--overwrite")
        assert submitted.returncode == 0, submitted.stderr
        job = submitted.stdout.strip()
        wait_until(lambda: _status(output).returncode == 0 and "finished" in _status(output).stdout, timeout=120)
    assert _status(output).stdout.splitlines()[0] == f"{output}: job {job}, finished"


def test_a_job_that_fails_before_it_runs_is_shown_failed_by_status(client: Client, seed_example: Path) -> None:
    """Between submit's checks and its driver's start, another run took the output: the driver fails on the
    cluster, and the output says so, for `status`, instead of showing the job waiting forever."""
    config = pipeline.load_config(seed_example / "correct.yaml")
    output = Path(config.output)
    assert run_cli("run", str(seed_example / "correct.yaml"), "--inline").returncode == 0
    job = {"id": "gradcheck-0123456789ab", "cluster": {"address": client.scheduler_info(n_workers=0)["address"]}}
    update_attrs(config.output, {"state": {"state": "submitted", "job": job}})  # as submit leaves it
    lock = Path(f"{output}.lock")  # the other run: this test's process, alive on this host
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "now"}))
    try:
        driver = client.submit(jobs._drive, config, config.model, False, job, pure=False)  # as the cluster runs it
        with pytest.raises(OutputExistsError, match="is being written by another gradcheck run"):
            driver.result()
    finally:
        lock.unlink()
    shown = run_cli("status", str(output))
    assert shown.returncode == 2
    assert shown.stdout.splitlines()[0] == f"{output}: job {job['id']}, failed"
    assert shown.stdout.splitlines()[1].startswith(
        f"it failed before it ran: The output '{output}' is being written by another gradcheck run (pid {os.getpid()}"
    )


def test_a_model_that_kills_its_worker_in_the_probe_is_refused_by_submit_in_one_line(tmp_path: Path) -> None:
    # review 93: exit 3, "internal error ... please report it", where `run` said exit 2 in one line
    output = write_gated_problem(tmp_path, "scheme: central\n")
    poison = tmp_path / "poison"
    poison.touch()
    env = {"GRADCHECK_TEST_POISON_PROBE": str(poison), "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}
    with dask_cluster(tmp_path / "cluster", workers=1, env=env) as cluster:
        submitted = run_cli("submit", str(tmp_path / "check.yaml"), "--scheduler-file", str(cluster.scheduler_file))
    assert submitted.returncode == 2
    assert submitted.stdout == ""
    assert submitted.stderr == (
        "gradcheck: error: The noise probe (the model loaded, its loss and grad at θ, and losses at steps along every "
        "tensor) killed the worker running it, as many times as Dask allows (distributed.scheduler.allowed-failures): "
        "the model may crash the process near θ. Fix the model and run the same command again.\n"
    )
    assert not output.exists()
