"""The input stores: params (with their layout), data and an optional precomputed gradient.

Each is a Zarr v3 group of arrays (see README, "Running a check"). An array may
sit in nested groups: it is named by its path from the root (``layers/0/w``, as
a JAX pytree's key path names a parameter).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import zarr

from ..errors import StoreError
from ..numerics.layout import Layout
from . import Options, is_url
from .access import open_group, opened, reading

__all__ = [
    "Inputs",
    "fingerprint",
    "read_arrays",
    "read_gradient",
    "read_layout",
    "validate_gradient",
    "write_group",
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
    """Write ``arrays`` as a new Zarr group at ``path`` (replacing one that is there); a name with '/' in nested groups."""
    group = zarr.open_group(store=path, mode="w", attributes=dict(attrs or {}), **opened(path, options))
    for name, array in arrays.items():
        group.create_array(name, data=np.asarray(array))


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
