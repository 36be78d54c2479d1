"""The input stores: params (with their layout), data and an optional precomputed gradient.

Each is a Zarr v3 group of arrays (see README, "Running a check"). An array may
sit in nested groups: it is named by its path from the root (``layers/0/w``, as
a JAX pytree's key path names a parameter). :func:`write_store` writes one.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import zarr

from ..errors import StoreError, StoreExistsError, StoreNotFoundError
from ..numerics.layout import Layout
from . import Options, is_url, name_problem
from .access import open_group, opened, reading, remove_group

__all__ = [
    "Inputs",
    "as_arrays",
    "fingerprint",
    "read_arrays",
    "read_gradient",
    "read_layout",
    "refuse_existing",
    "validate_gradient",
    "write_group",
    "write_store",
]

_PARAM_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _arrays(role: str, path: str, options: Options = None) -> tuple[zarr.Group, dict[str, zarr.Array[Any]]]:
    """A store's group and its arrays, at any depth, by their path from the root (``layers/0/w``)."""
    group = open_group(role, path, options)
    with reading(role, path):
        return group, {name: node for name, node in group.members(max_depth=None) if isinstance(node, zarr.Array)}


def read_layout(path: str, options: Options = None) -> Layout:
    """Validate a params store's metadata and return its flat layout (reads no data).

    The group attribute ``order`` fixes the flattening order and must name every
    array once; without it, names are sorted. Tensors must be float32 or float64.
    """
    return _layout(path, *_arrays("params", path, options))


def _layout(path: str, group: zarr.Group, arrays: Mapping[str, zarr.Array[Any]]) -> Layout:
    order_attr = group.attrs.get("order")
    if not arrays:
        raise StoreError(f"The params store '{path}' holds no arrays; expected one array per parameter tensor.")
    if order_attr is None:
        order = sorted(arrays)
    else:
        if not isinstance(order_attr, list) or not all(isinstance(n, str) for n in order_attr):
            raise StoreError(
                f"The params store '{path}': attribute `order` must be a list of array names. Got {order_attr!r} instead."
            )
        absent = [n for n in order_attr if n not in arrays]
        if absent:
            raise StoreError(
                f"The params store '{path}': `order` names {', '.join(absent)}, which the group does not hold."
            )
        repeated = sorted({n for n in order_attr if order_attr.count(n) > 1})
        if repeated:
            raise StoreError(f"The params store '{path}': `order` lists {', '.join(repeated)} more than once.")
        unlisted = sorted(set(arrays) - set(order_attr))
        if unlisted:
            raise StoreError(
                f"The params store '{path}': `order` leaves out {', '.join(unlisted)}; list every parameter tensor once."
            )
        order = list(order_attr)
    dtypes = {}
    for name in order:
        dtype = np.dtype(arrays[name].dtype)
        if dtype not in _PARAM_DTYPES:
            raise StoreError(
                f"The params store '{path}': array '{name}' has dtype {dtype}; parameters must be float32 or float64."
            )
        dtypes[name] = dtype.name
    return Layout.from_shapes(order, {n: arrays[n].shape for n in order}, dtypes)


def validate_gradient(path: str, layout: Layout, options: Options = None) -> None:
    """Check that a gradient store has exactly the params' names and shapes (reads no data)."""
    _check_gradient(path, layout, _arrays("gradient", path, options)[1])


def _check_gradient(path: str, layout: Layout, arrays: Mapping[str, zarr.Array[Any]]) -> None:
    mismatch = layout.name_mismatch(arrays)
    if mismatch:
        raise StoreError(f"The gradient store '{path}' must hold one array per parameter tensor: {mismatch}.")
    for spec in layout.tensors:
        dtype = np.dtype(arrays[spec.name].dtype)
        if dtype.kind not in "biuf":
            raise StoreError(
                f"The gradient store '{path}': array '{spec.name}' has dtype {dtype}; a gradient must be real numbers."
            )
        shape = tuple(arrays[spec.name].shape)
        if shape != spec.shape:
            raise StoreError(
                f"The gradient store '{path}': array '{spec.name}' has shape {shape}; the params have {spec.shape}."
            )


def read_arrays(
    role: str, path: str, names: tuple[str, ...] | None = None, options: Options = None
) -> dict[str, np.ndarray]:
    """Read whole arrays of a group into memory as writable, C-contiguous numpy arrays."""
    _, arrays = _arrays(role, path, options)
    wanted = names if names is not None else tuple(sorted(arrays))
    with reading(role, path):
        return {name: _in_memory(arrays[name]) for name in wanted}


def read_gradient(path: str, layout: Layout, options: Options = None) -> dict[str, np.ndarray]:
    """Read a validated gradient store as float64 arrays keyed like the params."""
    arrays = read_arrays("gradient", path, layout.names, options)
    return {name: np.asarray(array, dtype=np.float64) for name, array in arrays.items()}


def fingerprint(role: str, path: str, options: Options = None) -> str:
    """A digest of a store's contents: every key and the bytes behind it.

    Two stores with the same arrays, values and attributes have the same
    fingerprint, however often they were rewritten. Costs one read of the store.
    """
    digest = hashlib.sha256()
    with reading(role, path):
        if is_url(path):
            import fsspec  # only remote stores need it

            fs, root = fsspec.core.url_to_fs(path, **dict(options or {}))
            files = sorted(fs.find(root))
            for file in files:
                digest.update(file[len(root) :].encode() + b"\0")
                digest.update(fs.cat_file(file))
        else:
            for folder, subfolders, files in os.walk(path):
                subfolders.sort()
                for name in sorted(files):
                    file = os.path.join(folder, name)
                    digest.update(os.path.relpath(file, path).encode() + b"\0")
                    with open(file, "rb") as f:
                        digest.update(hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()


def write_group(
    path: str, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any] | None = None, options: Options = None
) -> None:
    """Write ``arrays`` as a Zarr group at ``path``, replacing whatever group is there, unchecked.

    A name with '/' is written as an array in nested groups. The building block of
    :func:`write_store`, which checks first and never replaces what it did not write;
    also how the examples and tests write stores (a test's may be deliberately wrong).
    """
    group = zarr.open_group(store=path, mode="w", attributes=dict(attrs or {}), **opened(path, options))
    for name, array in arrays.items():
        group.create_array(name, data=np.asarray(array))


#: The attribute :func:`write_store` marks its groups with: what it may replace.
_WRITTEN_BY = "gradcheck_write_store"


def _as_array(value: Any) -> np.ndarray:
    """``value`` as a numpy array of numbers; TypeError saying why it cannot be one."""
    if callable(getattr(value, "detach", None)):  # a torch tensor, without importing torch
        try:
            value = value.detach().cpu().numpy()
        except (TypeError, RuntimeError) as e:  # bfloat16 and other types numpy lacks
            raise TypeError(
                f"a {type(value).__name__} of dtype {getattr(value, 'dtype', '?')}, which numpy cannot hold ({e}); "
                "convert it to float32 or float64 first"
            ) from e
    try:
        array = np.asarray(value)
    except Exception as e:  # whatever an array-like's own conversion raises
        raise TypeError(f"{type(value).__name__}, which numpy cannot convert ({type(e).__name__}: {e})") from e
    if array.dtype.kind not in "biufc":
        raise TypeError(f"{type(value).__name__} of dtype {array.dtype}, not an array of numbers")
    return array


def as_arrays(arrays: object, where: str) -> dict[str, np.ndarray]:
    """A mapping of name -> array-like as numpy arrays of numbers, in its order, checked as a store needs them.

    Parameters
    ----------
    arrays : mapping of str to array_like
        numpy arrays, or anything ``np.asarray`` takes: a torch tensor (on any
        device; detached and copied to the CPU), a jax array, nested lists, scalars.
    where : str
        Who gave them, to begin a message (``"Cannot write 'params.zarr'"``).

    Raises
    ------
    StoreError
        ``arrays`` is not a mapping, is empty, has a name a store cannot hold (see
        :func:`pipeline.storage.name_problem`), or an entry that is not numbers
        (named, with its type).
    """
    if not isinstance(arrays, Mapping):
        raise StoreError(f"{where}: expected a mapping of name -> array. Got {type(arrays).__name__} instead.")
    if not arrays:
        raise StoreError(f"{where}: there are no arrays to write (the mapping is empty).")
    problem = name_problem(arrays)
    if problem is not None:
        raise StoreError(f"{where}: names {problem}")
    converted = {}
    for name, value in arrays.items():
        try:
            converted[name] = _as_array(value)
        except TypeError as e:
            raise StoreError(f"{where}: entry '{name}' is {e}.") from e
    return converted


def refuse_existing(path: str, options: Options = None) -> None:
    """Refuse any node at ``path``: a store is written only where nothing is."""
    if _exists(path, options):
        raise StoreExistsError(f"'{path}' exists; choose another path or remove it.")


def _exists(path: str, options: Options) -> bool:
    if not is_url(path):
        return os.path.lexists(path)
    import fsspec  # only remote stores need it

    fs, root = fsspec.core.url_to_fs(path, **dict(options or {}))
    return bool(fs.exists(root))


def _written_by_write_store(path: str, options: Options) -> bool:
    try:
        group = zarr.open_group(store=path, mode="r", **opened(path, options))
        return group.attrs.get(_WRITTEN_BY) == 1
    except Exception:  # not Zarr, a file, unreadable: not ours
        return False


@contextmanager
def _writing(path: str) -> Iterator[None]:
    """Turn a failed write (a full disk, a name the filesystem refuses) into one line naming the store."""
    try:
        yield
    except (OSError, ValueError, TypeError) as e:
        raise StoreError(f"The store '{path}' cannot be written: {type(e).__name__}: {e}") from e


def write_store(
    path: str, arrays: Mapping[str, Any], *, order: Sequence[str] | None = None, storage_options: Options = None
) -> None:
    """Write ``arrays`` as a new Zarr v3 group at ``path``: a params, data or gradient store.

    Parameters
    ----------
    path : str
        A local path or an fsspec URL. Nothing may be there, except a store this
        function wrote, which is replaced.
    arrays : mapping of str to array_like
        One array per name: numpy arrays, torch tensors (detached, copied to the
        CPU), jax arrays, anything ``np.asarray`` takes. A name with '/' (a JAX key
        path, ``layers/0/w``) is written as an array in nested groups, and read
        back under that name.
    order : sequence of str, optional
        The flattening order, stored as the group's ``order`` attribute: every
        name once. By default the mapping's own order.
    storage_options : mapping, optional
        fsspec options for a URL (``endpoint_url``...); credentials come from the
        environment.

    Raises
    ------
    StoreError
        An entry is not an array of numbers (named, with its type), a name cannot
        be held by a store, the mapping is empty, ``order`` does not list every
        name once, or the write failed.
    StoreExistsError
        Something this function did not write is at ``path``; it is left as it is.

    Notes
    -----
    A local store is written beside ``path`` and renamed into place, so a failure
    midway (a full disk) leaves nothing at ``path``, and a store being replaced
    stays whole until the new one is. A URL is written in place.
    """
    where = f"Cannot write the store '{path}'"
    converted = as_arrays(arrays, where)
    names = list(converted) if order is None else _order(order, converted, where)
    replace = _exists(path, storage_options)
    if replace and not _written_by_write_store(path, storage_options):
        refuse_existing(path, storage_options)
    attrs = {"order": names, _WRITTEN_BY: 1}
    ordered = {name: converted[name] for name in names}
    if is_url(path):
        with _writing(path):
            write_group(path, ordered, attrs, storage_options)
        return
    folder, name = os.path.split(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise StoreNotFoundError(f"{where}: its folder '{folder}' does not exist.")
    with _writing(path):
        aside = tempfile.mkdtemp(prefix=f"{name}.partial-", dir=folder)  # new: nobody else's
    try:
        with _writing(path):
            write_group(aside, ordered, attrs)
    except BaseException:
        remove_group(aside)
        raise
    with _writing(path):
        if replace:
            old = f"{aside}.replaced"
            os.rename(path, old)  # from here until the next line, the old store is whole beside it
            os.rename(aside, path)
            remove_group(old)
        else:
            os.rename(aside, path)


def _order(order: Sequence[str], arrays: Mapping[str, np.ndarray], where: str) -> list[str]:
    if isinstance(order, str) or not all(isinstance(name, str) for name in order):
        raise StoreError(f"{where}: `order` must be a list of the arrays' names. Got {order!r} instead.")
    names = list(order)
    absent = [name for name in names if name not in arrays]
    repeated = sorted({name for name in names if names.count(name) > 1})
    unlisted = [name for name in arrays if name not in names]
    if absent or repeated or unlisted:
        parts = (
            ([f"names {', '.join(absent)}, which are not among the arrays"] if absent else [])
            + ([f"lists {', '.join(repeated)} more than once"] if repeated else [])
            + ([f"leaves out {', '.join(unlisted)}"] if unlisted else [])
        )
        raise StoreError(f"{where}: `order` {'; '.join(parts)}; it must list every array once.")
    return names


class Inputs:
    """A run's input stores, opened once on the client.

    Holds the params' layout (validated), the data's and gradient's arrays as
    handles (nothing read yet), and a fingerprint of each store's contents (one
    pass over its files), which is what makes two runs the same run.
    """

    def __init__(self, params: str, data: str, gradient: str | None = None, options: Options = None) -> None:
        self.params, self.data, self.gradient, self.options = params, data, gradient, options
        group, arrays = _arrays("params", params, options)
        self.layout = _layout(params, group, arrays)
        self._arrays = {"params": arrays, "data": _arrays("data", data, options)[1]}
        if gradient is not None:
            self._arrays["gradient"] = _arrays("gradient", gradient, options)[1]
            _check_gradient(gradient, self.layout, self._arrays["gradient"])
        self.fingerprints = {
            "params": fingerprint("params", params, options),
            "data": fingerprint("data", data, options),
            "gradient": None if gradient is None else fingerprint("gradient", gradient, options),
        }

    def dtypes(self, role: str) -> dict[str, np.dtype[Any]]:
        """Each array's dtype in the store of ``role`` ("params", "data" or "gradient"), read from its metadata."""
        return {name: np.dtype(array.dtype) for name, array in self._arrays[role].items()}

    @property
    def data_bytes(self) -> int:
        """The data's size in memory (from the arrays' metadata: nothing is read)."""
        return sum(int(np.prod(a.shape)) * np.dtype(a.dtype).itemsize for a in self._arrays["data"].values())

    @property
    def float32_data_bytes(self) -> int:
        """The size of the data's float32 arrays (`precision: float64` holds a float64 copy of them beside)."""
        arrays = self._arrays["data"].values()
        return sum(int(np.prod(a.shape)) * 4 for a in arrays if np.dtype(a.dtype) == np.float32)

    def tensor(self, name: str) -> np.ndarray:
        """One parameter array, read into memory (a wrong tensor's values, for its diagnosis)."""
        with reading("params", str(self.params)):
            return _in_memory(self._arrays["params"][name])

    def read(self, role: str) -> dict[str, np.ndarray]:
        """The arrays of ``params`` (in flattening order), ``data`` or ``gradient`` (as float64), read into memory."""
        path = {"params": self.params, "data": self.data, "gradient": self.gradient}[role]
        arrays = self._arrays[role]
        names = self.layout.names if role != "data" else tuple(sorted(arrays))
        with reading(role, str(path)):
            read = {name: _in_memory(arrays[name]) for name in names}
        return {name: array.astype(np.float64) for name, array in read.items()} if role == "gradient" else read


def _in_memory(array: zarr.Array[Any]) -> np.ndarray:
    # np.require keeps 0-d tensors 0-d (np.ascontiguousarray would make them 1-d).
    return np.require(np.asarray(array[...]), requirements=["C", "W"])
