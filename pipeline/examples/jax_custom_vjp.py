"""A fused layer with a hand-written ``custom_vjp`` rule, checked through ``JaxModel``.

``gradcheck example jax-custom-vjp DIR`` copies this file to ``DIR/model.py`` beside a params
store, a data store and two configs: ``correct.yaml`` (passes) and ``planted.yaml`` (fails, and
names ``fused/b``). Copy it as the start of a check of your own rule.

The op is ``y = tanh(x @ w + b)`` with ``jax.custom_vjp``: ``jax.grad`` runs our backward rule,
so that is what the check compares with the loss's finite differences. The planted twin forgets
the tanh derivative in the bias's cotangent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pipeline.adapters.jax import JaxModel

#: The tensor the planted rule gets wrong.
PLANTED_TENSOR = "fused/b"


def fused_linear_tanh(planted: bool) -> Callable[[Any, Any, Any], Any]:
    """``tanh(x @ w + b)`` with its VJP written by hand (``planted``: the bias's cotangent is wrong)."""

    @jax.custom_vjp
    def op(x: Any, w: Any, b: Any) -> Any:
        return jnp.tanh(x @ w + b)

    def forward(x: Any, w: Any, b: Any) -> tuple[Any, Any]:
        y = jnp.tanh(x @ w + b)
        return y, (x, w, y)

    def backward(saved: Any, grad_y: Any) -> tuple[Any, Any, Any]:
        x, w, y = saved
        grad_z = grad_y * (1 - y * y)  # through tanh
        grad_b = grad_y.sum(0) if planted else grad_z.sum(0)  # planted: the tanh derivative forgotten
        return grad_z @ w.T, x.T @ grad_z, grad_b

    op.defvjp(forward, backward)
    return op


def params() -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    return {
        "fused": {
            "w": rng.normal(size=(16, 32)).astype(np.float32) / 4,
            "b": rng.normal(size=32).astype(np.float32) / 4,
        },
        "out": {"w": rng.normal(size=(32, 4)).astype(np.float32) / 4, "b": rng.normal(size=4).astype(np.float32) / 4},
    }


def data() -> dict[str, np.ndarray]:
    """The inputs and targets (float32)."""
    rng = np.random.default_rng(1)
    return {"x": rng.normal(size=(64, 16)).astype(np.float32), "y": rng.normal(size=(64, 4)).astype(np.float32)}


def loss(planted: bool) -> Callable[[Any, Any], Any]:
    op = fused_linear_tanh(planted)

    def loss_fn(p: Any, d: Any) -> Any:
        hidden = op(d["x"], p["fused"]["w"], p["fused"]["b"])
        return jnp.mean((hidden @ p["out"]["w"] + p["out"]["b"] - d["y"]) ** 2)

    return loss_fn


correct = JaxModel(loss(planted=False), params())
planted = JaxModel(loss(planted=True), params())


def framework_checks(is_planted: bool) -> dict[str, Any]:
    """``jax.test_util.check_grads`` (reverse mode, first order) on the same op, in float64."""
    from jax.test_util import check_grads

    rng = np.random.default_rng(2)
    shapes = ((64, 16), (16, 32), (32,))

    def run() -> Any:
        with jax.enable_x64(True):
            arguments = tuple(jnp.asarray(rng.normal(size=shape) / 4) for shape in shapes)
            return check_grads(fused_linear_tanh(is_planted), arguments, order=1, modes=("rev",))

    return {"jax check_grads": run}
