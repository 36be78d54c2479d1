"""Finite differences against analytic truth, and against the seed's own loop."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.examples import seed_mlp
from pipeline.fd import central_differences, normalized_difference

from .reference import seed_loop


def test_central_differences_match_analytic_derivatives() -> None:
    # J = sum(exp(θ) * c): every derivative of J along θ_i is exp(θ_i) * c_i. The error of a
    # central difference is at most h^2/6 * |third derivative| (truncation) plus a few ulps
    # of J over h (rounding in the two evaluations).
    rng = np.random.default_rng(3)
    theta = rng.uniform(-1, 1, 50)
    c = rng.uniform(0.5, 2, 50)
    h = 1e-5
    truth = np.exp(theta) * c
    bound = h**2 / 6 * 1.01 * truth + 4 * np.finfo(float).eps * float(np.sum(truth)) / h
    numeric = central_differences(lambda: float(np.sum(np.exp(theta) * c)), theta, range(50), h)
    assert np.all(np.abs(numeric - truth) <= bound)
    assert np.max(bound / truth) < 5e-8  # the bound is tight enough to mean something


def test_perturbation_is_in_place_and_exactly_undone() -> None:
    theta = np.linspace(-1, 1, 7)
    before = theta.copy()
    seen: list[float] = []

    def loss() -> float:
        seen.append(float(theta[3]))  # the loss reads the caller's own array
        return float(np.sum(theta**2))

    central_differences(loss, theta, [3], 0.25)
    assert seen == [before[3] + 0.25, before[3] - 0.25]
    np.testing.assert_array_equal(theta, before)


def test_the_array_is_restored_when_the_loss_raises() -> None:
    theta = np.arange(4.0)

    def loss() -> float:
        raise RuntimeError("model broke")

    with pytest.raises(RuntimeError, match="model broke"):
        central_differences(loss, theta, [2], 0.5)
    np.testing.assert_array_equal(theta, np.arange(4.0))


def test_bit_for_bit_the_seed_loop() -> None:
    params, data = seed_mlp.problem()
    model, eps = seed_mlp.correct, 1e-7
    expected = seed_loop(model, params, data, seed_mlp.ORDER, eps)
    got = np.concatenate(
        [
            central_differences(lambda: model.loss(params, data), params[n].reshape(-1), range(params[n].size), eps)
            for n in seed_mlp.ORDER
        ]
    )
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(("diff", "scale", "expected"), [(1.0, 4.0, 0.25), (0.0, 0.0, 0.0), (1.0, 0.0, float("inf"))])
def test_normalized_difference(diff: float, scale: float, expected: float) -> None:
    assert normalized_difference(diff, scale) == expected
