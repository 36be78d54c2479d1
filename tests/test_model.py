"""Resolving model references and checking what models return."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import ModelError, ModelImportError
from pipeline.model import as_loss_value, check_gradient, load_model
from pipeline.numerics.layout import Layout

from . import models
from .conftest import MODELS_FILE


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
    assert grad["w"].dtype == np.float64
    assert grad["b"].tolist() == [1.0, 2.0]
