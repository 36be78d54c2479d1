"""``gradcheck import``: a store written from parameters another tool saved.

A SOURCE is a file, read by its suffix, or a Python object:

- ``.npz`` (``np.savez``): its arrays in the file's order; nothing is unpickled.
- ``.safetensors``: its tensors in the file's order (safetensors lays them out
  by dtype, then name), read with ``safetensors.numpy``.
- ``.pt`` / ``.pth`` (``torch.save``): a state_dict, or a checkpoint holding one
  under ``state_dict`` or ``model_state_dict``, in its order; read with
  ``torch.load(weights_only=True)``, which unpickles tensors and containers only.
- ``path/to/file.py:attr`` or ``package.module:attr``: a mapping of name -> array,
  or an object with a ``.params`` mapping (a model adapter), in its order.

The optional libraries are imported only for their own files.
"""

from __future__ import annotations

import importlib
import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import StoreError, StoreNotFoundError, one_line
from ..model import resolve
from .inputs import as_arrays, refuse_existing, write_store

__all__ = ["SUFFIXES", "Imported", "format_imported", "import_store", "read_source"]

#: The files a SOURCE may be, by suffix.
SUFFIXES = (".npz", ".safetensors", ".pt", ".pth")

#: Checkpoint keys under which a PyTorch file may hold the state_dict (as the PyTorch tutorials save one).
_STATE_DICT_KEYS = ("state_dict", "model_state_dict")

_MODULE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


@dataclass(frozen=True, slots=True)
class Imported:
    """What :func:`import_store` wrote: the store, its arrays' names in order, and their dtypes and sizes."""

    store: str
    names: tuple[str, ...]
    dtypes: tuple[str, ...]
    sizes: tuple[int, ...]

    @property
    def n_parameters(self) -> int:
        """Elements of the float32 and float64 arrays: what a params store can check."""
        return sum(size for size, dtype in zip(self.sizes, self.dtypes, strict=True) if _is_parameter(dtype))

    @property
    def not_parameters(self) -> tuple[str, ...]:
        """``name (dtype)`` of each array a params store would refuse (it holds float32 or float64 only)."""
        return tuple(f"{n} ({d})" for n, d in zip(self.names, self.dtypes, strict=True) if not _is_parameter(d))


def _is_parameter(dtype: str) -> bool:
    return dtype in ("float32", "float64")


def import_store(source: str, store: str) -> Imported:
    """Write the arrays of ``source`` as a new store at ``store`` (see the module's text for the sources).

    Raises
    ------
    GradcheckError
        ``source`` is of an unknown kind, does not exist, cannot be read, or holds
        something other than named arrays of numbers (named); ``store`` exists
        (it is left as it is). Nothing is written then.
    """
    _kind(source)  # a source that is no source first; then a store that exists; only then is anything read
    refuse_existing(store)
    arrays = read_source(source)
    write_store(store, arrays)
    return Imported(
        store,
        tuple(arrays),
        tuple(a.dtype.name for a in arrays.values()),
        tuple(int(a.size) for a in arrays.values()),
    )


def format_imported(imported: Imported) -> str:
    """One line: how many arrays, where, how many float elements (the parameters, if it is to be a params
    store: the import cannot know which store it writes); and the arrays that make it a data store only."""
    n = len(imported.names)
    line = f"Wrote {n} array{'s' if n != 1 else ''} to '{imported.store}': {imported.n_parameters} float elements"
    others = imported.not_parameters
    if not others:
        return line + " (as a params store, the parameters checked; or a data store)."
    more = f" and {len(others) - 5} more" if len(others) > 5 else ""
    return line + f", and {', '.join(others[:5])}{more}, not float32 or float64: a data store (parameters are floats)."


def _kind(source: str) -> str:
    """The kind of ``source``: a suffix of :data:`SUFFIXES`, or ``"object"``; refuses anything else."""
    target, sep, attr = source.rpartition(":")
    if sep and attr and not os.path.exists(source) and (target.endswith(".py") or _MODULE.fullmatch(target)):
        return "object"
    suffix = os.path.splitext(source)[1].lower()
    if suffix not in SUFFIXES:
        got = f"a '{suffix}' file" if suffix else "a file without a suffix"
        hint = f" (name the object in it: '{source}:attr')" if suffix == ".py" else ""
        raise StoreError(
            f"Cannot import '{source}': expected an .npz, .safetensors, .pt or .pth file, or an object as "
            f"path/to/file.py:attr. Got {got} instead{hint}."
        )
    if not os.path.isfile(source):
        raise StoreNotFoundError(f"The file '{source}' does not exist.")
    return suffix


def read_source(source: str) -> dict[str, np.ndarray]:
    """The named arrays of ``source``, in its order, as numpy arrays of numbers (nothing written)."""
    kind = _kind(source)
    readers = {
        ".npz": _read_npz,
        ".safetensors": _read_safetensors,
        ".pt": _read_torch,
        ".pth": _read_torch,
        "object": _read_object,
    }
    return as_arrays(readers[kind](source), f"Cannot import '{source}'")


def _read_npz(source: str) -> Mapping[str, Any]:
    if not zipfile.is_zipfile(source):
        raise StoreError(f"'{source}' is not an .npz file (not a zip archive of arrays, as np.savez writes).")
    arrays = {}
    try:
        with np.load(source, allow_pickle=False) as archive:
            for name in archive.files:  # the order np.savez wrote them in
                try:
                    arrays[name] = archive[name]
                except ValueError as e:  # an object array: it would have to be unpickled
                    raise StoreError(
                        f"'{source}': array '{name}' holds Python objects, which would have to be unpickled; "
                        "gradcheck will not. Save arrays of numbers."
                    ) from e
    except StoreError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise StoreError(f"'{source}' cannot be read as an .npz file: {type(e).__name__}: {e}") from e
    return arrays


def _read_safetensors(source: str) -> Mapping[str, Any]:
    safetensors = _optional("safetensors", source, "the safetensors package: pip install safetensors")
    numpy_files = importlib.import_module("safetensors.numpy")
    try:
        loaded: Mapping[str, Any] = numpy_files.load_file(source)  # in the file's order
        return loaded
    except safetensors.SafetensorError as e:
        raise StoreError(f"'{source}' is not a safetensors file: {e}") from e
    except (TypeError, KeyError, ValueError) as e:
        # A dtype numpy lacks (BF16, F8_*) fails the whole file: find the tensor to name.
        with safetensors.safe_open(source, framework="numpy") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                try:
                    f.get_tensor(name)
                except (TypeError, KeyError, ValueError):
                    dtype = f.get_slice(name).get_dtype()
                    raise StoreError(
                        f"'{source}': tensor '{name}' is {dtype}, which numpy cannot hold; save it as float32 "
                        "(tensor.float()) and import again."
                    ) from e
        raise StoreError(f"'{source}' cannot be read: {type(e).__name__}: {e}") from e


def _read_torch(source: str) -> Mapping[str, Any]:
    torch = _optional("torch", source, "PyTorch: pip install torch")
    try:
        loaded = torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # weights_only refuses any class outside tensors and containers; it names the first.
        culprit = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if culprit is None and not zipfile.is_zipfile(source):
            raise StoreError(f"'{source}' is not a PyTorch file torch.load can read.") from e
        what = f" (it pickles {culprit.group(1)})" if culprit else ""
        raise StoreError(
            f"'{source}' is not a weights-only file{what}: gradcheck will not unpickle it, since unpickling can run "
            "any code. Save the model's state_dict() instead."
        ) from e
    except Exception as e:  # what torch.load's readers raise on a file they cannot parse: struct.error, EOFError...
        first = re.split(r"(?<=\.)\s", one_line(e), maxsplit=1)[0]  # torch's messages go on for lines
        raise StoreError(f"'{source}' is not a PyTorch file torch.load can read: {first}") from e
    if isinstance(loaded, Mapping):
        for key in _STATE_DICT_KEYS:
            if isinstance(loaded.get(key), Mapping):
                loaded = loaded[key]
                break
    if not isinstance(loaded, Mapping):
        raise StoreError(f"'{source}' holds a {type(loaded).__name__}, not a state_dict (a mapping of name -> tensor).")
    # A state_dict's `_metadata` (module versions) is an attribute, not an entry; skipped should a copy hold it.
    entries = {
        name: value for name, value in loaded.items() if not (name == "_metadata" and isinstance(value, Mapping))
    }
    others = [f"'{name}' ({type(value).__name__})" for name, value in entries.items() if not torch.is_tensor(value)]
    if others:
        raise StoreError(
            f"'{source}': {', '.join(others)} {'is not a tensor' if len(others) == 1 else 'are not tensors'}; "
            "a state_dict maps names to tensors."
        )
    return entries


def _optional(module: str, source: str, needs: str) -> Any:
    """An optional library, imported only for its own files (typed as Any: the core install lacks it)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise StoreError(f"Reading '{source}' needs {needs}") from None


def _article(word: str) -> str:
    """The article of a type name as it is read: an int, a dict; an acronym by its first letter's name (an MLP,
    a UNet)."""
    if word[:2].isupper():
        return "an" if word[0] in "AEFHILMNORSX" else "a"
    return "an" if word[:1].lower() in "aeiou" else "a"


def _read_object(source: str) -> Mapping[str, Any]:
    obj = resolve(source)
    if isinstance(obj, Mapping):
        return obj
    params = getattr(obj, "params", None)
    if isinstance(params, Mapping):
        return params
    held = "" if params is None else f" (its `.params` is a {type(params).__name__})"
    raise StoreError(
        f"'{source}' names {_article(type(obj).__name__)} {type(obj).__name__}{held}; expected a mapping of name -> array, or an object with a "
        "`.params` mapping (a model adapter)."
    )
