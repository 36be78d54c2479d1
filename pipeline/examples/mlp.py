"""A tanh MLP of any size with a hand-written backward pass, for throughput work.

``problem(sizes, batch)`` draws the parameters (``W1, b1, W2, b2, ...``) and a
regression data set; the loss is the mean squared error. With sizes
``(64, 96, 96, 1)`` and a batch of 256 it has about 1.6e4 parameters and a
loss of about a millisecond.

``mlp`` offers only ``loss`` and ``grad``. ``staged(L)`` is the same network of
``L`` layers that also declares its ``stages`` (an optional capability): one
stage per layer, so that perturbing a tensor re-evaluates only the layers from
its own on. Both evaluate the loss by the same arithmetic.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["MLP", "StagedMLP", "mlp", "problem", "staged"]

Arrays = dict[str, np.ndarray]


def problem(sizes: Sequence[int] = (64, 96, 96, 1), batch: int = 256, seed: int = 0) -> tuple[Arrays, Arrays]:
    """Parameters (in layer order) and data ``X`` (batch, sizes[0]), ``Y`` (batch, sizes[-1])."""
    rng = np.random.default_rng(seed)
    params: Arrays = {}
    for k, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes), start=1):
        params[f"W{k}"] = rng.normal(0, 1 / np.sqrt(fan_in), (fan_in, fan_out))
        params[f"b{k}"] = rng.normal(0, 0.1, fan_out)
    data = {"X": rng.normal(size=(batch, sizes[0])), "Y": rng.normal(size=(batch, sizes[-1]))}
    return params, data


def _layer(k: int, last: bool) -> Callable[[Any, Arrays, Arrays], Any]:
    """Layer ``k`` as a stage: activations in, activations out (the last one returns the loss)."""

    def forward(a: np.ndarray | None, params: Arrays, data: Arrays) -> Any:
        z = (data["X"] if a is None else a) @ params[f"W{k}"] + params[f"b{k}"]
        if not last:
            return np.tanh(z)
        residual = z - data["Y"]
        return float(np.mean(residual * residual))

    return forward


def _layers(params: Arrays) -> int:
    return sum(1 for name in params if name.startswith("W"))


@dataclass(frozen=True)
class MLP:
    """tanh hidden layers, a linear output, mean squared error."""

    def loss(self, params: Arrays, data: Arrays) -> float:
        """Mean squared error of the network on ``data`` (the stages' arithmetic, in one loop)."""
        n = _layers(params)
        a = data["X"]
        for k in range(1, n):
            a = np.tanh(a @ params[f"W{k}"] + params[f"b{k}"])
        residual = a @ params[f"W{n}"] + params[f"b{n}"] - data["Y"]
        return float(np.mean(residual * residual))

    def grad(self, params: Arrays, data: Arrays) -> Arrays:
        """Backpropagation of :meth:`loss`."""
        n = _layers(params)
        activations = [data["X"]]
        for k in range(1, n + 1):
            z = activations[-1] @ params[f"W{k}"] + params[f"b{k}"]
            activations.append(np.tanh(z) if k < n else z)
        delta = 2 * (activations[-1] - data["Y"]) / activations[-1].size
        grad: Arrays = {}
        for k in range(n, 0, -1):
            grad[f"W{k}"] = activations[k - 1].T @ delta
            grad[f"b{k}"] = delta.sum(axis=0)
            if k > 1:
                delta = (delta @ params[f"W{k}"].T) * (1 - activations[k - 1] ** 2)
        return {name: grad[name] for name in params}


@dataclass(frozen=True)
class StagedMLP(MLP):
    """The MLP of ``layers`` layers, declaring one stage per layer."""

    layers: int = 4

    @property
    def stages(self) -> list[tuple[tuple[str, ...], Callable[[Any, Arrays, Arrays], Any]]]:
        """``(tensors the stage owns, forward(carry, params, data))``; the first gets None, the last returns the loss."""
        return [((f"W{k}", f"b{k}"), _layer(k, k == self.layers)) for k in range(1, self.layers + 1)]


mlp = MLP()


def staged(layers: int) -> StagedMLP:
    """The staged MLP of ``layers`` layers."""
    return StagedMLP(layers)


staged4 = StagedMLP(4)
