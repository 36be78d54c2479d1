"""Independent references the tests compare against."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def seed_loop(
    model: Any, params: dict[str, np.ndarray], data: dict[str, np.ndarray], order: Sequence[str], epsilon: float
) -> np.ndarray:
    """The seed's ``gradient_check_n`` loop: copy the vector, perturb one entry, rebuild the dict, two losses."""
    theta = np.concatenate([params[n].reshape(-1) for n in order])
    offsets = np.cumsum([0] + [params[n].size for n in order])

    def as_dict(vector: np.ndarray) -> dict[str, np.ndarray]:
        return {n: vector[offsets[k] : offsets[k + 1]].reshape(params[n].shape) for k, n in enumerate(order)}

    numeric = np.empty(theta.size)
    for i in range(theta.size):
        plus, minus = np.copy(theta), np.copy(theta)
        plus[i] = plus[i] + epsilon
        minus[i] = minus[i] - epsilon
        numeric[i] = (model.loss(as_dict(plus), data) - model.loss(as_dict(minus), data)) / (2 * epsilon)
    return numeric
