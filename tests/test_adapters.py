"""The PyTorch and JAX adapters: the model protocol on a framework's module or loss, checked against
numpy formulas; their batched paths against one loss per perturbation; the custom-op examples end to
end (in this process, on a cluster, from the command line)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from distributed import Client

import pipeline
from pipeline.errors import ModelError

from .conftest import run_cli

pytest.importorskip("torch")
pytest.importorskip("jax")
import jax

# after the frameworks are known to be there (the core install runs the suite without them)
import jax.numpy as jnp
import torch

from pipeline.adapters.jax import JaxModel
from pipeline.adapters.torch import TorchModel

RNG = np.random.default_rng(7)
X = RNG.normal(size=(5, 3)).astype(np.float32).astype(np.float64)  # float32 values: the data are float32
Y = RNG.normal(size=(5, 2)).astype(np.float32).astype(np.float64)
DATA = {"x": X.astype(np.float32), "y": Y.astype(np.float32)}


def reference(w: np.ndarray, b: np.ndarray, scale: float = 1.0) -> tuple[float, np.ndarray, np.ndarray]:
    """``scale² · Σ (x w + b − y)²`` in float64, and its gradient by hand (w: (3, 2), b: (2,))."""
    r = X @ w + b - Y
    return scale**2 * float(np.sum(r * r)), scale**2 * 2 * X.T @ r, scale**2 * 2 * r.sum(0)


# PyTorch -----------------------------------------------------------------------------------------------


def linear_model(**options: Any) -> Any:
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(3, 2))
    return TorchModel(module, lambda m, d: torch.sum((m(d["x"]) - d["y"]) ** 2), **options)


def test_torch_model_names_its_parameters_as_torch_does_and_computes_loss_and_grad_by_autograd() -> None:
    model = linear_model()
    assert list(model.params) == ["0.weight", "0.bias"]  # named_parameters, dots kept
    weight = model.params["0.weight"]
    assert weight.dtype == np.float32
    assert weight.shape == (2, 3)
    params64 = {k: v.astype(np.float64) for k, v in model.params.items()}
    loss, grad_w, grad_b = reference(params64["0.weight"].T, params64["0.bias"])
    # float64 parameters: evaluated in float64 (module, buffers and data cast), to rounding
    assert model.loss(params64, DATA) == pytest.approx(loss, rel=1e-14)
    grads = model.grad(params64, DATA)
    np.testing.assert_allclose(grads["0.weight"], grad_w.T, rtol=1e-13)
    np.testing.assert_allclose(grads["0.bias"], grad_b, rtol=1e-13)
    # and the module itself is untouched: float32, its own values
    assert model._objective.module[0].weight.dtype == torch.float32
    np.testing.assert_array_equal(model._objective.module[0].weight.detach().numpy(), weight)


def test_torch_batched_losses_equal_one_loss_per_perturbation_and_the_formula() -> None:
    model = linear_model()
    params64 = {k: v.astype(np.float64) for k, v in model.params.items()}
    positions = np.array([0, 5, 2])
    values = RNG.normal(size=(3, 2))
    got = model.perturbed_losses(params64, DATA, "0.weight", positions, values)
    for j, k in enumerate(positions):
        for s in range(2):
            w = params64["0.weight"].copy()
            w.reshape(-1)[k] = values[j, s]
            assert got[j, s] == pytest.approx(reference(w.T, params64["0.bias"])[0], rel=1e-12)
    assert model.evaluation == "batched: torch.func.vmap over each tensor's perturbations"


class _NoVmapRule(torch.autograd.Function):
    """x ↦ 2x with a backward, and no vmap rule."""

    @staticmethod
    def forward(ctx: Any, x: Any) -> Any:
        return 2 * x

    @staticmethod
    def backward(ctx: Any, grad: Any) -> Any:
        return 2 * grad


def test_a_loss_vmap_cannot_run_falls_back_to_one_call_per_perturbation_and_the_report_says_why() -> None:
    torch.manual_seed(0)
    module = torch.nn.Linear(3, 2)
    model = TorchModel(module, lambda m, d: torch.sum((_NoVmapRule.apply(m(d["x"])) - d["y"]) ** 2))
    report = pipeline.check(model, model.params, DATA, precision="float64")
    assert report.verdict == "passed"
    assert report.evaluation.startswith("one loss call per perturbation: torch.func.vmap cannot run this loss (")
    assert "setup_context" in report.evaluation  # torch's own reason, in one sentence
    assert "generate_vmap_rule = True" in report.evaluation  # and how to batch it (review 134)
    assert "losses near θ: one loss call per perturbation" in str(report)


def test_a_wrong_custom_backward_is_found_in_the_right_tensor_and_torch_state_is_restored() -> None:
    threads, default = torch.get_num_threads(), torch.get_default_dtype()
    from pipeline.examples import torch_custom_op as example

    correct = pipeline.check(example.correct, example.correct.params, example.data())
    planted = pipeline.check(example.planted, example.planted.params, example.data())
    assert correct.verdict == "passed", correct
    assert planted.verdict == "failed", planted
    assert planted.failing == ("fused.bias",)
    assert (torch.get_num_threads(), torch.get_default_dtype()) == (threads, default)
    assert not torch.are_deterministic_algorithms_enabled()


def test_torch_model_refuses_what_is_not_a_module_and_a_loss_that_is_not_a_scalar() -> None:
    with pytest.raises(ModelError, match=r"^TorchModel needs a torch.nn.Module. Got function instead.$"):
        TorchModel(lambda: None, lambda m, d: torch.zeros(()))  # type: ignore[arg-type]
    with pytest.raises(
        ModelError, match=r"^TorchModel checks float32 or float64 parameters; weight \(torch.bfloat16\), "
    ):
        TorchModel(torch.nn.Linear(3, 2).to(torch.bfloat16), lambda m, d: torch.zeros(()))
    model = TorchModel(torch.nn.Linear(3, 2), lambda m, d: m(d["x"]).sum(0))
    with pytest.raises(ModelError, match=r"TorchModel: loss_fn must return a scalar tensor. Got shape \(2,\) instead."):
        pipeline.check(model, model.params, DATA)
    # review 91: a vector of one passed, where JaxModel and a plain model refuse it
    model = TorchModel(torch.nn.Linear(3, 2), lambda m, d: m(d["x"]).sum().reshape(1))
    with pytest.raises(ModelError, match=r"TorchModel: loss_fn must return a scalar tensor. Got shape \(1,\) instead."):
        pipeline.check(model, model.params, DATA)
    # review 91: an integer loss was refused by autograd, "element 0 of tensors does not require grad", at torch's line
    model = TorchModel(torch.nn.Linear(3, 2), lambda m, d: (m(d["x"]) > 0).sum())
    with pytest.raises(
        ModelError,
        match=r"^TorchModel: loss_fn must return a real floating-point tensor. Got dtype torch.int64 instead.$",
    ):
        pipeline.check(model, model.params, DATA)


def test_a_jax_loss_that_is_not_a_real_floating_point_scalar_is_refused_in_one_line() -> None:
    for loss, message in [
        (
            lambda p, d: jnp.sum(d["x"] * p["w"]).reshape(1),
            r"^JaxModel: loss_fn must return a scalar. Got shape \(1,\) ",
        ),
        (
            lambda p, d: jnp.sum(d["x"] * p["w"] > 0),
            r"^JaxModel: loss_fn must return a real floating-point scalar. Got dtype int",
        ),
    ]:
        model = JaxModel(loss, {"w": np.ones(3)})
        with pytest.raises(ModelError, match=message):
            pipeline.check(model, model.params, {"x": np.ones(3)})


def test_torch_losses_are_evaluated_as_grad_evaluates_them_so_a_correct_gradient_passes() -> None:
    """A module that computes another function under no_grad (a transformer's fast path, which zeroes padded
    positions) or for tensors that do not require grad (a penalty on trainable parameters, one frozen) was
    checked against finite differences of that other function: every tensor wrong on a correct gradient."""
    torch.manual_seed(0)
    frozen = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 2))
    frozen[1].bias.requires_grad_(False)

    def penalised(m: Any, d: Any) -> Any:
        fit = torch.sum((m(d["x"]) - d["y"]) ** 2)
        return fit + 0.1 * sum((p**2).sum() for p in m.parameters() if p.requires_grad)

    layer = torch.nn.TransformerEncoderLayer(4, 2, dim_feedforward=8, dropout=0.0, batch_first=True)
    encoder = torch.nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=True).eval()
    pad = np.zeros((2, 3), dtype=bool)
    pad[0, 2] = True
    tokens = {"x": RNG.normal(size=(2, 3, 4)).astype(np.float32), "pad": pad}
    padded = TorchModel(encoder, lambda m, d: m(d["x"], src_key_padding_mask=d["pad"]).pow(2).sum())
    for model, data in [(TorchModel(frozen, penalised), DATA), (padded, tokens)]:
        report = pipeline.check(model, model.params, data, precision="float64")
        assert report.verdict == "passed", report


def test_torch_a_vmapped_loss_that_differs_from_one_call_falls_back_and_says_so() -> None:
    torch.manual_seed(0)
    module = torch.nn.Linear(3, 2)
    # vmap's batched tensors do not carry requires_grad: under vmap this penalty leaves the perturbed tensor out
    model = TorchModel(
        module, lambda m, d: torch.sum(m(d["x"]) ** 2) + sum(p.sum() for p in m.parameters() if p.requires_grad)
    )
    params64 = {k: v.astype(np.float64) for k, v in model.params.items()}
    positions, values = np.array([0, 4]), RNG.normal(size=(2, 2))
    got = model.perturbed_losses(params64, DATA, "weight", positions, values)
    for j, k in enumerate(positions):
        for s in range(2):
            w = params64["weight"].copy()
            w.reshape(-1)[k] = values[j, s]
            assert got[j, s] == pytest.approx(model.loss({**params64, "weight": w}, DATA), rel=1e-14)
    assert model.evaluation == (
        "batched: torch.func.vmap, except one loss call per perturbation of weight "
        "(vmap cannot run the loss there: its loss under vmap differs from one plain call's)"
    )


def test_torch_a_loss_that_bypasses_the_substituted_parameters_is_refused() -> None:
    """A parameter captured outside the module's parameters (a default argument, a partial) is never
    substituted: the check saw a loss that ignores it and passed a wrong backward, zero against zero."""

    class Captured(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(3, 2))
            self.op = lambda x, w=self.w: x @ w

        def forward(self, x: Any) -> Any:
            return self.op(x)

    model = TorchModel(Captured(), lambda m, d: m(d["x"]).sum())
    with pytest.raises(ModelError, match=r"^TorchModel: loss_fn reaches the module's own w, not the arrays checked"):
        pipeline.check(model, model.params, DATA)
    # a backward that returns None for the weight (autograd: no gradient) is a wrong gradient, not a refusal
    model = TorchModel(torch.nn.Linear(3, 2), lambda m, d: _NoWeightGrad.apply(d["x"], m.weight).sum())
    report = pipeline.check(model, model.params, DATA, precision="float64")
    assert report.verdict == "failed"
    assert report.failing == ("weight",)


class _Recomputed(torch.nn.Module):
    """A layer under activation checkpointing: its backward pass runs the layer again, as torchdiffeq's adjoint
    method runs the ODE's module again (held-out sweep 49: a correct adjoint gradient came back as zeros)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = torch.nn.Linear(4, 8), torch.nn.Linear(8, 2)

    def forward(self, x: Any) -> Any:
        h = torch.utils.checkpoint.checkpoint(lambda z: torch.tanh(self.a(z)), x, use_reentrant=False)
        return self.b(h)


def test_torch_a_backward_pass_that_runs_the_module_again_sees_the_arrays_checked() -> None:
    """The backward pass runs inside the substitution: after it, a recomputation ran the module's own parameters,
    and at any other point a correct checkpointed layer failed (its gradient was the module's own point's)."""
    net = _Recomputed().double()
    model = TorchModel(net, lambda m, d: ((m(d["x"]) - d["y"]) ** 2).mean())
    rng = np.random.default_rng(0)
    data = {"x": rng.normal(size=(16, 4)), "y": rng.normal(size=(16, 2))}
    moved = {name: 1.1 * value for name, value in model.params.items()}  # not the module's own values
    twin = _Recomputed().double()  # the reference: plain autograd with the module's own parameters at those values
    with torch.no_grad():
        for name, parameter in twin.named_parameters():
            parameter.copy_(torch.as_tensor(moved[name]))
    ((twin(torch.as_tensor(data["x"])) - torch.as_tensor(data["y"])) ** 2).mean().backward()
    grad = model.grad(moved, data)
    for name, parameter in twin.named_parameters():
        assert parameter.grad is not None
        np.testing.assert_allclose(grad[name], parameter.grad.numpy(), rtol=1e-12, atol=1e-15)
    assert pipeline.check(model, moved, data).passed


class _NoWeightGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Any, w: Any) -> Any:
        ctx.save_for_backward(w)
        return x @ w.T

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        (w,) = ctx.saved_tensors
        return g @ w, None


def test_torch_state_is_restored_with_deterministic_warn_only_as_it_was() -> None:
    model = linear_model()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        model.loss(model.params, DATA)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(False)


# JAX ---------------------------------------------------------------------------------------------------


def jax_params() -> dict[str, Any]:
    rng = np.random.default_rng(3)
    return {
        "lin": {"w": rng.normal(size=(3, 2)).astype(np.float32), "b": rng.normal(size=2).astype(np.float32)},
        "scale": [np.float32(1.5)],
    }


def jax_loss(p: Any, d: Any) -> Any:
    return p["scale"][0] ** 2 * jnp.sum((d["x"] @ p["lin"]["w"] + p["lin"]["b"] - d["y"]) ** 2)


class _OffsetNorm(torch.nn.Module):
    """``LayerNorm(X·W + 1000)`` and a linear layer: a float32 spread of about 0.007 on an offset of 1000."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.W = torch.nn.Parameter(0.003 * torch.randn(6, 8, generator=g))
        self.ln = torch.nn.LayerNorm(8)
        self.out = torch.nn.Linear(8, 3)


def _offset_norm_loss(m: Any, d: Any) -> Any:
    return ((m.out(m.ln(d["X"] @ m.W + 1000.0)) - d["t"]) ** 2).mean()


def test_torchs_own_layer_norm_on_a_large_offset_is_not_verified_in_float32_where_float64_agrees() -> None:
    """torch's LayerNorm backward rounds the normalised values otherwise than its forward: on ``X·W + 1000``
    (a float32 spread of 0.007) its float32 gradient of ``ln.weight`` is 0.4% off the float64 one, and off the
    derivative of the float32 loss, which is linear in it. Its disagreeing elements agree when the same model
    computes in float64 (the adapter's float64 path), so the tensor is not verified, never wrong: the report
    says why; ``precision: float64`` passes it."""
    torch.manual_seed(0)
    model = TorchModel(_OffsetNorm(), _offset_norm_loss)
    rng = np.random.default_rng(0)
    data = {"X": rng.normal(size=(10, 6)).astype(np.float32), "t": rng.normal(size=(10, 3)).astype(np.float32)}
    report = pipeline.check(model, model.params, data)
    weight = {t.name: t for t in report.tensors}["ln.weight"]
    assert report.verdict == "not verified"
    assert not report.failing
    assert "ln.weight" in report.not_verified
    assert weight.n_float32_only > 0
    assert not weight.n_wrong
    assert weight.rounding > 1e-3 * np.abs(model.grad(model.params, data)["ln.weight"]).max()
    assert "disagree in float32 but agree when the same model computes in float64" in str(report)
    assert pipeline.check(model, model.params, data, precision="float64").passed


def test_jax_model_names_leaves_by_key_path_and_computes_loss_and_grad_by_jax() -> None:
    model = JaxModel(jax_loss, jax_params())
    assert list(model.params) == ["lin/b", "lin/w", "scale/0"]  # the pytree's order, key paths joined by '/'
    params64 = {k: v.astype(np.float64) for k, v in model.params.items()}
    scale = float(params64["scale/0"])
    loss, grad_w, grad_b = reference(params64["lin/w"], params64["lin/b"], scale)
    assert model.loss(params64, DATA) == pytest.approx(loss, rel=1e-14)  # x64 for float64 parameters
    grads = model.grad(params64, DATA)
    np.testing.assert_allclose(grads["lin/w"], grad_w, rtol=1e-13)
    np.testing.assert_allclose(grads["lin/b"], grad_b, rtol=1e-13)
    np.testing.assert_allclose(grads["scale/0"], 2 * loss / scale, rtol=1e-13)
    assert jnp.zeros(1).dtype == jnp.float32  # x64 only inside the call


@pytest.mark.parametrize("batch", ["loop", "vmap"])
def test_jax_batched_losses_equal_the_formula_over_padded_calls(batch: str) -> None:
    model = JaxModel(jax_loss, jax_params(), batch=batch)
    params64 = {k: v.astype(np.float64) for k, v in model.params.items()}
    positions = np.arange(6).repeat(7)[:40]  # 40 elements, 80 rows: padded past the first call size
    values = np.random.default_rng(4).normal(size=(40, 2))
    got = model.perturbed_losses(params64, DATA, "lin/w", positions, values)
    scale = float(params64["scale/0"])
    for j, k in enumerate(positions):
        for s in range(2):
            w = params64["lin/w"].copy()
            w.reshape(-1)[k] = values[j, s]
            assert got[j, s] == pytest.approx(reference(w, params64["lin/b"], scale)[0], rel=1e-12)


_SLOPE = [2.0]  # what the rule below says d(square)/dx is, over x


@jax.custom_vjp
def _square(x: Any) -> Any:
    return x * x


_square.defvjp(lambda x: (x * x, x), lambda x, g: (_SLOPE[0] * x * g,))


def _square_loss(p: Any, d: Any) -> Any:
    return jnp.sum(_square(p["w"]))


def test_a_jax_loss_the_batched_call_cannot_run_falls_back_to_one_call_per_perturbation_and_says_why() -> None:
    """An op wrapped around numpy code (jax.pure_callback, without a vmap_method) cannot be vmapped: with
    vmap (the default on a GPU) the check raised instead of evaluating such a tensor one call at a time."""

    def tanh_in_numpy(w: Any) -> Any:
        return jax.pure_callback(np.tanh, jax.ShapeDtypeStruct(w.shape, w.dtype), w)

    def loss(p: Any, d: Any) -> Any:
        return jnp.sum(tanh_in_numpy(p["w"]) ** 2)

    params = {"w": RNG.normal(size=(32, 32))}
    model = JaxModel(loss, params, batch="vmap")
    positions, values = np.arange(12), RNG.normal(size=(12, 2))
    got = model.perturbed_losses(params, {}, "w", positions, values)
    for j, k in enumerate(positions):
        w = params["w"].copy()
        w.reshape(-1)[k] = values[j, 1]
        assert got[j, 1] == pytest.approx(float(np.sum(np.tanh(w) ** 2)), rel=1e-13)
    assert "and for w (the batched call cannot run the loss there: NotImplementedError: " in model.evaluation


def test_a_jax_loss_that_cannot_be_jitted_is_refused_in_one_line_that_says_so() -> None:
    def branching(p: Any, d: Any) -> Any:
        return jnp.sum(p["w"]) if jnp.sum(d["x"]) > 0 else jnp.sum(p["w"] ** 2)

    model = JaxModel(branching, {"w": np.ones(3)})
    with pytest.raises(ModelError) as raised:
        pipeline.check(model, model.params, {"x": np.ones(2)})
    assert "JaxModel: loss_fn must be jittable (it is evaluated under jax.jit): TracerBoolConversionError: " in str(
        raised.value
    )
    assert "\n" not in str(raised.value)


def test_a_jax_model_made_again_sees_the_rule_as_it_is_now_not_the_code_compiled_before() -> None:
    """The jitted loss and gradient were cached by loss_fn alone: a new JaxModel of the same loss_fn kept the
    rule as it was traced first (a rule fixed or planted since, a flag it reads), and checked that."""
    params = {"w": np.arange(1.0, 4.0)}
    before = JaxModel(_square_loss, params)
    np.testing.assert_allclose(before.grad(params, {})["w"], 2 * params["w"])
    _SLOPE[0] = 3.0  # the rule planted wrong
    try:
        np.testing.assert_allclose(JaxModel(_square_loss, params).grad(params, {})["w"], 3 * params["w"])
        report = pipeline.check(JaxModel(_square_loss, params), params, {})
        assert report.verdict == "failed"
    finally:
        _SLOPE[0] = 2.0


def test_a_wrong_custom_vjp_rule_is_found_in_the_right_tensor_by_every_executor(client: Client) -> None:
    from pipeline.examples import jax_custom_vjp as example

    # a custom_vjp function cannot be pickled: on a cluster the model is named by reference, as a config names it
    for on, named in ((None, False), (client, True)):
        correct_model = f"{example.__name__}:correct" if named else example.correct
        planted_model = f"{example.__name__}:planted" if named else example.planted
        correct = pipeline.check(correct_model, example.correct.params, example.data(), client=on)
        planted = pipeline.check(planted_model, example.planted.params, example.data(), client=on)
        assert correct.verdict == "passed", correct
        assert planted.verdict == "failed", planted
        assert planted.failing == ("fused/b",)
        assert correct.evaluation.startswith("batched: one jitted loop (lax.map) over each tensor's perturbations")


def test_a_model_object_that_cannot_be_pickled_is_refused_on_a_cluster_with_what_to_do(client: Client) -> None:
    from pipeline.examples import jax_custom_vjp as example

    with pytest.raises(
        ModelError,
        match=r"^The model object cannot be sent to the cluster's workers: pickling it failed \(TypeError: .*\)\. "
        r"Define it in a file and name it as 'path/to/file.py:attr'",
    ):
        pipeline.check(example.correct, example.correct.params, example.data(), client=client)


def test_jax_batch_off_is_one_loss_call_per_perturbation_with_the_same_verdicts() -> None:
    from pipeline.examples import jax_custom_vjp as example

    model = JaxModel(example.loss(planted=True), example.params(), batch="off")
    report = pipeline.check(model, model.params, example.data())
    assert report.evaluation == "one loss call per perturbation"
    assert report.failing == ("fused/b",)


# The core's side: a batched path that is not the loss ------------------------------------------------------


class _Inconsistent:
    """A numpy model whose ``perturbed_losses`` computes another function than its ``loss``."""

    def loss(self, params: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> float:
        return float(np.sum(params["w"] ** 2))

    def grad(self, params: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"w": 2 * params["w"]}

    def perturbed_losses(self, params: Any, data: Any, name: str, positions: Any, values: Any) -> np.ndarray:
        return np.full(values.shape, self.loss(params, data) * (1 + 1e-9))


def test_a_batched_path_that_computes_another_function_is_refused_with_the_tensor_named() -> None:
    with pytest.raises(
        ModelError,
        match=r"^Model perturbed_losses at θ \(tensor w\) gave .* where its loss gave .* \(a gap of 1e-09 relative\): "
        r"the batched path must compute the same function.$",
    ):
        pipeline.check(_Inconsistent(), {"w": np.arange(1.0, 4.0)}, {})


class _Float32Batch:
    """A float64 least-squares loss whose ``loss_batch`` computes the same formula in float32 (a fast path written
    carelessly): its differences carry float32's rounding where the noise was measured on the float64 ``loss``,
    and the correct gradient was called wrong (exit 1). It is a model error (exit 2), named."""

    def __init__(self, batch_dtype: type = np.float32, scale: float = 1.0) -> None:
        rng = np.random.default_rng(0)
        self.X, self.y = rng.normal(size=(50, 6)), rng.normal(size=50)
        self.batch_dtype, self.scale = batch_dtype, scale

    def loss(self, params: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> float:
        r = self.X @ params["w"] - self.y
        return float(0.5 * np.mean(r * r))

    def loss_batch(self, batch: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> np.ndarray:
        dt = self.batch_dtype
        r: np.ndarray = batch["w"].astype(dt) @ self.X.T.astype(dt) - self.y.astype(dt)
        return np.asarray(0.5 * np.mean(r * r, axis=1), dtype=np.float64)

    def grad(self, params: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"w": self.scale * self.X.T @ (self.X @ params["w"] - self.y) / self.y.size}


def test_a_loss_batch_that_computes_in_another_precision_than_the_loss_is_refused() -> None:
    with pytest.raises(
        ModelError,
        match=r"^Model loss_batch at θ gave .* where its loss gave .* \(a gap of .* relative, more than 64 times "
        r"the loss's noise\): the batched path must compute the same function.$",
    ):
        pipeline.check(_Float32Batch(), {"w": np.linspace(-1.0, 1.0, 6)}, {})
    # its twin with a float64 loss_batch is checked through it: the correct gradient passes, a 1% bug is named
    assert pipeline.check(_Float32Batch(np.float64), {"w": np.linspace(-1.0, 1.0, 6)}, {}).passed
    assert pipeline.check(_Float32Batch(np.float64, 1.01), {"w": np.linspace(-1.0, 1.0, 6)}, {}).failing == ("w",)


def test_both_adapters_see_a_new_array_put_in_the_same_data_dict() -> None:
    """Tensors made from the data were cached by the dict's identity: a new batch put in the same dict (a
    loop over batches calling model.grad) gave the first batch's loss and gradient again."""
    models: list[TorchModel | JaxModel] = [
        TorchModel(torch.nn.Linear(3, 1, bias=False).double(), lambda m, d: m(d["x"]).sum()),
        JaxModel(lambda p, d: jnp.sum(d["x"] @ p["w"]), {"w": np.ones((3, 1))}),
    ]
    for model in models:
        data = {"x": np.ones((2, 3))}
        assert model.loss(model.params, data) != 0.0
        data["x"] = np.zeros((2, 3))
        assert model.loss(model.params, data) == 0.0
        assert not np.any(next(iter(model.grad(model.params, data).values())))


# The examples from the command line --------------------------------------------------------------------------


@pytest.mark.parametrize(("example", "planted"), [("torch-custom-op", "fused.bias"), ("jax-custom-vjp", "fused/b")])
def test_the_framework_examples_run_from_the_command_line(tmp_path: Path, example: str, planted: str) -> None:
    folder = tmp_path / "ex"
    written = run_cli("example", example, str(folder))
    assert written.returncode == 0, written.stderr
    assert sorted(p.name for p in folder.iterdir()) == [
        "correct.yaml",
        "data.zarr",
        "model.py",
        "params.zarr",
        "planted.yaml",
    ]
    passed = run_cli("run", "correct.yaml", "--workers", "1", cwd=folder, timeout=300)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    failed = run_cli("run", "planted.yaml", "--inline", cwd=folder, timeout=300)  # one cluster start is enough
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert f"Wrong tensors, from the last layer back: {planted}\n" in failed.stdout, failed.stdout


# GPUs, where there is one (none on the machine these tests were written on) -----------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_torch_model_on_cuda_agrees_with_the_formula() -> None:
    model = linear_model(device="cuda")
    params64 = {k: v.astype(np.float64) for k, v in model.params.items()}
    loss, grad_w, _ = reference(params64["0.weight"].T, params64["0.bias"])
    assert model.loss(params64, DATA) == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose(model.grad(params64, DATA)["0.weight"], grad_w.T, rtol=1e-12)
    assert pipeline.check(model, model.params, DATA, precision="float64").verdict == "passed"


@pytest.mark.skipif(not any(d.platform == "gpu" for d in jax.devices()), reason="no GPU for JAX")
def test_jax_model_on_a_gpu_uses_vmap_and_agrees_with_the_formula() -> None:
    model = JaxModel(jax_loss, jax_params(), device="gpu")
    assert model.evaluation.startswith("batched: one jitted vmap")
    report = pipeline.check(model, model.params, DATA, precision="float64")
    assert report.verdict == "passed"


def test_a_bias_before_a_batch_norm_is_no_false_alarm_in_either_precision() -> None:
    """The bias's true gradient is 0 (the batch norm subtracts it back out); in float32 autograd's rounding
    leaves about 1e-6, where the loss does not move at all. That is below the loss's resolution: not a bug.
    A zero gradient has no relative error to verify: the biases are named as not verified, never as wrong."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))  # training mode: batch statistics
    model = TorchModel(net, lambda m, d: m(d["x"]).pow(2).sum())
    x = {"x": np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)}
    for precision in ("native", "float64"):
        report = pipeline.check(model, model.params, x, precision=precision)
        assert report.failing == (), report
        assert report.verdict == "not verified", report
        assert "0.bias" in report.not_verified
        if precision == "float64":
            assert next(t for t in report.tensors if t.name == "0.bias").max_abs_error < 1e-10
            assert "0.weight" not in report.not_verified


def test_a_check_leaves_a_module_in_training_mode_as_it_found_it() -> None:
    """Review 134: a BatchNorm in training mode updated its running statistics at every loss a check took (1,972
    updates in native float32; under `precision: float64` its count only, the statistics being cast copies): the
    user's module came back changed. Its buffers are restored after every call that changes them; the batch
    statistics the loss uses are the same, and so is the verdict."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    before = {name: b.clone() for name, b in net.named_buffers()}
    model = TorchModel(net, lambda m, d: m(d["x"]).pow(2).sum())
    x = {"x": np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)}
    for precision in ("native", "float64"):
        report = pipeline.check(model, model.params, x, precision=precision)
        assert report.failing == (), report
        assert report.timings["loss_evaluations"] > 100
        for name, b in net.named_buffers():
            assert torch.equal(b, before[name]), (precision, name, b, before[name])
    assert net.training
    # a loss that runs the module shows it: the statistics move where a caller runs it outside a check
    net(torch.as_tensor(x["x"]))
    assert int(dict(net.named_buffers())["1.num_batches_tracked"]) == 1
    # and the model checks the module as it is now, not as it was when wrapped (review 135: a snapshot taken then
    # wrote the old statistics back into the user's module)
    with torch.no_grad():
        dict(net.named_buffers())["1.running_mean"].fill_(0.7)
    net.eval()
    now = {name: b.clone() for name, b in net.named_buffers()}
    assert pipeline.check(model, model.params, x, precision="float64").passed
    for name, b in net.named_buffers():
        assert torch.equal(b, now[name]), name


class _Counted(torch.nn.Module):
    """Review 135: a module whose forward reads a buffer, then counts the call in it."""

    calls: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(3, 2)
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.lin(x) * (1 + 1e-3 * self.calls)
        with torch.no_grad():
            self.calls += 1
        return out


@pytest.mark.parametrize("batch", [True, False])
def test_every_loss_starts_from_the_modules_buffers_as_they_are(batch: bool) -> None:
    """A forward that updates a buffer its loss reads computes one function of the parameters from the module's state
    (refused as not deterministic before each call ran on copies); no call sees another's update, batched or not."""
    torch.manual_seed(0)
    net = _Counted().double()
    rng = np.random.default_rng(0)
    data = {"x": rng.normal(size=(8, 3)), "y": rng.normal(size=(8, 2))}
    model = TorchModel(net, lambda m, d: ((m(d["x"]) - d["y"]) ** 2).mean(), batch=batch)
    assert pipeline.check(model, model.params, data).passed
    wrong = model.grad(model.params, data)
    wrong["lin.bias"] = 1.01 * wrong["lin.bias"]
    assert pipeline.check(model, model.params, data, gradient=wrong).failing == ("lin.bias",)
    assert float(net.calls) == 0


def test_a_loss_that_uses_none_of_the_parameters_checked_is_refused_not_passed() -> None:
    """A loss over another module than the one given: every gradient is 0 against 0, and nothing was checked."""
    other = torch.nn.Linear(3, 2)
    model = TorchModel(torch.nn.Linear(3, 2), lambda m, d: other(d["x"]).sum())
    with pytest.raises(ModelError, match=r"^Model loss does not change when any parameter does .* the check would "):
        pipeline.check(model, model.params, DATA)
