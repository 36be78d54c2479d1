"""A "hard" accuracy zoo: correct models that have defeated the checker's error bars.

Each model has exact hand-written numpy gradients, computes in its parameters' dtype
(float64 and float32; the analytic ones in complex arithmetic too), and comes with a
seeded problem (:meth:`HardModel.problem`). :func:`planted` returns the same model
with a **relative error of size r in one named tensor's gradient** (``grad[t] *= 1 + r``,
what "a planted relative error of 1e-3 in any one tensor" means), or in a single
element of it (its largest), so that a benchmark can ask how small an error each
setting still finds (``benchmarks/accuracy.py --only-power``).

Models (``MODELS``):

``kink-relu``
    relu → tanh → linear. Four relu pre-activations are exactly 0 at θ (exact dyadic
    inputs and weights, biases chosen to cancel), so θ sits on kinks along ``b1`` and
    some of ``W1``; ReLU'(0) = 0 is a valid subgradient. The noise probe's direction
    crosses them (it moves ``b1[0]``, whose unit is 0 on a sample whose input is 0),
    which used to widen every tensor's error bar, the smooth ``W2 b2 W3 b3`` included.
``offset-layernorm``
    Inputs ``1000 + 1e-3·noise`` minus an offset parameter ``c`` near 1000, layer-normed
    (variance ~1e-6, layer-norm epsilon 1e-12), then scaled, shifted and a linear output.
    A step of ``EPS**(1/5)·max(1, |θ|)`` along ``c`` is ~0.74 in float64 (41 in float32),
    hundreds of times the inputs' spread: far too coarse. The probe moving ``c`` by
    ~1000·δ leaves the linear regime too.
``sharp-exp``
    ``mean(exp(50·x·w)) + 0.5·mean((x·v − t)²)``: along ``w`` the curvature is 50x the
    slope (each derivative 50x the one before); ``v`` is a plain quadratic next to it.
``zero-loss``
    ``(sum(W @ x) + v·y) − C`` with ``C`` the same sum at θ, so that the loss at θ is
    exactly 0.0 while its terms are ~1e6: its rounding noise is ~1e6·eps, not
    eps·|loss| = 0. ``W @ x`` and ``v·y`` are exact at θ (small dyadic numbers), so the
    zero does not depend on the summation order. ``v``'s gradient ``y`` is ~1e-3: in
    float64 a difference along ``v`` has a relative rounding error ~1e-4; in float32
    ``v·y`` is below the sum's rounding unit and ``v``'s gradient cannot be seen at all.
``wide-float32``
    A 100x1000 weight (1e5 elements) and a bias, logistic loss on 16 samples: meant to be
    checked with random directions only (``indices: none, directions: 8``,
    :data:`DEFAULTS`), in float32 (float64 works too).
``smooth-tanh``
    A plain tanh MLP: the control, which every setting should handle.

All but ``wide-float32`` have fewer than 1000 parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from . import zoo

__all__ = [
    "DEFAULTS",
    "MODELS",
    "RATES",
    "HardModel",
    "Plant",
    "Planted",
    "kink_positions",
    "model",
    "plant_in",
    "planted",
    "settings_for",
]

Arrays = dict[str, np.ndarray]

#: The relative errors a power benchmark plants, largest first.
RATES = tuple(10.0**-k for k in range(1, 8))

#: Settings a model is meant to be checked with, merged into every named setting
#: (``wide-float32`` is too large for per-element differences in a benchmark).
DEFAULTS: dict[str, dict[str, object]] = {"wide-float32": {"indices": "none", "directions": 8}}

#: The sharp exponential's rate: exp(A·θ) has every derivative A times the one before.
A = 50.0
#: The offset layer norm's epsilon: far below its variance (~1e-6), as a tiny-variance layer norm has.
LN_EPS = 1e-12
#: The kink model's relu units with a pre-activation exactly 0, and on which sample.
KINKS = ((0, 0), (1, 1), (2, 2), (3, 3))  # (sample, unit)


@dataclass(frozen=True)
class Plant:
    """A planted error: ``grad[tensor] *= 1 + r``, or only its largest element's when ``element``."""

    tensor: str
    r: float
    element: bool = False


@dataclass(frozen=True)
class HardModel:
    """One hard-zoo model: ``kind`` picks the forward and backward passes; ``plant`` is an error or None."""

    kind: str
    plant: Plant | None = None

    @property
    def complex_step(self) -> bool:
        """Whether the loss is analytic in the parameters and computed in complex arithmetic."""
        return self.kind != "kink-relu"

    # -- the protocol -----------------------------------------------------------------------
    def loss(self, params: Arrays, data: Arrays) -> Any:
        return _FORWARD[self.kind](params, data, False)[0]

    def grad(self, params: Arrays, data: Arrays) -> Arrays:
        grads = {name: np.array(g) for name, g in _FORWARD[self.kind](params, data, True)[1].items()}
        if self.plant is not None:
            grads[self.plant.tensor] = _plant(grads[self.plant.tensor], self.plant)
        return grads

    # -- the problem --------------------------------------------------------------------------
    def problem(self, dtype: type = np.float64) -> tuple[Arrays, Arrays]:
        """Seeded parameters and data, in ``dtype``."""
        params, data = _PROBLEMS[self.kind](np.random.default_rng(11))
        params = {name: np.asarray(value, dtype=dtype) for name, value in params.items()}
        data = {name: np.asarray(value, dtype=dtype) for name, value in data.items()}
        if self.kind == "zero-loss":  # C: the sum at θ, in this dtype, so that the loss there is exactly 0
            data["C"] = np.asarray(_zero_sum(params, data), dtype=dtype)
        return params, data

    @property
    def tensors(self) -> tuple[str, ...]:
        """The parameter tensors, in flattening order."""
        return tuple(_PROBLEMS[self.kind](np.random.default_rng(11))[0])


@dataclass(frozen=True)
class Planted:
    """Any model (a zoo's, a test's) with a planted error in its analytic gradient (:class:`Plant`)."""

    inner: Any
    plant: Plant

    def loss(self, params: Arrays, data: Arrays) -> Any:
        return self.inner.loss(params, data)

    def grad(self, params: Arrays, data: Arrays) -> Arrays:
        grads = dict(self.inner.grad(params, data))
        grads[self.plant.tensor] = _plant(np.asarray(grads[self.plant.tensor]), self.plant)
        return grads


def plant_in(model: Any, tensor: str, r: float, *, element: bool = False) -> Planted:
    """``model`` with a relative error ``r`` in ``tensor``'s gradient (or its largest element's)."""
    return Planted(model, Plant(tensor, r, element))


def _plant(g: np.ndarray, plant: Plant) -> np.ndarray:
    """``g`` with a relative error ``r`` (computed in float64, rounded once to ``g``'s dtype)."""
    wide = g.astype(np.float64)
    if plant.element:
        flat = wide.reshape(-1)
        k = int(np.argmax(np.abs(flat)))
        flat[k] *= 1 + plant.r
    else:
        wide *= 1 + plant.r
    return wide.astype(g.dtype)


# Each forward returns (loss, grads); grads only when asked (the loss alone is what finite differences call).
Forward = Callable[[Arrays, Arrays, bool], tuple[Any, Arrays]]


def _relu(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ReLU and its derivative, 0 at 0 (a valid subgradient); by the real part for a complex step."""
    on = z.real > 0
    return np.where(on, z, 0).astype(z.dtype), on.astype(z.dtype)


def _mse(out: np.ndarray, t: np.ndarray) -> tuple[Any, np.ndarray]:
    """Half the mean squared error over the batch, and its gradient with respect to ``out``."""
    e = out - t
    return 0.5 * np.sum(e * e) / len(out), e / len(out)


def _kink_relu(p: Arrays, d: Arrays, want: bool) -> tuple[Any, Arrays]:
    x, t = d["x"], d["t"]
    z1 = x @ p["W1"].T + p["b1"]
    a1, d1 = _relu(z1)
    a2 = np.tanh(a1 @ p["W2"].T + p["b2"])
    loss, g_out = _mse(a2 @ p["W3"].T + p["b3"], t)
    if not want:
        return loss, {}
    g_z2 = (g_out @ p["W3"]) * (1 - a2 * a2)
    g_z1 = (g_z2 @ p["W2"]) * d1
    grads = {
        "W1": g_z1.T @ x,
        "b1": g_z1.sum(0),
        "W2": g_z2.T @ a1,
        "b2": g_z2.sum(0),
        "W3": g_out.T @ a2,
        "b3": g_out.sum(0),
    }
    return loss, grads


def _normalised(p: Arrays, d: Arrays) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The offset layer norm's ``xhat``, ``1/sqrt(var + LN_EPS)`` and variance, per sample."""
    u = d["x"] - p["c"]  # exact (Sterbenz): both near 1000
    centred = u - u.mean(1, keepdims=True)
    var = (centred * centred).mean(1, keepdims=True)
    inv = 1 / np.sqrt(var + LN_EPS)
    return centred * inv, inv, var


def _offset_layernorm(p: Arrays, d: Arrays, want: bool) -> tuple[Any, Arrays]:
    xhat, inv, _ = _normalised(p, d)
    y = p["gamma"] * xhat + p["beta"]
    out = y @ p["W"].T + p["b"]
    n = len(xhat)
    e = out - d["t"]
    loss = 0.5 * np.sum(e * e) / n
    if not want:
        return loss, {}
    g_out = e / n
    g_y = g_out @ p["W"]
    g_xhat = g_y * p["gamma"]
    # A layer norm's backward pass: dL/du = inv · (g − mean(g) − xhat · mean(g · xhat)); u = x − c.
    g_u = inv * (g_xhat - g_xhat.mean(1, keepdims=True) - xhat * (g_xhat * xhat).mean(1, keepdims=True))
    grads = {
        "c": -g_u.sum(0),
        "gamma": (g_y * xhat).sum(0),
        "beta": g_y.sum(0),
        "W": g_out.T @ y,
        "b": g_out.sum(0),
    }
    return loss, grads


def _sharp_exp(p: Arrays, d: Arrays, want: bool) -> tuple[Any, Arrays]:
    x, t = d["x"], d["t"]
    n = len(x)
    grow = np.exp(A * (x @ p["w"]))
    r = x @ p["v"] - t
    loss = np.sum(grow) / n + 0.5 * np.sum(r * r) / n
    if not want:
        return loss, {}
    return loss, {"w": A * (x.T @ grow) / n, "v": x.T @ r / n}


def _zero_sum(p: Arrays, d: Arrays) -> Any:
    """``sum(W @ x) + v·y``: each of the two terms exact at θ, rounded once when added."""
    return np.sum(p["W"] @ d["x"]) + np.sum(p["v"] * d["y"])


def _zero_loss(p: Arrays, d: Arrays, want: bool) -> tuple[Any, Arrays]:
    loss = _zero_sum(p, d) - d["C"]
    if not want:
        return loss, {}
    rows = p["W"].shape[0]
    return loss, {
        "W": np.broadcast_to(d["x"], (rows, d["x"].size)).astype(p["W"].dtype),
        "v": d["y"].astype(p["v"].dtype),
    }


def _wide(p: Arrays, d: Arrays, want: bool) -> tuple[Any, Arrays]:
    x, y = d["x"], d["y"]
    z = x @ p["W"].T + p["b"]
    n = len(x)
    loss = np.sum(np.log1p(np.exp(z)) - y * z) / n
    if not want:
        return loss, {}
    g = (1 / (1 + np.exp(-z)) - y) / n
    return loss, {"W": g.T @ x, "b": g.sum(0)}


def _smooth_tanh(p: Arrays, d: Arrays, want: bool) -> tuple[Any, Arrays]:
    x, t = d["x"], d["t"]
    h = np.tanh(x @ p["W1"].T + p["b1"])
    loss, g_out = _mse(h @ p["W2"].T + p["b2"], t)
    if not want:
        return loss, {}
    g_z = (g_out @ p["W2"]) * (1 - h * h)
    return loss, {"W1": g_z.T @ x, "b1": g_z.sum(0), "W2": g_out.T @ h, "b2": g_out.sum(0)}


_FORWARD: dict[str, Forward] = {
    "kink-relu": _kink_relu,
    "offset-layernorm": _offset_layernorm,
    "sharp-exp": _sharp_exp,
    "zero-loss": _zero_loss,
    "wide-float32": _wide,
    "smooth-tanh": _smooth_tanh,
}


def _kink_problem(rng: np.random.Generator) -> tuple[Arrays, Arrays]:
    n, d, h1, h2, k = 16, 6, 8, 6, 3
    # Small dyadic numbers: every product and partial sum of x @ W1.T + b1 is exact, in float32
    # too and in any summation order, so the pre-activations chosen to be 0 are exactly 0.
    x = rng.integers(-16, 17, (n, d)) / 8
    w1 = rng.integers(-12, 13, (h1, d)) / 16
    b1 = rng.integers(-32, 33, h1) / 128
    x[0] = 0  # unit 0 on sample 0: b1[0] + 0, a kink along b1[0] alone
    for sample, unit in KINKS:
        b1[unit] = 0.0 - x[sample] @ w1[unit]  # 0.0 - s: never a negative zero
    params = {
        "W1": w1,
        "b1": b1,
        "W2": rng.normal(scale=0.5, size=(h2, h1)),
        "b2": rng.normal(scale=0.1, size=h2),
        "W3": rng.normal(scale=0.5, size=(k, h2)),
        "b3": rng.normal(scale=0.1, size=k),
    }
    return params, {"x": x, "t": rng.normal(size=(n, k))}


def _offset_problem(rng: np.random.Generator) -> tuple[Arrays, Arrays]:
    n, d, k = 10, 8, 3
    params = {
        "c": 1000 + 1e-3 * rng.normal(size=d),
        "gamma": 1 + 0.1 * rng.normal(size=d),
        "beta": 0.1 * rng.normal(size=d),
        "W": rng.normal(scale=0.5, size=(k, d)),
        "b": rng.normal(scale=0.1, size=k),
    }
    return params, {"x": 1000 + 1e-3 * rng.normal(size=(n, d)), "t": rng.normal(size=(n, k))}


def _sharp_problem(rng: np.random.Generator) -> tuple[Arrays, Arrays]:
    n, d = 20, 6
    params = {"w": rng.normal(scale=0.012, size=d), "v": rng.normal(scale=0.5, size=d)}  # A·x·w ~ N(0, 1.5²)
    return params, {"x": rng.normal(size=(n, d)), "t": rng.normal(size=n)}


def _zero_problem(rng: np.random.Generator) -> tuple[Arrays, Arrays]:
    # Integers ~400: W @ x is ~6e5 per row and exact (below 2**24, float32's integers).
    # v·y is exact too: v in 1/64ths, y in 2**-16ths (~1e-3, never 0).
    y = rng.integers(32, 129, 6) * rng.choice([-1, 1], 6) / 2**16
    params = {"W": rng.integers(200, 601, (3, 4)).astype(float), "v": rng.integers(-128, 129, 6) / 64}
    return params, {"x": rng.integers(200, 601, 4).astype(float), "y": y}


def _wide_problem(rng: np.random.Generator) -> tuple[Arrays, Arrays]:
    n, d, k = 16, 1000, 100
    params = {"W": rng.normal(size=(k, d)), "b": rng.normal(scale=0.1, size=k)}
    data = {"x": rng.normal(size=(n, d)) / np.sqrt(d), "y": (rng.random((n, k)) < 0.5).astype(float)}
    return params, data


def _smooth_problem(rng: np.random.Generator) -> tuple[Arrays, Arrays]:
    n, d, h, k = 12, 5, 8, 3
    params = {
        "W1": rng.normal(scale=0.6, size=(h, d)),
        "b1": rng.normal(scale=0.3, size=h),
        "W2": rng.normal(scale=0.6, size=(k, h)),
        "b2": rng.normal(scale=0.3, size=k),
    }
    return params, {"x": rng.normal(size=(n, d)), "t": rng.normal(size=(n, k))}


_PROBLEMS: dict[str, Callable[[np.random.Generator], tuple[Arrays, Arrays]]] = {
    "kink-relu": _kink_problem,
    "offset-layernorm": _offset_problem,
    "sharp-exp": _sharp_problem,
    "zero-loss": _zero_problem,
    "wide-float32": _wide_problem,
    "smooth-tanh": _smooth_problem,
}

MODELS = tuple(_FORWARD)


def model(kind: str) -> HardModel:
    """The correct model of this kind."""
    return HardModel(kind)


def planted(kind: str, tensor: str, r: float, *, element: bool = False) -> HardModel:
    """The model of this kind with a relative error ``r`` in ``tensor``'s gradient (or its largest element's)."""
    if tensor not in model(kind).tensors:
        raise ValueError(f"{kind} has no tensor {tensor!r}; it has {', '.join(model(kind).tensors)}.")
    return replace(model(kind), plant=Plant(tensor, r, element))


def kink_positions() -> tuple[tuple[int, int], ...]:
    """``(sample, unit)`` of the kink model's relu pre-activations that are exactly 0 at θ."""
    return KINKS


def settings_for(kind: str, settings: str, dtype: type) -> dict[str, object]:
    """The named zoo setting (jax's tolerance per dtype included) with the model's own defaults merged in.

    ``jax-rule`` keeps its single direction per tensor: it is jax's rule.
    """
    chosen = zoo.chosen_settings(settings, dtype)
    for key, value in DEFAULTS.get(kind, {}).items():
        if not (settings == "jax-rule" and key == "directions"):
            chosen[key] = value
    return chosen
