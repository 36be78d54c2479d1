"""`pipeline.check` from Python: in-memory arrays in, the same report out."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from distributed import Client

import pipeline
import pipeline.storage.inputs
import pipeline.storage.output
from pipeline.errors import OutputExistsError
from pipeline.examples import seed_mlp

from . import models
from .conftest import MODELS_FILE, REPO
from .reference import seed_loop


def test_check_a_model_object_on_a_shared_cluster(client: Client, tmp_path: Path) -> None:
    params, data = seed_mlp.problem()
    output = str(tmp_path / "out.zarr")
    # The seed's settings, named.
    report = pipeline.check(
        seed_mlp.planted, params, data, scheme="central", epsilon=1e-7, threshold=2e-7, client=client, output=output
    )
    assert isinstance(report, pipeline.Report)
    assert report.difference == pytest.approx(0.2850931567761624, rel=1e-12)
    assert not report.passed
    assert report.failing == ("b1", "W2")
    assert report.model == "pipeline.examples.seed_mlp.SeedMLP"
    # The report is the one stored in the output, and the numbers are the seed loop's.
    stored = pipeline.Report.from_dict(pipeline.storage.output.read_output_attrs(str(tmp_path / "out.zarr"))["report"])
    assert stored == report
    numeric = pipeline.storage.inputs.read_arrays("output", str(tmp_path / "out.zarr"), ("numeric",))["numeric"]
    np.testing.assert_array_equal(numeric, seed_loop(seed_mlp.planted, params, data, seed_mlp.ORDER, 1e-7))
    # The model's gradient fixed, the same output is refused with advice that works from Python too, and replaced.
    with pytest.raises(OutputExistsError, match=r"the model changed. Pass --overwrite \(overwrite=True from Python\)"):
        pipeline.check(seed_mlp.correct, params, data, scheme="central", epsilon=1e-7, client=client, output=output)
    again = pipeline.check(
        seed_mlp.correct,
        params,
        data,
        scheme="central",
        epsilon=1e-7,
        threshold=2e-7,
        client=client,
        output=output,
        overwrite=True,
    )
    assert again.passed
    assert again.difference == pytest.approx(1.1890913024229996e-07, rel=1e-6)  # the seed's figure


def test_default_settings_find_and_describe_the_seeds_planted_bugs(client: Client) -> None:
    params, data = seed_mlp.problem()
    report = pipeline.check(seed_mlp.planted, params, data, client=client)
    assert (report.scheme, report.epsilon, report.threshold) == ("richardson", "auto", None)
    assert not report.passed
    assert report.failing == ("b1", "W2")
    by_name = {t.name: t for t in report.tensors}
    # b1[4, 0] is exactly 0 (a dead unit): 4x of it agrees, so the factor is not "everywhere".
    assert by_name["b1"].diagnosis == ("analytic is 4x the numeric gradient at the 4 wrong elements (of 5 checked)",)
    assert by_name["b1"].n_wrong == 4
    # The noise is measured per tensor, and the power each tensor had is stated.
    assert all(t.noise_source == "measured" and 0 < t.noise < 1e-13 for t in report.tensors)
    assert all(t.power < 1e-6 for t in report.tensors if t.passed)
    correct = pipeline.check(seed_mlp.correct, params, data, client=client)
    assert correct.passed
    assert correct.n_wrong == 0
    assert correct.difference <= 3e-11  # the seed's settings give 1.19e-7 on the same network


def test_dict_order_is_the_flattening_order(client: Client) -> None:
    params, data = models.problem()
    reordered = {name: params[name] for name in ("bias", "scale", "conv.weight")}
    report = pipeline.check(f"{MODELS_FILE}:smooth", reordered, data, epsilon=1e-6, threshold=1e-8, client=client)
    assert report.passed
    assert report.difference < 1e-9
    assert [t.name for t in report.tensors] == ["bias", "scale", "conv.weight"]
    assert report.n_params == 28


def test_a_precomputed_gradient_dict_is_checked_instead_of_model_grad(client: Client) -> None:
    params, data = models.problem()
    gradient = models.truth(params, data)
    gradient["bias"] = -gradient["bias"]  # a sign flip in one tensor
    report = pipeline.check(models.grad_not_called, params, data, gradient=gradient, epsilon=1e-6, client=client)
    assert report.failing == ("bias",)
    bias = next(t for t in report.tensors if t.name == "bias")
    assert bias.difference == pytest.approx(1.0, rel=1e-6)  # ||-g - g|| / (||g|| + ||g||)


def test_check_starts_its_own_local_cluster_when_given_none() -> None:
    params, data = models.problem()
    report = pipeline.check(models.one_wrong, params, data, epsilon=1e-6, workers=1)
    assert (report.worst[0].tensor, report.worst[0].index) == ("conv.weight", (1, 2, 3))
    assert report.timings["workers"] == 1
    assert math.isclose(report.worst[0].abs_error, 0.5, rel_tol=1e-7)


def test_check_validates_its_arguments() -> None:
    with pytest.raises(pipeline.ConfigError, match=r"`params` must be a non-empty dict of arrays. Got \{\} instead."):
        pipeline.check(models.smooth, {}, {})
    with pytest.raises(pipeline.ConfigError, match=r"`epsilon` must be positive and finite. Got -1.0 instead."):
        pipeline.check(models.smooth, *models.problem(), epsilon=-1.0)
    with pytest.raises(pipeline.ModelError, match=r"has no callable grad"):
        pipeline.check(models.not_a_model, *models.problem())  # type: ignore[arg-type]


def test_the_mlp_examples_backward_pass_is_right(client: Client) -> None:
    from pipeline.examples import mlp

    params, data = mlp.problem(sizes=(5, 7, 3), batch=16)
    report = pipeline.check(mlp.mlp, params, data, epsilon=1e-6, threshold=1e-8, client=client)
    assert report.passed, report.failing
    assert report.n_params == 5 * 7 + 7 + 7 * 3 + 3


def test_local_workers_run_without_the_nannys_malloc_trim_threshold() -> None:
    # A nanny sets the variable in its own process before spawning, so a process that started
    # a Dask cluster before (a notebook, this test session) passes it on: start from there.
    script = (
        "import os\n"
        "from pipeline.execution.cluster import connect\n"
        "from pipeline.config import ClusterConfig\n"
        "if __name__ == '__main__':\n"
        "    with connect(ClusterConfig(workers=1), 1) as client:\n"
        "        print(sorted(client.run(lambda: (os.environ.get('MALLOC_TRIM_THRESHOLD_'), os.environ.get('OMP_NUM_THREADS'))).values()))\n"
    )
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "65536"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False, cwd=REPO, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[(None, '1')]"


def test_the_batched_path_gives_the_plain_paths_numbers(client: Client, tmp_path: Path) -> None:
    params, data = seed_mlp.problem()
    batched = pipeline.check(seed_mlp.planted, params, data, client=client, output=str(tmp_path / "b.zarr"))
    plain = pipeline.check(
        models.PlainOnly(seed_mlp.planted), params, data, client=client, output=str(tmp_path / "p.zarr")
    )
    read = pipeline.storage.inputs.read_arrays
    np.testing.assert_array_equal(
        read("output", str(tmp_path / "b.zarr"), ("numeric",))["numeric"],
        read("output", str(tmp_path / "p.zarr"), ("numeric",))["numeric"],
    )
    assert batched.failing == plain.failing == ("b1", "W2")
    assert batched.difference == plain.difference


def test_the_staged_path_gives_the_plain_paths_numbers_for_fewer_losses(client: Client, tmp_path: Path) -> None:
    from pipeline.examples import mlp

    params, data = mlp.problem((6, 8, 8, 8, 2), batch=32)
    staged = pipeline.check(mlp.staged(4), params, data, client=client, output=str(tmp_path / "s.zarr"))
    plain = pipeline.check(mlp.mlp, params, data, client=client, output=str(tmp_path / "p.zarr"))
    read = pipeline.storage.inputs.read_arrays
    np.testing.assert_array_equal(
        read("output", str(tmp_path / "s.zarr"), ("numeric",))["numeric"],
        read("output", str(tmp_path / "p.zarr"), ("numeric",))["numeric"],
    )
    assert staged.passed
    assert plain.passed
    assert plain.timings["loss_equivalents_per_index"] == 4.0  # richardson: 4 losses per index
    # Perturbing layer k re-evaluates layers k to 4 only: well under 4 losses per index.
    assert 1.0 < staged.timings["loss_equivalents_per_index"] < 3.6


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("staged_missing_a_tensor", r"Model stages must own every parameter tensor once: missing b2."),
        ("staged_disagreeing", r"Model stages evaluate the loss at θ to .*, but loss gives .*; they must agree."),
    ],
)
def test_stages_are_checked_on_the_worker(client: Client, model: str, message: str) -> None:
    from pipeline.examples import mlp

    params, data = mlp.problem((3, 4, 2), batch=8)
    with pytest.raises(pipeline.ModelError, match=message):
        pipeline.check(getattr(models, model), params, data, client=client)


def test_a_model_with_stages_and_loss_batch_is_run_staged(client: Client) -> None:
    from pipeline.examples import mlp

    params, data = mlp.problem((4, 5, 2), batch=8)
    report = pipeline.check(models.staged_and_batched, params, data, scheme="central", client=client)
    assert report.passed
    assert report.timings["loss_equivalents_per_index"] < 2.0  # stages: fewer than 2 losses per index
