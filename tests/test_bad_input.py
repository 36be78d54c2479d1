"""Bad input through the `gradcheck` command: exit 2, one line naming the culprit, nothing lost."""

from __future__ import annotations

import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from pipeline.stores import write_group

from .conftest import MODELS_FILE, run_cli


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _assert_one_line_error(result: object, pattern: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)  # type: ignore[attr-defined]
    stderr: str = result.stderr  # type: ignore[attr-defined]
    assert stderr.count("\n") == 1, stderr
    assert stderr.endswith("\n")
    assert re.match(r"gradcheck( \w+)?: error: ", stderr), stderr
    assert "Traceback" not in stderr
    assert re.search(pattern, stderr), f"{pattern!r} not in {stderr!r}"
    assert result.stdout == ""  # type: ignore[attr-defined]


# (name, how to spoil the smooth problem's folder, --set overrides, expected message)
def _no_params(d: Path) -> None:
    shutil.rmtree(d / "params.zarr")


def _params_is_a_file(d: Path) -> None:
    shutil.rmtree(d / "params.zarr")
    (d / "params.zarr").write_text("not zarr")


def _corrupt_params_metadata(d: Path) -> None:
    (d / "params.zarr" / "zarr.json").write_text("{ not json")


def _order_names_absent_array(d: Path) -> None:
    params = {"w": np.zeros(3)}
    write_group(str(d / "params.zarr"), params, {"order": ["w", "b"]})


def _string_params(d: Path) -> None:
    with warnings.catch_warnings():  # zarr warns that fixed-length strings have no v3 spec yet
        warnings.simplefilter("ignore")
        write_group(str(d / "params.zarr"), {"w": np.zeros(3), "names": np.array(["a", "b"])})


def _gradient_wrong_shape(d: Path) -> None:
    write_group(
        str(d / "gradient.zarr"), {"conv.weight": np.zeros((2, 3, 4)), "scale": np.zeros(()), "bias": np.zeros(4)}
    )


def _gradient_wrong_names(d: Path) -> None:
    write_group(str(d / "gradient.zarr"), {"conv.weight": np.zeros((2, 3, 4)), "scale": np.zeros(()), "b": np.zeros(3)})


def _bad_yaml(d: Path) -> None:
    (d / "check.yaml").write_text("model: [oops\n")


def _unknown_key(d: Path) -> None:
    (d / "check.yaml").write_text((d / "check.yaml").read_text() + "epsilom: 1.0e-7\n")


def _nothing(d: Path) -> None:
    pass


GRADIENT = ["--set", "gradient=GRADIENT"]

CASES = [
    ("missing params store", _no_params, [], r"The params store '.*params.zarr' does not exist"),
    (
        "params store is a file",
        _params_is_a_file,
        [],
        r"The params store '.*params.zarr' does not exist \(or is not a Zarr group\)",
    ),
    ("unreadable params metadata", _corrupt_params_metadata, [], r"The params store '.*params.zarr' cannot be read"),
    ("missing data store", _nothing, ["--set", "data=nowhere.zarr"], r"The data store '.*nowhere.zarr' does not exist"),
    ("order names an absent array", _order_names_absent_array, [], r"`order` names b, which the group does not hold"),
    ("string parameters", _string_params, [], r"array 'names' has dtype <U1; parameters must be float32 or float64"),
    (
        "missing gradient store",
        _nothing,
        ["--set", "gradient=nowhere.zarr"],
        r"The gradient store '.*nowhere.zarr' does not exist",
    ),
    (
        "gradient of the wrong shape",
        _gradient_wrong_shape,
        GRADIENT,
        r"array 'bias' has shape \(4,\); the params have \(3,\)",
    ),
    ("gradient with wrong names", _gradient_wrong_names, GRADIENT, r"missing bias; unexpected b"),
    ("config is not YAML", _bad_yaml, [], r"check.yaml' is not valid YAML at line 2"),
    ("unknown config key", _unknown_key, [], r"check.yaml: Unknown key `epsilom`"),
    ("zero epsilon", _nothing, ["--set", "epsilon=0"], r"`epsilon` must be positive and finite. Got 0 instead."),
    (
        "negative epsilon",
        _nothing,
        ["--set", "epsilon=-1e-7"],
        r"`epsilon` must be positive and finite. Got -1e-07 instead.",
    ),
    (
        "model module absent",
        _nothing,
        ["--set", "model=no_such_pkg.net:model"],
        r"Model module 'no_such_pkg.net' cannot be found",
    ),
    ("model file absent", _nothing, ["--set", "model=absent.py:model"], r"Model file '.*absent.py' does not exist."),
    ("model attribute absent", _nothing, ["--set", f"model={MODELS_FILE}:nope"], r"has no attribute 'nope'"),
    ("model lacks grad", _nothing, ["--set", f"model={MODELS_FILE}:not_a_model"], r"has no callable grad"),
    (
        "missing config file",
        _nothing,
        ["--set", "x=1", "CONFIG=missing.yaml"],
        r"Config file '.*missing.yaml' does not exist.",
    ),
]


@pytest.mark.parametrize(("spoil", "args", "pattern"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_before_any_cluster(smooth_problem: Path, spoil: object, args: list[str], pattern: str) -> None:
    spoil(smooth_problem)  # type: ignore[operator]
    config = str(smooth_problem / "check.yaml")
    args = [a.replace("GRADIENT", str(smooth_problem / "gradient.zarr")) for a in args]
    if "CONFIG=missing.yaml" in args:
        config, args = str(smooth_problem / "missing.yaml"), []
    before = _snapshot(smooth_problem)
    result = run_cli("run", config, *args, cwd=smooth_problem)
    _assert_one_line_error(result, pattern)
    assert _snapshot(smooth_problem) == before  # nothing written, nothing lost


MODEL_CASES = [
    ("nan_loss", r"Model loss at θ must be finite. Got nan instead."),
    ("array_loss", r"Model loss at θ must return a real scalar. Got ndarray of shape \(3,\) instead."),
    ("string_loss", r"Model loss at θ must return a real scalar. Got str instead."),
    ("raising_loss", r"Model loss at θ raised KeyError: 'missing'"),
    ("wrong_grad_shape", r"model.grad\['bias'\] must have shape \(3,\). Got \(4,\) instead."),
]


@pytest.mark.parametrize(("model", "pattern"), MODEL_CASES, ids=[c[0] for c in MODEL_CASES])
def test_a_misbehaving_model_is_caught_on_a_worker_before_anything_is_written(
    smooth_problem: Path, model: str, pattern: str
) -> None:
    before = _snapshot(smooth_problem)
    result = run_cli(
        "run", str(smooth_problem / "check.yaml"), "--workers", "1", "--set", f"model={MODELS_FILE}:{model}"
    )
    _assert_one_line_error(result, pattern)
    assert _snapshot(smooth_problem) == before
    assert not (smooth_problem / "out.zarr").exists()


def test_a_bad_model_with_overwrite_leaves_the_previous_output_byte_for_byte(smooth_problem: Path) -> None:
    config = str(smooth_problem / "check.yaml")
    assert run_cli("run", config, "--workers", "1").returncode == 0
    before = _snapshot(smooth_problem)
    result = run_cli("run", config, "--workers", "1", "--overwrite", "--set", f"model={MODELS_FILE}:nan_loss")
    _assert_one_line_error(result, r"Model loss at θ must be finite")
    assert _snapshot(smooth_problem) == before


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        ([], r"the following arguments are required: COMMAND"),
        (["frobnicate"], r"invalid choice: 'frobnicate'"),
        (["run"], r"the following arguments are required: CONFIG"),
        (["run", "c.yaml", "--workers", "two"], r"argument --workers: invalid int value: 'two'"),
        (["run", "c.yaml", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], r"not allowed with argument"),
        (["run", "c.yaml", "--bogus"], r"unrecognized arguments: --bogus"),
        (["example", "resnet", "d"], r"argument NAME: invalid choice: 'resnet'"),
    ],
)
def test_usage_errors_are_one_line(args: list[str], pattern: str) -> None:
    _assert_one_line_error(run_cli(*args), pattern)


def test_workers_must_be_positive(smooth_problem: Path) -> None:
    result = run_cli("run", str(smooth_problem / "check.yaml"), "--workers", "0")
    _assert_one_line_error(result, r"`--workers` must be at least 1. Got 0 instead.")


def test_report_of_something_that_is_not_an_output(smooth_problem: Path) -> None:
    _assert_one_line_error(
        run_cli("report", str(smooth_problem / "params.zarr")), r"is a Zarr group but not a gradcheck output"
    )
    _assert_one_line_error(
        run_cli("report", str(smooth_problem / "nowhere.zarr")), r"The output store '.*nowhere.zarr' does not exist"
    )


def test_an_output_path_holding_someone_elses_data_is_refused(smooth_problem: Path) -> None:
    before = _snapshot(smooth_problem)
    result = run_cli(
        "run", str(smooth_problem / "check.yaml"), "--overwrite", "--set", "output=data.zarr", cwd=smooth_problem
    )
    _assert_one_line_error(
        result, r"The output '.*data.zarr' exists and is not a gradcheck output; choose another `output`."
    )
    assert _snapshot(smooth_problem) == before
