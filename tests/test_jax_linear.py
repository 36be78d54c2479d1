"""A JAX tensor moved through its matrix products (pipeline.adapters.jax_linear) gives the loss of the moved tensor.

Each loss below is evaluated twice at every element of its tensor moved by a step: through ``moved_loss`` (no
copy of the tensor) and by jax on a numpy copy with the element changed. They agree to float64 rounding, for
every form of product a loss writes. A use that is not a product must be refused (None), never approximated.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

pytest.importorskip("jax")
import jax
import jax.numpy as jnp

from pipeline.adapters.jax_linear import moved_loss

RNG = np.random.default_rng(11)


def _normal(*shape: int) -> np.ndarray:
    return RNG.normal(size=shape)


_tanh_layer = jax.jit(lambda x, w: jnp.tanh(x @ w))


@jax.custom_vjp
def _sin_layer(x: Any, w: Any) -> Any:
    return jnp.sin(x @ w)


# a rule that is wrong on purpose: a loss evaluation must use the forward code, never the rule
_sin_layer.defvjp(lambda x, w: (_sin_layer(x, w), (x, w)), lambda saved, g: (3 * g, saved[1]))


_CLOSED = np.random.default_rng(12).normal(size=(3, 4))  # a numpy array the loss closes over: a constant
_scaled_layer = jax.jit(lambda x, w, k: (jnp.tanh(x @ w) * k, 0.5))  # given a Python number, returning one

PRODUCTS: dict[str, tuple[Callable[..., Any], list[np.ndarray]]] = {
    "x @ W": (lambda w, x: jnp.sum(jnp.tanh(x @ w) ** 2), [_normal(4, 5), _normal(3, 4)]),
    "W @ x": (lambda w, x: jnp.sum(jnp.sin(w @ x)), [_normal(4, 5), _normal(5, 2)]),
    "x @ W.T": (lambda w, x: jnp.sum(jnp.cos(x @ w.T)), [_normal(4, 5), _normal(2, 5)]),
    "a vector": (lambda w, x: jnp.sum(jnp.exp(x @ w)), [_normal(5), _normal(3, 5)]),
    "batched einsum": (
        lambda w, y: jnp.sum(jnp.tanh(jnp.einsum("bij,bjk->bik", w, y))),
        [_normal(2, 4, 5), _normal(2, 5, 3)],
    ),
    "batched einsum, tensor on the right, transposed": (
        lambda w, x: jnp.sum(jnp.tanh(jnp.einsum("bji,bkj->bki", w, x))),
        [_normal(2, 4, 5), _normal(2, 3, 4)],
    ),
    "tensordot over two axes": (
        lambda w, x: jnp.sum(jnp.tanh(jnp.tensordot(x, w, axes=([1, 2], [0, 1])))),
        [_normal(2, 4, 5), _normal(3, 2, 4)],
    ),
    "tied weights, encoder and decoder": (
        lambda w, x: jnp.sum(jnp.tanh(jnp.tanh(x @ w) @ w.T) ** 2),
        [_normal(4, 5), _normal(3, 4)],
    ),
    "a nested jit": (lambda w, x: jnp.sum(_tanh_layer(x, w) ** 3), [_normal(4, 5), _normal(3, 4)]),
    "a custom_vjp function (its forward code)": (
        lambda w, x: jnp.sum(_sin_layer(x, w) ** 2),
        [_normal(4, 5), _normal(3, 4)],
    ),
    # a numpy constant took the moved element's traced index (TracerArrayConversionError), and a literal in a
    # call's operands or outputs was looked up among the tensor's variables (TypeError: unhashable): either
    # failed the batched call, and the adapter then ran one plain call per perturbation, saying it could not batch
    "a numpy array closed over": (lambda w: jnp.sum(jnp.tanh(_CLOSED @ w) ** 2), [_normal(4, 5)]),
    "a nested jit given and returning a Python number": (
        lambda w, x: (lambda out: jnp.sum(out[0] ** 2) + out[1])(_scaled_layer(x, w, 2.0)),
        [_normal(4, 5), _normal(3, 4)],
    ),
}

NOT_PRODUCTS: dict[str, tuple[Callable[..., Any], list[np.ndarray]]] = {
    "an L2 penalty": (lambda w, x: jnp.sum(x @ w) + jnp.sum(w**2), [_normal(4, 5), _normal(3, 4)]),
    "a reshape": (lambda w, x: jnp.sum(jnp.tanh(x @ w.reshape(4, 5))), [_normal(20), _normal(3, 4)]),
    "the tensor times itself": (lambda w, x: jnp.sum(jnp.tanh(x @ (w @ w.T))), [_normal(4, 5), _normal(3, 4)]),
    "an elementwise use": (lambda w, x: jnp.sum(jnp.tanh(x @ w) * w[0]), [_normal(4, 5), _normal(3, 4)]),
    "a lookup (gather)": (lambda w, x: jnp.sum(jnp.tanh(w[jnp.array([0, 2])] @ x)), [_normal(4, 5), _normal(5, 2)]),
}


@pytest.mark.parametrize("name", list(PRODUCTS))
def test_a_tensor_used_only_in_products_moves_without_a_copy_and_gives_the_moved_loss(name: str) -> None:
    loss, args = PRODUCTS[name]
    with jax.enable_x64(True):
        moved = moved_loss(loss, args, 0)
        assert moved is not None
        evaluate = jax.jit(lambda a, m, d: moved(a, m, d))
        tensor = args[0]
        for k in range(tensor.size):
            m = np.unravel_index(k, tensor.shape)
            step = 0.3 * (k % 3 - 1) + 0.05
            copy = tensor.copy()
            copy[m] += step
            expected = float(loss(copy, *args[1:]))
            got = float(evaluate(args, tuple(jnp.asarray(i) for i in m), step))
            assert got == pytest.approx(expected, rel=1e-13, abs=1e-13), (name, m)
            assert got != pytest.approx(float(loss(*args)), rel=1e-9)  # the move moved the loss


@pytest.mark.parametrize("name", list(NOT_PRODUCTS))
def test_a_tensor_with_any_use_that_is_not_a_product_is_refused_so_the_adapter_copies_it(name: str) -> None:
    loss, args = NOT_PRODUCTS[name]
    with jax.enable_x64(True):
        assert moved_loss(loss, args, 0) is None


def test_only_the_tensor_named_is_moved_the_others_keep_their_values() -> None:
    """Position 1 is moved; position 0 (also in a product) keeps its value."""

    def loss(a: Any, b: Any, x: Any) -> Any:
        return jnp.sum(jnp.tanh(jnp.tanh(x @ a) @ b))

    args = [_normal(4, 5), _normal(5, 3), _normal(2, 4)]
    with jax.enable_x64(True):
        moved = moved_loss(loss, args, 1)
        assert moved is not None
        b = args[1].copy()
        b[2, 1] += 0.25
        assert float(moved(args, (2, 1), 0.25)) == pytest.approx(float(loss(args[0], b, args[2])), rel=1e-13)


# The adapter-level tests: a tanh layer's weights, 35 of its elements moved to two values each.
LAYER = {"w": RNG.normal(size=(32, 40))}
LAYER_DATA = {"x": RNG.normal(size=(3, 32))}
POSITIONS, VALUES = np.arange(0, 1280, 37), RNG.normal(size=(35, 2))


def _layer(p: Any, d: Any) -> Any:
    return jnp.sum(jnp.tanh(d["x"] @ p["w"]) ** 2)


def _layer_losses() -> np.ndarray:
    """The layer's losses at POSITIONS moved to VALUES, by numpy on copies of the weights."""
    expected = np.empty_like(VALUES)
    for j, k in enumerate(POSITIONS):
        for s in range(2):
            w = LAYER["w"].copy()
            w.reshape(-1)[k] = VALUES[j, s]
            expected[j, s] = np.sum(np.tanh(LAYER_DATA["x"] @ w) ** 2)
    return expected


def test_a_tensor_whose_moved_loss_differs_from_a_plain_call_is_copied_instead_and_the_report_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The adapter holds each tensor's first row to one plain call. A move through the products that gave
    another loss (injected here: twice the step) must never reach the check: the tensor is copied per row."""
    from pipeline.adapters import jax as adapter

    def doubled(loss: Any, args: Any, position: int) -> Any:
        moved = moved_loss(loss, args, position)
        return None if moved is None else (lambda values, m, delta: moved(values, m, 2 * delta))

    honest = adapter.JaxModel(_layer, LAYER, batch="loop")
    got = honest.perturbed_losses(LAYER, LAYER_DATA, "w", POSITIONS, VALUES)
    np.testing.assert_allclose(got, _layer_losses(), rtol=1e-12)
    assert "copied" not in honest.evaluation

    monkeypatch.setattr(adapter, "moved_loss", doubled)
    model = adapter.JaxModel(_layer, LAYER, batch="loop")
    got = model.perturbed_losses(LAYER, LAYER_DATA, "w", POSITIONS, VALUES)
    np.testing.assert_allclose(got, _layer_losses(), rtol=1e-12)
    assert "w copied at each perturbation (the loss moved through its products differs from a plain call's)" in (
        model.evaluation
    )


def test_a_moved_loss_that_is_nan_where_a_plain_call_is_not_is_copied_instead(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first row's check was ``difference > tolerance``, False for a NaN: a move that went wrong to NaN passed
    it, and every loss of the tensor reached the check as NaN. A NaN where the plain call has a number must copy
    the tensor like any other disagreement."""
    from pipeline.adapters import jax as adapter

    def nan(loss: Any, args: Any, position: int) -> Any:
        moved = moved_loss(loss, args, position)
        return None if moved is None else (lambda values, m, delta: moved(values, m, delta) * jnp.nan)

    monkeypatch.setattr(adapter, "moved_loss", nan)
    model = adapter.JaxModel(_layer, LAYER, batch="loop")
    got = model.perturbed_losses(LAYER, LAYER_DATA, "w", POSITIONS, VALUES)
    np.testing.assert_allclose(got, _layer_losses(), rtol=1e-12)
    assert "w copied at each perturbation" in model.evaluation


def test_a_loss_closing_over_numpy_data_stays_batched_and_moves_without_a_copy() -> None:
    """A loss that closes over its data as a numpy array (a common way to write one) failed the moved evaluation,
    and the adapter fell back to one plain jitted call per perturbation."""
    from pipeline.adapters import jax as adapter

    x = LAYER_DATA["x"]  # a numpy array, closed over

    def closing(p: Any, d: Any) -> Any:
        return jnp.sum(jnp.tanh(x @ p["w"]) ** 2)

    model = adapter.JaxModel(closing, LAYER, batch="loop")
    np.testing.assert_allclose(model.perturbed_losses(LAYER, {}, "w", POSITIONS, VALUES), _layer_losses(), rtol=1e-12)
    assert "cannot run" not in model.evaluation, model.evaluation
    assert "copied" not in model.evaluation, model.evaluation


def test_a_product_the_walk_cannot_evaluate_leaves_the_tensor_copied_not_unbatched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A case the walk did not foresee (injected: the moved term raises) is found by tracing it once on shapes:
    the tensor is copied per row, as before this path existed, never evaluated one plain call at a time."""
    from pipeline.adapters import jax as adapter
    from pipeline.adapters import jax_linear

    def unforeseen(*args: Any) -> Any:
        raise NotImplementedError("a product this walk does not know")

    monkeypatch.setattr(jax_linear, "_moved_term", unforeseen)
    loss, args = PRODUCTS["x @ W"]
    with jax.enable_x64(True):
        assert moved_loss(loss, args, 0) is None

    model = adapter.JaxModel(_layer, LAYER, batch="loop")
    got = model.perturbed_losses(LAYER, LAYER_DATA, "w", POSITIONS, VALUES)
    np.testing.assert_allclose(got, _layer_losses(), rtol=1e-12)
    assert "cannot run" not in model.evaluation
    assert "copied" not in model.evaluation
