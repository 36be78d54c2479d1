"""The seed's network: LINEAR -> RELU -> LINEAR -> RELU -> LINEAR -> SIGMOID.

This is the model of the classic ``gradient_check_n`` exercise, with its test
case (``np.random.seed(1)``) and its mean cross-entropy cost. ``correct`` has the
right backward pass; ``planted`` has the exercise's two mistakes: the W2 gradient
multiplied by 2 and the b1 gradient by 4. With the seed's settings (epsilon 1e-7)
the published differences are 1.1890913024229996e-07 for the correct pass and
0.2850931567761624 for the planted one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ORDER", "SeedMLP", "correct", "planted", "problem"]

#: The seed's flattening order (its ``dictionary_to_vector``).
ORDER = ("W1", "b1", "W2", "b2", "W3", "b3")

Arrays = dict[str, np.ndarray]


def problem() -> tuple[Arrays, Arrays]:
    """Return the seed's parameters and data, ``(params, data)``.

    Drawn exactly as the exercise's ``gradient_check_n_test_case`` draws them,
    so every figure the exercise publishes can be reproduced.
    """
    rng = np.random.RandomState(1)
    x = rng.randn(4, 3)
    y = np.array([[1.0, 1.0, 0.0]])
    shapes = {"W1": (5, 4), "b1": (5, 1), "W2": (3, 5), "b2": (3, 1), "W3": (1, 3), "b3": (1, 1)}
    params = {name: rng.randn(*shape) for name, shape in shapes.items()}
    return params, {"X": x, "Y": y}


def _relu(z: np.ndarray) -> np.ndarray:
    activated: np.ndarray = np.maximum(0, z)
    return activated


def _forward(params: Arrays, data: Arrays) -> tuple[float, tuple[np.ndarray, ...]]:
    x, y = data["X"], data["Y"]
    m = x.shape[1]
    z1 = np.dot(params["W1"], x) + params["b1"]
    a1 = _relu(z1)
    z2 = np.dot(params["W2"], a1) + params["b2"]
    a2 = _relu(z2)
    z3 = np.dot(params["W3"], a2) + params["b3"]
    a3 = 1 / (1 + np.exp(-z3))
    logprobs = np.multiply(-np.log(a3), y) + np.multiply(-np.log(1 - a3), 1 - y)
    cost = 1.0 / m * np.sum(logprobs)
    return float(cost), (a1, a2, a3)


@dataclass(frozen=True)
class SeedMLP:
    """The seed network as a model object; ``planted`` selects the buggy backward pass."""

    planted: bool = False

    def loss(self, params: Arrays, data: Arrays) -> float:
        """Mean cross-entropy cost of the network on ``data``."""
        return _forward(params, data)[0]

    def loss_batch(self, params_batch: Arrays, data: Arrays) -> np.ndarray:
        """The loss of K parameter sets at once (every tensor with a leading axis of K).

        An optional capability: the pipeline evaluates whole shards in one call
        instead of paying Python's overhead per loss. Same formulas as :meth:`loss`.
        """
        x, y = data["X"], data["Y"]
        m = x.shape[1]
        w1 = params_batch["W1"]
        k, hidden, inputs = w1.shape
        # Every row multiplies the same X: one matrix product for all K rows (the same dot
        # products as K separate ones), not K small ones.
        z1 = np.dot(w1.reshape(k * hidden, inputs), x).reshape(k, hidden, m)
        a1 = _relu(z1 + params_batch["b1"])
        a2 = _relu(np.matmul(params_batch["W2"], a1) + params_batch["b2"])
        z3 = np.matmul(params_batch["W3"], a2) + params_batch["b3"]
        a3 = 1 / (1 + np.exp(-z3))
        logprobs = np.multiply(-np.log(a3), y) + np.multiply(-np.log(1 - a3), 1 - y)
        losses: np.ndarray = 1.0 / m * logprobs.sum(axis=(1, 2))
        return losses

    def grad(self, params: Arrays, data: Arrays) -> Arrays:
        """Backpropagation, as the exercise writes it (with its mistakes if planted)."""
        x, y = data["X"], data["Y"]
        m = x.shape[1]
        _, (a1, a2, a3) = _forward(params, data)
        w2_scale, b1_scale = (2.0, 4.0) if self.planted else (1.0, 1.0)
        dz3 = a3 - y
        dw3 = 1.0 / m * np.dot(dz3, a2.T)
        db3 = 1.0 / m * np.sum(dz3, axis=1, keepdims=True)
        dz2 = np.dot(params["W3"].T, dz3) * (a2 > 0)
        dw2 = 1.0 / m * np.dot(dz2, a1.T) * w2_scale
        db2 = 1.0 / m * np.sum(dz2, axis=1, keepdims=True)
        dz1 = np.dot(params["W2"].T, dz2) * (a1 > 0)
        dw1 = 1.0 / m * np.dot(dz1, x.T)
        db1 = b1_scale / m * np.sum(dz1, axis=1, keepdims=True)
        return {"W1": dw1, "b1": db1, "W2": dw2, "b2": db2, "W3": dw3, "b3": db3}


correct = SeedMLP(planted=False)
planted = SeedMLP(planted=True)
