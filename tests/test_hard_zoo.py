"""The hard zoo's models are correct, and hard the way they claim: checked against references
that do not go through the pipeline (complex step where the forward pass is analytic, central
differences around the ReLU kinks), in float64; float32 gradients against float64 ones at
the same point; and the constructions (exact kinks, an exact zero loss, a tiny variance)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.examples import hard, zoo

Arrays = dict[str, np.ndarray]
ANALYTIC = [kind for kind in hard.MODELS if hard.model(kind).complex_step]


def complex_step(subject: hard.HardModel, params: Arrays, data: Arrays, name: str, direction: np.ndarray) -> float:
    """d loss / dt along ``direction`` of tensor ``name``: Im J(θ + i·h·v) / h, exact to rounding."""
    h = 1e-30
    shifted: dict[str, np.ndarray] = {n: a.astype(np.complex128) for n, a in params.items()}
    shifted[name] = shifted[name] + 1j * h * direction
    return float(np.imag(subject.loss(shifted, data)) / h)


def _positions(size: int) -> list[int]:
    """Every element of a small tensor; 60 spread over a large one."""
    return list(range(size)) if size <= 1000 else np.random.default_rng(5).choice(size, 60, replace=False).tolist()


@pytest.mark.parametrize("kind", ANALYTIC)
def test_analytic_gradients_agree_with_the_complex_step_in_float64(kind: str) -> None:
    subject = hard.model(kind)
    params, data = subject.problem(np.float64)
    grads = subject.grad(params, data)
    assert list(grads) == list(params)
    for name, value in params.items():
        assert grads[name].shape == value.shape
        assert grads[name].dtype == np.float64
        flat = grads[name].reshape(-1)
        scale = float(np.max(np.abs(flat)))
        for k in _positions(value.size):
            unit = np.zeros(value.size)
            unit[k] = 1
            reference = complex_step(subject, params, data, name, unit.reshape(value.shape))
            assert abs(flat[k] - reference) <= 1e-12 * scale, (name, k, flat[k], reference)
        # A random direction too: on a large tensor it covers every element at once.
        v = np.random.default_rng(3).standard_normal(value.shape)
        reference = complex_step(subject, params, data, name, v)
        assert float(np.sum(grads[name] * v)) == pytest.approx(reference, rel=1e-11, abs=1e-13 * scale)


def test_the_kink_model_agrees_with_central_differences_and_its_subgradient_lies_between_the_slopes() -> None:
    subject = hard.model("kink-relu")
    params, data = subject.problem(np.float64)
    grads = subject.grad(params, data)
    x = data["x"]
    on_kink = {("b1", unit) for _, unit in hard.kink_positions()}
    on_kink |= {
        ("W1", unit * x.shape[1] + j) for s, unit in hard.kink_positions() for j in range(x.shape[1]) if x[s, j]
    }
    h = 1e-6
    loss0 = float(subject.loss(params, data))
    kinks_seen = 0
    for name, value in params.items():
        flat = value.reshape(-1)
        for k in range(value.size):
            original = flat[k]
            flat[k] = original + h
            plus = float(subject.loss(params, data))
            flat[k] = original - h
            minus = float(subject.loss(params, data))
            flat[k] = original
            analytic = float(grads[name].reshape(-1)[k])
            if (name, k) in on_kink:
                right, left = (plus - loss0) / h, (loss0 - minus) / h
                assert min(left, right) - 1e-5 <= analytic <= max(left, right) + 1e-5, (name, k)
                kinks_seen += abs(right - left) > 1e-4  # a real kink: the one-sided slopes differ
            else:
                assert analytic == pytest.approx((plus - minus) / (2 * h), rel=1e-6, abs=1e-8), (name, k)
    assert kinks_seen >= 4


@pytest.mark.parametrize("kind", hard.MODELS)
def test_float32_gradients_are_computed_in_float32_and_agree_with_float64_at_the_same_point(kind: str) -> None:
    subject = hard.model(kind)
    params, data = subject.problem(np.float32)
    assert {a.dtype for a in (*params.values(), *data.values())} == {np.dtype(np.float32)}
    grads = subject.grad(params, data)
    assert np.asarray(subject.loss(params, data)).dtype == np.float32
    wide = subject.grad(
        {n: a.astype(np.float64) for n, a in params.items()}, {n: a.astype(np.float64) for n, a in data.items()}
    )
    for name, g in grads.items():
        assert g.dtype == np.float32
        assert np.linalg.norm(g - wide[name]) <= 1e-5 * np.linalg.norm(wide[name]), name


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_zero_loss_is_exactly_zero_at_theta_while_its_terms_are_a_million(dtype: type) -> None:
    subject = hard.model("zero-loss")
    params, data = subject.problem(dtype)
    assert subject.loss(params, data) == 0.0
    copies = {n: np.array(a, order="C", copy=True) for n, a in params.items()}  # as the pipeline hands them over
    assert subject.loss(copies, data) == 0.0
    terms = params["W"] @ data["x"]
    assert np.all(np.abs(terms) > 4e5)
    assert abs(float(data["C"])) > 1e6
    grads = subject.grad(params, data)
    assert np.all(grads["W"] != 0)
    assert np.all(grads["v"] != 0)
    assert np.all(np.abs(grads["v"]) < 3e-3)  # small next to the sum's rounding noise over a step
    # Off θ the loss is not 0, and its rounding is the sum's (~1e6·eps), not eps·|loss|: a move of
    # v seen in float64 is lost entirely in float32, below the sum's rounding unit (0.25 at 2e6).
    copies["W"][0, 0] += 1
    assert subject.loss(copies, data) == data["x"][0]
    copies = {n: np.array(a, copy=True) for n, a in params.items()}
    copies["v"][0] += 1e-2
    moved = subject.loss(copies, data)
    assert moved == 0.0 if dtype == np.float32 else moved != 0.0


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_kink_model_has_pre_activations_exactly_zero(dtype: type) -> None:
    params, data = hard.model("kink-relu").problem(dtype)
    z1 = data["x"] @ params["W1"].T + params["b1"]
    for sample, unit in hard.kink_positions():
        assert z1[sample, unit] == 0.0
    # Unit 0 is 0 on a sample whose input is 0: the noise probe, which moves b1, crosses that kink.
    assert np.all(data["x"][0] == 0)
    assert params["b1"][0] == 0.0
    assert not np.signbit(params["b1"][0])  # +0, not -0
    # Some units are active on other samples: the kinks sit among a live layer.
    assert np.all((z1 > 0).any(0))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_offset_layernorm_has_a_tiny_variance_under_an_offset_of_1000(dtype: type) -> None:
    params, data = hard.model("offset-layernorm").problem(dtype)
    assert np.all(np.abs(data["x"] - 1000) < 0.01)
    assert np.all(np.abs(params["c"] - 1000) < 0.01)
    _, _, var = hard._normalised(params, data)
    assert np.all(var < 1e-5)
    assert np.all(var > 1e5 * hard.LN_EPS)  # the epsilon does not hide the variance
    # The automatic Richardson step along c is hundreds of times the inputs' spread.
    step = np.finfo(dtype).eps ** 0.2 * 1000
    assert step > 300 * np.sqrt(var.max())


def test_the_sharp_exponential_has_a_large_rate_and_finite_terms() -> None:
    params, data = hard.model("sharp-exp").problem()
    z = hard.A * (data["x"] @ params["w"])
    assert hard.A >= 50
    assert 0.5 < np.std(z) < 5
    assert np.all(np.isfinite(np.exp(z)))


def test_sizes_and_the_wide_models_directions() -> None:
    for kind in hard.MODELS:
        params, _ = hard.model(kind).problem(np.float32)
        n = sum(a.size for a in params.values())
        assert (n > 100_000) if kind == "wide-float32" else (n < 1000), (kind, n)
    params, _ = hard.model("wide-float32").problem(np.float32)
    assert params["W"].shape == (100, 1000)
    assert params["W"].dtype == np.float32
    default = hard.settings_for("wide-float32", "default", np.float32)
    assert default == {"indices": "none", "directions": 8}
    jax = hard.settings_for("wide-float32", "jax-rule", np.float32)
    assert jax["directions"] == 1
    assert jax["indices"] == "none"
    assert jax["tolerance"] == {"atol": 2e-3, "rtol": 2e-3, "safety": 1e-300}
    assert hard.settings_for("sharp-exp", "torch-rule", np.float64) == zoo.TORCH_RULE


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_planted_error_is_relative_and_in_one_tensor_or_its_largest_element(dtype: type) -> None:
    params, data = hard.model("smooth-tanh").problem(dtype)
    clean = hard.model("smooth-tanh").grad(params, data)
    r = 1e-3
    whole = hard.planted("smooth-tanh", "W2", r).grad(params, data)
    one = hard.planted("smooth-tanh", "W2", r, element=True).grad(params, data)
    for name in clean:
        assert whole[name].dtype == clean[name].dtype
        if name != "W2":
            np.testing.assert_array_equal(whole[name], clean[name])
            np.testing.assert_array_equal(one[name], clean[name])
    expected: np.ndarray = (clean["W2"].astype(np.float64) * (1 + r)).astype(dtype)
    np.testing.assert_array_equal(whole["W2"], expected)
    changed = np.flatnonzero(one["W2"] != clean["W2"])
    assert changed.tolist() == [int(np.argmax(np.abs(clean["W2"])))]
    relative = (one["W2"].reshape(-1)[changed] / clean["W2"].reshape(-1)[changed])[0] - 1
    assert relative == pytest.approx(r, rel=1e-3 if dtype == np.float32 else 1e-9)
    with pytest.raises(ValueError, match="no tensor 'W3'"):
        hard.planted("smooth-tanh", "W3", r)
