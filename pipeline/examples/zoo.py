"""A zoo of small models with hand-written gradients, and the bugs people plant in them.

Used by the accuracy suite (``benchmarks/accuracy.py``) and its tests: each model
is correct as written; :func:`planted` returns the same model with one bug in
one tensor's gradient. Every model computes in its parameters' dtype, so the
zoo runs in float64 and float32 alike; those marked ``complex_step`` also
compute in complex arithmetic.

Bugs (``BUGS``):

``scale``        the tensor's gradient is 3x too large (a forgotten 1/3, a doubled sum)
``sign``         its sign is flipped
``transpose``    a square weight's gradient is transposed
``missing``      a term of the gradient is left out (the model says which)
``one-element``  one element is wrong (its largest, 10% off)
``off-by-one``   an index off by one: element i gets element i+1's gradient

and, to measure sharpness rather than coverage, ``subtle``: one element 1e-5 off
(relative), planted where ``one-element`` is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

__all__ = [
    "BUGS",
    "JAX_RULE",
    "MODELS",
    "SEED_SETTINGS",
    "SETTINGS",
    "TORCH_RULE",
    "Outcome",
    "ZooModel",
    "chosen_settings",
    "model",
    "planted",
    "run_case",
]

Arrays = dict[str, np.ndarray]

BUGS = ("scale", "sign", "transpose", "missing", "one-element", "off-by-one")


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1 / (1 + np.exp(-z)))


def _act(kind: str, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Activation and its derivative (ReLU': 0 at 0, a valid subgradient)."""
    if kind == "relu":
        return np.where(z.real > 0, z, 0), (z.real > 0).astype(z.dtype)
    if kind == "tanh":
        t = np.asarray(np.tanh(z))
        return t, 1 - t * t
    s = np.asarray(_sigmoid(z))
    return s, s * (1 - s)


@dataclass(frozen=True)
class ZooModel:
    """One zoo model: ``kind`` picks the forward and backward passes; ``bug`` is ``(kind, tensor)`` or None."""

    kind: str
    bug: tuple[str, str] | None = None

    @property
    def complex_step(self) -> bool:
        """Whether the loss is analytic in the parameters and computed in complex arithmetic."""
        return self.kind in ("logreg", "mlp-tanh", "mlp-sigmoid", "l2-penalty", "layernorm")

    # -- the protocol -----------------------------------------------------------------------
    def loss(self, params: Arrays, data: Arrays) -> Any:
        return _FORWARD[self.kind](params, data)[0]

    def grad(self, params: Arrays, data: Arrays) -> Arrays:
        grads, missing = _FORWARD[self.kind](params, data)[1:]
        grads = {name: np.array(g) for name, g in grads.items()}
        if self.bug is not None:
            kind, name = self.bug
            g = grads[name]
            if kind == "scale":
                grads[name] = 3 * g
            elif kind == "sign":
                grads[name] = -g
            elif kind == "transpose":
                grads[name] = g.T.copy()
            elif kind == "missing":
                grads[name] = g - missing[name]
            elif kind == "one-element":
                flat = g.reshape(-1).copy()
                k = int(np.argmax(np.abs(flat)))
                flat[k] *= 1.1
                grads[name] = flat.reshape(g.shape)
            elif kind == "off-by-one":
                grads[name] = np.roll(g, -1, axis=0)
            elif kind == "subtle":  # one element 1e-5 off, relative: below any fixed tolerance's reach
                flat = g.reshape(-1).copy()
                k = int(np.argmax(np.abs(flat)))
                flat[k] *= 1 + 1e-5
                grads[name] = flat.reshape(g.shape)
        return grads

    # -- the problem --------------------------------------------------------------------------
    def problem(self, dtype: type = np.float64) -> tuple[Arrays, Arrays]:
        """Seeded parameters and data, in ``dtype``."""
        params, data = _PROBLEMS[self.kind](np.random.default_rng(7))
        return (
            {name: np.asarray(value, dtype=dtype) for name, value in params.items()},
            {
                name: value if value.dtype.kind in "iu" else np.asarray(value, dtype=dtype)
                for name, value in data.items()
            },
        )

    def bugs(self) -> list[tuple[str, str]]:
        """The bugs planted in this model: ``(bug, tensor)``."""
        return [(bug, tensor) for bug, tensor in _BUG_SITES[self.kind].items()]


# Each forward returns (loss, grads, missing): `missing` is the term the `missing` bug leaves out.
Forward = Callable[[Arrays, Arrays], tuple[Any, Arrays, Arrays]]  # the loss: complex for complex params


def _logreg(p: Arrays, d: Arrays) -> tuple[Any, Arrays, Arrays]:
    x, y = d["x"], d["y"]
    z = x @ p["w"] + p["b"]
    n = len(y)
    loss = np.sum(np.log1p(np.exp(z)) - y * z) / n + 0.5 * 0.1 * np.sum(p["w"] * p["w"])
    r = (_sigmoid(z) - y) / n
    grads = {"w": x.T @ r + 0.1 * p["w"], "b": np.asarray(np.sum(r))}
    return loss, grads, {"w": 0.1 * p["w"]}


def _mlp(kind: str) -> Forward:
    def forward(p: Arrays, d: Arrays) -> tuple[Any, Arrays, Arrays]:
        x, t = d["x"], d["t"]
        z1 = x @ p["W1"].T + p["b1"]
        h, dh = _act(kind, z1)
        out = h @ p["W2"].T + p["b2"]
        n = len(x)
        e = out - t
        loss = 0.5 * np.sum(e * e) / n
        g_out = e / n
        g_z1 = (g_out @ p["W2"]) * dh
        grads = {"W1": g_z1.T @ x, "b1": g_z1.sum(0), "W2": g_out.T @ h, "b2": g_out.sum(0)}
        return loss, grads, {"W1": g_z1.T @ x, "b1": g_z1.sum(0), "W2": g_out.T @ h, "b2": g_out.sum(0)}

    return forward


def _softmax(p: Arrays, d: Arrays) -> tuple[Any, Arrays, Arrays]:
    x, labels = d["x"], d["labels"]
    z = x @ p["W"].T + p["b"]
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    prob = e / e.sum(1, keepdims=True)
    n = len(x)
    loss = -np.sum(np.log(prob[np.arange(n), labels])) / n
    onehot = np.zeros_like(prob)
    onehot[np.arange(n), labels] = 1
    g = (prob - onehot) / n
    # The "missing" bug forgets the softmax's normalisation: only the one-hot term is kept.
    return loss, {"W": g.T @ x, "b": g.sum(0)}, {"W": prob.T @ x / n, "b": prob.sum(0) / n}


def _conv1d(p: Arrays, d: Arrays) -> tuple[Any, Arrays, Arrays]:
    x, t = d["x"], d["t"]  # x: (N, C_in, L); w: (C_out, C_in, K)
    w, b = p["w"], p["b"]
    k = w.shape[2]
    length = x.shape[2] - k + 1
    windows = np.stack([x[:, :, j : j + length] for j in range(k)], axis=-1)  # (N, C_in, L', K)
    out = np.einsum("ncjk,ock->noj", windows, w) + b[None, :, None]
    n = len(x)
    e = out - t
    loss = 0.5 * np.sum(e * e) / n
    g = e / n
    return loss, {"w": np.einsum("noj,ncjk->ock", g, windows), "b": g.sum((0, 2))}, {"w": 0 * w, "b": g.sum((0, 2))}


def _layernorm(p: Arrays, d: Arrays) -> tuple[Any, Arrays, Arrays]:
    x, t = d["x"], d["t"]
    h = x @ p["W"].T
    mu = h.mean(1, keepdims=True)
    c = h - mu
    var = (c * c).mean(1, keepdims=True)
    inv = 1 / np.sqrt(var + 1e-5)
    xhat = c * inv
    y = p["gamma"] * xhat + p["beta"]
    n = len(h)
    e = y - t
    loss = 0.5 * np.sum(e * e) / n
    g_y = e / n
    g_xhat = g_y * p["gamma"]
    # dL/dh of a layer norm: inv · (g − mean(g) − xhat · mean(g · xhat)); the last term is the
    # variance's, which the "missing" bug forgets.
    var_term = inv * xhat * (g_xhat * xhat).mean(1, keepdims=True)
    g_h = inv * (g_xhat - g_xhat.mean(1, keepdims=True)) - var_term
    grads = {"W": g_h.T @ x, "gamma": (g_y * xhat).sum(0), "beta": g_y.sum(0)}
    return loss, grads, {"W": -(var_term.T @ x), "gamma": 0 * p["gamma"], "beta": 0 * p["beta"]}


def _l2(p: Arrays, d: Arrays) -> tuple[Any, Arrays, Arrays]:
    x, t = d["x"], d["t"]
    lam = 0.05
    e = x @ p["w"] - t
    n = len(x)
    loss = 0.5 * np.sum(e * e) / n + 0.5 * lam * np.sum(p["w"] * p["w"])
    return loss, {"w": x.T @ e / n + lam * p["w"]}, {"w": lam * p["w"]}


def _embedding(p: Arrays, d: Arrays) -> tuple[Any, Arrays, Arrays]:
    tokens, y = d["tokens"], d["y"]  # tokens: (N, T) ints
    e_rows = p["E"][tokens]  # (N, T, D)
    h = e_rows.mean(1)
    pred = h @ p["v"]
    n, steps = tokens.shape
    r = pred - y
    loss = 0.5 * np.sum(r * r) / n
    g_h = np.outer(r / n, p["v"])  # (N, D)
    rows = np.repeat(g_h / steps, steps, axis=0)
    g_e = np.zeros_like(p["E"])
    np.add.at(g_e, tokens.reshape(-1), rows)
    # The classic "missing" bug: g_e[tokens] = rows keeps one of each repeated token's terms.
    overwritten = np.zeros_like(p["E"])
    overwritten[tokens.reshape(-1)] = rows
    return loss, {"E": g_e, "v": h.T @ (r / n)}, {"E": g_e - overwritten, "v": h.T @ (r / n)}


_FORWARD: dict[str, Forward] = {
    "logreg": _logreg,
    "mlp-relu": _mlp("relu"),
    "mlp-tanh": _mlp("tanh"),
    "mlp-sigmoid": _mlp("sigmoid"),
    "softmax": _softmax,
    "conv1d": _conv1d,
    "layernorm": _layernorm,
    "l2-penalty": _l2,
    "embedding": _embedding,
}


def _mlp_problem(rng: np.random.Generator) -> tuple[Arrays, Arrays]:
    d, h, k, n = 5, 5, 3, 12
    x = rng.normal(size=(n, d))
    x[0] = 0  # with b1[0] = 0, unit 0's pre-activation is exactly 0 there: a ReLU kink along b1[0]
    b1 = rng.normal(scale=0.3, size=h)
    b1[0] = 0
    params = {"W1": rng.normal(scale=0.6, size=(h, d)), "b1": b1, "W2": rng.normal(scale=0.6, size=(k, h))}
    params["b2"] = rng.normal(scale=0.3, size=k)
    return params, {"x": x, "t": rng.normal(size=(n, k))}


_PROBLEMS: dict[str, Callable[[np.random.Generator], tuple[Arrays, Arrays]]] = {
    "logreg": lambda r: (
        {"w": r.normal(size=6), "b": np.array(0.2)},
        {"x": r.normal(size=(20, 6)), "y": (r.random(20) > 0.5).astype(float)},
    ),
    "mlp-relu": _mlp_problem,
    "mlp-tanh": _mlp_problem,
    "mlp-sigmoid": _mlp_problem,
    "softmax": lambda r: (
        {"W": r.normal(scale=0.5, size=(4, 4)), "b": r.normal(scale=0.1, size=4)},
        {"x": r.normal(size=(15, 4)), "labels": r.integers(0, 4, 15)},
    ),
    "conv1d": lambda r: (
        {"w": r.normal(scale=0.5, size=(3, 2, 3)), "b": r.normal(scale=0.1, size=3)},
        {"x": r.normal(size=(4, 2, 10)), "t": r.normal(size=(4, 3, 8))},
    ),
    "layernorm": lambda r: (
        {"W": r.normal(scale=0.5, size=(5, 5)), "gamma": 1 + 0.1 * r.normal(size=5), "beta": 0.1 * r.normal(size=5)},
        {"x": r.normal(size=(8, 5)), "t": r.normal(size=(8, 5))},
    ),
    "l2-penalty": lambda r: (
        {"w": r.normal(size=(4, 4))},
        {"x": r.normal(size=(10, 4)), "t": r.normal(size=(10, 4))},
    ),
    "embedding": lambda r: (
        {"E": r.normal(scale=0.5, size=(7, 3)), "v": r.normal(size=3)},
        {"tokens": r.integers(0, 7, (9, 4)), "y": r.normal(size=9)},
    ),
}

#: Where each bug is planted, per model (a transpose needs a square weight).
_BUG_SITES: dict[str, dict[str, str]] = {
    "logreg": {"scale": "w", "sign": "b", "missing": "w", "one-element": "w", "off-by-one": "w"},
    "mlp-relu": {
        "scale": "b1",
        "sign": "W2",
        "transpose": "W1",
        "missing": "b2",
        "one-element": "W1",
        "off-by-one": "b1",
    },
    "mlp-tanh": {
        "scale": "W1",
        "sign": "b1",
        "transpose": "W1",
        "missing": "W2",
        "one-element": "b2",
        "off-by-one": "W2",
    },
    "mlp-sigmoid": {
        "scale": "W2",
        "sign": "W1",
        "transpose": "W1",
        "missing": "b1",
        "one-element": "W1",
        "off-by-one": "b2",
    },
    "softmax": {"scale": "b", "sign": "W", "transpose": "W", "missing": "W", "one-element": "W", "off-by-one": "b"},
    "conv1d": {"scale": "w", "sign": "b", "missing": "b", "one-element": "w", "off-by-one": "w"},
    "layernorm": {
        "scale": "gamma",
        "sign": "beta",
        "transpose": "W",
        "missing": "W",
        "one-element": "W",
        "off-by-one": "gamma",
    },
    "l2-penalty": {"scale": "w", "sign": "w", "transpose": "w", "missing": "w", "one-element": "w", "off-by-one": "w"},
    "embedding": {"scale": "v", "sign": "E", "missing": "E", "one-element": "E", "off-by-one": "E"},
}

MODELS = tuple(_FORWARD)


def model(kind: str) -> ZooModel:
    """The correct model of this kind."""
    return ZooModel(kind)


def planted(kind: str, bug: str, tensor: str | None = None) -> ZooModel:
    """The model of this kind with ``bug`` planted in ``tensor`` (by default where the zoo plants it)."""
    site = _BUG_SITES[kind]["one-element" if bug == "subtle" else bug]
    return replace(model(kind), bug=(bug, tensor or site))


@dataclass(frozen=True)
class Outcome:
    """One zoo check: did it fail, and did it name exactly the planted tensor?"""

    kind: str
    bug: str | None
    tensor: str | None
    dtype: str
    settings: str
    passed: bool
    failing: tuple[str, ...]
    difference: float
    n_wrong: int
    n_nondifferentiable: int
    diagnosis: tuple[str, ...]

    @property
    def right(self) -> bool:
        """A correct model passes; a planted bug fails naming exactly its tensor."""
        return self.passed if self.bug is None else (not self.passed and self.failing == (self.tensor,))


#: The seed's settings, named (``gradient_check_n``): a fixed step and a global threshold.
SEED_SETTINGS = {"scheme": "central", "epsilon": 1e-7, "threshold": 2e-7, "tolerance": "none"}
#: torch.autograd.gradcheck's rule, emulated: a fixed step 1e-6, per element |a - n| <= 1e-5 + 1e-3·|n|
#: (and none of this project's second looks).
TORCH_RULE = {
    "scheme": "central",
    "epsilon": 1e-6,
    "tolerance": {"atol": 1e-5, "rtol": 1e-3, "safety": 1e-300},
    "second_look": False,
}
#: jax's check_grads, emulated: a random direction, step 1e-4, |a - n| <= tol + tol·|n| with
#: tol 1e-5 for float64 and 2e-3 for float32. (jax takes one direction over all parameters
#: and cannot say which tensor is wrong; here each tensor gets its own.)
JAX_RULE = {"scheme": "central", "epsilon": 1e-4, "indices": "none", "directions": 1, "second_look": False}
JAX_TOLERANCE = {"float64": 1e-5, "float32": 2e-3}
SETTINGS: dict[str, dict[str, object]] = {
    "default": {},
    "seed": SEED_SETTINGS,
    "torch-rule": TORCH_RULE,
    "jax-rule": JAX_RULE,
}


def chosen_settings(settings: str, dtype: type) -> dict[str, object]:
    """The keyword arguments of the named setting for parameters of ``dtype`` (jax's tolerance depends on it)."""
    chosen = dict(SETTINGS[settings])
    if settings == "jax-rule":
        tol = JAX_TOLERANCE[np.dtype(dtype).name]
        chosen["tolerance"] = {"atol": tol, "rtol": tol, "safety": 1e-300}
    return chosen


def run_case(kind: str, bug: str | None, settings: str, dtype: type, client: object) -> Outcome:
    """Check one zoo model (correct, or with ``bug`` planted) through the pipeline on ``client``."""
    from pipeline.api import check  # the zoo is plain models; only running it needs the pipeline

    subject = model(kind) if bug is None else planted(kind, bug)
    params, data = subject.problem(dtype)
    chosen = chosen_settings(settings, dtype)
    report = check(subject, params, data, client=client, **chosen)  # type: ignore[arg-type]
    tensor = None if subject.bug is None else subject.bug[1]
    diagnosis = next((t.diagnosis for t in report.tensors if t.name == tensor), ())
    return Outcome(
        kind,
        bug,
        tensor,
        np.dtype(dtype).name,
        settings,
        report.passed,
        report.failing,
        report.difference,
        report.n_wrong,
        report.n_nondifferentiable,
        diagnosis,
    )
