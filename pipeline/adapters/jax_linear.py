"""One element of a tensor that the loss uses only in matrix products, changed without copying the tensor.

Evaluating the loss with element ``m`` of a tensor ``W`` moved by ``δ`` costs, in a jitted loop, a copy of
``W`` per perturbation: a 256x256 float32 layer is 256 KB, and its copy took 12-19 µs on this project's CPU,
about ten times the rest of a small MLP's loss. Where every use of ``W`` in the loss is a matrix product
(``dot_general``: ``x @ W``, ``W @ x``, ``einsum``, possibly of a transpose of ``W``, possibly inside a nested
``jit``, ``custom_jvp`` or ``custom_vjp`` function), the product is linear in ``W``:

    x·(W + δ·e_m) = x·W + δ·(x·e_m)

``x·W`` is the same for every perturbation (XLA computes it once, outside the loop, when ``x`` does not depend
on ``W``), and ``x·e_m`` is one slice of ``x`` placed in one row or column of the product: no copy of ``W``.
The rest of the loss is evaluated as traced, primitive by primitive. A ``custom_vjp``/``custom_jvp``
function is evaluated by its primal (its forward code), as a loss evaluation always is; its rule is only
what ``grad`` checks.

:func:`moved_loss` gives that evaluation, or None when ``W`` has any other use (an elementwise term such as an
L2 penalty, a reshape, a product of ``W`` with itself); the adapter then copies the tensor per perturbation.
The values agree with the copy's to rounding: the product's sum is ``x·W + δ·x_m`` instead of ``x·(W + δ·e_m)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend.core import ClosedJaxpr, Jaxpr, Literal, Var

__all__ = ["moved_loss"]

#: Where an element of the tensor sits in an array made from it by transposes: ``view[i] = W[m[axes[i]]]``.
Axes = tuple[int, ...]
#: Calls whose inner jaxpr takes the call's operands in order and whose value is that jaxpr's value.
CALLS = {"jit": "jaxpr", "pjit": "jaxpr", "custom_jvp_call": "call_jaxpr", "custom_vjp_call": "call_jaxpr"}


def moved_loss(
    loss: Callable[..., Any], args: Sequence[Any], position: int
) -> Callable[[Sequence[Any], Any, Any], Any] | None:
    """``f(args, m, delta)``: ``loss(*args)`` with element ``m`` (a tuple of indices) of ``args[position]`` moved
    by ``delta``, evaluated through the products; None where ``args[position]`` has a use that is not a product.

    ``args`` are flat arrays (or abstract values); the traced jaxpr is fixed by their shapes and dtypes.
    """
    shapes = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in args]
    closed = jax.make_jaxpr(loss)(*shapes)
    views = {closed.jaxpr.invars[position]: tuple(range(len(args[position].shape)))}
    if _linear_views(closed.jaxpr, views) is None:
        return None

    def evaluate(values: Sequence[Any], m: Any, delta: Any) -> Any:
        (out,), _ = _evaluate(closed.jaxpr, closed.consts, list(values), views, tuple(m), delta)
        return out

    index = tuple(jax.ShapeDtypeStruct((), jnp.int32) for _ in args[position].shape)
    try:  # traced once on shapes: a case this walk did not foresee copies the tensor, as before, and is not an error
        jax.eval_shape(evaluate, shapes, index, jax.ShapeDtypeStruct((), args[position].dtype))
    except Exception:
        return None
    return evaluate


def _inner(eqn: Any) -> ClosedJaxpr | None:
    """The jaxpr a call evaluates, when its operands are that jaxpr's inputs in order."""
    key = CALLS.get(eqn.primitive.name)
    inner = eqn.params.get(key) if key else None
    if isinstance(inner, Jaxpr):
        inner = ClosedJaxpr(inner, ())
    if not isinstance(inner, ClosedJaxpr) or len(inner.jaxpr.invars) != len(eqn.invars):
        return None
    return inner


def _is_in(v: Any, views: dict[Any, Axes]) -> bool:
    """Whether ``v`` is one of ``views``' variables; a literal (``1.0`` given to or returned by a call: not hashable)
    never is."""
    return isinstance(v, Var) and v in views


def _linear_views(jaxpr: Jaxpr, views: dict[Any, Axes]) -> dict[Any, Axes] | None:
    """The views of the tensor among ``jaxpr``'s outputs, or None if the tensor has a use that is not a product
    (``views``: the variables that are the tensor or its transposes, grown as the walk finds more)."""
    views = dict(views)
    for eqn in jaxpr.eqns:
        used = [v for v in eqn.invars if _is_in(v, views)]
        if not used:
            continue
        name = eqn.primitive.name
        if name == "transpose":
            axes = views[eqn.invars[0]]
            views[eqn.outvars[0]] = tuple(axes[p] for p in eqn.params["permutation"])
        elif name == "dot_general":
            if len(used) != 1:
                return None  # the tensor times itself: not linear
        elif (inner := _inner(eqn)) is not None:
            out = _linear_views(
                inner.jaxpr,
                {iv: views[ov] for iv, ov in zip(inner.jaxpr.invars, eqn.invars, strict=True) if _is_in(ov, views)},
            )
            if out is None:
                return None
            views.update(
                {ov: out[iv] for iv, ov in zip(inner.jaxpr.outvars, eqn.outvars, strict=True) if _is_in(iv, out)}
            )
        else:
            return None
    if any(_is_in(v, views) for v in jaxpr.outvars):
        return {v: views[v] for v in jaxpr.outvars if _is_in(v, views)}
    return {}


def _evaluate(
    jaxpr: Jaxpr, consts: Sequence[Any], args: list[Any], views: dict[Any, Axes], m: tuple[Any, ...], delta: Any
) -> tuple[list[Any], dict[Any, Axes]]:
    """``jaxpr``'s outputs with the tensor moved (each product with a view of it gets the moved element's term),
    and the views of the tensor among them."""
    env: dict[Any, Any] = {}

    def read(v: Any) -> Any:
        return v.val if isinstance(v, Literal) else env[v]

    for v, value in zip(jaxpr.constvars, consts, strict=True):
        env[v] = value
    for v, value in zip(jaxpr.invars, args, strict=True):
        env[v] = value
    views = dict(views)
    for eqn in jaxpr.eqns:
        values = [read(v) for v in eqn.invars]
        used = [i for i, v in enumerate(eqn.invars) if _is_in(v, views)]
        name = eqn.primitive.name
        inner = _inner(eqn) if used and name not in ("transpose", "dot_general") else None
        if inner is not None:  # a call the tensor enters: evaluate its body the same way
            inside = {iv: views[ov] for iv, ov in zip(inner.jaxpr.invars, eqn.invars, strict=True) if _is_in(ov, views)}
            outs, found = _evaluate(inner.jaxpr, inner.consts, values, inside, m, delta)
            views.update(
                {ov: found[iv] for iv, ov in zip(inner.jaxpr.outvars, eqn.outvars, strict=True) if _is_in(iv, found)}
            )
        else:
            with eqn.ctx.manager:
                out = eqn.primitive.bind(*values, **eqn.primitive.get_bind_params(eqn.params))
            outs = out if eqn.primitive.multiple_results else [out]
            if used and name == "transpose":
                axes = views[eqn.invars[0]]
                views[eqn.outvars[0]] = tuple(axes[p] for p in eqn.params["permutation"])
            elif used and name == "dot_general":
                (side,) = used
                at = tuple(m[a] for a in views[eqn.invars[side]])
                outs = [
                    outs[0] + _moved_term(eqn.params["dimension_numbers"], side, values[1 - side], at, delta, outs[0])
                ]
        for v, value in zip(eqn.outvars, outs, strict=True):
            env[v] = value
    return [read(v) for v in jaxpr.outvars], {v: views[v] for v in jaxpr.outvars if _is_in(v, views)}


def _moved_term(numbers: Any, side: int, other: Any, at: tuple[Any, ...], delta: Any, product: Any) -> Any:
    """``dot_general`` of ``other`` with ``delta`` at index ``at`` of the tensor's operand (on ``side``), and zero
    elsewhere: the slice of ``other`` that meets the element, times ``delta``, placed where it lands."""
    (contract_l, contract_r), (batch_l, batch_r) = numbers
    other = jnp.asarray(other)  # a numpy array the loss closes over (a constant) cannot take a traced index
    contract = (contract_l, contract_r) if side == 0 else (contract_r, contract_l)
    batch = (batch_l, batch_r) if side == 0 else (batch_r, batch_l)
    # the tensor's operand: its contracted and batch axes meet the other's; its free axes land in the product
    own_free = [a for a in range(len(at)) if a not in contract[0] and a not in batch[0]]
    other_free = [a for a in range(other.ndim) if a not in contract[1] and a not in batch[1]]
    pick: list[Any] = [slice(None)] * other.ndim
    for own, theirs in zip(contract[0], contract[1], strict=True):
        pick[theirs] = at[own]
    for own, theirs in zip(batch[0], batch[1], strict=True):
        pick[theirs] = at[own]
    term = other[tuple(pick)] * delta  # the other operand's free axes, in order
    free = [slice(None)] * len(other_free)
    placed = [at[a] for a in batch[0]] + (
        [at[a] for a in own_free] + free if side == 0 else free + [at[a] for a in own_free]
    )
    return jnp.zeros_like(product).at[tuple(placed)].set(term.astype(product.dtype))
