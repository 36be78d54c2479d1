"""Bad input through the `gradcheck` command: exit 2, one line naming the culprit, nothing lost."""

from __future__ import annotations

import re
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zarr

from pipeline.storage.inputs import write_group

from . import models
from .conftest import MODELS_FILE, run_cli, write_smooth_problem


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The smooth problem's folder after one good run: it holds an output a user would not want to lose."""
    folder = write_smooth_problem(tmp_path_factory.mktemp("checked"))
    result = run_cli("run", str(folder / "check.yaml"), "--workers", "1")
    assert result.returncode == 0, result.stderr
    return folder


@pytest.fixture
def problem(checked: Path, tmp_path: Path) -> Path:
    """A private copy of the checked folder, output included, for one case to spoil."""
    return Path(shutil.copytree(checked, tmp_path / "case"))


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


# How a case spoils its folder.
def _nothing(d: Path) -> None:
    pass


def _no_params(d: Path) -> None:
    shutil.rmtree(d / "params.zarr")


def _params_is_a_file(d: Path) -> None:
    shutil.rmtree(d / "params.zarr")
    (d / "params.zarr").write_text("not zarr")


def _params_is_an_array(d: Path) -> None:
    shutil.rmtree(d / "params.zarr")
    zarr.create_array(str(d / "params.zarr"), shape=(3,), dtype="f8")


def _params_empty(d: Path) -> None:
    shutil.rmtree(d / "params.zarr")
    zarr.open_group(str(d / "params.zarr"), mode="w")


def _corrupt_params_metadata(d: Path) -> None:
    (d / "params.zarr" / "zarr.json").write_text("{ not json")


def _order_names_absent_array(d: Path) -> None:
    write_group(str(d / "params.zarr"), {"w": np.zeros(3)}, {"order": ["w", "b"]})


def _string_params(d: Path) -> None:
    with warnings.catch_warnings():  # zarr warns that fixed-length strings have no v3 spec yet
        warnings.simplefilter("ignore")
        write_group(str(d / "params.zarr"), {"w": np.zeros(3), "names": np.array(["a", "b"])})


def _integer_params(d: Path) -> None:
    write_group(str(d / "params.zarr"), {"w": np.zeros(3), "steps": np.arange(3)})


def _nan_params(d: Path) -> None:
    params, _ = models.problem()
    params["conv.weight"][1, 0, 2] = np.nan
    write_group(str(d / "params.zarr"), params, {"order": list(models.SHAPES)})


def _gradient_wrong_shape(d: Path) -> None:
    write_group(
        str(d / "gradient.zarr"), {"conv.weight": np.zeros((2, 3, 4)), "scale": np.zeros(()), "bias": np.zeros(4)}
    )


def _gradient_wrong_names(d: Path) -> None:
    write_group(str(d / "gradient.zarr"), {"conv.weight": np.zeros((2, 3, 4)), "scale": np.zeros(()), "b": np.zeros(3)})


def _config(text: str) -> Callable[[Path], None]:
    def spoil(d: Path) -> None:
        (d / "check.yaml").write_text(text)

    return spoil


def _config_plus(line: str) -> Callable[[Path], None]:
    def spoil(d: Path) -> None:
        (d / "check.yaml").write_text((d / "check.yaml").read_text() + line)

    return spoil


def _model(name: str) -> list[str]:
    return ["--set", f"model={MODELS_FILE}:{name}"]


def _broken_model_file(d: Path) -> None:
    (d / "broken.py").write_text("raise RuntimeError('no GPU here')\n")


def _someone_elses_store(d: Path) -> None:
    write_group(str(d / "theirs.zarr"), {"results": np.arange(3.0)})


def _exiting_model_file(d: Path) -> None:
    (d / "script.py").write_text("import sys\n\nsys.exit(0)  # a script's code, run on import: 0 is no verdict\n")


GRADIENT = ["--set", "gradient=gradient.zarr"]
GOOD = "model: tests.models:smooth\nparams: params.zarr\ndata: data.zarr\noutput: out.zarr\n"

# (id, spoil, extra arguments, the message). Every case runs with --overwrite unless it
# says otherwise: even allowed to replace the output, bad input must leave it as it was.
CASES: list[tuple[str, Callable[[Path], None], list[str], str]] = [
    # config: syntax, types, unknown keys, ranges
    ("config not YAML", _config("model: [oops\n"), [], r"check.yaml' is not valid YAML at line 2"),
    ("config a list", _config("- model\n- params\n"), [], r"must hold a mapping of keys. Got list instead."),
    (
        "config missing key",
        _config("params: params.zarr\ndata: data.zarr\noutput: out.zarr\n"),
        [],
        r"Missing required key: model.",
    ),
    ("config unknown key", _config_plus("epsilom: 1.0e-7\n"), [], r"check.yaml: Unknown key `epsilom`"),
    ("config unknown cluster key", _config_plus("cluster: {nodes: 3}\n"), [], r"Unknown key `cluster.nodes`"),
    (
        "storage credential in clear",
        _config_plus("storage_options: {secret: hunter2, endpoint_url: 'http://127.0.0.1:9'}\n"),
        [],
        r"`storage_options.secret` is a credential, which a config file must not hold in clear: set it in the environment",
    ),
    (
        "storage credential nested",
        _nothing,
        ["--set", "storage_options.client_kwargs.aws_secret_access_key=x"],
        r"`storage_options.client_kwargs.aws_secret_access_key` is a credential",
    ),
    (
        "TLS key missing",
        _nothing,
        ["--set", "cluster.address=tls://127.0.0.1:9", "--set", "cluster.security.ca=ca.pem"],
        r"`cluster.security` needs cert, key \(mutual TLS takes all three files\).",
    ),
    (
        "TLS file absent",
        _nothing,
        [
            "--set",
            "cluster.security.ca=ca.pem",
            "--set",
            "cluster.security.cert=c.pem",
            "--set",
            "cluster.security.key=k",
        ],
        r"`cluster.security.ca`: the file '.*ca.pem' does not exist.",
    ),
    ("epsilon zero", _nothing, ["--set", "epsilon=0"], r"`epsilon` must be positive and finite. Got 0 instead."),
    (
        "epsilon negative",
        _nothing,
        ["--set", "epsilon=-1e-7"],
        r"`epsilon` must be positive and finite. Got -1e-07 instead.",
    ),
    (
        "epsilon a word",
        _nothing,
        ["--set", "epsilon=tiny"],
        r"`epsilon` must be a number or 'auto'. Got 'tiny' instead.",
    ),
    (
        "scheme unknown",
        _nothing,
        ["--set", "scheme=forward"],
        r"`scheme` must be one of central, richardson, complex-step. Got 'forward' instead.",
    ),
    (
        "tolerance negative",
        _nothing,
        ["--set", "tolerance.rtol=-1"],
        r"`tolerance.rtol` must be positive and finite. Got -1 instead.",
    ),
    (
        "indices none alone",
        _nothing,
        ["--set", "indices=none"],
        r"`indices: none` checks nothing unless `directions` is at least 1.",
    ),
    ("epsilon overflows", _nothing, ["--set", "epsilon=1e999"], r"`epsilon` must be positive and finite"),
    ("threshold NaN", _nothing, ["--set", "threshold=.nan"], r"`threshold` must be positive and finite"),
    ("shard_size zero", _nothing, ["--set", "shard_size=0"], r"`shard_size` must be at least 1. Got 0 instead."),
    (
        "shard_size fractional",
        _nothing,
        ["--set", "shard_size=2.5"],
        r"`shard_size` must be a whole number. Got 2.5 instead.",
    ),
    ("params a number", _nothing, ["--set", "params=3"], r"`params` must be a non-empty string. Got 3 instead."),
    (
        "cluster timeout negative",
        _nothing,
        ["--set", "cluster.timeout=-1"],
        r"`cluster.timeout` must be positive and finite",
    ),
    ("config file missing", _nothing, ["CONFIG=missing.yaml"], r"Config file '.*missing.yaml' does not exist."),
    # stores: missing, not a group, empty, wrong dtype, mismatched shapes, NaN
    ("params missing", _no_params, [], r"The params store '.*params.zarr' does not exist"),
    (
        "params a file",
        _params_is_a_file,
        [],
        r"The params store '.*params.zarr' does not exist \(or is not a Zarr group\)",
    ),
    (
        "params an array",
        _params_is_an_array,
        [],
        r"The params store '.*params.zarr' is a Zarr array; expected a group of arrays.",
    ),
    ("params empty", _params_empty, [], r"The params store '.*params.zarr' holds no arrays"),
    ("params metadata corrupt", _corrupt_params_metadata, [], r"The params store '.*params.zarr' cannot be read"),
    ("params order absent array", _order_names_absent_array, [], r"`order` names b, which the group does not hold"),
    ("params strings", _string_params, [], r"array 'names' has dtype <U1; parameters must be float32 or float64"),
    ("params integers", _integer_params, [], r"array 'steps' has dtype int64; parameters must be float32 or float64"),
    ("params NaN", _nan_params, [], r"array 'conv.weight' holds 1 non-finite value\(s\), the first at \[1, 0, 2\]"),
    ("data missing", _nothing, ["--set", "data=nowhere.zarr"], r"The data store '.*nowhere.zarr' does not exist"),
    (
        "gradient missing",
        _nothing,
        ["--set", "gradient=nowhere.zarr"],
        r"The gradient store '.*nowhere.zarr' does not exist",
    ),
    ("gradient shape", _gradient_wrong_shape, GRADIENT, r"array 'bias' has shape \(4,\); the params have \(3,\)"),
    ("gradient names", _gradient_wrong_names, GRADIENT, r"missing bias; unexpected b"),
    # model: import errors, missing functions, a loss that is an array, a string, None, NaN or raises
    (
        "model module absent",
        _nothing,
        ["--set", "model=no_such_pkg.net:model"],
        r"Model module 'no_such_pkg.net' cannot be found",
    ),
    ("model file absent", _nothing, ["--set", "model=absent.py:model"], r"Model file '.*absent.py' does not exist."),
    (
        "model file raises",
        _broken_model_file,
        ["--set", "model=broken.py:model"],
        r"broken.py' raised RuntimeError on import: no GPU here",
    ),
    (
        "model file exits",
        _exiting_model_file,
        ["--set", "model=script.py:model"],
        r"script.py' called sys.exit\(0\) \(a SystemExit: .*\) on import: .* under `if __name__ == \"__main__\":`",
    ),
    ("model attribute absent", _nothing, _model("nope"), r"has no attribute 'nope'"),
    ("model attribute misspelt", _nothing, _model("Smoth"), r"has no attribute 'Smoth' \(did you mean 'Smooth'\?\)"),
    ("model lacks grad", _nothing, _model("not_a_model"), r"has no callable grad"),
    ("loss NaN", _nothing, _model("nan_loss"), r"Model loss at θ must be finite. Got nan instead."),
    (
        "loss an array",
        _nothing,
        _model("array_loss"),
        r"Model loss at θ must return a real scalar. Got ndarray of shape \(3,\) instead.",
    ),
    ("loss a string", _nothing, _model("string_loss"), r"Model loss at θ must return a real scalar. Got str instead."),
    ("loss None", _nothing, _model("none_loss"), r"Model loss at θ must return a real scalar. Got NoneType instead."),
    ("loss raises", _nothing, _model("raising_loss"), r"Model loss at θ raised KeyError: 'missing'"),
    (
        "loss exits off θ",
        _nothing,
        _model("exiting_off_theta"),
        r"Model loss called sys.exit\(0\) .*\(at .*models.py:\d+\)",
    ),
    (
        "loss exits in the probe alone",
        _nothing,
        _model("exiting_where_many_move"),
        r"Model loss called sys.exit\(0\) .*\(at .*models.py:\d+\)",
    ),
    ("loss exits", _nothing, _model("exiting_loss"), r"Model loss at θ called sys.exit\(1\) .*\(at .*models.py:\d+\)"),
    (
        "loss_batch raises",
        _nothing,
        _model("raising_batch"),
        # the probe calls it at θ first (it must compute the loss's function there), before anything is written
        r"Model loss_batch at θ raised ValueError: no batch here",
    ),
    (
        "loss random (dropout)",
        _nothing,
        _model("dropout"),
        r"Model loss is not deterministic: two evaluations at θ gave .* \(spread .*\)\. Dropout or other randomness "
        r"makes gradient checking meaningless; fix the random state inside the loss \(a torch module in training "
        r"mode: module\.eval\(\) turns its dropout off\) to check such a model\.",
    ),
    (
        "grad updates its data in place",
        _nothing,
        _model("in_place_grad"),
        r"Model grad modifies the arrays it is given in place \(data\['c_bias'\]\): the loss at θ was .* before grad "
        r"ran and .* after\. grad must leave its inputs as they were; copy an array before updating it "
        r"\(`x = x \+ \.\.\.`, not `x \+= \.\.\.`\)\.",
    ),
    (
        "grad changes the model's state",
        _nothing,
        _model("stateful_grad"),
        r"Model grad changes state the loss reads: the loss at θ was .* before grad ran and .* after\.",
    ),
    (
        "complex-step on a real model",
        _nothing,
        ["--set", "scheme=complex-step"],
        r"scheme complex-step needs a model that declares `complex_step = True` \(its loss computed in complex "
        r"arithmetic, analytic in the parameters\); this model does not\. Choose scheme richardson or central\.",
    ),
    (
        "grad wrong shape",
        _nothing,
        _model("wrong_grad_shape"),
        r"model.grad\['bias'\] must have shape \(3,\). Got \(4,\) instead.",
    ),
    # the output
    (
        "output someone else's",
        _someone_elses_store,
        ["--set", "output=theirs.zarr"],
        r"The output '.*theirs.zarr' exists and is not a gradcheck output",
    ),
    (
        "output the data store",
        _nothing,
        ["--set", "output=data.zarr"],
        r"`output` '.*data.zarr' is the data store '.*data.zarr': a run writes its arrays there",
    ),
    (
        "output emptied by --set",
        _nothing,
        ["--set", "output="],
        r"--set output: `output` is required; it cannot be empty\.",
    ),
    (
        "output inside the params store",
        _nothing,
        ["--set", "output=params.zarr/out.zarr"],
        r"`output` '.*params.zarr/out.zarr' lies inside the params store '.*params.zarr': a run writes its arrays",
    ),
    (
        "output where its lock cannot be made",  # (review 126: "internal error", exit 3)
        _nothing,
        ["--set", "output=/proc/out.zarr"],
        r"The output '/proc/out.zarr' cannot be written: FileNotFoundError: .*'/proc/out.zarr.lock'",
    ),
    (
        "output a different check",
        _nothing,
        ["--set", "epsilon=1e-5", "NO-OVERWRITE"],
        r"holds the result of a different check \(what differs: `epsilon`\); pass --overwrite",
    ),
]


@pytest.mark.parametrize(("spoil", "args", "pattern"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_loses_nothing(
    problem: Path, spoil: Callable[[Path], None], args: list[str], pattern: str
) -> None:
    spoil(problem)
    config = str(problem / "check.yaml")
    if "CONFIG=missing.yaml" in args:
        config, args = str(problem / "missing.yaml"), []
    flags = [] if "NO-OVERWRITE" in args else ["--overwrite"]
    args = [a for a in args if a != "NO-OVERWRITE"]
    before = _snapshot(problem)
    assert "out.zarr/zarr.json" in before  # there is something to lose
    result = run_cli("run", config, "--workers", "1", *flags, *args, cwd=problem)
    _assert_one_line_error(result, pattern)
    assert _snapshot(problem) == before  # byte for byte, the output included


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        ([], r"the following arguments are required: COMMAND"),
        (["frobnicate"], r"invalid choice: 'frobnicate'"),
        (["run"], r"the following arguments are required: CONFIG"),
        (["run", "c.yaml", "--workers", "two"], r"argument --workers: must be a whole number. Got 'two' instead."),
        (
            ["suite", "s.yaml", "--history", "h", "--workers", "0"],
            r"argument --workers: must be at least 1. Got 0 instead.",
        ),
        (["run", "c.yaml", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], r"not allowed with argument"),
        (["run", "c.yaml", "--bogus"], r"unrecognized arguments: --bogus"),
        (["example", "resnet", "d"], r"argument NAME: invalid choice: 'resnet'"),
        (["report"], r"the following arguments are required: OUTPUT"),
    ],
)
def test_usage_errors_are_one_line(args: list[str], pattern: str) -> None:
    _assert_one_line_error(run_cli(*args), pattern)


@pytest.mark.parametrize("scheme", ["file://", "local://"])
def test_an_output_inside_an_input_given_as_a_file_url_is_refused(problem: Path, scheme: str) -> None:
    # reviews 123 and 124: the input as a file:// (or local://) URL was not compared with the output's path, and the
    # run wrote into it
    before = _snapshot(problem)
    params = f"{scheme}{problem / 'params.zarr'}"
    output = problem / "params.zarr" / "o.zarr"
    result = run_cli(
        "run", str(problem / "check.yaml"), "--inline", "--set", f"params={params}", "--set", f"output={output}"
    )
    _assert_one_line_error(result, rf"`output` '.*params.zarr/o.zarr' lies inside the params store '{scheme}")
    assert _snapshot(problem) == before


def test_workers_must_be_positive(problem: Path) -> None:
    before = _snapshot(problem)
    _assert_one_line_error(
        run_cli("run", str(problem / "check.yaml"), "--workers", "0"),
        r"gradcheck run: error: argument --workers: must be at least 1. Got 0 instead.",
    )
    assert _snapshot(problem) == before


def test_report_of_something_that_is_not_an_output(problem: Path) -> None:
    _assert_one_line_error(
        run_cli("report", str(problem / "params.zarr")), r"is a Zarr group but not a gradcheck output"
    )
    _assert_one_line_error(
        run_cli("report", str(problem / "nowhere.zarr")), r"The output store '.*nowhere.zarr' does not exist"
    )


def test_the_matrix_is_as_wide_as_promised() -> None:
    assert len(CASES) >= 25
