"""The output group: per-index arrays chunked on shard boundaries, completion markers, a lock, attributes.

It holds ``numeric`` and ``analytic`` (flat float64, chunked on shard
boundaries, NaN where nothing was written yet), the other per-index arrays of
:data:`PER_INDEX`, a ``done`` marker per shard and, in its attributes, the
layout, the resolved config, the run's progress and state, and the report.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr
import zarr.errors

from ..errors import OVERWRITE, OutputExistsError, StoreError, StoreNotFoundError
from ..numerics.layout import Layout
from ..numerics.plan import Slots, make_plan, slots_for
from ..numerics.shards import shard_intact
from ..numerics.tolerance import NONDIFFERENTIABLE, TOGETHER
from . import Options, is_url
from .access import open_group, opened, reading, remove_group, writing

__all__ = [
    "FORMAT_VERSION",
    "KINKS_SINCE",
    "PER_INDEX",
    "SEALED_SINCE",
    "OutputArrays",
    "Verified",
    "check_output",
    "completed_shards",
    "lock_held",
    "lock_holder",
    "output_lock",
    "output_shard_size",
    "output_slots",
    "prepare_output",
    "read_output_attrs",
    "refuse_if_locked",
    "remove_output",
    "update_attrs",
    "verify",
]

#: Version of the output group's format; readers refuse newer ones. 3: ``done`` holds each shard's
#: seal (see :func:`pipeline.numerics.shards.shard_seal`) instead of 1. 4: a sampled run (or one of random
#: directions only) keeps only the elements it checks (``index`` holds their global indices), not arrays
#: over the whole index space.
FORMAT_VERSION = 5
#: The first format whose shards carry seals to verify them by.
SEALED_SINCE = 3
#: The first format with ``kink`` (what the second look found of each kink's slopes: the kinks are moved together
#: once every shard is done, :mod:`pipeline.numerics.together`); an older run is resumed with its shards that hold a
#: kink computed again (:func:`record_kinks`).
KINKS_SINCE = 5


class OutputArrays:
    """A worker's handles on the output arrays it writes."""

    def __init__(self, path: str, options: Options = None) -> None:
        self._path, self._options = path, options
        handles = {name: output_array(path, name, "r+", options) for name in (*PER_INDEX[:-1], "done")}
        self.analytic, self.numeric, self.nonfinite = handles["analytic"], handles["numeric"], handles["nonfinite"]
        self.allowed, self.status, self.step, self.done = (
            handles["allowed"],
            handles["status"],
            handles["step"],
            handles["done"],
        )
        self._six = tuple(handles[name] for name in PER_INDEX[:-1])
        self._kink: Any = None

    @property
    def kink(self) -> Any:
        """``kink``'s handle; None for an older format's output until it is resumed (:func:`record_kinks`), which
        may happen after these handles were opened."""
        if self._kink is None:
            with reading("output", self._path), suppress(FileNotFoundError, zarr.errors.NodeNotFoundError):
                self._kink = zarr.open_array(
                    store=self._path, path="kink", mode="r+", **opened(self._path, self._options)
                )
        return self._kink

    @property
    def per_index(self) -> tuple[Any, ...]:
        """The per-index arrays in :data:`PER_INDEX` order (``kink`` where there is one)."""
        return self._six if self.kink is None else (*self._six, self.kink)


#: The arrays over the index space, in the order :func:`pipeline.numerics.reduce.summarize_shard` takes them:
#: the analytic and numeric gradients, which side had a non-finite loss (1 plus, 2 minus, 3 both),
#: how far apart analytic and numeric may be, the element's verdict (see
#: :mod:`pipeline.numerics.tolerance`), the step taken, and, then, on a kink, what its second look found of its
#: slopes (:func:`pipeline.numerics.together.kink_codes`; 0 elsewhere).
PER_INDEX = ("analytic", "numeric", "nonfinite", "allowed", "status", "step", "kink")
_PER_INDEX_TYPES = {
    "analytic": ("float64", np.nan),
    "numeric": ("float64", np.nan),
    "nonfinite": ("int8", 0),
    "allowed": ("float64", np.nan),
    "status": ("int8", 3),
    "step": ("float64", np.nan),
    "kink": ("int8", 0),
}


def completed_shards(path: str, options: Options = None) -> np.ndarray:
    """Indices of the shards whose chunks are written (their ``done`` record is set; see :func:`verify`)."""
    done = output_array(path, "done", "r", options)
    with reading("output", path):
        return np.flatnonzero(np.asarray(done[:]))


def output_array(path: str, name: str, mode: str, options: Options = None) -> Any:
    """The array ``name`` of the output group at ``path``; one that is missing from the group (an output copied or
    synced in part) is named, with what to do, rather than the group said not to exist (review 122)."""
    try:
        with reading("output", path):
            return zarr.open_array(store=path, path=name, mode=mode, **opened(path, options))
    except StoreNotFoundError:
        open_group("output", path, options)  # the group itself missing: that error, as it is
        raise StoreError(
            f"The output '{path}' lacks its array '{name}' (copied or synced in part?): run the check again and "
            f"pass {OVERWRITE} to compute it afresh."
        ) from None


def read_output_attrs(path: str, options: Options = None) -> dict[str, Any]:
    """The attributes of a gradcheck output group; refuses anything else."""
    group = open_group("output", path, options)
    with reading("output", path):
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
        group = zarr.open_group(store=path, mode="r", **opened(path, options))
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


#: What each part of a run's identity is, as a refusal names it.
_PARTS = {
    "model": "the model reference",
    "params": "the params store's contents",
    "data": "the data store's contents",
    "gradient": "the gradient store",
    "shard_size": "the shard size",
}


def check_output(
    path: str,
    identity: str,
    *,
    sampled: bool,
    overwrite: bool,
    options: Options = None,
    parts: Mapping[str, str] | None = None,
) -> bool:
    """Check, without writing, that this run may use ``path``; return whether it resumes the run there.

    An output of the same run (same ``identity``) is resumed: finished shards
    are kept. ``overwrite`` starts afresh instead, and is required to replace
    the output of a different run. Anything that is not a gradcheck output is
    never touched; a refusal names what differs from the ``parts`` the output's run recorded.
    ``sampled`` says whether this run keeps only the elements it checks (its layout since
    format 4): a sampled run of an older format, with arrays over every index, is not resumed.
    """
    existing = _existing_output(path, options)
    if existing is None or overwrite:
        return False
    if existing["gradcheck"].get("identity") == identity:
        version = existing["gradcheck"]["format_version"]
        if version < SEALED_SINCE:
            raise OutputExistsError(
                f"The output '{path}' was made by an older gradcheck (format {version}), "
                f"whose shards carry no record to verify them by; pass {OVERWRITE} to start it again."
            )
        if sampled and "sample" not in existing["gradcheck"]:
            raise OutputExistsError(
                f"The output '{path}' holds an interrupted sampled run made by an older gradcheck (format {version}), "
                "whose arrays span every parameter; this one keeps only the elements it checks. "
                f"Pass {OVERWRITE} to start it again."
            )
        return True
    earlier = existing.get("identity_parts")
    differ = ""
    if parts and isinstance(earlier, Mapping) and earlier:  # outputs made before it was recorded have none
        named = [_PARTS.get(name, f"`{name}`") for name, value in parts.items() if earlier.get(name) != value]
        differ = f" (what differs: {', '.join(named)})" if named else ""
    raise OutputExistsError(
        f"The output '{path}' holds the result of a different check{differ}; pass {OVERWRITE} to replace it, "
        "or choose another `output`."
    )


def prepare_output(
    path: str,
    layout: Layout,
    slots: Slots,
    shard_size: int,
    identity: str,
    *,
    overwrite: bool,
    options: Options = None,
) -> bool:
    """Create the output group (or reuse the same run's); return whether it was created.

    Its arrays hold one element per slot (:class:`~pipeline.numerics.plan.Slots`): the whole index space for a full run, only the checked elements for a sampled one.
    Raises :class:`OutputExistsError` as :func:`check_output` does.
    """
    if check_output(path, identity, sampled=slots.checked is not None, overwrite=overwrite, options=options):
        if slots.checked is not None:
            _same_sample(path, layout, slots, options)
        return False
    attrs: dict[str, Any] = {
        "gradcheck": {
            "format_version": FORMAT_VERSION,
            "identity": identity,
            "shard_size": shard_size,
            "sample": None if slots.sample is None else list(slots.sample),
        },
        "layout": layout.to_dict(),
    }
    # Made aside and moved into place on a local disk: a full disk or an interrupt never leaves a
    # half-made group at `path` (zarr may still finish a write after the error, so the leftovers are
    # removed where they can do no harm).
    where = path if is_url(path) else f"{path.rstrip('/')}.partial-{os.getpid()}"
    try:
        _create_arrays(where, layout, slots, shard_size, attrs, options)
    except BaseException:
        remove_output(where, options)
        raise
    if where != path:
        remove_output(path, options)  # what check_output allowed to be replaced
        os.rename(where, path)
    return True


def record_kinks(path: str, options: Options = None) -> None:
    """An older format's output made ready to resume (the run's checks passed): a ``kink`` array (none recorded),
    and its shards holding an element on a kink to be computed again, as their kinks' slopes were not kept (the
    others keep their seals, which count ``kink`` only where a shard has one:
    :func:`pipeline.numerics.shards.shard_seal`). Nothing to do for format 5 on."""
    if read_output_attrs(path, options)["gradcheck"]["format_version"] >= KINKS_SINCE:
        return
    group = zarr.open_group(store=path, mode="r+", **opened(path, options))
    status = zarr.open_array(store=path, path="status", mode="r", **opened(path, options))
    done = zarr.open_array(store=path, path="done", mode="r+", **opened(path, options))
    if "kink" not in group:
        group.create_array("kink", shape=status.shape, chunks=status.chunks, dtype="int8", fill_value=0)
    size = status.chunks[0]
    marks = np.asarray(done[:])
    for k in np.flatnonzero(marks):
        if np.any(np.isin(np.asarray(status[k * size : (k + 1) * size]), (NONDIFFERENTIABLE, TOGETHER))):
            done[int(k)] = 0
    meta = read_output_attrs(path, options)["gradcheck"]
    update_attrs(path, {"gradcheck": {**meta, "format_version": FORMAT_VERSION}}, options)


def _create_arrays(
    path: str, layout: Layout, slots: Slots, shard_size: int, attrs: dict[str, Any], options: Options
) -> None:
    n = slots.size
    chunks = (max(1, min(shard_size, n)),)
    group = zarr.open_group(store=path, mode="w", attributes=attrs, **opened(path, options))
    for name in PER_INDEX:
        dtype, fill = _PER_INDEX_TYPES[name]
        group.create_array(name, shape=(n,), chunks=chunks, dtype=dtype, fill_value=fill)
    # One chunk per shard, so that shards mark themselves done without locks.
    group.create_array("done", shape=(-(-n // chunks[0]),), chunks=(1,), dtype="int64", fill_value=0)
    if slots.checked is not None:  # which element each slot holds: the output says what was checked
        index = group.create_array("index", shape=(n,), chunks=chunks, dtype="int64", fill_value=-1)
        index[:] = slots.indices(layout, 0, n)


def _same_sample(path: str, layout: Layout, slots: Slots, options: Options) -> None:
    """Refuse to resume a sampled run whose stored ``index`` names other elements than this run's sample: its
    shards are of other elements (another NumPy may draw another sample from the same seed), or the index
    was damaged; either way, mixing them with this run's would mislabel them."""
    if not np.array_equal(_stored_index(path, options), slots.indices(layout, 0, slots.size)):
        raise OutputExistsError(
            f"The output '{path}' holds an interrupted sampled run whose `index` names other elements than this "
            "run's sample (drawn by another NumPy, or damaged): its shards cannot be resumed. "
            f"Pass {OVERWRITE} to start it again."
        )


def _stored_index(path: str, options: Options) -> np.ndarray:
    """A sampled output's ``index`` array as stored; empty where it is missing or cannot be decoded (as
    different from any sample as can be). A store that cannot be reached (``OSError``) is raised."""
    try:
        with reading("output", path):
            return np.asarray(zarr.open_array(store=path, path="index", mode="r", **opened(path, options))[:])
    except OSError:
        raise
    except Exception:
        return np.empty(0, dtype=np.int64)


#: fsspec protocols whose ``pipe_file(mode="create")`` is one atomic conditional create.
ATOMIC_CREATE = frozenset({"s3", "s3a"})


def _protocols(fs: Any) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


class _LockFile:
    """``<output>.lock``: on the local disk, or an object in the output's object store."""

    def __init__(self, output: str, options: Options = None) -> None:
        self.path = output.rstrip("/") + ".lock"
        self.fs: Any = None
        if is_url(output):
            import fsspec

            self.fs, self.key = fsspec.core.url_to_fs(self.path, **dict(options or {}))

    def create(self, record: bytes) -> bool:
        """Create the lock holding ``record``, only if it does not exist; whether this call created it."""
        if self.fs is None:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(record)
            except BaseException:  # a full disk: an empty lock would read as held forever
                os.unlink(self.path)
                raise
            return True
        if not set(_protocols(self.fs)) & ATOMIC_CREATE:
            raise OutputExistsError(
                f"The output '{self.path[: -len('.lock')]}' is on a filesystem ({'/'.join(_protocols(self.fs))}) that "
                "cannot create a file only if it does not exist, so two runs could write it at once; choose an "
                "output on a local disk or on S3."
            )
        try:  # a conditional create (S3's If-None-Match: *): of two runs, exactly one succeeds
            self.fs.pipe_file(self.key, record, mode="create")
        except FileExistsError:
            return False
        except OSError as e:
            if e.errno == errno.EBUSY:  # S3's 409: another conditional create of the same key is under way
                return False
            raise
        # A store that ignores the condition lets a second run replace the first's lock: see who holds it.
        return bool(self.fs.cat_file(self.key) == record)

    def read(self) -> bytes | None:
        """The lock's record; None when there is no lock."""
        try:
            if self.fs is None:
                with open(self.path, "rb") as f:
                    return f.read()
            return bytes(self.fs.cat_file(self.key))
        except FileNotFoundError:
            return None

    def remove(self) -> None:
        with suppress(FileNotFoundError):
            if self.fs is None:
                os.unlink(self.path)
            else:
                self.fs.rm(self.key)


@contextmanager
def output_lock(path: str, options: Options = None) -> Iterator[None]:
    """Hold ``<output>.lock`` for the duration of a run: one run writes an output at a time.

    On a local disk the lock is a file created exclusively; in an object store, an object
    created only if absent (S3's conditional put). A lock left by a process that is gone (on
    this host) is taken over; any other is refused.
    """
    record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    with writing(path):
        lock = _LockFile(path, options)
        for _ in range(3):
            if lock.create(json.dumps(record).encode()):
                break
            holder = _lock_holder(lock)
            if holder is not None:
                raise _being_written(path, lock, holder)
            lock.remove()  # stale: its process is gone (another run may remove it first)
        else:  # every attempt lost a race for a stale lock to another run: never proceed unlocked
            raise OutputExistsError(f"The output '{path}' is being taken by another gradcheck run; try again.")
    try:
        yield
    finally:
        lock.remove()


def _being_written(path: str, lock: _LockFile, holder: Mapping[str, Any]) -> OutputExistsError:
    return OutputExistsError(
        f"The output '{path}' is being written by another gradcheck run ({_who(holder)}); "
        f"wait for it, or remove '{lock.path}' if that run is gone."
    )


def _who(holder: Mapping[str, Any]) -> str:
    """A lock's holder, as the messages name it."""
    return f"pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('started')}"


def refuse_if_locked(path: str, options: Options = None) -> None:
    """Refuse, naming the holder, an output that a live run holds the lock of."""
    lock = _LockFile(path, options)
    holder = _lock_holder(lock)
    if holder is not None:
        raise _being_written(path, lock, holder)


def lock_held(path: str, options: Options = None) -> bool:
    """Whether a live run holds ``<output>.lock``."""
    return lock_holder(path, options) is not None


def lock_holder(path: str, options: Options = None) -> str | None:
    """Who holds ``<output>.lock`` (``pid … on host, since …``); None where no live run does."""
    holder = _lock_holder(_LockFile(path, options))
    return None if holder is None else _who(holder)


def _lock_holder(lock: _LockFile) -> dict[str, Any] | None:
    """Who holds ``lock``; None when there is none, or it was left by a process that is gone from this host."""
    text = lock.read()
    if text is None:
        return None
    try:
        holder: dict[str, Any] = json.loads(text)
    except ValueError:
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
    remove_group(path, options)


def update_attrs(path: str, attrs: Mapping[str, Any], options: Options = None) -> None:
    """Set top-level attributes of an output group (the run's progress, state, report and config).

    On a local disk the group's metadata is replaced atomically (written beside it, then renamed):
    a full disk must not leave a truncated ``zarr.json``, which would make the output, with its
    identity and every finished shard, unreadable. An object store's put is atomic already.
    """
    if is_url(path):
        with reading("output", path):
            zarr.open_group(store=path, mode="r+", **opened(path, options)).attrs.update(dict(attrs))
        return
    metadata = os.path.join(path, "zarr.json")
    with reading("output", path), open(metadata, encoding="utf-8") as f:
        document = json.load(f)
    document["attributes"] = {**document.get("attributes", {}), **attrs}
    fd, partial = tempfile.mkstemp(prefix="zarr.json.", suffix=".partial", dir=path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(document, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, metadata)
    finally:
        with suppress(FileNotFoundError):
            os.unlink(partial)


class StoredOutput:
    """A run's output group at ``path``, as the driver uses it (see :mod:`pipeline.execution.driver`)."""

    def __init__(self, path: str, options: Options = None) -> None:
        self.path, self.options = path, options
        self._arrays: OutputArrays | None = None

    def __str__(self) -> str:
        return f"'{self.path}'"

    def shard_size(self) -> int:
        """The shard size an existing output was made with."""
        return output_shard_size(self.path, self.options)

    def completed(self) -> frozenset[int]:
        """The shards an earlier run completed."""
        return frozenset(int(k) for k in completed_shards(self.path, self.options))

    def create(self, layout: Layout, slots: Slots, shard_size: int, identity: str, *, overwrite: bool) -> bool:
        """Create the group (or reuse the same run's); whether it was created."""
        return prepare_output(self.path, layout, slots, shard_size, identity, overwrite=overwrite, options=self.options)

    def remove(self) -> None:
        """Remove the group this run created."""
        remove_output(self.path, self.options)

    def ready_to_resume(self) -> None:
        """An older format's output made ready to resume (:func:`record_kinks`)."""
        record_kinks(self.path, self.options)

    def record(self, attrs: Mapping[str, Any]) -> None:
        """Set top-level attributes (progress, state, report)."""
        update_attrs(self.path, attrs, self.options)

    def recorded(self, key: str) -> Any:
        """A top-level attribute an earlier run recorded (None if it did not)."""
        return read_output_attrs(self.path, self.options).get(key)

    def size_bytes(self) -> int:
        """The output's size: its files' bytes on a local disk (0 in an object store: not measured)."""
        if is_url(self.path):
            return 0
        return sum(
            os.path.getsize(os.path.join(folder, name)) for folder, _, names in os.walk(self.path) for name in names
        )

    @property
    def arrays(self) -> OutputArrays:
        """Handles on the arrays (opened on first use: the group is created after the probe)."""
        if self._arrays is None:
            self._arrays = OutputArrays(self.path, self.options)
        return self._arrays


def output_slots(meta: Mapping[str, Any]) -> Slots:
    """The slots of an output, from its attributes (format 3 outputs span the whole index space)."""
    sample = meta["gradcheck"].get("sample")
    return slots_for(Layout.from_dict(meta["layout"]), None if sample is None else (int(sample[0]), int(sample[1])))


@dataclass(frozen=True, slots=True)
class Verified:
    """What :func:`verify` found: how many shards the output records as done, and which of them fail."""

    shards: int
    done: int
    corrupt: tuple[int, ...]


def verify(path: str, options: Options = None) -> Verified:
    """Read back every shard the output records as done and check it against its seal.

    A shard fails when a chunk cannot be decoded, is missing, or holds other values than the
    shard wrote (see :func:`pipeline.numerics.shards.shard_seal`); resuming the run computes it again.
    """
    meta = read_output_attrs(path, options)
    if meta["gradcheck"]["format_version"] < SEALED_SINCE:
        raise StoreError(f"The output '{path}' was made by an older gradcheck, whose shards carry no record to verify.")
    slots = output_slots(meta)
    plan = make_plan(slots.size, int(meta["gradcheck"]["shard_size"]))
    arrays = OutputArrays(path, options)
    with reading("output", path):
        done = np.asarray(arrays.done[:])
    identity = str(meta["gradcheck"]["identity"])
    corrupt = tuple(s.index for s in plan if done[s.index] and not shard_intact(identity, s, arrays))
    if slots.checked is not None:  # the index is not sealed: compared with the elements the sample names
        stored, expected = _stored_index(path, options), slots.indices(Layout.from_dict(meta["layout"]), 0, slots.size)
        wrong = {s.index for s in plan if not np.array_equal(stored[s.start : s.stop], expected[s.start : s.stop])}
        corrupt = tuple(sorted({*corrupt, *wrong}))
    return Verified(len(plan), int(np.count_nonzero(done)), corrupt)
