"""Faults survived with nothing lost: a killed client, a killed worker, a crashing model,
non-finite losses, a concurrent run, a cluster that is not there. Real processes, killed by PID."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pytest
import zarr
from distributed import Client, LocalCluster

import pipeline
from pipeline.config import ClusterConfig
from pipeline.execution.cluster import connect

from . import models
from .clusters import dask_cluster, wait_until
from .conftest import REPO, run_cli, shards_done, write_gated_problem


@pytest.fixture
def gated(tmp_path: Path) -> Path:
    """The gated model's stores and config (see conftest.write_gated_problem)."""
    write_gated_problem(tmp_path, "threshold: 1.0e-8\n")
    return tmp_path


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), **extra}


def _start(folder: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "run", str(folder / "check.yaml"), "--json", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(**env),
    )


def _reference(folder: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """An undisturbed run of the same check, into its own output."""
    gate = folder / "reference-gate"
    gate.touch()
    result = run_cli("run", str(folder / "check.yaml"), "--json", "--set", f"output={folder / 'reference.zarr'}")
    assert result.returncode == 0, result.stderr
    return _numeric(folder / "reference.zarr"), json.loads(result.stdout)


def _numeric(output: Path) -> np.ndarray:
    return np.asarray(zarr.open_array(str(output), path="numeric", mode="r")[:])


def _same_report(a: dict[str, Any], b: dict[str, Any]) -> None:
    """The same report but for what differs between runs: timings, and the cost (memory, estimated and taken)."""
    varying = ("timings", "cost")
    assert {k: v for k, v in a.items() if k not in varying} == {k: v for k, v in b.items() if k not in varying}


def test_a_noise_probe_that_kills_its_worker_is_one_line_exit_2_not_an_internal_error(gated: Path) -> None:
    # review 92: a model crashing its process in the probe gave exit 3, "internal error ... please report it"
    poison = gated / "poison"
    poison.touch()
    process = _start(gated, DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES="0", GRADCHECK_TEST_POISON_PROBE=str(poison))
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 2, stderr
    assert stdout == ""
    assert stderr == (
        "gradcheck: error: The noise probe (the model loaded, its loss and grad at θ, and losses at steps along every "
        "tensor) killed the worker running it, as many times as Dask allows (distributed.scheduler.allowed-failures): the model may crash the process "
        "near θ. Fix the model and run the same command again.\n"
    )
    poison.unlink()
    result = run_cli("run", str(gated / "check.yaml"))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("stop", "group", "code", "said"),
    [
        # Ctrl-C reaches the terminal's whole process group: the check and its local cluster's workers. Review 92:
        # each worker printed its KeyboardInterrupt traceback (60 lines), and `status` said "cancelled" with a bare
        # "KeyboardInterrupt: ".
        (signal.SIGINT, True, 130, "gradcheck: interrupted\n"),
        # what systemd, Kubernetes and `kill` send, to the check's process alone: review 122 saw exit 143, nothing said
        (signal.SIGTERM, False, 143, "gradcheck: terminated\n"),
    ],
    ids=["ctrl-c", "sigterm"],
)
def test_a_stopped_run_says_so_in_one_line_is_left_interrupted_and_resumes(
    gated: Path, stop: signal.Signals, group: bool, code: int, said: str
) -> None:
    gate = gated / "gate"
    # (Ctrl-C as a terminal's foreground job has it: a run started from a background job, `nohup ... &` as CI may be,
    # inherits SIGINT ignored, which Python keeps, and the run went on at the gate until the test timed out)
    foreground = "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); import runpy; "
    foreground += "sys.argv[0] = 'gradcheck'; runpy.run_module('pipeline.cli', run_name='__main__')"
    process = subprocess.Popen(
        [sys.executable, "-c", foreground, "run", str(gated / "check.yaml"), "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(GRADCHECK_TEST_GATE=str(gate)),
        start_new_session=group,  # its own process group, as a terminal's foreground job
    )
    wait_until(lambda: shards_done(gated / "out.zarr") == 10)  # the `late` shards wait at the gate
    if group:
        os.killpg(process.pid, stop)
    else:
        process.send_signal(stop)
    stdout, stderr = process.communicate(timeout=60)
    assert (process.returncode, stdout, stderr) == (code, "", said)
    shown = run_cli("status", str(gated / "out.zarr"))
    assert shown.returncode == 5  # no verdict
    lines = shown.stdout.splitlines()
    assert lines[0] == f"{gated / 'out.zarr'}: run (not a submitted job), interrupted"
    assert lines[2:] == ["its process is gone; the same `gradcheck run` resumes it from the shards done"]
    gate.touch()
    result = run_cli("run", str(gated / "check.yaml"), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["timings"]["resumed_shards"] == 10


def test_the_local_clusters_workers_ignore_ctrl_c_and_the_check_stops_them() -> None:
    # Deterministic where the test above is not: a worker interrupted mid-task printed its traceback 1 run in 3.
    with connect(ClusterConfig(workers=2), 2) as client:
        pids = sorted(client.run(os.getpid).values())
        for pid in pids:
            os.kill(pid, signal.SIGINT)
        time.sleep(1.0)
        assert sorted(client.run(os.getpid).values()) == pids  # not restarted: a KeyboardInterrupt ended them
    wait_until(lambda: not any(_alive(pid) for pid in pids))  # and closing the cluster ended them


def test_the_users_own_worker_preloads_still_run_beside_ours(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # review 93: Dask reads distributed.worker.preload only when LocalCluster is given none, so ours replaced it
    (tmp_path / "user_preload.py").write_text(
        "import os\n\ndef dask_setup(worker):\n    os.environ['USER_PRELOAD'] = 'ran'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))  # spawned workers start with this process's sys.path
    settings = {"distributed.worker.preload": ["user_preload"], "distributed.worker.preload-argv": [[]]}
    with dask.config.set(settings), connect(ClusterConfig(workers=1), 1) as client:
        ran = client.run(lambda: (os.environ.get("USER_PRELOAD"), signal.getsignal(signal.SIGINT) == signal.SIG_IGN))
    assert list(ran.values()) == [("ran", True)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigkill_of_the_client_then_rerun_is_bit_identical_to_an_undisturbed_run(gated: Path) -> None:
    reference, reference_report = _reference(gated)
    gate = gated / "gate"
    process = _start(gated, GRADCHECK_TEST_GATE=str(gate))
    wait_until(lambda: shards_done(gated / "out.zarr") == 10)  # every `early` shard, no `late` one
    time.sleep(0.3)
    assert shards_done(gated / "out.zarr") == 10
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)  # reaps it and closes its pipes
    assert (gated / "out.zarr.lock").exists()  # left behind by the killed run: stale
    gate.touch()
    result = run_cli("run", str(gated / "check.yaml"), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["timings"]["resumed_shards"] == 10
    # Only the `late` half was computed again (4 losses per index), after the probe's 2 + 9.
    timings = report["timings"]
    assert (
        timings["loss_evaluations"] == 4 * 100 + 2 + timings["noise_evaluations"] + timings["second_look_evaluations"]
    )
    np.testing.assert_array_equal(_numeric(gated / "out.zarr"), reference)
    _same_report(report, reference_report)
    assert not (gated / "out.zarr.lock").exists()


def test_sigkill_of_a_worker_mid_run_changes_nothing(gated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reference, reference_report = _reference(gated)
    gate = gated / "gate"
    monkeypatch.setenv("GRADCHECK_TEST_GATE", str(gate))  # the workers inherit it
    config = pipeline.load_config(gated / "check.yaml")
    outcome: dict[str, Any] = {}
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, dashboard_address=":0", silence_logs=logging.CRITICAL
        ) as cluster,
        Client(cluster) as client,
    ):
        thread = threading.Thread(target=lambda: outcome.setdefault("report", pipeline.run(config, client=client)))
        thread.start()
        wait_until(lambda: shards_done(gated / "out.zarr") == 10)
        # Each worker answers with its PID from its event loop, even while a task blocks its thread.
        victim = next(iter(client.run(os.getpid).values()))
        os.kill(victim, signal.SIGKILL)  # it is blocked inside a `late` shard
        wait_until(lambda: victim not in client.run(os.getpid, on_error="ignore").values())
        gate.touch()
        thread.join(timeout=120)
    assert not thread.is_alive()
    report: pipeline.Report = outcome["report"]
    np.testing.assert_array_equal(_numeric(gated / "out.zarr"), reference)
    _same_report(report.to_dict(), reference_report)


def test_a_shard_that_kills_its_worker_stops_the_run_and_resumes_once_fixed(gated: Path) -> None:
    reference, reference_report = _reference(gated)
    poison = gated / "poison"
    poison.touch()
    (gated / "gate").touch()
    crash_env = {"GRADCHECK_TEST_POISON": str(poison), "GRADCHECK_TEST_GATE": str(gated / "gate")}
    # One death is enough to give up here (Dask's default allows 3 before giving up).
    process = _start(gated, DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES="0", **crash_env)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 2, stderr
    assert stdout == ""
    assert stderr.count("\n") == 1
    assert stderr.startswith("gradcheck: error: Shard 10 (indices 100..109: late[0] to late[9]) killed the worker")
    assert "fix the model and run the same command again to resume" in stderr
    kept = shards_done(gated / "out.zarr")
    assert kept >= 10  # at least every `early` shard
    claimed = re.search(r"At least (\d+) of 20 shards are complete and kept", stderr)
    assert claimed is not None
    # Shard 10 starts once a worker is free: the other may still be in an `early` shard when it
    # crashes, so at least 9 are done then; shards in flight may finish after the message.
    assert 9 <= int(claimed.group(1)) <= kept
    # The output says so too, for `gradcheck status`: failed, with the same message.
    shown = run_cli("status", str(gated / "out.zarr"))
    assert shown.returncode == 2
    assert shown.stdout.splitlines()[0] == f"{gated / 'out.zarr'}: run (not a submitted job), failed"
    assert shown.stdout.splitlines()[2] == stderr.removeprefix("gradcheck: error: ").rstrip("\n")
    poison.unlink()  # the model is fixed; its reference is unchanged
    result = run_cli("run", str(gated / "check.yaml"), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["timings"]["resumed_shards"] == kept
    np.testing.assert_array_equal(_numeric(gated / "out.zarr"), reference)
    _same_report(report, reference_report)


def test_a_second_run_on_an_output_being_written_is_refused(gated: Path) -> None:
    reference, _ = _reference(gated)
    gate = gated / "gate"
    first = _start(gated, GRADCHECK_TEST_GATE=str(gate))
    wait_until(lambda: shards_done(gated / "out.zarr") == 10)
    second = run_cli("run", str(gated / "check.yaml"))
    assert second.returncode == 2
    assert second.stderr.startswith(
        f"gradcheck: error: The output '{gated / 'out.zarr'}' is being written by another gradcheck run (pid {first.pid} on "
    )
    gate.touch()
    stdout, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    assert json.loads(stdout)["passed"] is True
    np.testing.assert_array_equal(_numeric(gated / "out.zarr"), reference)


def test_non_finite_losses_are_recorded_by_element_and_side(client: Client) -> None:
    w = np.linspace(-1, 1, 8)
    report = pipeline.check(models.nonfinite_near, {"w": w}, {"w_at_theta": w.copy()}, epsilon=1e-6, client=client)
    assert not report.passed
    assert np.isnan(report.difference)
    assert report.failing == ("w",)
    assert report.nonfinite.count == 2
    assert [(e.tensor, e.index, e.side) for e in report.nonfinite.elements] == [
        ("w", (3,), "plus"),
        ("w", (5,), "both"),
    ]
    assert report.to_dict()["difference"] is None  # valid JSON: no NaN
    summary = pipeline.report.format_report(report)
    assert "Non-finite loss at 2 element(s), side of θ in brackets: w[3] (plus), w[5] (both)" in summary


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_scheduler_fails_within_the_timeout(gated: Path) -> None:
    address = f"tcp://127.0.0.1:{_free_port()}"
    start = time.monotonic()
    result = run_cli("run", str(gated / "check.yaml"), "--scheduler", address, "--set", "cluster.timeout=2")
    assert time.monotonic() - start < 20
    assert result.returncode == 2
    assert result.stderr.startswith(f"gradcheck: error: Cannot reach the scheduler at {address} within 2 s")
    assert result.stderr.count("\n") == 1
    assert not (gated / "out.zarr").exists()
    assert not (gated / "out.zarr.lock").exists()


def test_a_scheduler_file_that_does_not_appear_and_an_address_that_does_not_parse_fail_in_one_line(
    gated: Path,
) -> None:
    # review 92: Dask's Client waits for a scheduler file without end, whatever cluster.timeout says
    missing = gated / "scheduler.json"
    start = time.monotonic()
    result = run_cli("run", str(gated / "check.yaml"), "--scheduler-file", str(missing), "--set", "cluster.timeout=2")
    assert time.monotonic() - start < 20
    assert result.returncode == 2
    assert result.stderr == (
        f"gradcheck: error: The scheduler file '{missing}' does not exist (waited 2 s): start the scheduler with "
        f"`dask scheduler --scheduler-file {missing}`, or name the file it writes.\n"
    )
    # review 93: a file without an address was exit 3 (distributed's AssertionError)
    missing.write_text("{}")
    result = run_cli("run", str(gated / "check.yaml"), "--scheduler-file", str(missing), "--set", "cluster.timeout=1")
    assert (result.returncode, result.stderr) == (
        2,
        f"gradcheck: error: The scheduler file '{missing}' holds no scheduler address (waited 1 s): name the file "
        "`dask scheduler --scheduler-file` writes.\n",
    )
    # one that fails at once does not say it waited
    result = run_cli("run", str(gated / "check.yaml"), "--scheduler", "127.0.0.1:notaport")
    assert result.returncode == 2
    assert result.stderr.startswith("gradcheck: error: Cannot reach the scheduler at 127.0.0.1:notaport: ValueError")
    assert not (gated / "out.zarr").exists()


def test_a_cluster_without_workers_fails_within_the_timeout(gated: Path) -> None:
    with dask_cluster(gated / "cluster", workers=0) as cluster:
        result = run_cli(
            "run",
            str(gated / "check.yaml"),
            "--scheduler-file",
            str(cluster.scheduler_file),
            "--set",
            "cluster.timeout=2",
        )
    scheduler_file = cluster.scheduler_file
    assert result.returncode == 2
    assert (
        result.stderr
        == f"gradcheck: error: The cluster of the scheduler file '{scheduler_file}' has no workers (waited 2 s).\n"
    )
    assert not (gated / "out.zarr").exists()
