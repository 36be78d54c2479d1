"""A fused layer with a hand-written backward pass, checked through ``TorchModel``.

``gradcheck example torch-custom-op DIR`` copies this file to ``DIR/model.py`` beside a params
store, a data store and two configs: ``correct.yaml`` (passes) and ``planted.yaml`` (fails, and
names ``fused.bias``). Copy it as the start of a check of your own op.

The op is ``y = tanh(x @ W.T + b)`` as a ``torch.autograd.Function``: torch runs our ``backward``,
so that is what the check compares with the loss's finite differences. The planted twin forgets
the tanh derivative in the bias's gradient, a classic slip of a hand-derived backward pass.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pipeline.adapters.torch import TorchModel

#: The tensor the planted backward gets wrong.
PLANTED_TENSOR = "fused.bias"


class FusedLinearTanh(torch.autograd.Function):
    """``tanh(x @ weight.T + bias)`` with its backward written by hand."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, planted: bool) -> torch.Tensor:
        y = torch.tanh(x @ weight.T + bias)
        ctx.save_for_backward(x, weight, y)
        ctx.planted = planted
        return y

    @staticmethod
    def backward(ctx: Any, grad_y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, None]:
        x, weight, y = ctx.saved_tensors
        grad_z = grad_y * (1 - y * y)  # through tanh
        grad_bias = grad_y.sum(0) if ctx.planted else grad_z.sum(0)  # planted: the tanh derivative forgotten
        return grad_z @ weight, grad_z.T @ x, grad_bias, None


class Net(torch.nn.Module):
    """The fused layer, then a plain linear read-out."""

    def __init__(self, planted: bool = False) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.fused = torch.nn.Linear(16, 32)
        self.out = torch.nn.Linear(32, 4)
        with torch.no_grad():  # fixed values, whatever torch's default initialisation
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) / 4)
        self.planted = planted

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = FusedLinearTanh.apply(x, self.fused.weight, self.fused.bias, self.planted)
        return self.out(hidden)


def loss_fn(module: torch.nn.Module, data: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.mean((module(data["x"]) - data["y"]) ** 2)


def data() -> dict[str, np.ndarray]:
    """The inputs and targets (float32, as a model's data usually is)."""
    rng = np.random.default_rng(1)
    return {"x": rng.normal(size=(64, 16)).astype(np.float32), "y": rng.normal(size=(64, 4)).astype(np.float32)}


correct = TorchModel(Net(), loss_fn)
planted = TorchModel(Net(planted=True), loss_fn)


def framework_checks(is_planted: bool) -> dict[str, Any]:
    """``torch.autograd.gradcheck`` on the same op (float64 inputs, as it requires), fast mode off and on."""
    rng = np.random.default_rng(2)
    inputs = tuple(
        torch.tensor(rng.normal(size=shape) / 4, dtype=torch.float64, requires_grad=True)
        for shape in ((64, 16), (32, 16), (32,))
    )

    def run(fast: bool) -> Any:
        return torch.autograd.gradcheck(
            lambda x, w, b: FusedLinearTanh.apply(x, w, b, is_planted), inputs, fast_mode=fast
        )

    return {"torch.autograd.gradcheck": lambda: run(False), "torch.autograd.gradcheck fast_mode": lambda: run(True)}
