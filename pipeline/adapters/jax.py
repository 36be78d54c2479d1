"""A JAX loss and its parameter pytree as a gradcheck model.

    model = JaxModel(loss_fn, params)     # loss_fn(params_pytree, data) -> scalar
    pipeline.check(model, model.params, data)

The tensors are the pytree's leaves, named by their key paths joined with ``/`` (``layers/0/w``),
in the pytree's flattening order. ``grad`` is ``jax.grad(loss_fn)``, so a ``custom_vjp`` or
``custom_jvp`` rule is what is checked. float64 parameters (``precision: float64``) are evaluated
with x64 enabled for the call only; floating data is cast to the parameters' dtype.

Perturbations of one tensor are evaluated in one jitted call. On a CPU that is a loop
(``lax.map``) over the perturbations: XLA hoists out of the loop whatever does not depend on the
perturbed tensor (measured faster here than ``vmap``, whose batched matrix products are slow on a
CPU). A tensor the loss uses only in matrix products (a layer's weights) is moved in that loop without
a copy of it: each product gets the moved element's term (:mod:`.jax_linear`). On a 256x256 layer of a
small MLP a perturbation then took about 1.6 µs here instead of 12-15 µs, most of which was the copy.
Each tensor's first such loss is held to one plain call; beyond rounding, that tensor is copied instead. On a GPU or TPU it is ``vmap``. Calls are padded to two fixed
sizes, so each tensor compiles at most twice; a call of a few rows (a second look) is one jitted
loss call per row. A tensor whose batched call fails (a ``pure_callback`` without a ``vmap_method``
under ``vmap``) falls back to one jitted loss call per perturbation, and the report says so.
"""

from __future__ import annotations

import contextlib
import functools
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import ModelError
from . import AGREE_ULPS, DropsData, first_sentence, flat_rows, parameter_dtype, same_data
from .jax_linear import moved_loss

__all__ = ["JaxModel"]

Arrays = dict[str, np.ndarray]
#: What jax raises for a loss that cannot be traced under jax.jit (Python control flow on values, numpy on a tracer).
UNJITTABLE = (
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerArrayConversionError,
    jax.errors.TracerIntegerConversionError,
)
#: The sizes a batched call is padded to (the most a call evaluates is the last)...
SIZES = (32, 256)
#: ...above this many rows; fewer (a second look, the probe) are one jitted loss call each: no compilation...
FEW = 8
#: ...and so are all perturbations of a tensor smaller than this: compiling its loop (0.1-0.3 s for a small MLP
#: here) costs more than the per-call overhead it saves over a whole check of the tensor.
SMALL = 1024


class JaxModel(DropsData):
    """``loss_fn(params, data) -> scalar`` on a pytree of parameters, as a model.

    Parameters
    ----------
    loss_fn : callable
        ``loss_fn(params, data)``: ``params`` a pytree like the one given, ``data`` the data
        store's arrays (by name) as jax arrays. Must be jittable and deterministic.
    params : pytree
        The parameters at which the check is made (dicts, lists, tuples of arrays...).
    device : str, optional
        ``"cpu"``, ``"gpu"`` or ``"tpu"``: the platform the loss runs on (default: jax's default).
    batch : str
        ``"auto"`` (default: ``loop`` on a CPU, ``vmap`` on an accelerator), ``"loop"``, ``"vmap"``
        or ``"off"`` (one jitted call per perturbation).

    Attributes
    ----------
    params : dict of str to ndarray
        The leaves as numpy arrays, by key path, in flattening order.
    evaluation : str
        How perturbations are evaluated, as the report says.
    """

    def __init__(
        self, loss_fn: Callable[[Any, Any], Any], params: Any, *, device: str | None = None, batch: str = "auto"
    ) -> None:
        if not callable(loss_fn):
            raise ModelError(f"JaxModel needs loss_fn(params, data). Got {type(loss_fn).__name__} instead.")
        if batch not in ("auto", "loop", "vmap", "off"):
            raise ModelError(f"JaxModel: batch must be one of auto, loop, vmap, off. Got {batch!r} instead.")
        leaves, self._treedef = jax.tree_util.tree_flatten_with_path(params)
        if not leaves:
            raise ModelError("JaxModel: the parameter pytree has no leaves to check.")
        self.params: Arrays = {}
        for path, leaf in leaves:
            name = jax.tree_util.keystr(path, simple=True, separator="/") or "params"
            self.params[name] = np.array(leaf)
        if len(self.params) != len(leaves):
            raise ModelError("JaxModel: two leaves of the parameter pytree have the same key path.")
        self.loss_fn = loss_fn
        self.device = device
        self.batch = batch
        self._names = tuple(self.params)
        # Which compiled code this model's calls share: its own copies (pickled to a worker, one per task)
        # reuse it; a model made again traces loss_fn again, so that it sees what its rules are now.
        self._made = uuid.uuid4().hex
        self._unbatched: dict[str, str] = {}  # tensors the batched call cannot run the loss for, and why
        self._copied: set[str] = set()  # tensors whose loss moved through their products differs from a plain call's
        self._agreed: set[str] = set()  # tensors whose first batched loss agreed with one plain call
        self._data: tuple[Any, np.dtype, dict[str, Any]] | None = None
        if batch != "off":  # the core's batched path; without it, one `loss` call per perturbation
            self.perturbed_losses = self._perturbed_losses

    @property
    def _platform(self) -> str:
        return self.device or jax.default_backend()

    @property
    def _mode(self) -> str:
        if self.batch == "auto":
            return "loop" if self._platform == "cpu" else "vmap"
        return self.batch

    @property
    def evaluation(self) -> str:
        how = "loop (lax.map) over" if self._mode == "loop" else "vmap of"
        said = (
            f"batched: one jitted {how} each tensor's perturbations (up to {SIZES[-1]} a call), on {self._platform}; "
            f"one jitted loss call each for tensors of fewer than {SMALL} elements"
        )
        if self._copied:
            said += (
                f"; {', '.join(sorted(self._copied))} copied at each perturbation "
                "(the loss moved through its products differs from a plain call's)"
            )
        if self._unbatched:
            reasons = "; ".join(sorted(set(self._unbatched.values())))
            said += f" and for {', '.join(self._unbatched)} (the batched call cannot run the loss there: {reasons})"
        return said

    # The model protocol -------------------------------------------------------------------------------

    def loss(self, params: Arrays, data: Arrays) -> float:
        with self._running(params) as dtype:
            value = _loss(self.loss_fn, self._treedef, self._made)(self._leaves(params), self._inputs(data, dtype))
            return _scalar(value)

    def grad(self, params: Arrays, data: Arrays) -> Arrays:
        with self._running(params) as dtype:
            value, grads = _grad(self.loss_fn, self._treedef, self._made)(
                self._leaves(params), self._inputs(data, dtype)
            )
            _scalar(value)
        return {name: np.asarray(g, dtype=np.float64) for name, g in zip(self._names, grads, strict=True)}

    def _perturbed_losses(
        self, params: Arrays, data: Arrays, name: str, positions: np.ndarray, values: np.ndarray
    ) -> np.ndarray:
        """``perturbed_losses`` (offered unless ``batch="off"``): the losses with element ``positions[j]`` of tensor ``name`` set to ``values[j, s]``, one at a time."""
        at, to = flat_rows(positions, values)
        tensor = self._names.index(name)
        with self._running(params) as dtype:
            leaves, inputs = self._leaves(params), self._inputs(data, dtype)
            if at.size > FEW and params[name].size >= SMALL and name not in self._unbatched:
                try:
                    return self._batched(params, leaves, inputs, tensor, at, to).reshape(values.shape)
                except Exception as e:  # the batched call cannot run this loss: the loop below can (or says why not)
                    self._unbatched[name] = first_sentence(e)
            out = self._plain(params, leaves, inputs, tensor, at, to)
        return out.reshape(values.shape)

    def _plain(
        self, params: Arrays, leaves: list[Any], inputs: Any, tensor: int, at: np.ndarray, to: np.ndarray
    ) -> np.ndarray:
        """The losses of rows ``(at, to)`` of leaf ``tensor``, one jitted loss call each on a copy of the leaf."""
        loss = _loss(self.loss_fn, self._treedef, self._made)
        flat, out, leaves = np.array(params[self._names[tensor]]), np.empty(at.size), list(leaves)
        for r in range(at.size):
            moved = flat.copy()
            moved.reshape(-1)[at[r]] = to[r]
            leaves[tensor] = self._put(moved)
            out[r] = _scalar(loss(leaves, inputs))
        return out

    def _batched(
        self, params: Arrays, leaves: list[Any], inputs: Any, tensor: int, at: np.ndarray, to: np.ndarray
    ) -> np.ndarray:
        """The losses of rows ``(at, to)`` of leaf ``tensor`` in jitted calls of fixed sizes (lax.map or vmap).

        A tensor's first row is held once to one plain call: where it moved through its products (a loop on a
        CPU) and the two differ beyond rounding, that tensor is copied per row instead, and the report says so."""
        name = self._names[tensor]
        mode = "copy" if self._mode == "loop" and name in self._copied else self._mode
        rows = _rows(self.loss_fn, self._treedef, self._made, tensor, mode)
        parts = []
        for first in range(0, at.size, SIZES[-1]):
            chunk = slice(first, first + SIZES[-1])
            size = next(s for s in SIZES if s >= at[chunk].size)
            pad = size - at[chunk].size  # padded with the first row again: a fixed shape compiles once
            where = np.concatenate([at[chunk], np.repeat(at[chunk][:1], pad)])
            value = np.concatenate([to[chunk], np.repeat(to[chunk][:1], pad)]).astype(params[name].dtype)
            out = np.asarray(rows(leaves, self._put(where), self._put(value), inputs), dtype=np.float64)
            if out.shape != (size,):
                raise ValueError(f"the loss has shape {out.shape[1:]} there")
            if mode == "loop" and name not in self._agreed:
                plain = self._plain(params, leaves, inputs, tensor, at[:1], to[:1])[0]
                # not `> tol`: a NaN where the plain call has a number must copy too (NaN > tol is False)
                if not abs(out[0] - plain) <= AGREE_ULPS * np.finfo(params[name].dtype).eps * abs(plain):
                    self._copied.add(name)
                    return self._batched(params, leaves, inputs, tensor, at, to)
                self._agreed.add(name)
            parts.append(out[: at[chunk].size])
        return np.concatenate(parts)

    # Internals ------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _running(self, params: Arrays) -> Iterator[np.dtype]:
        """x64 enabled for float64 parameters (for this call only); yields the parameters' dtype."""
        dtype = parameter_dtype(params)
        try:
            with jax.enable_x64(True) if dtype == np.float64 else contextlib.nullcontext():
                yield dtype
        except UNJITTABLE as e:  # jax's own text runs to several lines and names this module's lambda
            raise ModelError(
                f"JaxModel: loss_fn must be jittable (it is evaluated under jax.jit): {first_sentence(e)}."
            ) from e

    def _put(self, array: np.ndarray) -> Any:
        """``array`` on the chosen device; on the default one, as it is: a jitted call takes numpy arrays
        (jax.device_put costs 3x a small jitted MLP's whole call per array, measured here)."""
        return jax.device_put(array, jax.devices(self.device)[0]) if self.device else array

    def _leaves(self, params: Arrays) -> list[Any]:
        return [self._put(np.asarray(params[name])) for name in self._names]

    def _inputs(self, data: Arrays, dtype: np.dtype) -> dict[str, Any]:
        """The data as jax arrays, floating arrays in ``dtype``; made once per data and dtype."""
        if self._data is None or not same_data(self._data[0], data) or self._data[1] != dtype:
            inputs = {}
            for key, array in data.items():
                array = np.asarray(array)
                inputs[key] = self._put(array.astype(dtype) if np.issubdtype(array.dtype, np.floating) else array)
            self._data = (dict(data), dtype, inputs)
        return self._data[2]


def _scalar(value: Any) -> float:
    array = np.asarray(value)
    if array.shape != ():
        raise ModelError(f"JaxModel: loss_fn must return a scalar. Got shape {array.shape} instead.")
    if not np.issubdtype(array.dtype, np.floating):  # as TorchModel's, before jax.grad's longer message
        raise ModelError(
            f"JaxModel: loss_fn must return a real floating-point scalar. Got dtype {array.dtype} instead."
        )
    return float(array)


# The jitted functions, one per (loss_fn, pytree structure, model made): a model's copies (unpickled on a
# worker, for each task) reuse the compiled code of the one before; a JaxModel made again in the same process
# traces again. Caching by loss_fn alone kept a rule's old code (a custom_vjp rule redefined, a flag the loss
# reads) for a new model of the same loss_fn: it checked the rule as it had been.
CACHED = 64


@functools.lru_cache(maxsize=CACHED)
def _loss(loss_fn: Callable[[Any, Any], Any], treedef: Any, made: str) -> Callable[[list[jax.Array], Any], jax.Array]:
    return jax.jit(lambda leaves, data: loss_fn(jax.tree_util.tree_unflatten(treedef, leaves), data))


@functools.lru_cache(maxsize=CACHED)
def _grad(loss_fn: Callable[[Any, Any], Any], treedef: Any, made: str) -> Callable[[list[jax.Array], Any], Any]:
    return jax.jit(
        jax.value_and_grad(lambda leaves, data: loss_fn(jax.tree_util.tree_unflatten(treedef, leaves), data))
    )


@functools.lru_cache(maxsize=4 * CACHED)
def _rows(
    loss_fn: Callable[[Any, Any], Any], treedef: Any, made: str, tensor: int, mode: str
) -> Callable[..., jax.Array]:
    """The losses with element ``at[r]`` of leaf ``tensor`` set to ``to[r]``, one row at a time."""

    def loss_with(leaves: list[jax.Array], leaf: jax.Array, data: Any) -> jax.Array:
        return loss_fn(jax.tree_util.tree_unflatten(treedef, [*leaves[:tensor], leaf, *leaves[tensor + 1 :]]), data)

    def looped(leaves: list[jax.Array], at: jax.Array, to: jax.Array, data: Any) -> jax.Array:
        leaf = leaves[tensor]
        flat, structure = jax.tree_util.tree_flatten((leaves, leaf, data))
        moved = None
        if mode == "loop":  # not "copy": a tensor whose products gave another loss than a plain call
            moved = moved_loss(lambda *a: loss_with(*jax.tree_util.tree_unflatten(structure, a)), flat, len(leaves))

        def one(row: tuple[jax.Array, jax.Array]) -> jax.Array:
            k, value = row
            if moved is not None:  # no copy of the leaf: its products get the moved element's term (jax_linear)
                return moved(flat, jnp.unravel_index(k, leaf.shape), value - leaf.reshape(-1)[k])
            # a fresh copy per row, indexed by the element's multi-index: on a CPU this ran a 256x256 layer's
            # perturbations 2.7x faster per row than setting and restoring the element of a carried flat copy
            return loss_with(leaves, leaf.at[jnp.unravel_index(k, leaf.shape)].set(value), data)

        losses: jax.Array = jax.lax.map(one, (at, to))
        return losses

    def mapped(leaves: list[jax.Array], at: jax.Array, to: jax.Array, data: Any) -> jax.Array:
        leaf = leaves[tensor]

        def one(k: jax.Array, value: jax.Array) -> jax.Array:
            return loss_with(leaves, leaf.at[jnp.unravel_index(k, leaf.shape)].set(value), data)

        losses: jax.Array = jax.vmap(one)(at, to)
        return losses

    return jax.jit(mapped if mode == "vmap" else looped)
