"""Finite differences against analytic truth, and against the seed's own loop."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.examples import seed_mlp
from pipeline.fd import MINUS, PLUS, batched_central_differences, central_differences, normalized_difference

from . import models
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


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_batched_differences_equal_the_plain_ones(dtype: type) -> None:
    params, data = models.problem(dtype)  # a 3-d tensor, a 0-d tensor, a vector
    model = models.smooth_batched
    entries = [(name, k) for name, array in params.items() for k in range(array.size)]
    batched = batched_central_differences(lambda batch: model.loss_batch(batch, data), params, entries, 1e-3)
    plain = np.concatenate(
        [
            central_differences(lambda: model.loss(params, data), array.reshape(-1), range(array.size), 1e-3)
            for array in params.values()
        ]
    )
    # The perturbed values are the same to the bit; only the model's sums are vectorised differently.
    np.testing.assert_allclose(batched, plain, rtol=1e-12, atol=1e-12)
    before = {name: array.copy() for name, array in params.items()}
    assert all(np.array_equal(params[n], before[n]) for n in params)  # θ itself is never touched


def test_batched_differences_record_non_finite_sides_and_check_the_shape() -> None:
    w = np.linspace(-1, 1, 8)

    def loss_batch(batch: dict[str, np.ndarray]) -> np.ndarray:
        return np.array([models.nonfinite_near.loss({"w": row}, {"w_at_theta": w}) for row in batch["w"]])

    sides = np.zeros(8, dtype=np.int8)
    batched_central_differences(loss_batch, {"w": w}, [("w", k) for k in range(8)], 1e-6, sides)
    assert sides.tolist() == [0, 0, 0, PLUS, 0, PLUS | MINUS, 0, 0]
    with pytest.raises(ValueError, match=r"loss_batch must return one loss per row, shape \(4,\). Got \(3,\) instead."):
        batched_central_differences(lambda batch: np.zeros(3), {"w": w}, [("w", 0), ("w", 1)], 1e-6)
