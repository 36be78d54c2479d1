"""The scale benchmark's model: a float32 tanh network of 4 square layers, its gradient written by hand.

Named in a config as ``benchmarks/scale_model.py:model`` (or by absolute path). Layer l maps
h to tanh(W_l h + b_l) with W_l of shape (d, d) and b_l of shape (d,); the loss is
0.5·sum(h_4²), accumulated in float64. Every tensor is at most a quarter of the parameters,
so a sampled check's per-tensor work is spread over four weights and four biases.

Everything heavy stays in float32: the matrix-vector products (one pass over 4·d² floats,
memory-bound, which is what makes the loss cost tens of milliseconds at d = 5000) and
the gradient's outer products. Only the d-sized last activation is upcast for the sum.
``problem(n_target, seed)`` picks d so that 4·(d² + d) is closest to ``n_target``
(d = 500: 1.0·10^6, 1581: 1.0·10^7, 5000: 1.0·10^8) and returns (params, data).

The file imports numpy alone: the pipeline ships its source text to the workers.
"""

from __future__ import annotations

import math

import numpy as np

LAYERS = 4

Arrays = dict[str, np.ndarray]


def width(n_target: float) -> int:
    """The d whose 4·(d² + d) parameters are closest to ``n_target`` (the larger d of a tie)."""
    d = round((math.sqrt(1 + 4 * n_target / LAYERS) - 1) / 2)
    candidates = [w for w in (d - 1, d, d + 1) if w >= 1] or [1]
    return min(candidates, key=lambda w: (abs(LAYERS * (w * w + w) - n_target), -w))


def problem(n_target: float, seed: int = 0) -> tuple[Arrays, Arrays]:
    """Parameters (W0, b0, ..., W3, b3, in that order) and data (``x``) for about ``n_target`` parameters.

    W is standard normal over sqrt(d), so that each pre-activation is O(1) and tanh stays
    away from saturation; the biases are small. Drawn in float32 directly: no float64
    copy of a 400 MB weight is ever made.
    """
    d = width(n_target)
    rng = np.random.default_rng(seed)
    params: Arrays = {}
    scale = np.float32(1 / math.sqrt(d))
    for layer in range(LAYERS):
        weight = rng.standard_normal((d, d), dtype=np.float32)
        weight *= scale
        params[f"W{layer}"] = weight
        params[f"b{layer}"] = np.float32(0.1) * rng.standard_normal(d, dtype=np.float32)
    data = {"x": rng.standard_normal(d, dtype=np.float32)}
    return params, data


class ScaleModel:
    """loss = 0.5·sum(h²) after 4 layers h <- tanh(W h + b); grad by a hand-written backward pass."""

    def _forward(self, params: Arrays, data: Arrays) -> list[np.ndarray]:
        hs = [np.asarray(data["x"], dtype=params["W0"].dtype)]  # never a float64 x against a float32 W
        for layer in range(LAYERS):
            a = params[f"W{layer}"] @ hs[-1]  # float32 (d, d) @ float32 (d,): sgemv, no upcast
            a += params[f"b{layer}"]
            hs.append(np.tanh(a, out=a))
        return hs

    def loss(self, params: Arrays, data: Arrays) -> float:
        last = self._forward(params, data)[-1].astype(np.float64)  # d values only
        return 0.5 * float(np.dot(last, last))

    def grad(self, params: Arrays, data: Arrays) -> Arrays:
        hs = self._forward(params, data)
        grads: Arrays = {}
        upstream = hs[-1].copy()  # dL/dh_4 = h_4
        for layer in reversed(range(LAYERS)):
            h = hs[layer + 1]
            delta = upstream * (np.float32(1) - h * h)  # through tanh: dL/da
            grads[f"W{layer}"] = np.outer(delta, hs[layer])  # float32 (d, d)
            grads[f"b{layer}"] = delta
            if layer:
                upstream = params[f"W{layer}"].T @ delta
        return {name: grads[name] for name in params}


model = ScaleModel()
