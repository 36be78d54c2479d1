"""Finite differences against analytic truth, and against the seed's own loop."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest

from pipeline.examples import seed_mlp
from pipeline.numerics.fd import (
    MINUS,
    PLUS,
    Estimate,
    batched_stencil_losses,
    estimate,
    noise_ceiling,
    noise_level,
    normalized_difference,
    points,
    stencil_losses,
    step_sizes,
)

from . import models
from .reference import seed_loop

EPS = float(np.finfo(np.float64).eps)


def differentiate(
    loss: Callable[[], complex],
    flat: np.ndarray,
    positions: Sequence[int],
    scheme: str = "central",
    epsilon: float | None = None,
    *,
    values: np.ndarray | None = None,
) -> Estimate:
    """The kernel's composition: steps, stencil points, losses in place, estimates (no noise)."""
    real = flat[list(positions)] if values is None else values
    h = step_sizes(real, scheme, epsilon)
    perturbed, taken = points(real, h, scheme)
    losses = stencil_losses(loss, flat, positions, perturbed)
    loss0 = complex(loss()).real
    return estimate(losses, taken, scheme, epsilon=epsilon, loss0=loss0, noise=0.0)


def _exp_problem() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # J = sum(c · exp(θ)): every derivative of J along θ_i is c_i · exp(θ_i), and so are
    # the third and fifth derivatives that bound the truncation errors.
    rng = np.random.default_rng(3)
    theta = rng.uniform(-1, 1, 50)
    c = rng.uniform(0.5, 2, 50)
    return theta, c, np.exp(theta) * c


def test_central_differences_match_analytic_derivatives() -> None:
    # Error of a central difference: at most h^2/6 · |f'''| (truncation) plus a few
    # ulps of J over h (rounding in the two evaluations).
    theta, c, truth = _exp_problem()
    h = 1e-5
    bound = h**2 / 6 * 1.01 * truth + 4 * EPS * float(np.sum(truth)) / h
    numeric = differentiate(lambda: float(np.sum(np.exp(theta) * c)), theta, range(50), "central", h).numeric
    assert np.all(np.abs(numeric - truth) <= bound)
    assert np.max(bound / truth) < 5e-8  # the bound is tight enough to mean something


def test_richardson_has_fourth_order_error_and_estimates_the_second_order_one() -> None:
    # R = D(h) + (D(h) - D(2h))/3 leaves -h^4/30 · f^(5): a step 2x larger, an error 16x larger.
    theta, c, truth = _exp_problem()

    def loss() -> float:
        return float(np.sum(np.exp(theta) * c))

    errors = {}
    for h in (1e-2, 2e-2):
        result = differentiate(loss, theta, range(50), "richardson", h)
        errors[h] = np.abs(result.numeric - truth)
        bound = h**4 / 30 * 1.01 * truth + 8 * EPS * float(np.sum(truth)) / h
        assert np.all(errors[h] <= bound)
        # Its error bar: e = |D(h) - D(2h)|/3 ≈ h^2/6 · f''' is D(h)'s error; a smooth loss (the
        # second differences at h and 2h agree) shrinks each order alike, so R's is about
        # e^2/|D(h)| = (h^2/6)^2 · f'. The truth, h^4/30 · f', is within the default safety of 10.
        assert np.all(result.smooth)
        np.testing.assert_allclose(result.bar, (h**2 / 6) ** 2 * truth, rtol=1e-3 + 10 * h**2)
        assert np.all(errors[h] <= 10 * result.bar)
    np.testing.assert_allclose(errors[2e-2] / errors[1e-2], 16, rtol=0.01)


def test_complex_step_is_exact_to_rounding() -> None:
    theta, c, truth = _exp_problem()
    z = theta.astype(np.complex128)
    numeric = differentiate(lambda: complex(np.sum(np.exp(z) * c)), z, range(50), "complex-step", values=theta).numeric
    assert np.all(np.abs(numeric - truth) <= 4 * EPS * truth)


@pytest.mark.parametrize(("scheme", "accuracy"), [("central", 1e-9), ("richardson", 1e-12)])
def test_automatic_steps_are_relative_and_divide_by_the_step_taken(scheme: str, accuracy: float) -> None:
    theta = np.array([0.0, 1e-3, 0.7, -3.0, 1e4])
    h = step_sizes(theta, scheme, None)
    power = {"central": 1 / 3, "richardson": 1 / 5}[scheme]
    np.testing.assert_allclose(h, EPS**power * np.maximum(1, np.abs(theta)))
    perturbed, taken = points(theta, h, scheme)
    np.testing.assert_array_equal(taken, perturbed - theta[:, None])  # exactly what the floats moved
    assert not np.array_equal(taken[:, 0], h)  # ...which is not the step asked for
    # J = θ^3 / 3: J' = θ^2, across seven orders of magnitude of θ (one entry at a time, so
    # that the loss's rounding is that of the entry's own scale).
    for k in range(theta.size):
        one = theta[k : k + 1]

        def cube(one: np.ndarray = one) -> float:
            return float(one[0] ** 3 / 3)

        numeric = differentiate(cube, one, [0], scheme).numeric
        assert abs(numeric[0] - theta[k] ** 2) <= accuracy * max(1, theta[k] ** 2)


def test_float32_steps_come_from_float32_rounding() -> None:
    theta = np.array([0.5, -2.0], dtype=np.float32)
    h = step_sizes(theta, "central", None)
    np.testing.assert_allclose(h, float(np.finfo(np.float32).eps) ** (1 / 3) * np.array([1.0, 2.0]))
    perturbed, _ = points(theta, h, "central")
    assert perturbed.dtype == np.float32


def test_perturbation_is_in_place_and_exactly_undone() -> None:
    theta = np.linspace(-1, 1, 7)
    before = theta.copy()
    seen: list[float] = []

    def loss() -> float:
        seen.append(float(theta[3]))  # the loss reads the caller's own array
        return float(np.sum(theta**2))

    differentiate(loss, theta, [3], "richardson", 0.25)
    assert seen[:4] == [before[3] + 0.25, before[3] - 0.25, before[3] + 0.5, before[3] - 0.5]
    np.testing.assert_array_equal(theta, before)


def test_the_array_is_restored_when_the_loss_raises() -> None:
    theta = np.arange(4.0)

    def loss() -> float:
        raise RuntimeError("model broke")

    with pytest.raises(RuntimeError, match="model broke"):
        differentiate(loss, theta, [2], "central", 0.5)
    np.testing.assert_array_equal(theta, np.arange(4.0))


def test_bit_for_bit_the_seed_loop() -> None:
    params, data = seed_mlp.problem()
    model, eps = seed_mlp.correct, 1e-7
    expected = seed_loop(model, params, data, seed_mlp.ORDER, eps)
    got = np.concatenate(
        [
            differentiate(
                lambda: model.loss(params, data), params[n].reshape(-1), range(params[n].size), "central", eps
            ).numeric
            for n in seed_mlp.ORDER
        ]
    )
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(("diff", "scale", "expected"), [(1.0, 4.0, 0.25), (0.0, 0.0, 0.0), (1.0, 0.0, float("inf"))])
def test_normalized_difference(diff: float, scale: float, expected: float) -> None:
    assert normalized_difference(diff, scale) == expected


@pytest.mark.parametrize("scheme", ["central", "richardson"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_batched_losses_equal_the_plain_ones(dtype: type, scheme: str) -> None:
    params, data = models.problem(dtype)  # a 3-d tensor, a 0-d tensor, a vector
    model = models.smooth_batched
    values = np.concatenate([array.reshape(-1) for array in params.values()])
    perturbed, _ = points(values, step_sizes(values, scheme, None), scheme)
    before = {name: array.copy() for name, array in params.items()}
    every = np.arange(values.size)
    batched = batched_stencil_losses(lambda batch: model.loss_batch(batch, data), params, every, perturbed)
    plain, at = [], 0
    for array in params.values():
        rows = perturbed[at : at + array.size]
        plain.append(stencil_losses(lambda: model.loss(params, data), array.reshape(-1), range(array.size), rows))
        at += array.size
    # The perturbed values are the same to the bit; only the model's sums are vectorised differently.
    np.testing.assert_allclose(batched, np.concatenate(plain), rtol=1e-12, atol=1e-12)
    assert all(np.array_equal(params[n], before[n]) for n in params)  # θ itself is never touched


def test_non_finite_sides_are_recorded_and_the_batch_shape_checked() -> None:
    w = np.linspace(-1, 1, 8)

    def loss_batch(batch: dict[str, np.ndarray]) -> np.ndarray:
        return np.array([models.nonfinite_near.loss({"w": row}, {"w_at_theta": w}) for row in batch["w"]])

    perturbed, taken = points(w, step_sizes(w, "central", 1e-6), "central")
    losses = batched_stencil_losses(loss_batch, {"w": w}, np.arange(8), perturbed)
    sides = estimate(losses, taken, "central", epsilon=1e-6, loss0=0.0, noise=0.0).nonfinite
    assert sides.tolist() == [0, 0, 0, PLUS, 0, PLUS | MINUS, 0, 0]
    with pytest.raises(ValueError, match=r"loss_batch must return one loss per row, shape \(4,\). Got \(3,\) instead."):
        batched_stencil_losses(lambda batch: np.zeros(3), {"w": w}, np.arange(2), perturbed[:2])


@pytest.mark.parametrize("sigma", [1e-12, 1e-9, 1e-6])
def test_noise_level_recovers_known_noise(sigma: float) -> None:
    # A smooth function plus noise of a known standard deviation, at 9 points.
    rng = np.random.default_rng(7)
    x = 0.3 + 1e-4 * np.arange(-4, 5)
    estimates = [noise_level(np.sin(x) + 2 + rng.normal(0, sigma, x.size)) for _ in range(20)]
    found = np.array([e for e in estimates if e is not None])
    assert found.size >= 15
    assert 0.5 * sigma < np.median(found) < 2 * sigma


def test_noise_ceiling_bounds_noise_at_any_spacing_and_a_smooth_line_below_its_shape() -> None:
    """Noise of σ puts the ceiling near σ, at 9 points: of 5,000 lines of pure noise, none had ECNoise's level
    above 32 times (the probe's margin) another's ceiling; a smooth line's ceiling is its shape's, far below a
    saturating line's ECNoise level; exact arithmetic and steps bound nothing."""
    rng = np.random.default_rng(3)
    lines = 2 + rng.normal(0, 1e-9, (5000, 2, 9))
    levels = np.array([noise_level(line[0]) or np.nan for line in lines])
    ceilings = np.array([noise_ceiling(line[1]) for line in lines])
    assert np.count_nonzero(np.isfinite(levels)) > 4000
    assert not np.any(levels > 32 * ceilings)
    assert 0.5e-9 < np.median(ceilings) < 1e-9
    smooth = np.tanh(np.arange(-4, 5) * 0.2)  # a tanh sampled finely: differences shrink with their order
    assert noise_ceiling(smooth) < 1e-2 * noise_ceiling(np.tanh(np.arange(-4, 5) * 20.0))
    # a line evaluated exactly: orders 2 to 4 are exactly 0 and bound nothing; the first is its slope's level
    assert noise_ceiling(3.0 * np.arange(9)) == pytest.approx(3 * np.sqrt(0.5))
    assert noise_ceiling([1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0]) == np.inf  # too close: a loss in steps


def test_noise_level_refuses_points_too_close_or_too_far() -> None:
    assert noise_level([1.0] * 9) is None  # all equal: the points were too close
    assert noise_level(np.exp(np.arange(9.0))) is None  # smooth at every order: too far apart
