"""Models with hand-derived gradients, for the tests (loaded by file path and by module).

``smooth``: J = sum_t sum(c_t * sin(θ_t)) + 0.5 * sum_t sum(θ_t ** 2), so
dJ/dθ_t = c_t * cos(θ_t) + θ_t exactly. Tensors have unusual names and shapes:
a 3-d tensor, a scalar (shape ()), a vector.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Arrays = dict[str, np.ndarray]
SHAPES = {"conv.weight": (2, 3, 4), "scale": (), "bias": (3,)}


def problem(dtype: type = np.float64, seed: int = 0) -> tuple[Arrays, Arrays]:
    """Parameters (in ``dtype``) and data (float64 coefficients ``c_<name>``)."""
    rng = np.random.default_rng(seed)
    params: Arrays = {name: np.asarray(rng.uniform(-1, 1, shape), dtype=dtype) for name, shape in SHAPES.items()}
    data = {f"c_{name}": rng.uniform(0.5, 2, shape) for name, shape in SHAPES.items()}
    return params, data


def truth(params: Arrays, data: Arrays) -> Arrays:
    """The exact gradient, in float64."""
    return {n: data[f"c_{n}"] * np.cos(np.float64(p)) + np.float64(p) for n, p in params.items()}


@dataclass(frozen=True)
class Smooth:
    """Correct gradient; ``wrong`` = (tensor, index, added) plants one wrong element."""

    wrong: tuple[str, tuple[int, ...], float] | None = None

    def loss(self, params: Arrays, data: Arrays) -> float:
        total = 0.0
        for name, p in params.items():
            p64 = p.astype(np.float64)
            total += float(np.sum(data[f"c_{name}"] * np.sin(p64)) + 0.5 * np.sum(p64 * p64))
        return total

    def grad(self, params: Arrays, data: Arrays) -> Arrays:
        grad = truth(params, data)
        if self.wrong is not None:
            name, index, added = self.wrong
            grad[name] = np.array(grad[name], copy=True)
            grad[name][index] += added
        return grad


smooth = Smooth()
one_wrong = Smooth(wrong=("conv.weight", (1, 2, 3), 0.5))


class NotAModel:
    """Has a loss but no grad."""

    def loss(self, params: Arrays, data: Arrays) -> float:
        return 0.0


not_a_model = NotAModel()


class _BadLoss(Smooth):
    def __init__(self, value: object) -> None:
        object.__setattr__(self, "value", value)

    def loss(self, params: Arrays, data: Arrays) -> float:
        return self.value  # type: ignore[attr-defined, no-any-return]


nan_loss = _BadLoss(float("nan"))
array_loss = _BadLoss(np.ones(3))
string_loss = _BadLoss("0.5")


class _BadGrad(Smooth):
    def grad(self, params: Arrays, data: Arrays) -> Arrays:
        grad = super().grad(params, data)
        grad["bias"] = np.zeros(4)
        return grad


wrong_grad_shape = _BadGrad()


class _GradMustNotBeCalled(Smooth):
    def grad(self, params: Arrays, data: Arrays) -> Arrays:
        raise RuntimeError("grad was called although a gradient store was given")


grad_not_called = _GradMustNotBeCalled()


class _LossRaises(Smooth):
    def loss(self, params: Arrays, data: Arrays) -> float:
        return float(params["missing"].sum())


raising_loss = _LossRaises()
