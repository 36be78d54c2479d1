"""Model references and the model protocol.

A model is any object with ``loss(params, data) -> float`` and
``grad(params, data) -> dict[str, ndarray]``. It is named in a config as
``package.module:attr`` or ``path/to/file.py:attr``; from Python it may also be
the object itself (it then travels to the workers by pickle).

A module must be importable on every worker. A file travels with the tasks as
its source text (:class:`ModelSource`), so workers that do not share the
client's disk run exactly the code the client read.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.machinery
import importlib.util
import inspect
import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias, runtime_checkable

import numpy as np

from .errors import UNGUARDED_SCRIPT, ModelError, ModelImportError, exited
from .numerics.layout import Layout

__all__ = [
    "Model",
    "ModelRef",
    "ModelSource",
    "as_loss_value",
    "check_gradient",
    "load_model",
    "missing_module",
    "refuse_coarser_gradient",
    "resolve",
    "shipped",
]

Arrays: TypeAlias = dict[str, np.ndarray]


@runtime_checkable
class Model(Protocol):
    """What a model must offer (duck-typed; nothing to inherit)."""

    def loss(self, params: Arrays, data: Arrays) -> float: ...

    def grad(self, params: Arrays, data: Arrays) -> Arrays: ...


@dataclass(frozen=True, slots=True)
class ModelSource:
    """A ``path/to/file.py:attr`` reference with the file's text, as read on the client."""

    ref: str
    text: str


#: A model as a reference string (or one with its file's source), or the object itself.
ModelRef: TypeAlias = "str | ModelSource | Model"


def _split(ref: str) -> tuple[str, str]:
    """``target`` (a module or a .py file) and ``attr`` of a reference string."""
    target, sep, attr = ref.rpartition(":")
    if not sep or not target or not attr:
        raise ModelImportError(
            f"Expected a model reference 'package.module:attr' or 'path/to/file.py:attr'. Got {ref!r} instead."
        )
    return target, attr


def shipped(ref: ModelRef) -> ModelRef:
    """``ref`` as it travels to the workers: a file reference with the file's text; anything else as it is."""
    if not isinstance(ref, str):
        return ref
    target, _ = _split(ref)
    if not target.endswith(".py"):
        return ref
    if not os.path.isfile(target):
        raise ModelImportError(f"Model file '{target}' does not exist.")
    try:
        with open(target, encoding="utf-8") as f:
            return ModelSource(ref, f.read())
    except (OSError, UnicodeDecodeError) as e:
        raise ModelImportError(f"Model file '{target}' cannot be read: {e}") from e


def _import_source(path: str, text: str) -> Any:
    """The module that ``text`` (the source of ``path``) defines, executed once per process and text."""
    # One module per file path and content: two files of one name do not collide, and an
    # edited file is loaded afresh by a long-lived worker.
    digest = hashlib.sha1(f"{os.path.abspath(path)}\0{text}".encode()).hexdigest()[:12]
    name = "_gradcheck_model_" + digest
    if name in sys.modules:
        return sys.modules[name]
    module = importlib.util.module_from_spec(importlib.machinery.ModuleSpec(name, None, origin=path))
    module.__file__ = path
    sys.modules[name] = module
    # Modules beside the file import, wherever its folder exists on this machine (a local cluster's workers, or
    # one that shares the file system). Its folder goes last on the path: a file beside the model named like a
    # standard or installed module (csv.py) does not replace it.
    folder = os.path.dirname(os.path.abspath(path))
    added = os.path.isdir(folder) and folder not in sys.path
    if added:
        sys.path.append(folder)
    try:
        exec(compile(text, path, "exec"), module.__dict__)  # the model file, as the client read it
    except (Exception, SystemExit) as e:
        del sys.modules[name]
        if added:
            sys.path.remove(folder)
        if isinstance(e, SystemExit):
            raise ModelImportError(f"Model file '{path}' {exited(e)} on import{UNGUARDED_SCRIPT}") from None
        beside = (
            f" (modules beside the model file are found where its folder '{folder}' exists; elsewhere install them "
            "or put them on PYTHONPATH)"
            if isinstance(e, ModuleNotFoundError)
            else ""
        )
        raise ModelImportError(f"Model file '{path}' raised {type(e).__name__} on import: {e}{beside}") from e
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
    except SystemExit as e:
        raise ModelImportError(f"Model module '{name}' {exited(e)} on import{UNGUARDED_SCRIPT}") from None
    except Exception as e:
        raise ModelImportError(f"Model module '{name}' raised {type(e).__name__} on import: {e}") from e


def missing_module(ref: ModelRef) -> str | None:
    """Why a ``package.module:attr`` model cannot be imported in this process, or None (also for other refs).

    Run on every worker before the check starts, so that a module installed only
    on the client is named there rather than failing in the workers' tasks.
    """
    if not isinstance(ref, str) or _split(ref)[0].endswith(".py"):
        return None
    target = _split(ref)[0]
    try:
        found = importlib.util.find_spec(target) is not None
    except (ImportError, ValueError) as e:
        found = not isinstance(e, ModuleNotFoundError)
    except SystemExit:  # a package's __init__ that exits: found, and its import says so in one line
        found = True
    return None if found else f"Model module '{target}' cannot be found"


def load_model(ref: ModelRef) -> Model:
    """Resolve a model reference and check that it follows the protocol.

    Parameters
    ----------
    ref : str, ModelSource or object
        ``package.module:attr``, ``path/to/file.py:attr`` (``attr`` may be
        dotted), such a file reference with its source (see :func:`shipped`),
        or a model object, returned as it is once checked.

    Raises
    ------
    ModelImportError
        The reference is malformed, or its module or attribute cannot be found,
        or it names a class with instance methods whose constructor needs arguments.
    ModelError
        The object lacks a callable ``loss`` or ``grad``, or the class it names
        raised when instantiated.

    Notes
    -----
    A reference may name a class. If its ``loss`` and ``grad`` are static or
    class methods, the class itself is the model; otherwise it is instantiated
    once, with no arguments, and the instance is the model.
    """
    if isinstance(ref, (str, ModelSource)):
        obj = resolve(ref)
        name = _name(ref)
        if isinstance(obj, type) and all(callable(getattr(obj, method, None)) for method in ("loss", "grad")):
            obj = _from_class(obj, name, _split(name)[0])
    else:
        obj, name = ref, type(ref).__name__
    missing = [method for method in ("loss", "grad") if not callable(getattr(obj, method, None))]
    if missing:
        raise ModelError(
            f"Model {name!r} has no callable {' or '.join(missing)}; a model needs loss(params, data) and grad(params, data)."
        )
    return obj  # type: ignore[no-any-return]


def resolve(ref: str | ModelSource) -> Any:
    """The object a reference names, as it is: its module imported (a file's source executed), then ``attr``.

    Parameters
    ----------
    ref : str or ModelSource
        ``package.module:attr`` or ``path/to/file.py:attr`` (``attr`` may be
        dotted), or such a file reference with its source (see :func:`shipped`).

    Raises
    ------
    ModelImportError
        The reference is malformed, or its file, module or attribute cannot be
        found, or importing it raised.
    """
    target, attr = _split(_name(ref))
    if isinstance(ref, str) and target.endswith(".py"):
        with_text = shipped(ref)
        assert isinstance(with_text, ModelSource)  # what shipped makes of a file reference
        ref = with_text
    obj = _import_module(target) if isinstance(ref, str) else _import_source(target, ref.text)
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            near = difflib.get_close_matches(part, [name for name in dir(obj) if not name.startswith("_")], n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            raise ModelImportError(f"Model {_name(ref)!r}: '{target}' has no attribute '{attr}'{hint}.") from None
    return obj


def _name(ref: str | ModelSource) -> str:
    return ref if isinstance(ref, str) else ref.ref


def _from_class(cls: type, name: str, target: str) -> Any:
    """The model a reference to class ``cls`` stands for: the class, or an instance made with no arguments."""
    if all(isinstance(inspect.getattr_static(cls, m), (staticmethod, classmethod)) for m in ("loss", "grad")):
        return cls  # "a class with static methods" (DESIGN): nothing to instantiate
    try:
        parameters = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        parameters = None  # no signature to read (a C extension type): try the call itself
    if parameters is not None:
        required = [
            p.name
            for p in parameters
            if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        if required:
            # The instance needs values only the user knows: ask for one, made where the class is.
            instance = cls.__name__.lower() if cls.__name__.lower() != cls.__name__ else "model"
            where = "the file" if target.endswith(".py") else f"module '{target}'"
            raise ModelImportError(
                f"Model {name!r} is a class whose loss and grad are instance methods, and its constructor needs "
                f"arguments ({', '.join(required)}), so an instance is needed: define `{instance} = "
                f"{cls.__name__}(...)` in {where} and name '{target}:{instance}'."
            )
    try:
        return cls()
    except SystemExit as e:
        raise ModelError(f"Model {name!r}: {cls.__name__}() {exited(e)}") from None
    except Exception as e:
        raise ModelError(f"Model {name!r}: {cls.__name__}() raised {type(e).__name__}: {e}") from e


def as_loss_value(value: Any, where: str, finite: bool = True) -> float:
    """Check that ``loss`` returned a real scalar, finite unless ``finite`` is False (a loss near θ may step
    past the edge of its domain: the check judges that), and return it as a float."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    elif getattr(value, "ndim", None) == 0 and callable(getattr(value, "item", None)):
        value = value.item()  # a 0-d torch tensor or jax array (review 67: refused, though its gradient dict was not)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        shape = f" of shape {value.shape}" if isinstance(value, np.ndarray) else ""
        raise ModelError(f"Model loss {where} must return a real scalar. Got {type(value).__name__}{shape} instead.")
    number = float(value)
    if finite and not math.isfinite(number):
        raise ModelError(f"Model loss {where} must be finite. Got {number!r} instead.")
    return number


def refuse_coarser_gradient(
    gradient: Mapping[str, Any], params: Mapping[str, Any], promote: bool, source: str, error: type[Exception]
) -> None:
    """Raise ``error`` where a given gradient has a float array (``gradient``'s dtypes) coarser than the
    float64 its tensor is judged in (``params``' dtypes, all float64 where ``promote``). Its own rounding,
    about 1e-7 of each value for float32, is about float64's whole tolerance: a correct gradient fails
    (held-out sweep 42: `precision: float64` with a float32 `gradient` failed every tensor)."""
    coarse: dict[str, list[str]] = {}
    for name in (name for name in params if name in gradient):  # in the params' order
        dtype, judged = np.dtype(gradient[name]), np.dtype(np.float64 if promote else params[name])
        if dtype.kind == "f" and judged.kind == "f" and np.finfo(dtype).eps > np.finfo(judged).eps:
            coarse.setdefault(dtype.name, []).append(name)
    if not coarse:
        return
    dtype, names = next(iter(coarse.items()))
    why = "precision: float64" if promote else "the params are float64"
    instead = "give it in float64, drop `precision: float64`," if promote else "give it in float64"
    raise error(
        f"{source} holds {dtype} arrays ({', '.join(names)}) where the check judges in float64 ({why}): their own "
        f"rounding, about {np.finfo(dtype).eps:.0e} of each value, fails float64's tolerance. {instead.capitalize()} "
        "or leave the gradient to model.grad."
    )


def check_gradient(grad: Any, layout: Layout, source: str) -> Arrays:
    """Check an analytic gradient against the parameter layout; return it as float32 or float64 arrays
    (float32 as it is: a float64 copy of a large float32 gradient would double its memory).

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
            array = np.asarray(grad[spec.name])
            if array.dtype not in (np.float32, np.float64):
                array = array.astype(np.float64)
        except (TypeError, ValueError) as e:
            raise ModelError(f"{source}['{spec.name}'] is not a numeric array: {e}") from e
        if array.shape != spec.shape:
            raise ModelError(f"{source}['{spec.name}'] must have shape {spec.shape}. Got {array.shape} instead.")
        checked[spec.name] = array
    return checked
