"""Resolving model references and checking what models return."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from distributed import Client

import pipeline
from pipeline.errors import ModelError, ModelImportError
from pipeline.model import as_loss_value, check_gradient, load_model
from pipeline.numerics.layout import Layout
from pipeline.storage.inputs import write_group

from . import models
from .conftest import MODELS_FILE, run_cli


def test_module_and_file_references_resolve_to_the_object() -> None:
    assert load_model("tests.models:smooth") is models.smooth
    from_file = load_model(f"{MODELS_FILE}:smooth")
    assert type(from_file).__name__ == "Smooth"
    assert load_model(f"{MODELS_FILE}:smooth") is from_file  # a file is imported once
    assert load_model(models.smooth) is models.smooth


def test_a_nested_attribute_resolves() -> None:
    assert load_model("pipeline.examples.seed_mlp:SeedMLP") is not None


@pytest.mark.parametrize(
    ("ref", "error", "message"),
    [
        ("no_colon_here", ModelImportError, r"Expected a model reference 'package.module:attr'"),
        ("not_a_module_xyz:model", ModelImportError, r"Model module 'not_a_module_xyz' cannot be found"),
        ("tests.models:absent", ModelImportError, r"'tests.models' has no attribute 'absent'"),
        ("/no/such/file.py:model", ModelImportError, r"Model file '/no/such/file.py' does not exist."),
        ("tests.models:not_a_model", ModelError, r"has no callable grad"),
        ("tests.models:SHAPES", ModelError, r"has no callable loss or grad"),
    ],
)
def test_bad_references_are_named(ref: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        load_model(ref)


def test_a_file_that_fails_on_import_is_named(tmp_path: Path) -> None:
    path = tmp_path / "broken.py"
    path.write_text("raise RuntimeError('no GPU here')\n")
    with pytest.raises(ModelImportError, match=r"broken.py' raised RuntimeError on import: no GPU here"):
        load_model(f"{path}:model")


def test_a_model_file_imports_a_module_beside_it_on_the_workers_too(client: Client, tmp_path: Path) -> None:
    # a newcomer's model file that imports its network from the file next to it (as `python model.py` would)
    (tmp_path / "network_beside_8d1f.py").write_text("from tests.models import Smooth\n\nnet = Smooth()\n")
    path = tmp_path / "model.py"
    path.write_text("from network_beside_8d1f import net\n")
    params, data = models.problem()
    report = pipeline.check(f"{path}:net", params, data, client=client)
    assert report.passed
    assert report.n_checked == 28
    # where the module is missing, the line says where modules beside the file are looked for
    missing = tmp_path / "other" / "model.py"
    missing.parent.mkdir()
    missing.write_text("import no_such_module_beside_8d1f\n")
    with pytest.raises(ModelImportError, match=r"No module named 'no_such_module_beside_8d1f' \(modules beside"):
        load_model(f"{missing}:net")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (np.ones(3), r"must return a real scalar. Got ndarray of shape \(3,\) instead."),
        ("0.5", r"must return a real scalar. Got str instead."),
        (None, r"must return a real scalar. Got NoneType instead."),
        (True, r"must return a real scalar. Got bool instead."),
        (float("inf"), r"must be finite. Got inf instead."),
    ],
)
def test_loss_values_must_be_finite_real_scalars(value: object, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        as_loss_value(value, "at θ")


def test_scalar_kinds_are_accepted() -> None:
    assert [as_loss_value(v, "at θ") for v in (1, 2.5, np.float32(0.5), np.array(3.0))] == [1.0, 2.5, 0.5, 3.0]


def test_a_0_d_tensor_of_another_library_is_a_scalar_and_its_1_element_vector_is_not() -> None:
    """A held-out review: a plain model returning a 0-d torch tensor was refused. A 0-d array of any library (torch,
    jax) is its one value; a vector of one is still not a scalar (a batch of per-sample losses)."""
    torch = pytest.importorskip("torch")
    assert as_loss_value(torch.tensor(1.5, requires_grad=True) * 2, "at θ") == 3.0
    with pytest.raises(ModelError, match=r"must return a real scalar. Got Tensor instead."):
        as_loss_value(torch.ones(1), "at θ")


def test_gradients_must_match_the_parameters() -> None:
    shapes = Layout.from_shapes(["w", "b"], {"w": (2, 2), "b": (2,)}, {"w": "float64", "b": "float64"})
    with pytest.raises(
        ModelError, match=r"model.grad must have one array per parameter tensor: missing b; unexpected c."
    ):
        check_gradient({"w": np.zeros((2, 2)), "c": np.zeros(2)}, shapes, "model.grad")
    with pytest.raises(ModelError, match=r"model.grad\['b'\] must have shape \(2,\). Got \(3,\) instead."):
        check_gradient({"w": np.zeros((2, 2)), "b": np.zeros(3)}, shapes, "model.grad")
    with pytest.raises(ModelError, match=r"model.grad must return a dict of arrays. Got list instead."):
        check_gradient([], shapes, "model.grad")
    grad = check_gradient({"w": np.eye(2, dtype=np.float32), "b": [1, 2]}, shapes, "model.grad")
    # float32 stays float32: a float64 copy of a 10^8-element gradient would take 800 MB more where it is computed
    assert grad["w"].dtype == np.float32
    assert grad["b"].dtype == np.float64
    assert grad["b"].tolist() == [1.0, 2.0]


# Classes named by reference: the smooth model's formulas (tests/models.py), four ways.
CLASSES = """\
import numpy as np


def _loss(params, data):
    return float(sum(np.sum(data[f"c_{n}"] * np.sin(p) + 0.5 * p * p) for n, p in params.items()))


def _grad(params, data):
    return {n: data[f"c_{n}"] * np.cos(p) + p for n, p in params.items()}


class Static:
    @staticmethod
    def loss(params, data):
        return _loss(params, data)

    @staticmethod
    def grad(params, data):
        return _grad(params, data)


class Classy:
    @classmethod
    def loss(cls, params, data):
        return _loss(params, data)

    @classmethod
    def grad(cls, params, data):
        return _grad(params, data)


class Net:
    made = 0

    def __init__(self, scale=1.0):
        Net.made += 1
        self.scale = scale

    def loss(self, params, data):
        return self.scale * _loss(params, data)

    def grad(self, params, data):
        return {n: self.scale * g for n, g in _grad(params, data).items()}


class Sized(Net):
    def __init__(self, width, depth, *, seed, scale=1.0, **options):
        super().__init__(scale)


class Broken(Net):
    def __init__(self):
        raise RuntimeError("no GPU here")
"""


@pytest.fixture
def classes(tmp_path: Path) -> Path:
    """A model file defining the classes above."""
    path = tmp_path / "classes.py"
    path.write_text(CLASSES)
    return path


@pytest.mark.parametrize("name", ["Static", "Classy"])
def test_a_class_with_static_or_class_methods_is_the_model_itself(classes: Path, name: str) -> None:
    model = load_model(f"{classes}:{name}")
    assert isinstance(model, type)
    assert model.__name__ == name
    params, data = models.problem()
    assert model.loss(params, data) == pytest.approx(models.smooth.loss(params, data), rel=1e-14)


def test_a_class_with_a_no_argument_constructor_is_instantiated_once(classes: Path) -> None:
    model = load_model(f"{classes}:Net")
    assert not isinstance(model, type)
    assert type(model).__name__ == "Net"
    assert type(model).made == 1  # type: ignore[attr-defined]
    assert model.scale == 1.0  # type: ignore[attr-defined]
    params, data = models.problem()
    assert model.loss(params, data) == pytest.approx(models.smooth.loss(params, data), rel=1e-14)


@pytest.mark.parametrize("name", ["Static", "Net"])
def test_a_check_of_a_model_named_by_its_class_passes(client: Client, classes: Path, name: str) -> None:
    params, data = models.problem()
    report = pipeline.check(f"{classes}:{name}", params, data, client=client)
    assert report.passed
    assert (report.n_checked, report.n_wrong) == (28, 0)
    assert report.difference < 1e-9


def test_a_class_whose_constructor_needs_arguments_is_one_line_naming_them(classes: Path) -> None:
    ref = f"{classes}:Sized"
    with pytest.raises(ModelImportError) as caught:
        load_model(ref)
    message = str(caught.value)
    assert "\n" not in message
    assert message == (
        f"Model {ref!r} is a class whose loss and grad are instance methods, and its constructor needs arguments "
        f"(width, depth, seed), so an instance is needed: define `sized = Sized(...)` in the file and name "
        f"'{classes}:sized'."
    )


def test_a_class_whose_constructor_raises_is_named(classes: Path) -> None:
    with pytest.raises(ModelError, match=r"classes.py:Broken': Broken\(\) raised RuntimeError: no GPU here$"):
        load_model(f"{classes}:Broken")


def test_a_config_naming_a_class_that_needs_arguments_exits_2_with_one_line(classes: Path) -> None:
    params, data = models.problem()
    folder = classes.parent
    write_group(str(folder / "params.zarr"), params, {"order": list(models.SHAPES)})
    write_group(str(folder / "data.zarr"), data)
    (folder / "check.yaml").write_text(
        "model: classes.py:Sized\nparams: params.zarr\ndata: data.zarr\noutput: out.zarr\n"
    )
    result = run_cli("run", str(folder / "check.yaml"), "--workers", "1")
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert re.fullmatch(
        rf"gradcheck: error: Model '{re.escape(str(classes))}:Sized' is a class .* constructor needs arguments "
        rf"\(width, depth, seed\), so an instance is needed: define `sized = Sized\(\.\.\.\)` in the file and "
        rf"name '{re.escape(str(classes))}:sized'\.\n",
        result.stderr,
    )
    assert not (folder / "out.zarr").exists()


def test_a_model_whose_deep_copy_exits_is_a_model_error_not_the_end_of_the_callers_process() -> None:
    # review 125: the float64 copy a float32 check makes runs the model's __deepcopy__, whose sys.exit(0) escaped
    # pipeline.check (a test suite would have ended there, green)
    class Exits(models.Smooth):
        def __deepcopy__(self, memo: object) -> None:
            raise SystemExit(0)

    params, data = models.problem(np.float32)
    with pytest.raises(ModelError, match=r"Model deep copy called sys.exit\(0\)"):
        pipeline.check(Exits(), params, data)


def test_a_model_whose_pickling_exits_is_a_model_error_on_a_cluster(client: Client) -> None:
    # review 125: a model object sent to a cluster is pickled first, its __reduce__ the model's code too
    class Exits(models.Smooth):
        def __reduce__(self) -> Any:
            raise SystemExit(0)

    params, data = models.problem()
    with pytest.raises(ModelError, match=r"^The model object cannot be sent .* pickling it called sys.exit\(0\)"):
        pipeline.check(Exits(), params, data, client=client)
