"""Model references and the model protocol.

A model is any object with ``loss(params, data) -> float`` and
``grad(params, data) -> dict[str, ndarray]``. It is named in a config as
``package.module:attr`` or ``path/to/file.py:attr``; from Python it may also be
the object itself (it then travels to the workers by pickle).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import math
import os
import sys
from collections.abc import Mapping
from typing import Any, Protocol, TypeAlias, runtime_checkable

import numpy as np

from .errors import ModelError, ModelImportError
from .layout import Layout

__all__ = ["Model", "ModelRef", "as_loss_value", "check_gradient", "load_model"]

Arrays: TypeAlias = dict[str, np.ndarray]


@runtime_checkable
class Model(Protocol):
    """What a model must offer (duck-typed; nothing to inherit)."""

    def loss(self, params: Arrays, data: Arrays) -> float: ...

    def grad(self, params: Arrays, data: Arrays) -> Arrays: ...


#: A model as a reference string, or the object itself.
ModelRef: TypeAlias = "str | Model"


def _import_file(path: str) -> Any:
    if not os.path.isfile(path):
        raise ModelImportError(f"Model file '{path}' does not exist.")
    # One module per file path, so two files of the same name do not collide.
    name = "_gradcheck_model_" + hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:12]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModelImportError(f"Model file '{path}' cannot be loaded as Python.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[name]
        raise ModelImportError(f"Model file '{path}' raised {type(e).__name__} on import: {e}") from e
    return module


def _import_module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name is not None and (name == e.name or name.startswith(e.name + ".")):
            raise ModelImportError(
                f"Model module '{name}' cannot be found (is it installed, or on PYTHONPATH?)."
            ) from e
        raise ModelImportError(f"Model module '{name}' failed to import: {e}") from e
    except Exception as e:
        raise ModelImportError(f"Model module '{name}' raised {type(e).__name__} on import: {e}") from e


def load_model(ref: ModelRef) -> Model:
    """Resolve a model reference and check that it follows the protocol.

    Parameters
    ----------
    ref : str or object
        ``package.module:attr``, ``path/to/file.py:attr`` (``attr`` may be
        dotted), or a model object, returned as it is once checked.

    Raises
    ------
    ModelImportError
        The reference is malformed, or its module or attribute cannot be found.
    ModelError
        The object lacks a callable ``loss`` or ``grad``.
    """
    if isinstance(ref, str):
        target, sep, attr = ref.rpartition(":")
        if not sep or not target or not attr:
            raise ModelImportError(
                f"Expected a model reference 'package.module:attr' or 'path/to/file.py:attr'. Got {ref!r} instead."
            )
        obj = _import_file(target) if target.endswith(".py") else _import_module(target)
        for part in attr.split("."):
            try:
                obj = getattr(obj, part)
            except AttributeError:
                raise ModelImportError(f"Model {ref!r}: '{target}' has no attribute '{attr}'.") from None
        name = ref
    else:
        obj, name = ref, type(ref).__name__
    missing = [method for method in ("loss", "grad") if not callable(getattr(obj, method, None))]
    if missing:
        raise ModelError(
            f"Model {name!r} has no callable {' or '.join(missing)}; a model needs loss(params, data) and grad(params, data)."
        )
    return obj  # type: ignore[no-any-return]


def as_loss_value(value: Any, where: str) -> float:
    """Check that ``loss`` returned a finite real scalar, and return it as a float."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        shape = f" of shape {value.shape}" if isinstance(value, np.ndarray) else ""
        raise ModelError(f"Model loss {where} must return a real scalar. Got {type(value).__name__}{shape} instead.")
    number = float(value)
    if not math.isfinite(number):
        raise ModelError(f"Model loss {where} must be finite. Got {number!r} instead.")
    return number


def check_gradient(grad: Any, layout: Layout, source: str) -> Arrays:
    """Check an analytic gradient against the parameter layout; return it as float64 arrays.

    ``source`` names where it came from (``model.grad``) for the message.
    """
    if not isinstance(grad, Mapping):
        raise ModelError(f"{source} must return a dict of arrays. Got {type(grad).__name__} instead.")
    mismatch = layout.name_mismatch(grad)
    if mismatch:
        raise ModelError(f"{source} must have one array per parameter tensor: {mismatch}.")
    checked: Arrays = {}
    for spec in layout.tensors:
        try:
            array = np.asarray(grad[spec.name], dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise ModelError(f"{source}['{spec.name}'] is not a numeric array: {e}") from e
        if array.shape != spec.shape:
            raise ModelError(f"{source}['{spec.name}'] must have shape {spec.shape}. Got {array.shape} instead.")
        checked[spec.name] = array
    return checked
