"""In-process checks: the same numerics core as the Dask tasks, bit for bit, with no cluster and no store."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from distributed import Client

import pipeline
from pipeline.examples import mlp, seed_mlp, zoo
from pipeline.storage.inputs import read_arrays
from pipeline.storage.output import PER_INDEX

from . import models
from .conftest import REPO, run_cli

# Every example model: the seed network (batched), plain and staged MLPs, every zoo model and
# one planted bug of each, in float64 and (for the zoo) float32.
CASES: list[tuple[str, Any, tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]] = [
    ("seed-correct", seed_mlp.correct, seed_mlp.problem()),
    ("seed-planted", seed_mlp.planted, seed_mlp.problem()),
    ("mlp", mlp.mlp, mlp.problem(sizes=(4, 5, 1), batch=8)),
    ("mlp-staged", mlp.staged(3), mlp.problem(sizes=(4, 5, 3, 1), batch=8)),
    *((kind, zoo.model(kind), zoo.model(kind).problem()) for kind in zoo.MODELS),
    *(
        (
            f"{kind}-{zoo.model(kind).bugs()[0][0]}",
            zoo.planted(kind, zoo.model(kind).bugs()[0][0]),
            zoo.model(kind).problem(),
        )
        for kind in zoo.MODELS
    ),
    *((f"{kind}-float32", zoo.model(kind), zoo.model(kind).problem(np.float32)) for kind in zoo.MODELS[:3]),
]


def _schemes(model: Any) -> list[str]:
    return ["central", "richardson", *(["complex-step"] if getattr(model, "complex_step", False) else [])]


def _without_timings(report: pipeline.Report) -> dict[str, Any]:
    """The report but what differs between runs: timings, and the cost (memory, estimated and taken)."""
    as_dict = report.to_dict()
    del as_dict["timings"], as_dict["cost"]
    return as_dict


@pytest.mark.parametrize(("name", "model", "problem"), CASES, ids=[case[0] for case in CASES])
def test_inline_and_dask_runs_are_bit_identical(
    client: Client, tmp_path: Path, name: str, model: Any, problem: tuple[dict[str, np.ndarray], ...]
) -> None:
    params, data = problem
    for scheme in _schemes(model):
        # Shards cut differently in each (the reduction's sums are exact), and directions too.
        settings: dict[str, Any] = {"scheme": scheme, "directions": 1}
        in_memory = pipeline.check(model, params, data, **settings)
        inline = pipeline.check(
            model, params, data, output=str(tmp_path / f"inline-{scheme}.zarr"), shard_size=7, **settings
        )
        on_dask = pipeline.check(
            model, params, data, client=client, output=str(tmp_path / f"dask-{scheme}.zarr"), shard_size=5, **settings
        )
        assert in_memory.timings["workers"] == inline.timings["workers"] == 1
        assert on_dask.timings["workers"] == 2
        assert _without_timings(in_memory) == _without_timings(inline) == _without_timings(on_dask), scheme
        # the cost line: one process's memory where there were no workers, a worker's and the client's on Dask
        cost_lines = [str(r).splitlines()[-1] for r in (in_memory, inline, on_dask)]
        assert all(" MB in this process, " in line and " a worker" not in line for line in cost_lines[:2]), cost_lines
        assert " MB a worker, " in cost_lines[2], cost_lines
        assert " MB client, " in cost_lines[2], cost_lines
        stored = [
            read_arrays("output", str(tmp_path / f"{where}-{scheme}.zarr"), PER_INDEX) for where in ("inline", "dask")
        ]
        for array in PER_INDEX:
            np.testing.assert_array_equal(stored[0][array], stored[1][array], err_msg=f"{scheme}: {array}")
        assert np.isfinite(stored[0]["numeric"]).all()


def test_an_inline_check_finds_the_seeds_planted_bugs_and_leaves_the_callers_arrays_alone() -> None:
    params, data = seed_mlp.problem()
    before = {name: array.copy() for name, array in params.items()}
    report = pipeline.check(seed_mlp.planted, params, data, scheme="central", epsilon=1e-7, threshold=2e-7)
    assert report.failing == ("b1", "W2")
    assert report.difference == pytest.approx(0.2850931567761624, rel=1e-12)  # the seed loop's figure
    assert report.timings["workers"] == 1
    for name, array in params.items():
        np.testing.assert_array_equal(array, before[name])  # perturbed copies, never the caller's arrays


def test_an_inline_check_reports_progress_per_shard() -> None:
    seen: list[tuple[int, int]] = []
    pipeline.check(
        models.smooth, *models.problem(), shard_size=10, progress=lambda done, total: seen.append((done, total))
    )
    assert seen == [(1, 3), (2, 3), (3, 3)]  # 28 indices in shards of 10


def test_an_inline_check_validates_its_parameters() -> None:
    params, data = models.problem()
    with pytest.raises(
        pipeline.ConfigError, match=r"`params\['bias'\]` must be a float32 or float64 array. Got dtype int64 instead."
    ):
        pipeline.check(models.smooth, {**params, "bias": np.arange(2)}, data)
    with pytest.raises(pipeline.ConfigError, match=r"`gradient` must have one array per parameter tensor"):
        pipeline.check(models.smooth, params, data, gradient={"bias": np.zeros(2)})
    with pytest.raises(
        pipeline.StoreError, match=r"`params`: array 'bias' holds 1 non-finite value\(s\), the first at \[0\]"
    ):
        pipeline.check(models.smooth, {**params, "bias": np.array([np.nan, 0.0])}, data)


def test_importing_the_numerics_and_an_in_memory_check_load_neither_dask_nor_zarr() -> None:
    script = textwrap.dedent(
        """
        import sys
        import pipeline.numerics.shards, pipeline.numerics.probe, pipeline.numerics.directions, pipeline.numerics.reduce, pipeline.numerics.diagnose, pipeline.execution.inline
        import pipeline.testing
        print(sorted(m for m in ("distributed", "dask", "zarr") if m in sys.modules))
        from pipeline.examples import seed_mlp
        report = pipeline.check(seed_mlp.correct, *seed_mlp.problem())
        print(report.passed, sorted(m for m in ("distributed", "dask", "zarr") if m in sys.modules))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["[]", "True []"]


@pytest.mark.parametrize("guarded", [False, True])
def test_a_script_that_starts_a_local_cluster_at_its_top_level_is_told_to_guard_it(
    tmp_path: Path, guarded: bool
) -> None:
    """Found by a newcomer: the README's script with ``workers=2`` added printed 302 lines of tracebacks from
    distributed ("An attempt has been made to start a new process before the current process has finished its
    bootstrapping phase", "Nanny failed to start"). Each worker process imports the script again. Now each says so
    in one line and the check raises one ClusterError that says what to do; under the guard it runs."""
    body = "report = pipeline.check(seed_mlp.correct, *seed_mlp.problem(), workers=2)\nprint(report.passed)\n"
    if guarded:
        body = 'if __name__ == "__main__":\n' + textwrap.indent(body, "    ")
    script = tmp_path / "check_it.py"
    script.write_text("import pipeline\nfrom pipeline.examples import seed_mlp\n\n" + body)
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    if guarded:
        assert (done.returncode, done.stdout.strip()) == (0, "True"), done.stderr
        return
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) < 30, done.stderr
    assert lines[-1].startswith("pipeline.errors.ClusterError: The local cluster's worker processes did not start")
    assert 'put it under `if __name__ == "__main__":`' in lines[-1]
    assert any(line.startswith("gradcheck: a worker process imported a script that starts") for line in lines)


def test_a_model_error_names_the_models_file_and_line(tmp_path: Path) -> None:
    source = textwrap.dedent(
        """
        import numpy as np

        def _hidden(x):
            return np.linalg.inv(x)  # raises LinAlgError inside numpy

        class Net:
            def loss(self, params, data):
                return float(_hidden(np.zeros((2, 2))).sum())

            def grad(self, params, data):
                return {"w": np.zeros(2)}

        net = Net()
        """
    )
    (tmp_path / "net.py").write_text(source)
    line = (
        source.split("\n").index(
            "        return np.linalg.inv(x)  # raises LinAlgError inside numpy".strip().join(["    ", ""])
        )
        + 1
    )
    with pytest.raises(pipeline.ModelError) as raised:
        pipeline.check(f"{tmp_path / 'net.py'}:net", {"w": np.zeros(2)}, {})
    message = str(raised.value)
    assert message.startswith("Model loss at θ raised LinAlgError: Singular matrix")
    assert message.endswith(f"(at {tmp_path / 'net.py'}:{line})")  # the model's line, not numpy's
    assert "\n" not in message
    assert raised.value.detail is not None
    assert "np.linalg.inv(x)" in raised.value.detail


class _CholeskyLogDet:
    """``log det`` of a symmetric matrix by its Cholesky factor (a Gaussian's, a GP's), which raises where a step leaves
    the positive-definite matrices; ``nan`` returns NaN there instead."""

    def __init__(self, nan: bool) -> None:
        self.nan = nan

    def loss(self, params: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> float:
        a = (params["S"] + params["S"].T) / 2
        try:
            factor = np.linalg.cholesky(a)
        except np.linalg.LinAlgError:
            if not self.nan:
                raise
            return math.nan
        return float(2 * np.log(np.diag(factor)).sum())

    def grad(self, params: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"S": np.linalg.inv((params["S"] + params["S"].T) / 2)}


def test_a_loss_that_raises_where_a_step_leaves_its_domain_is_told_to_return_nan_there() -> None:
    """Review 97: a Cholesky log-determinant of condition 1e6 (eigenvalues 1 to 1e6): the first step, 7.4e-4 of entries
    near 1e5, leaves the positive-definite matrices and numpy raises. The check stops with one line, which now says what
    to do; done so, the check passes."""
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(6, 6)))
    a = q @ np.diag(np.logspace(0, 6, 6)) @ q.T
    params = {"S": (a + a.T) / 2}
    with pytest.raises(pipeline.ModelError) as raised:
        pipeline.check(_CholeskyLogDet(nan=False), params, {})
    message = str(raised.value)
    assert message.startswith("Model loss near θ (tensor S) raised LinAlgError: Matrix is not positive definite (at ")
    assert message.endswith(
        "; if a step left the loss's domain there (a matrix no longer positive definite, a log of a negative), return "
        "NaN instead of raising: the check then steps inside it"
    )
    assert "\n" not in message
    assert pipeline.check(_CholeskyLogDet(nan=True), params, {}).passed


def test_the_cli_runs_inline_and_prints_the_models_traceback_on_request(seed_example: Path, tmp_path: Path) -> None:
    done = run_cli("run", str(seed_example / "planted.yaml"), "--inline")
    assert done.returncode == 1, done.stderr
    assert "FAILED: 8 of 47 elements wrong; difference 2.851e-01 > threshold 2e-07" in done.stdout
    assert re.search(r"s in all \(in this process: set-up \d\.\d\d s, shards", done.stdout)  # no cluster started
    (tmp_path / "broken.py").write_text(
        "class Broken:\n    def loss(self, params, data):\n        return 1 / 0\n\n"
        "    def grad(self, params, data):\n        return {}\n\nbroken = Broken()\n"
    )
    for extra, traceback_shown in (((), False), (("--traceback",), True)):
        done = run_cli(
            "run",
            str(seed_example / "correct.yaml"),
            "--inline",
            "--set",
            f"model={tmp_path / 'broken.py'}:broken",
            *extra,
        )
        assert done.returncode == 2
        last = done.stderr.strip().split("\n")[-1]
        assert (
            last
            == f"gradcheck: error: Model loss at θ raised ZeroDivisionError: division by zero (at {tmp_path / 'broken.py'}:3)"
        )
        assert ("Traceback (most recent call last)" in done.stderr) is traceback_shown


def test_an_output_in_a_missing_folder_is_bad_input(seed_example: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "out.zarr"
    done = run_cli("run", str(seed_example / "correct.yaml"), "--inline", "--set", f"output={missing}")
    assert done.returncode == 2
    assert done.stderr == (
        f"gradcheck: error: `output`: the folder '{missing.parent}' does not exist. "
        "Create it, or choose an `output` in an existing folder.\n"
    )
    assert not (tmp_path / "no").exists()


def test_submit_refuses_an_inline_cluster(seed_example: Path) -> None:
    done = run_cli("submit", str(seed_example / "correct.yaml"), "--set", "cluster=inline")
    assert done.returncode == 2
    assert done.stderr.startswith("gradcheck: error: `gradcheck submit` runs the check on an existing cluster")


def test_in_memory_data_is_given_to_the_model_as_a_store_gives_it(client: Client) -> None:
    # A Fortran-ordered array and a dict out of order: the stored path gives C order, names sorted;
    # a loss whose rounding depends on either must see the same arrays in both.
    params, data = models.problem()
    scrambled = {name: np.array(data[name], order="F") for name in reversed(list(data))}
    in_memory = pipeline.check(models.smooth, params, scrambled, epsilon=1e-6)
    on_dask = pipeline.check(models.smooth, params, scrambled, epsilon=1e-6, client=client)
    assert _without_timings(in_memory) == _without_timings(on_dask)
    assert all(a.flags.f_contiguous for a in scrambled.values())  # the caller's arrays are left as they were


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (
            {"params": {1: np.zeros(2)}},
            r"`params` names must be non-empty strings whose '/'-separated parts are not empty, '.' or '..' and do "
            r"not start with '__'. Got 1 instead.",
        ),
        ({"params": {"a//b": np.zeros(2)}}, r"`params` names must be .* Got 'a//b' instead."),
        ({"params": {"a/__b": np.zeros(2)}}, r"`params` names must be .* Got 'a/__b' instead."),
        (
            {"data": {"x": np.zeros(2), "x/y": np.zeros(2)}},
            r"`data` names must not include both 'x' and 'x/y': in a store, 'x' is the group holding 'x/y'.",
        ),
        ({"data": {"x": None}}, r"`data\['x'\]` must be a numeric array. Got NoneType of dtype object instead."),
        ({"gradient": {"bias": "no"}}, r"`gradient\['bias'\]` must be a numeric array. Got str of dtype <U2 instead."),
    ],
)
def test_check_refuses_what_no_store_could_hold_whatever_runs_it(arrays: dict[str, Any], message: str) -> None:
    params, data = models.problem()
    given = {"params": params, "data": data, **arrays}
    places: list[dict[str, Any]] = [{}, {"output": "never-written.zarr"}]
    for where in places:
        with pytest.raises(pipeline.ConfigTypeError, match=message):
            pipeline.check(models.smooth, given["params"], given["data"], gradient=given.get("gradient"), **where)
    assert not Path("never-written.zarr").exists()


def test_a_gradient_store_that_is_not_real_numbers_is_one_line(seed_example: Path, tmp_path: Path) -> None:
    from pipeline.storage.inputs import write_group

    params, _ = seed_mlp.problem()
    write_group(str(tmp_path / "gradient.zarr"), {name: a.astype(np.complex128) for name, a in params.items()})
    for where in ("--inline", "--workers=1"):
        done = run_cli(
            "run", str(seed_example / "correct.yaml"), where, "--set", f"gradient={tmp_path / 'gradient.zarr'}"
        )
        assert done.returncode == 2, done.stderr
        assert done.stderr == (
            f"gradcheck: error: The gradient store '{tmp_path / 'gradient.zarr'}': array 'W1' has dtype complex128; "
            "a gradient must be real numbers.\n"
        )


def test_a_gradient_coarser_than_the_precision_it_is_judged_in_is_refused(seed_example: Path, tmp_path: Path) -> None:
    """A float32 gradient's own rounding (1e-7) is about float64's whole tolerance: held-out sweep 42's correct
    float32 RNN, given its float32 gradient with `precision: float64`, failed every tensor ("74 of 105 wrong")."""
    from pipeline.storage.inputs import write_group

    params, data = seed_mlp.problem()
    gradient = seed_mlp.correct.grad(params, data)
    as32 = {name: np.asarray(a, dtype=np.float32) for name, a in params.items()}
    grad32 = {name: np.asarray(a, dtype=np.float32) for name, a in gradient.items()}
    refused: list[tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any], str]] = [
        (params, grad32, {}, "the params are float64"),
        (as32, grad32, {"precision": "float64"}, "precision: float64"),
    ]
    places: list[dict[str, Any]] = [{}, {"output": str(tmp_path / "never-written.zarr")}]
    for where in places:
        for p, g, settings, why in refused:
            with pytest.raises(pipeline.ConfigError) as raised:
                pipeline.check(seed_mlp.correct, p, data, gradient=g, **settings, **where)
            assert str(raised.value).startswith(
                f"`gradient` holds float32 arrays (W1, b1, W2, b2, W3, b3) where the check judges in float64 ({why}): "
            )
    assert not (tmp_path / "never-written.zarr").exists()
    # judged in its own precision, or finer, the same gradient passes
    assert pipeline.check(seed_mlp.correct, as32, data, gradient=grad32).verdict in ("passed", "not verified")
    promoted = seed_mlp.correct.grad({name: a.astype(np.float64) for name, a in as32.items()}, data)
    assert pipeline.check(seed_mlp.correct, as32, data, gradient=promoted, precision="float64").passed
    # and a gradient store: exit 2, one line
    write_group(str(tmp_path / "gradient.zarr"), grad32)
    done = run_cli(
        "run", str(seed_example / "correct.yaml"), "--inline", "--set", f"gradient={tmp_path / 'gradient.zarr'}"
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(
        f"gradcheck: error: The gradient store '{tmp_path / 'gradient.zarr'}' holds float32 arrays (W1, b1, W2, b2, W3, "
        "b3) where the check judges in float64 (the params are float64): their own rounding, about 1e-07 of each "
        "value, fails float64's tolerance. Give it in float64 or leave the gradient to model.grad.\n"
    )
    assert done.stderr.count("\n") == 1


class _Wide:
    """tanh(A @ W @ B) summed: matrix products large enough for a multi-threaded BLAS to split."""

    def loss(self, params: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> float:
        return float(np.tanh(data["A"] @ params["W"] @ data["B"]).sum())

    def grad(self, params: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        inner = 1 - np.tanh(data["A"] @ params["W"] @ data["B"]) ** 2
        return {"W": data["A"].T @ inner @ data["B"].T}


def test_bit_identity_holds_where_blas_would_use_threads() -> None:
    rng = np.random.default_rng(3)
    params = {"W": rng.standard_normal((300, 300)) / 30}
    data = {"A": rng.standard_normal((300, 300)) / 30, "B": rng.standard_normal((300, 300)) / 30}
    settings: dict[str, Any] = {"scheme": "central", "indices": {"sample_per_tensor": 6, "seed": 0}}
    in_memory = pipeline.check(_Wide(), params, data, **settings)
    local = pipeline.check(_Wide(), params, data, workers=1, **settings)
    assert in_memory.passed
    assert _without_timings(in_memory) == _without_timings(local)
