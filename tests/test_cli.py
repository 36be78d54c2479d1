"""End to end through the `gradcheck` command: real LocalClusters of worker processes, real Zarr stores."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

import pipeline
from pipeline.cli import progress_line
from pipeline.examples import seed_mlp
from pipeline.numerics.plan import auto_shard_size
from pipeline.storage.inputs import write_group

from . import models
from .conftest import MODELS_FILE, REPO, file_model_check, run_cli
from .reference import seed_loop


def _json(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.stderr == "", result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def _numeric(output: Path) -> np.ndarray:
    return np.asarray(zarr.open_array(str(output), path="numeric", mode="r")[:])


def test_seed_example_correct_passes_with_the_seeds_figure(seed_example: Path) -> None:
    result = run_cli("run", str(seed_example / "correct.yaml"), "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("gradcheck PASSED: 0 of 47 elements wrong; difference 1.189e-07 <= threshold 2e-07")
    assert "Wrong tensors" not in result.stdout
    report = _json(run_cli("report", str(seed_example / "correct-output.zarr"), "--json"))
    # The seed's published figure for its correct network, epsilon 1e-7.
    assert report["difference"] == pytest.approx(1.1890913024229996e-07, rel=1e-9)
    assert report["passed"] is True
    assert report["failing"] == []
    assert [t["name"] for t in report["tensors"]] == list(seed_mlp.ORDER)
    # b1 and b3 have own normalized differences above the threshold (rounding noise): not judged.
    own = {t["name"]: t["difference"] for t in report["tensors"]}
    assert own["b1"] > 2e-7
    assert own["b3"] > 2e-7
    assert all(t["passed"] for t in report["tensors"])
    assert (report["n_params"], report["n_checked"], report["epsilon"], report["threshold"]) == (47, 47, 1e-7, 2e-7)
    # The shard size was chosen from the loss time the probe measured on a worker.
    timings = report["timings"]
    assert 0 < timings["loss_seconds"] < 0.1
    assert timings["shard_size"] == auto_shard_size(47, timings["loss_seconds"], 2)


def test_seed_example_planted_fails_naming_exactly_w2_and_b1(seed_example: Path) -> None:
    result = run_cli("run", str(seed_example / "planted.yaml"))
    assert result.returncode == 1, result.stderr
    assert "gradcheck FAILED: 8 of 47 elements wrong; difference 2.851e-01 > threshold 2e-07" in result.stdout
    assert "Wrong tensors, from the last layer back: W2, b1\n" in result.stdout
    wrong_rows = [line.split()[0] for line in result.stdout.splitlines() if line.rstrip().endswith("WRONG")]
    assert wrong_rows == ["b1", "W2"]
    report = _json(run_cli("report", str(seed_example / "planted-output.zarr"), "--json"))
    assert report["difference"] == pytest.approx(0.2850931567761624, rel=1e-12)
    assert report["failing"] == ["b1", "W2"]
    # The planted mistakes are exact factors: b1 by 4, W2 by 2.
    for w in report["worst"]:
        if w["tensor"] in ("b1", "W2"):
            assert w["analytic"] / w["numeric"] == pytest.approx(4.0 if w["tensor"] == "b1" else 2.0, rel=1e-5)
    assert {w["tensor"] for w in report["worst"][:8]} == {"b1", "W2"}
    # `report` prints the stored report again and exits with its verdict.
    again = run_cli("report", str(seed_example / "planted-output.zarr"))
    assert again.returncode == 1
    assert again.stdout.splitlines()[:12] == result.stdout.splitlines()[:12]


def test_numeric_gradient_is_bit_for_bit_the_seed_loop(seed_example: Path) -> None:
    # Shards of 5 straddle tensor boundaries and land on both workers.
    result = run_cli("run", str(seed_example / "correct.yaml"), "--set", "shard_size=5", "--workers", "2")
    assert result.returncode == 0, result.stderr
    params, data = seed_mlp.problem()
    expected = seed_loop(seed_mlp.correct, params, data, seed_mlp.ORDER, 1e-7)
    output = seed_example / "correct-output.zarr"
    np.testing.assert_array_equal(_numeric(output), expected)
    analytic = zarr.open_array(str(output), path="analytic", mode="r")
    assert analytic.chunks == (5,)
    grad = seed_mlp.correct.grad(params, data)
    np.testing.assert_array_equal(analytic[:], np.concatenate([grad[n].reshape(-1) for n in seed_mlp.ORDER]))


def test_any_model_by_file_path_with_any_names_and_shapes(smooth_problem: Path) -> None:
    result = run_cli("run", str(smooth_problem / "check.yaml"), "--json", "--set", "shard_size=4")
    assert result.returncode == 0, result.stderr
    report = _json(result)
    assert [(t["name"], t["shape"]) for t in report["tensors"]] == [
        ("conv.weight", [2, 3, 4]),
        ("scale", []),
        ("bias", [3]),
    ]
    assert report["n_params"] == 28
    params, data = models.problem()
    truth = np.concatenate([g.reshape(-1) for g in models.truth(params, data).values()])
    # Central differences at h = 1e-6 on a smooth O(1) loss: error ~ eps * |J| / h ~ 1e-9.
    np.testing.assert_allclose(_numeric(smooth_problem / "out.zarr"), truth, rtol=0, atol=1e-8)
    assert report["difference"] < 1e-9
    attrs: dict[str, Any] = dict(zarr.open_group(str(smooth_problem / "out.zarr"), mode="r").attrs)
    assert attrs["layout"][1] == {"name": "scale", "shape": [], "offset": 24, "dtype": "float64"}
    assert attrs["config"]["model"] == f"{MODELS_FILE}:smooth"
    assert attrs["report"] == report


def test_one_wrong_element_is_named_by_tensor_and_multi_index(smooth_problem: Path) -> None:
    result = run_cli("run", str(smooth_problem / "check.yaml"), "--json", "--set", f"model={MODELS_FILE}:one_wrong")
    assert result.returncode == 1, result.stderr
    report = _json(result)
    worst = report["worst"][0]
    assert (worst["tensor"], worst["index"]) == ("conv.weight", [1, 2, 3])
    assert worst["analytic"] - worst["numeric"] == pytest.approx(0.5, abs=1e-8)
    assert report["worst"][1]["abs_error"] < 1e-8
    assert report["failing"] == ["conv.weight"]


def test_a_gradient_store_is_used_instead_of_model_grad(smooth_problem: Path) -> None:
    params, data = models.problem()
    write_group(str(smooth_problem / "gradient.zarr"), models.truth(params, data))
    result = run_cli(
        "run",
        str(smooth_problem / "check.yaml"),
        "--json",
        "--set",
        f"model={MODELS_FILE}:grad_not_called",
        "--set",
        f"gradient={smooth_problem / 'gradient.zarr'}",
    )
    assert result.returncode == 0, result.stderr
    assert _json(result)["difference"] < 1e-9


def test_float32_parameters(tmp_path: Path) -> None:
    params, data = models.problem(np.float32)
    write_group(str(tmp_path / "params.zarr"), params)
    write_group(str(tmp_path / "data.zarr"), data)
    (tmp_path / "check.yaml").write_text(
        f"model: {MODELS_FILE}:smooth\nparams: params.zarr\ndata: data.zarr\noutput: out.zarr\n"
        # A step the float32 grid can take: (θ ± ε) rounds by ~|θ| 6e-8, a relative error of ~1e-4 in the step.
        "epsilon: 1.0e-3\nthreshold: 1.0e-3\n"
    )
    result = run_cli("run", str(tmp_path / "check.yaml"), "--json")
    assert result.returncode == 0, result.stderr
    report = _json(result)
    assert [t["name"] for t in report["tensors"]] == ["bias", "conv.weight", "scale"]  # sorted without `order`
    attrs: dict[str, Any] = dict(zarr.open_group(str(tmp_path / "out.zarr"), mode="r").attrs)
    assert {t["dtype"] for t in attrs["layout"]} == {"float32"}
    truth = models.truth(params, data)
    expected = np.concatenate([truth[n].reshape(-1) for n in ("bias", "conv.weight", "scale")])
    np.testing.assert_allclose(_numeric(tmp_path / "out.zarr"), expected, rtol=1e-3, atol=1e-4)


def test_each_worker_loads_params_and_data_once_per_run(smooth_problem: Path) -> None:
    result = run_cli("run", str(smooth_problem / "check.yaml"), "--json", "--workers", "2", "--set", "shard_size=2")
    assert result.returncode == 0, result.stderr
    timings = _json(result)["timings"]
    # 14 shards on 2 workers: at most one load per worker (the probe's worker may load first).
    assert timings["workers"] == 2
    assert 1 <= timings["worker_loads"] <= 2
    # 4 per index (richardson, the default), 2 at θ (the determinism check), the noise level's and a second
    # look's, each counted.
    assert timings["noise_evaluations"] >= 3 * 2 * 9  # 9 losses at two spacings, per tensor
    assert timings["loss_evaluations"] == 4 * 28 + 2 + timings["noise_evaluations"] + timings["second_look_evaluations"]


def test_a_progress_bar_is_drawn_on_a_terminal(seed_example: Path) -> None:
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "run", str(seed_example / "correct.yaml"), "--set", "shard_size=8"],
        stdout=subprocess.PIPE,
        stderr=terminal,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    os.close(terminal)
    stdout, _ = process.communicate(timeout=120)
    drawn = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:
            break
        if not chunk:
            break
        drawn += chunk
    os.close(controller)
    assert process.returncode == 0
    assert b"] 6/6 shards" in drawn
    assert drawn.count(b"\r[") == 6
    assert b"\r[" not in stdout  # the bar is on the terminal, not in the summary


def test_rerun_reuses_a_different_check_is_refused_and_overwrite_replaces(seed_example: Path) -> None:
    config = str(seed_example / "correct.yaml")
    output = seed_example / "correct-output.zarr"
    assert run_cli("run", config).returncode == 0
    first = _numeric(output)
    reused = run_cli("run", config, "--set", "threshold=1e-3")
    assert reused.returncode == 0  # the same numbers: reused, and the report says so (it said "0/s")
    assert "loss evaluations (the probe's alone: every shard was read back from the output" in reused.stdout
    np.testing.assert_array_equal(_numeric(output), first)
    refused = run_cli("run", config, "--set", "epsilon=1e-6")
    assert refused.returncode == 2
    assert refused.stderr.endswith(
        f"The output '{output}' holds the result of a different check (what differs: `epsilon`); pass --overwrite (overwrite=True from Python) to "
        "replace it, or choose another `output`.\n"
    )
    np.testing.assert_array_equal(_numeric(output), first)
    # review 92: a data store changed since was refused without saying so
    data = zarr.open_array(str(seed_example / "data.zarr"), path="X", mode="r+")
    original = np.asarray(data[:])
    data[0, 0] = original[0, 0] + 1
    refused = run_cli("run", config)
    assert refused.returncode == 2
    assert "holds the result of a different check (what differs: the data store's contents); pass" in refused.stderr
    data[:] = original
    replaced = run_cli("run", config, "--set", "epsilon=1e-6", "--overwrite", "--json")
    assert replaced.returncode == 0
    assert _json(replaced)["epsilon"] == 1e-6
    assert not np.array_equal(_numeric(output), first)
    # On the same check, --overwrite starts afresh instead of resuming.
    again = _json(run_cli("run", config, "--set", "epsilon=1e-6", "--overwrite", "--json"))
    assert again["timings"]["resumed_shards"] == 0
    counted = again["timings"]["noise_evaluations"] + again["timings"]["second_look_evaluations"]
    assert again["timings"]["loss_evaluations"] == 2 * 47 + 2 + counted  # central: 2 per index
    resumed = _json(run_cli("run", config, "--set", "epsilon=1e-6", "--json"))
    shard_size = again["timings"]["shard_size"]
    assert resumed["timings"]["shard_size"] == shard_size  # the output's, whatever the timing says now
    assert resumed["timings"]["resumed_shards"] == -(-47 // shard_size)
    # only the probe: twice at θ, and the noise
    assert resumed["timings"]["loss_evaluations"] == 2 + resumed["timings"]["noise_evaluations"]


def test_example_is_rewritten_in_place_but_never_over_other_files(tmp_path: Path) -> None:
    first = run_cli("example", "seed-mlp", str(tmp_path / "ex"))
    assert first.returncode == 0
    assert f"gradcheck run {tmp_path / 'ex' / 'correct.yaml'}" in first.stdout
    assert run_cli("example", "seed-mlp", str(tmp_path / "ex")).returncode == 0
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "correct.yaml").write_text("my own notes\n")
    refused = run_cli("example", "seed-mlp", str(tmp_path / "mine"))
    assert refused.returncode == 2
    assert refused.stderr == (
        f"gradcheck: error: '{tmp_path / 'mine' / 'correct.yaml'}' exists and was not written by "
        "`gradcheck example seed-mlp`; choose another folder.\n"
    )
    assert (tmp_path / "mine" / "correct.yaml").read_text() == "my own notes\n"
    assert not (tmp_path / "mine" / "params.zarr").exists()
    # a URL: its configs are files on a local disk (review 126: they went to a folder named 's3:', stores to S3)
    remote = run_cli("example", "seed-mlp", "s3://bucket/ex", cwd=tmp_path)
    assert (remote.returncode, remote.stdout) == (2, "")
    assert remote.stderr.startswith("gradcheck: error: `gradcheck example` writes a folder on a local disk, not ")
    assert not (tmp_path / "s3:").exists()


def test_version_prints_the_packages_version_and_exits_0() -> None:
    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"gradcheck {pipeline.__version__}\n"
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("done", "total", "elapsed", "expected"),
    [
        (0, 10, 0.4, "[" + "." * 30 + "] 0/10 shards  0.4 s"),  # nothing to extrapolate from yet
        (1, 10, 2.0, "[###" + "." * 27 + "] 1/10 shards  2.0 s  ETA 18 s"),
        (3, 10, 6.0, "[#########" + "." * 21 + "] 3/10 shards  6.0 s  ETA 14 s"),
        (5, 6, 12.5, "[" + "#" * 25 + "." * 5 + "] 5/6 shards  12.5 s  ETA 2 s"),
        (6, 6, 15.0, "[" + "#" * 30 + "] 6/6 shards  15.0 s"),  # done: nothing left
    ],
)
def test_the_progress_line_shows_an_eta_from_the_pace_so_far(
    done: int, total: int, elapsed: float, expected: str
) -> None:
    assert progress_line(done, total, elapsed) == expected


def test_the_eta_is_the_average_pace_times_the_shards_left() -> None:
    # 40 of 1000 shards in 100 s: 2.5 s a shard, 960 left.
    assert progress_line(40, 1000, 100.0, width=10).endswith("] 40/1000 shards  100.0 s  ETA 2400 s")


def test_with_json_standard_output_holds_the_json_alone_whatever_the_model_prints(tmp_path: Path) -> None:
    # a model that prints when imported and at every loss, as debugging code does: on a local cluster its workers
    # print too; the report must still parse, and the prints are not lost (they go to standard error)
    source = (
        "import numpy as np\n"
        "print('model imported')\n"
        "class Quadratic:\n"
        "    def loss(self, p, d):\n"
        "        print('loss called')\n"
        "        return float(np.sum(p['w'] ** 2))\n"
        "    def grad(self, p, d):\n"
        "        return {'w': 2 * p['w']}\n"
        "model = Quadratic()\n"
    )
    _, config = file_model_check(tmp_path, source, "model", {"w": np.array([0.5, -1.5, 2.0])})
    for where in ("--inline", "--workers=1"):
        result = run_cli("run", str(config), where, "--json", "--overwrite")
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["verdict"] == "passed"
        assert report["difference"] < 1e-10  # the gradient 2w is exact: a quadratic's central difference is too
        assert "model imported" in result.stderr
        assert "loss called" in result.stderr
    planned = run_cli("plan", str(config), "--json")
    assert planned.returncode == 0, planned.stderr
    assert json.loads(planned.stdout)["n_params"] == 3


def test_main_called_in_process_leaves_the_callers_sigterm_handler_as_it_was(tmp_path: Path) -> None:
    import signal

    from pipeline.cli import main

    mine = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        assert main(["example", "seed-mlp", str(tmp_path / "example")]) == 0
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, mine)


def test_json_results_of_overlapping_commands_all_reach_standard_output(capfd: pytest.CaptureFixture[str]) -> None:
    # review 123: two `--json` runs overlapping in one process (main() in threads); the second saved the descriptor
    # the first had already pointed at standard error, and its JSON went there
    from pipeline.cli import _stdout_for_json_only

    with _stdout_for_json_only(True) as first:
        print("the model's print", flush=True)
        with _stdout_for_json_only(True) as second:
            print("another print", flush=True)
            second('{"second": 2}')
        first('{"first": 1}')
    print("after", flush=True)
    out, err = capfd.readouterr()
    assert out == '{"second": 2}\n{"first": 1}\nafter\n'
    assert err == "the model's print\nanother print\n"


def test_with_json_and_standard_output_closed_the_result_goes_nowhere_else(tmp_path: Path) -> None:
    # review 124: with no standard output the JSON went to standard error (491 lines), where `report --json` drops it
    _, config = file_model_check(
        tmp_path,
        "import numpy as np\nclass Q:\n    def loss(self, p, d): return float(np.sum(p['w'] ** 2))\n"
        "    def grad(self, p, d): return {'w': 2 * p['w']}\nmodel = Q()\n",
        "model",
        {"w": np.array([0.5, -1.5])},
    )
    done = subprocess.run(  # the child's standard output closed by the shell, `>&-` (no preexec_fn: a fork)
        [
            "sh",
            "-c",
            'exec "$@" >&-',
            "sh",
            sys.executable,
            "-m",
            "pipeline.cli",
            "run",
            str(config),
            "--inline",
            "--json",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
