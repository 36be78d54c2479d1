"""The Zarr layout: reading params, data and gradients; writing the output.

Every store is a Zarr v3 group addressed by a path or fsspec URL (opened with
the run's ``storage_options``; credentials come from the environment, as the
filesystem's own library reads them). Errors name the store and the array at fault. The output group holds ``numeric`` and
``analytic`` (flat float64, chunked on shard boundaries, NaN where nothing was
written yet) and, in its attributes, the layout, the resolved config and the
report.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any

import numpy as np
import zarr
import zarr.errors

from .errors import OutputExistsError, StoreError, StoreNotFoundError
from .layout import Layout

__all__ = [
    "FORMAT_VERSION",
    "Options",
    "OutputArrays",
    "check_output",
    "completed_shards",
    "fingerprint",
    "is_url",
    "lock_held",
    "output_lock",
    "output_shard_size",
    "prepare_output",
    "read_arrays",
    "read_gradient",
    "read_layout",
    "read_output_attrs",
    "remove_output",
    "update_attrs",
    "validate_data",
    "validate_gradient",
    "write_group",
]

#: fsspec options for URL stores (``endpoint_url``...), as the config's ``storage_options`` gives them.
Options = Mapping[str, Any] | None

#: Version of the output group's attribute format; readers refuse newer ones.
FORMAT_VERSION = 2
_PARAM_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def is_url(path: str) -> bool:
    """Whether ``path`` is an fsspec URL (``s3://...``) rather than a local path."""
    return "://" in path


def _opened(path: str, options: Options) -> dict[str, Any]:
    """Zarr's keyword for a store's fsspec options: only URLs take them."""
    return {"storage_options": dict(options)} if options and is_url(path) else {}


@contextmanager
def _reading(role: str, path: str) -> Iterator[None]:
    """Turn Zarr's and the filesystem's exceptions into one line naming the store."""
    try:
        yield
    except (StoreError, OutputExistsError):
        raise
    except (FileNotFoundError, zarr.errors.NodeNotFoundError) as e:
        raise StoreNotFoundError(f"The {role} store '{path}' does not exist (or is not a Zarr group).") from e
    except zarr.errors.ContainsArrayError as e:
        raise StoreError(f"The {role} store '{path}' is a Zarr array; expected a group of arrays.") from e
    except (OSError, ValueError, TypeError, KeyError, json.JSONDecodeError) as e:
        raise StoreError(f"The {role} store '{path}' cannot be read: {type(e).__name__}: {e}") from e
    except Exception as e:
        if not is_url(path):
            raise
        # A remote filesystem's own errors (botocore's NoCredentialsError...) derive from none of the above.
        raise StoreError(f"The {role} store '{path}' cannot be read: {type(e).__name__}: {e}") from e


def _open_group(role: str, path: str, options: Options = None) -> zarr.Group:
    with _reading(role, path):
        return zarr.open_group(store=path, mode="r", **_opened(path, options))


def _arrays(role: str, path: str, options: Options = None) -> tuple[zarr.Group, dict[str, zarr.Array[Any]]]:
    """A store's group and the arrays at its root, by name."""
    group = _open_group(role, path, options)
    with _reading(role, path):
        return group, dict(group.arrays())


def read_layout(path: str, options: Options = None) -> Layout:
    """Validate a params store's metadata and return its flat layout (reads no data).

    The group attribute ``order`` fixes the flattening order and must name every
    array once; without it, names are sorted. Tensors must be float32 or float64.
    """
    group, arrays = _arrays("params", path, options)
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


def validate_data(path: str, options: Options = None) -> tuple[str, ...]:
    """Check that the data store is a readable group; return its array names."""
    group = _open_group("data", path, options)
    with _reading("data", path):
        return tuple(sorted(group.array_keys()))


def validate_gradient(path: str, layout: Layout, options: Options = None) -> None:
    """Check that a gradient store has exactly the params' names and shapes (reads no data)."""
    _, arrays = _arrays("gradient", path, options)
    mismatch = layout.name_mismatch(arrays)
    if mismatch:
        raise StoreError(f"The gradient store '{path}' must hold one array per parameter tensor: {mismatch}.")
    for spec in layout.tensors:
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
    with _reading(role, path):
        # np.require keeps 0-d tensors 0-d (np.ascontiguousarray would make them 1-d).
        return {name: np.require(np.asarray(arrays[name][...]), requirements=["C", "W"]) for name in wanted}


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
    with _reading(role, path):
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
    """Write ``arrays`` as a new Zarr group at ``path`` (replacing one that is there)."""
    group = zarr.open_group(store=path, mode="w", attributes=dict(attrs or {}), **_opened(path, options))
    for name, array in arrays.items():
        group.create_array(name, data=np.asarray(array))


# -- the output group --------------------------------------------------------


class OutputArrays:
    """A worker's handles on the output arrays it writes."""

    def __init__(self, path: str, options: Options = None) -> None:
        with _reading("output", path):
            opened = {
                name: zarr.open_array(store=path, path=name, mode="r+", **_opened(path, options))
                for name in (*PER_INDEX, "done")
            }
        self.analytic, self.numeric, self.nonfinite = opened["analytic"], opened["numeric"], opened["nonfinite"]
        self.allowed, self.status, self.step, self.done = (
            opened["allowed"],
            opened["status"],
            opened["step"],
            opened["done"],
        )
        self.per_index = tuple(opened[name] for name in PER_INDEX)


#: The arrays over the index space, in the order :func:`pipeline.reduce.summarize_shard` takes them:
#: the analytic and numeric gradients, which side had a non-finite loss (1 plus, 2 minus, 3 both),
#: how far apart analytic and numeric may be, the element's verdict (see
#: :mod:`pipeline.tolerance`), and the step taken.
PER_INDEX = ("analytic", "numeric", "nonfinite", "allowed", "status", "step")
_PER_INDEX_TYPES = {
    "analytic": ("float64", np.nan),
    "numeric": ("float64", np.nan),
    "nonfinite": ("int8", 0),
    "allowed": ("float64", np.nan),
    "status": ("int8", 3),
    "step": ("float64", np.nan),
}


def completed_shards(path: str, options: Options = None) -> np.ndarray:
    """Indices of the shards whose chunks are written (their ``done`` marker is set)."""
    with _reading("output", path):
        done = np.asarray(zarr.open_array(store=path, path="done", mode="r", **_opened(path, options))[:])
    return np.flatnonzero(done)


def read_output_attrs(path: str, options: Options = None) -> dict[str, Any]:
    """The attributes of a gradcheck output group; refuses anything else."""
    group = _open_group("output", path, options)
    with _reading("output", path):
        attrs = dict(group.attrs)
    meta = attrs.get("gradcheck")
    if not isinstance(meta, Mapping) or "format_version" not in meta:
        raise StoreError(f"'{path}' is a Zarr group but not a gradcheck output.")
    if not isinstance(meta["format_version"], int) or meta["format_version"] > FORMAT_VERSION:
        raise StoreError(
            f"The output '{path}' has format version {meta['format_version']}; this gradcheck reads up to {FORMAT_VERSION}. Upgrade gradcheck."
        )
    return attrs


def _existing_output(path: str, options: Options) -> dict[str, Any] | None:
    """Attributes of the gradcheck output at ``path``; None if nothing is there; raises if something else is."""
    foreign = OutputExistsError(f"The output '{path}' exists and is not a gradcheck output; choose another `output`.")
    try:
        group = zarr.open_group(store=path, mode="r", **_opened(path, options))
    except (FileNotFoundError, zarr.errors.NodeNotFoundError):
        if not is_url(path) and os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
            raise foreign from None
        return None
    except Exception as e:
        raise foreign from e
    if not isinstance(group.attrs.get("gradcheck"), Mapping):
        raise foreign
    return read_output_attrs(path, options)  # ours: a newer format's error comes through as it is


def output_shard_size(path: str, options: Options = None) -> int:
    """The shard size (= chunk size) an existing output was made with."""
    return int(read_output_attrs(path, options)["gradcheck"]["shard_size"])


def check_output(path: str, identity: str, *, overwrite: bool, options: Options = None) -> bool:
    """Check, without writing, that this run may use ``path``; return whether it resumes the run there.

    An output of the same run (same ``identity``) is resumed: finished shards
    are kept. ``overwrite`` starts afresh instead, and is required to replace
    the output of a different run. Anything that is not a gradcheck output is
    never touched.
    """
    existing = _existing_output(path, options)
    if existing is None or overwrite:
        return False
    if existing["gradcheck"].get("identity") == identity:
        return True
    raise OutputExistsError(
        f"The output '{path}' holds the result of a different check; pass --overwrite to replace it, or choose another `output`."
    )


def prepare_output(
    path: str, layout: Layout, shard_size: int, identity: str, *, overwrite: bool, options: Options = None
) -> bool:
    """Create the output group (or reuse the same run's); return whether it was created.

    Raises :class:`OutputExistsError` as :func:`check_output` does.
    """
    if check_output(path, identity, overwrite=overwrite, options=options):
        return False
    attrs: dict[str, Any] = {
        "gradcheck": {"format_version": FORMAT_VERSION, "identity": identity, "shard_size": shard_size},
        "layout": layout.to_dict(),
    }
    group = zarr.open_group(store=path, mode="w", attributes=attrs, **_opened(path, options))
    n = layout.n_params
    chunks = (max(1, min(shard_size, n)),)
    for name in PER_INDEX:
        dtype, fill = _PER_INDEX_TYPES[name]
        group.create_array(name, shape=(n,), chunks=chunks, dtype=dtype, fill_value=fill)
    # One chunk per shard, so that shards mark themselves done without locks.
    n_shards = -(-n // chunks[0])
    group.create_array("done", shape=(n_shards,), chunks=(1,), dtype="uint8", fill_value=0)
    return True


@contextmanager
def output_lock(path: str) -> Iterator[None]:
    """Hold ``<output>.lock`` for the duration of a run: one run writes an output at a time.

    A lock left by a process that is gone (on this host) is taken over; any
    other is refused. Remote (URL) outputs are not locked.
    """
    if is_url(path):
        yield
        return
    lock = path.rstrip("/") + ".lock"
    record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _lock_holder(lock)
            if holder is not None:
                raise OutputExistsError(
                    f"The output '{path}' is being written by another gradcheck run "
                    f"(pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('started')}); "
                    f"wait for it, or remove '{lock}' if that run is gone."
                ) from None
            with suppress(FileNotFoundError):  # stale: its process is gone (another run may remove it first)
                os.unlink(lock)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(record, f)
        break
    else:  # every attempt lost a race for a stale lock to another run: never proceed unlocked
        raise OutputExistsError(f"The output '{path}' is being taken by another gradcheck run; try again.")
    try:
        yield
    finally:
        os.unlink(lock)


def lock_held(path: str) -> bool | None:
    """Whether a live run holds ``<output>.lock``: None for a remote output, which is not locked."""
    if is_url(path):
        return None
    lock = path.rstrip("/") + ".lock"
    return os.path.exists(lock) and _lock_holder(lock) is not None


def _lock_holder(lock: str) -> dict[str, Any] | None:
    """Who holds ``lock``, or None when it was left by a process that is gone from this host."""
    try:
        with open(lock, encoding="utf-8") as f:
            holder: dict[str, Any] = json.load(f)
    except (OSError, ValueError):
        return {"pid": "?", "host": "?", "started": "?"}  # being written right now, or unreadable: respect it
    if holder.get("host") == socket.gethostname():
        try:
            os.kill(int(holder["pid"]), 0)
        except ProcessLookupError:
            return None
        except (PermissionError, KeyError, TypeError, ValueError):
            pass  # alive but not ours, or unreadable: respect it
    return holder


def remove_output(path: str, options: Options = None) -> None:
    """Remove an output this run created."""
    if not is_url(path):
        shutil.rmtree(path, ignore_errors=True)
        return
    import fsspec

    fs, root = fsspec.core.url_to_fs(path, **dict(options or {}))
    with suppress(FileNotFoundError):
        fs.rm(root, recursive=True)


def update_attrs(path: str, attrs: Mapping[str, Any], options: Options = None) -> None:
    """Set top-level attributes of an output group (the run's progress, state, report and config)."""
    with _reading("output", path):
        zarr.open_group(store=path, mode="r+", **_opened(path, options)).attrs.update(dict(attrs))
