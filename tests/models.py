"""Models with hand-derived gradients, for the tests (loaded by file path and by module).

``smooth``: J = sum_t sum(c_t * sin(θ_t)) + 0.5 * sum_t sum(θ_t ** 2), so
dJ/dθ_t = c_t * cos(θ_t) + θ_t exactly. Tensors have unusual names and shapes:
a 3-d tensor, a scalar (shape ()), a vector.
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from dataclasses import dataclass

import numpy as np

from pipeline.examples.mlp import StagedMLP

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


class _LossExits(Smooth):
    """A loss that ends its process as a script would: its exit code 1 must not read as "the gradients disagree"."""

    def loss(self, params: Arrays, data: Arrays) -> float:
        sys.exit(1)


exiting_loss = _LossExits()


class _LossExitsOffTheta(Smooth):
    """A loss that exits (code 0: "the gradients agree") from its third call on: in the noise probe, off θ."""

    calls = 0

    def loss(self, params: Arrays, data: Arrays) -> float:
        self.calls += 1
        if self.calls > 2:
            sys.exit(0)
        return super().loss(params, data)


exiting_off_theta = _LossExitsOffTheta()


class _LossExitsWhereManyMove(Smooth):
    """A loss that exits (code 0) where more than one parameter left θ: only at the noise probe's points (a shard moves
    one element at a time), which used to look past a loss failing there (review 124: PASSED, exit 0)."""

    theta: dict[str, np.ndarray] | None = None

    def loss(self, params: Arrays, data: Arrays) -> float:
        if self.theta is None:
            self.theta = {name: np.array(value) for name, value in params.items()}
        if sum(int(np.count_nonzero(params[name] != value)) for name, value in self.theta.items()) > 1:
            sys.exit(0)
        return super().loss(params, data)


exiting_where_many_move = _LossExitsWhereManyMove()


class _Dropout(Smooth):
    """The seed's warning: a loss with dropout (unseeded randomness) differs call to call."""

    def loss(self, params: Arrays, data: Arrays) -> float:
        # Dropout over 256 hidden units of distinct weights: two calls agree with probability 2**-256.
        keep = np.random.default_rng().random(256) > 0.5
        hidden = np.linspace(1.0, 2.0, 256) * float(np.sum(params["bias"]))
        return super().loss(params, data) + float(np.sum(keep * hidden))


dropout = _Dropout()


class _InPlaceGrad(Smooth):
    """A backward pass that updates an array of its data in place (an LSTM step's ``dnext_c += ...``, review 87)."""

    def grad(self, params: Arrays, data: Arrays) -> Arrays:
        data["c_bias"] *= 1.5
        return super().grad(params, data)


in_place_grad = _InPlaceGrad()


class _StatefulGrad(Smooth):
    """A backward pass that changes state of the model's own that its loss reads."""

    calls = 0

    def loss(self, params: Arrays, data: Arrays) -> float:
        return super().loss(params, data) + self.calls

    def grad(self, params: Arrays, data: Arrays) -> Arrays:
        self.calls += 1
        return super().grad(params, data)


stateful_grad = _StatefulGrad()


# -- models for the reliability tests ---------------------------------------------------------
# Gated: J = sum(c * sin θ) + 0.5 * sum(θ ** 2) over tensors `early` (100,) and `late` (100,).
# While the file named by $GRADCHECK_TEST_GATE does not exist, a loss evaluated with an
# element of `late` perturbed waits for it: the `early` shards finish, the `late` ones
# block, and a test can interrupt the run at exactly that point. While the file named by
# $GRADCHECK_TEST_POISON exists, perturbing late[5] kills the worker process; while the one
# named by $GRADCHECK_TEST_POISON_PROBE exists, moving all of `late` (the noise probe) does.

GATED_SHAPES = {"early": (100,), "late": (100,)}


def gated_problem() -> tuple[Arrays, Arrays]:
    """Parameters and data of the gated model (data holds `late` at θ, to see perturbations)."""
    rng = np.random.default_rng(5)
    params = {name: rng.uniform(-1, 1, shape) for name, shape in GATED_SHAPES.items()}
    data = {f"c_{name}": rng.uniform(0.5, 2, shape) for name, shape in GATED_SHAPES.items()}
    data["late_at_theta"] = params["late"].copy()
    return params, data


class Gated:
    def loss(self, params: Arrays, data: Arrays) -> float:
        moved = np.flatnonzero(params["late"] != data["late_at_theta"])
        poison_probe = os.environ.get("GRADCHECK_TEST_POISON_PROBE")
        if moved.size == params["late"].size and poison_probe and os.path.exists(poison_probe):
            os._exit(13)
        if moved.size == 1:  # a shard's perturbation (the probe's noise level moves every element)
            poison = os.environ.get("GRADCHECK_TEST_POISON")
            if moved[0] == 5 and poison and os.path.exists(poison):
                os._exit(13)
            gate = os.environ.get("GRADCHECK_TEST_GATE")
            while gate and not os.path.exists(gate):
                time.sleep(0.01)
        return float(sum(np.sum(data[f"c_{n}"] * np.sin(params[n]) + 0.5 * params[n] ** 2) for n in GATED_SHAPES))

    def grad(self, params: Arrays, data: Arrays) -> Arrays:
        return {n: data[f"c_{n}"] * np.cos(params[n]) + params[n] for n in GATED_SHAPES}


gated = Gated()


class NonFiniteNear:
    """J = 0.5 * sum(w ** 2); NaN at θ + ε along w[3], infinite on both sides along w[5]."""

    def loss(self, params: Arrays, data: Arrays) -> float:
        w, w0 = params["w"], data["w_at_theta"]
        if w[5] != w0[5]:
            return float("inf")
        if w[3] > w0[3]:
            return float("nan")
        return float(0.5 * np.sum(w * w))

    def grad(self, params: Arrays, data: Arrays) -> Arrays:
        return {"w": params["w"].copy()}


nonfinite_near = NonFiniteNear()
none_loss = _BadLoss(None)


class SmoothBatched(Smooth):
    """The smooth model with the optional ``loss_batch`` (same formulas, a leading axis of K)."""

    def loss_batch(self, params_batch: Arrays, data: Arrays) -> np.ndarray:
        total = np.zeros(next(iter(params_batch.values())).shape[0])
        for name, p in params_batch.items():
            p64 = p.astype(np.float64).reshape(p.shape[0], -1)
            c = data[f"c_{name}"].reshape(-1)
            total += np.sum(c * np.sin(p64), axis=1) + 0.5 * np.sum(p64 * p64, axis=1)
        return total


smooth_batched = SmoothBatched()


class _BatchRaises(SmoothBatched):
    def loss_batch(self, params_batch: Arrays, data: Arrays) -> np.ndarray:
        raise ValueError("no batch here")


raising_batch = _BatchRaises()


class PlainOnly:
    """Another model's loss and grad, without its optional capabilities."""

    def __init__(self, model: object) -> None:
        self.model = model

    def loss(self, params: Arrays, data: Arrays) -> float:
        return self.model.loss(params, data)  # type: ignore[attr-defined, no-any-return]

    def grad(self, params: Arrays, data: Arrays) -> Arrays:
        return self.model.grad(params, data)  # type: ignore[attr-defined, no-any-return]


class _StagedMLPMissingATensor:
    """Stages that leave b2 to no stage."""

    def __init__(self) -> None:
        from pipeline.examples.mlp import staged

        self.model = staged(2)

    def loss(self, params: Arrays, data: Arrays) -> float:
        return self.model.loss(params, data)

    def grad(self, params: Arrays, data: Arrays) -> Arrays:
        return self.model.grad(params, data)

    @property
    def stages(self) -> list[tuple[tuple[str, ...], object]]:
        first, second = self.model.stages
        return [first, (("W2",), second[1])]


class _StagedMLPDisagreeing(_StagedMLPMissingATensor):
    """Stages whose loss is not the model's loss."""

    @property
    def stages(self) -> list[tuple[tuple[str, ...], object]]:
        first, second = self.model.stages
        return [first, (second[0], lambda carry, params, data: second[1](carry, params, data) + 1.0)]


staged_missing_a_tensor = _StagedMLPMissingATensor()
staged_disagreeing = _StagedMLPDisagreeing()


@dataclass(frozen=True)
class StagedAndBatched(StagedMLP):
    """Offers both capabilities: it must be evaluated by its stages (fewest evaluations)."""

    def loss_batch(self, params_batch: Arrays, data: Arrays) -> np.ndarray:
        raise AssertionError("a model that offers stages is evaluated by its stages, not loss_batch")


staged_and_batched = StagedAndBatched(2)


class Slow(Smooth):
    """The smooth model taking a millisecond per loss: a check long enough to be interrupted at random."""

    def loss(self, params: Arrays, data: Arrays) -> float:
        time.sleep(0.001)
        return super().loss(params, data)


slow = Slow()


def slow_problem(n: int = 400) -> tuple[Arrays, Arrays]:
    rng = np.random.default_rng(11)
    return {"w": rng.uniform(-1, 1, n)}, {"c_w": rng.uniform(0.5, 2, n)}


@dataclass(frozen=True)
class ReluNet:
    """Two ReLU layers and a softmax cross-entropy over a batch, backward by hand (nnfs's network, as a held-out
    sweep checked it): along a random direction of a weight tensor the loss crosses kinks at every scale.
    ``w2_scale`` multiplies W2's gradient (1: correct); ``planted``, ``(tensor, index, factor)``, one element's."""

    w2_scale: float = 1.0
    planted: tuple[str, tuple[int, ...], float] | None = None

    def _first_layer(self, p: Arrays, d: Arrays) -> np.ndarray:
        return d["X"] @ p["W1"] + p["b1"]

    def _forward(self, p: Arrays, d: Arrays) -> tuple[np.ndarray, ...]:
        z1 = self._first_layer(p, d)
        a1 = np.maximum(z1, 0)
        z2 = a1 @ p["W2"] + p["b2"]
        a2 = np.maximum(z2, 0)
        z3 = a2 @ p["W3"] + p["b3"]
        prob = np.exp(z3 - z3.max(axis=1, keepdims=True))
        return z1, a1, z2, a2, prob / prob.sum(axis=1, keepdims=True)

    def loss(self, params: Arrays, data: Arrays) -> float:
        prob = self._forward(params, data)[-1]
        return float(-np.mean(np.log(prob[np.arange(data["y"].size), data["y"]])))

    def grad(self, params: Arrays, data: Arrays) -> Arrays:
        z1, a1, z2, a2, prob = self._forward(params, data)
        n = data["y"].size
        dz3 = prob.copy()
        dz3[np.arange(n), data["y"]] -= 1
        dz3 /= n
        dz2 = (dz3 @ params["W3"].T) * (z2 > 0)
        dz1 = (dz2 @ params["W2"].T) * (z1 > 0)
        g = {"W1": data["X"].T @ dz1, "b1": dz1.sum(0), "W2": a1.T @ dz2 * self.w2_scale, "b2": dz2.sum(0)}
        g = {**g, "W3": a2.T @ dz3, "b3": dz3.sum(0)}
        if self.planted is not None:
            tensor, index, factor = self.planted
            g[tensor] = g[tensor].copy()
            g[tensor][index] *= factor
        return g


def relu_problem(
    seed: int, sizes: tuple[int, ...] = (16, 64, 64, 4), batch: int = 64, dtype: type = np.float64
) -> tuple[Arrays, Arrays]:
    """:class:`ReluNet`'s parameters (He-initialised) and a batch of inputs and class labels, in ``dtype``."""
    rng = np.random.default_rng(seed)
    params: Arrays = {}
    for k, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes), start=1):
        params[f"W{k}"] = rng.normal(size=(fan_in, fan_out)) * np.sqrt(2 / fan_in)
        params[f"b{k}"] = rng.normal(size=fan_out) * 0.1
    return in_dtype(params, {"X": rng.normal(size=(batch, sizes[0])), "y": rng.integers(0, sizes[-1], batch)}, dtype)


def relu_kink_off_theta(seed: int, ratio: float) -> tuple[Arrays, Arrays]:
    """A float32 :class:`ReluNet` (6-6-6-4, a batch of 10) whose unit 0 of the first layer sits ``ratio`` float32 first
    steps (``EPS**(1/5)``) below its kink at one sample (above it where ``ratio`` is negative): along ``b1[0]`` a kink
    that far from θ, the others 3 steps or more away; the loss is smooth at θ."""
    params, data = relu_problem(seed, sizes=(6, 6, 6, 4), batch=10)
    z = data["X"] @ params["W1"][:, 0]
    nearest = int(np.argmin(np.abs(z + params["b1"][0])))
    params["b1"][0] = -z[nearest] - ratio * float(np.finfo(np.float32).eps) ** 0.2
    return in_dtype(params, data, np.float32)


@dataclass(frozen=True)
class TableLookup:
    """A piecewise-linear table (``np.interp``) read at queries ``q``, squared error against targets, backward by hand:
    both the table's values and the queries are parameters. A query exactly on a table node sits on a kink; its
    derivative there is the right segment's slope (a valid one-sided derivative), or with ``zero_at_nodes`` 0 (review
    102: the code meant for a flat table's nodes, not a valid subgradient where both slopes have one sign)."""

    zero_at_nodes: bool = False

    def loss(self, params: Arrays, data: Arrays) -> float:
        return float(np.sum((np.interp(params["q"], data["tx"], params["tab"]) - data["qt"]) ** 2))

    def grad(self, params: Arrays, data: Arrays) -> Arrays:
        tx, tab, q = data["tx"], params["tab"], params["q"]
        idx = np.clip(np.searchsorted(tx, q, side="right") - 1, 0, len(tx) - 2)
        width = tx[idx + 1] - tx[idx]
        residual = 2 * (np.interp(q, tx, tab) - data["qt"])
        gq = residual * (tab[idx + 1] - tab[idx]) / width
        if self.zero_at_nodes:
            gq = np.where(np.isin(q, tx), 0, gq)
        share = (q - tx[idx]) / width
        gtab = np.zeros_like(tab)
        np.add.at(gtab, idx, residual * (1 - share))
        np.add.at(gtab, idx + 1, residual * share)
        return {"tab": gtab.astype(tab.dtype), "q": gq.astype(tab.dtype)}


def table_problem(dtype: type = np.float64) -> tuple[Arrays, Arrays]:
    """:class:`TableLookup`'s problem (review 102's): six nodes 0..5, eight queries, the first three on nodes 1, 2 and 4
    (at node 2 the loss's slopes are -1.10 and -2.59)."""
    params = {
        "tab": np.array([0.8730421526217066, -1.2803939447145731, -0.7130680950592722,
                         0.6210178535400985, -2.2501411735745918, 0.38636959756630584]),
        "q": np.array([1.0, 2.0, 4.0, 1.6271126275711958, 2.43484265062623, 4.291644038005401,
                       4.496600173398749, 1.845857904861723]),
    }  # fmt: skip
    data = {
        "tx": np.linspace(0, 5, 6),
        "qt": np.array([-1.4227417685154136, 0.25845279091298756, -0.5685494541476426, -1.0298044380114637,
                        -1.0430010800715654, 0.26841707970891465, 0.35867194917034445, 1.3224574697668332]),
    }  # fmt: skip
    return in_dtype(params, data, dtype)


def in_dtype(params: Arrays, data: Arrays, dtype: type) -> tuple[Arrays, Arrays]:
    """The parameters and the floating-point data cast to ``dtype`` (integer data, class labels, as they are)."""
    return (
        {name: value.astype(dtype) for name, value in params.items()},
        {name: value.astype(dtype) if value.dtype.kind == "f" else value for name, value in data.items()},
    )
