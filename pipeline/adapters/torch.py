"""A PyTorch module and its loss as a gradcheck model.

    model = TorchModel(net, loss_fn)      # loss_fn(module, data) -> scalar tensor
    pipeline.check(model, model.params, data)

The tensors are ``module.named_parameters()``, named as torch names them (``fc1.weight``), in
that order. ``grad`` runs autograd, so what is checked is the backward pass torch runs: a custom
``torch.autograd.Function``'s hand-written ``backward``, a C++/CUDA extension's. Every call
substitutes the given arrays for the module's parameters (``torch.func.functional_call``): the
module itself is never modified. ``grad``'s backward pass runs inside the substitution too, so a backward
that runs the module again (activation checkpointing, torchdiffeq's adjoint method) sees the arrays.

Each call runs with deterministic algorithms on, one torch thread (a worker is one process per
core) and, for float64 parameters (``precision: float64``), float64 as the default dtype; the
floating buffers and data are cast to the parameters' dtype. All three are restored afterwards. Each call
runs on copies of the module's buffers (of up to 1 MiB each; a BatchNorm in training mode updates its
running statistics there): a check leaves the module as it found it.
Every loss is evaluated as ``grad`` evaluates it, with grad enabled and each parameter requiring
grad: a module may compute another function under ``no_grad`` (a transformer's fast path) or for
tensors that do not require grad (a penalty on ``p.requires_grad`` parameters only).

Perturbations of one tensor are evaluated in one call with ``torch.func.vmap`` over that tensor
alone. Where vmap cannot run the loss (a custom Function without a vmap rule, ``.item()`` or
data-dependent control flow), or its first loss differs from one plain call's, that tensor falls
back to one call per perturbation, and the report says so (``evaluation``).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch

from ..errors import ModelError
from . import AGREE_ULPS, DropsData, first_sentence, flat_rows, parameter_dtype, same_data

__all__ = ["TorchModel"]

Arrays = dict[str, np.ndarray]
#: What the report adds where vmap refused a custom ``torch.autograd.Function`` (review 134: users did not know how).
VMAP_RULE = (
    "; a custom torch.autograd.Function runs under vmap, its perturbations batched, once its forward leaves ctx to a "
    "separate setup_context staticmethod and it sets generate_vmap_rule = True"
)
#: Every call runs on copies of the module's buffers of at most this size each (a BatchNorm's running statistics, which
#: training mode updates at every forward pass): the module's own stay as they were. Larger ones (a positional table, a
#: mask) are its own, not copied at every loss.
COPIED_BYTES = 2**20
#: The most perturbations one vmap chunk evaluates...
MAX_ROWS = 256
#: ...and the most memory its copies of the perturbed tensor take: chunks that stay in the CPU's caches
#: (4 MiB) ran a 256x256 layer's perturbations twice as fast per row as chunks of 64 MiB.
CHUNK_BYTES = 4 * 2**20


class _Objective(torch.nn.Module):
    """``forward(data) = loss_fn(module, data)``: what ``functional_call`` reparametrises."""

    def __init__(self, module: torch.nn.Module, loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor]) -> None:
        super().__init__()
        self.module = module
        self.loss_fn = loss_fn

    def forward(self, data: Any, then: Callable[[torch.Tensor], Any] | None = None) -> Any:
        """The loss; or ``then(loss)``, still inside the reparametrisation: a backward pass that runs the module
        again (an adjoint ODE solver, activation checkpointing) must see the arrays checked."""
        value = self.loss_fn(self.module, data)
        if not isinstance(value, torch.Tensor):
            raise ModelError(f"TorchModel: loss_fn must return a scalar tensor. Got {type(value).__name__} instead.")
        return value if then is None else then(value)


class TorchModel(DropsData):
    """A ``torch.nn.Module`` and ``loss_fn(module, data) -> scalar tensor`` as a model.

    Parameters
    ----------
    module : torch.nn.Module
        Its parameters are the tensors checked; its buffers are used as they are (cast to the
        parameters' dtype); each call runs on copies of them (up to 1 MiB each), so the module's own do not change.
    loss_fn : callable
        ``loss_fn(module, data)`` with ``data`` the data store's arrays as tensors (by name), on
        ``device``; returns a scalar tensor. It must be deterministic.
    device : str
        Where the loss runs: ``"cpu"`` (default) or ``"cuda"``.
    batch : bool
        Evaluate a tensor's perturbations with ``torch.func.vmap`` (default) or one call each.

    Attributes
    ----------
    params : dict of str to ndarray
        The module's parameters as numpy arrays, in ``named_parameters()`` order: what
        ``gradcheck import`` writes, or what ``pipeline.check`` takes.
    evaluation : str
        How perturbations are evaluated (batched, or one call each and why), as the report says.
    """

    def __init__(
        self,
        module: torch.nn.Module,
        loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor],
        *,
        device: str = "cpu",
        batch: bool = True,
    ) -> None:
        if not isinstance(module, torch.nn.Module):
            raise ModelError(f"TorchModel needs a torch.nn.Module. Got {type(module).__name__} instead.")
        if not callable(loss_fn):
            raise ModelError(f"TorchModel needs loss_fn(module, data). Got {type(loss_fn).__name__} instead.")
        named = list(module.named_parameters())
        if not named:
            raise ModelError(f"TorchModel: the module {type(module).__name__} has no parameters to check.")
        low = [f"{name} ({p.dtype})" for name, p in named if p.dtype not in (torch.float32, torch.float64)]
        if low:
            raise ModelError(
                f"TorchModel checks float32 or float64 parameters; {', '.join(low)} {'is' if len(low) == 1 else 'are'} "
                "not: cast the module first "
                "(module.float(), or module.double() for the most accurate check)."
            )
        self.params: Arrays = {name: p.detach().cpu().numpy().copy() for name, p in named}
        self.device = torch.device(device)
        if self.device.type == "cuda":
            # deterministic cuBLAS needs a fixed workspace, set before CUDA starts (a no-op once it has)
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        if any(p.device != self.device for p in module.parameters()):
            module = copy.deepcopy(module)  # moved to the device as a copy: the user's module stays where it is
        self._objective = _Objective(module, loss_fn).to(self.device)
        self._unbatched: dict[str, str] = {}  # tensors vmap cannot run the loss for, and why
        self._agreed: set[str] = set()  # tensors whose vmapped loss agreed with one plain call
        self._data: tuple[Mapping[str, np.ndarray], torch.dtype, dict[str, torch.Tensor]] | None = None
        if batch:  # the core's batched path; without it, one `loss` call per perturbation
            self.perturbed_losses = self._perturbed_losses

    @property
    def evaluation(self) -> str:
        if not self._unbatched:
            return "batched: torch.func.vmap over each tensor's perturbations"
        reasons = sorted(set(self._unbatched.values()))
        if set(self._unbatched) == set(self.params):
            return f"one loss call per perturbation: torch.func.vmap cannot run this loss ({'; '.join(reasons)})"
        return (
            f"batched: torch.func.vmap, except one loss call per perturbation of {', '.join(self._unbatched)} "
            f"(vmap cannot run the loss there: {'; '.join(reasons)})"
        )

    # The model protocol -------------------------------------------------------------------------------

    def loss(self, params: Arrays, data: Arrays) -> float:
        with self._running(params) as dtype:
            return _scalar(self._call(self._tensors(params, dtype), data, dtype))

    def grad(self, params: Arrays, data: Arrays) -> Arrays:
        with self._running(params) as dtype:
            leaves = self._tensors(params, dtype)
            # the module's own parameters too: a loss that reaches one of them bypassed the substitution
            own = [(name, p) for name, p in self._objective.module.named_parameters() if p.requires_grad]

            def backward(value: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
                # inside the call: torchdiffeq's adjoint method runs the module again in its backward pass, and
                # after the call it ran the module's own parameters, whose gradient is then 0 for the arrays
                # checked (held-out sweep 49: a correct adjoint gradient came back as zeros, "a missing term")
                _scalar(value)
                return torch.autograd.grad(value, [*leaves.values(), *(p for _, p in own)], allow_unused=True)

            grads = self._call(leaves, data, dtype, then=backward)
        bypassed = [name for (name, _), g in zip(own, grads[len(leaves) :], strict=True) if g is not None]
        if bypassed:
            raise ModelError(
                f"TorchModel: loss_fn reaches the module's own {', '.join(bypassed)}, not the arrays checked "
                "(a parameter held outside the module's parameters, in a closure, a partial or a cache, is not "
                "substituted): use it through the module's attribute in forward."
            )
        grads = grads[: len(leaves)]
        return {
            name: np.zeros(leaf.shape) if g is None else g.detach().cpu().numpy().astype(np.float64)
            for (name, leaf), g in zip(leaves.items(), grads, strict=True)
        }

    def _perturbed_losses(
        self, params: Arrays, data: Arrays, name: str, positions: np.ndarray, values: np.ndarray
    ) -> np.ndarray:
        """``perturbed_losses`` (offered unless ``batch=False``): the losses with element ``positions[j]`` of tensor ``name`` set to ``values[j, s]``, one at a time."""
        at, to = flat_rows(positions, values)
        with self._running(params) as dtype:
            tensors = self._tensors(params, dtype)
            chosen = torch.as_tensor(at, device=self.device)
            moved = torch.as_tensor(to, device=self.device).to(dtype=tensors[name].dtype)
            if name not in self._unbatched:
                try:
                    losses = self._vmapped(tensors, data, dtype, name, chosen, moved)
                except Exception as e:  # vmap cannot run this loss: the loop below can (or says why not)
                    self._unbatched[name] = first_sentence(e) + (VMAP_RULE if "setup_context" in str(e) else "")
                else:
                    if name not in self._agreed:  # once per tensor: vmap's first loss against one plain call
                        single = self._looped(tensors, data, dtype, name, chosen[:1], moved[:1])[0]
                        if abs(losses[0] - single) <= AGREE_ULPS * torch.finfo(dtype).eps * abs(single):
                            self._agreed.add(name)
                        else:  # e.g. a loss that reads requires_grad, which vmap's batched tensors do not carry
                            self._unbatched[name] = "its loss under vmap differs from one plain call's"
                    if name in self._agreed:
                        return losses.reshape(values.shape)
            losses = self._looped(tensors, data, dtype, name, chosen, moved)
        return losses.reshape(values.shape)

    # Internals ------------------------------------------------------------------------------------------

    def _looped(
        self,
        tensors: dict[str, torch.Tensor],
        data: Arrays,
        dtype: torch.dtype,
        name: str,
        chosen: torch.Tensor,
        moved: torch.Tensor,
    ) -> np.ndarray:
        """One loss call per row: element ``chosen[r]`` of a copy of tensor ``name`` set to ``moved[r]`` and restored."""
        losses = np.empty(chosen.numel())
        leaf = tensors[name].detach().clone().requires_grad_()
        shaped = {**tensors, name: leaf}
        for r in range(chosen.numel()):
            with torch.no_grad():
                original = leaf.view(-1)[chosen[r]].clone()
                leaf.view(-1)[chosen[r]] = moved[r]
            losses[r] = _scalar(self._call(shaped, data, dtype))
            with torch.no_grad():
                leaf.view(-1)[chosen[r]] = original
        return losses

    def _vmapped(
        self,
        tensors: dict[str, torch.Tensor],
        data: Arrays,
        dtype: torch.dtype,
        name: str,
        chosen: torch.Tensor,
        moved: torch.Tensor,
    ) -> np.ndarray:
        base = tensors[name].reshape(-1)
        shape = tensors[name].shape
        others = {k: v for k, v in tensors.items() if k != name}
        inputs = self._inputs(data, dtype)

        def one(copies: dict[str, torch.Tensor], position: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
            perturbed = base.scatter(0, position.reshape(1), value.reshape(1)).reshape(shape)
            return self._call_with({**copies, **others, name: perturbed}, inputs)

        rows = max(1, min(MAX_ROWS, CHUNK_BYTES // max(1, base.numel() * base.element_size())))
        parts = []
        for first in range(0, chosen.numel(), rows):  # each chunk's autograd graph is dropped before the next
            # each chunk on its own copies of the buffers (bound, not mapped): a count a forward keeps there does not
            # carry from one chunk to the next (review 136: 172 of 300 rows differed from plain calls)
            chunk = functools.partial(one, self._buffers(dtype))
            out = torch.func.vmap(chunk)(chosen[first : first + rows], moved[first : first + rows])
            if out.shape != chosen[first : first + rows].shape:
                raise ValueError(f"the loss has shape {tuple(out.shape[1:])} under vmap")
            parts.append(out.detach())
        return torch.cat(parts).cpu().numpy().astype(np.float64)

    @contextlib.contextmanager
    def _running(self, params: Arrays) -> Iterator[torch.dtype]:
        """One thread, deterministic algorithms, the parameters' dtype as the default; yields that dtype."""
        dtype = torch.float64 if parameter_dtype(params) == np.float64 else torch.float32
        threads, deterministic, warn_only, default = (
            torch.get_num_threads(),
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
            torch.get_default_dtype(),
        )
        torch.set_num_threads(1)
        torch.use_deterministic_algorithms(True)
        torch.set_default_dtype(dtype)
        try:
            yield dtype
        finally:
            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
            torch.set_default_dtype(default)

    def _tensors(self, params: Arrays, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        """The parameters as leaves that require grad, in ``dtype`` on the device: every loss is evaluated as
        ``grad`` evaluates it (grad enabled, each parameter requiring it), since a module may compute another
        function otherwise (a fast path taken under ``no_grad``, terms kept only for tensors that require grad)."""
        return {
            name: torch.tensor(array, dtype=dtype, device=self.device, requires_grad=True)
            for name, array in params.items()
        }

    def _buffers(self, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        """Copies of the module's buffers for one call: its floating buffers of another dtype cast to ``dtype``, the
        others of :data:`COPIED_BYTES` or less copied as they are (larger ones are used as they are). A call that
        updates them (a BatchNorm in training mode: review 134, 1,972 updates of a user's running statistics in one
        check) changes its copies only, and every call starts from the module's own: the loss is one function of the
        parameters, and the module comes back from a check as it went in."""
        copies = {}
        for name, b in self._objective.module.named_buffers():
            if b.is_floating_point() and b.dtype != dtype:
                copies[name] = b.to(dtype)
            elif b.numel() * b.element_size() <= COPIED_BYTES:
                copies[name] = b.clone()
        return copies

    def _inputs(self, data: Arrays, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        """The data as tensors on the device, floating arrays in ``dtype``; made once per data and dtype."""
        if self._data is None or not same_data(self._data[0], data) or self._data[1] != dtype:
            inputs = {}
            for key, array in data.items():
                tensor = torch.as_tensor(np.array(array), device=self.device)
                inputs[key] = tensor.to(dtype) if tensor.is_floating_point() else tensor
            self._data = (dict(data), dtype, inputs)
        return self._data[2]

    def _call(self, tensors: dict[str, torch.Tensor], data: Arrays, dtype: torch.dtype, then: Any = None) -> Any:
        return self._call_with({**self._buffers(dtype), **tensors}, self._inputs(data, dtype), then)

    def _call_with(self, tensors: dict[str, torch.Tensor], inputs: dict[str, torch.Tensor], then: Any = None) -> Any:
        named = {f"module.{name}": tensor for name, tensor in tensors.items()}
        # then(loss), inside the reparametrisation (see _Objective)
        return torch.func.functional_call(self._objective, named, (inputs,), {"then": then} if then else None)


def _scalar(value: torch.Tensor) -> float:
    # 0-d, as JaxModel and a plain model's loss: a vector of one is refused (review 91: TorchModel took it)
    if value.dim() != 0:
        raise ModelError(f"TorchModel: loss_fn must return a scalar tensor. Got shape {tuple(value.shape)} instead.")
    if not value.is_floating_point():  # before autograd says "does not require grad", from torch's own file
        raise ModelError(
            f"TorchModel: loss_fn must return a real floating-point tensor. Got dtype {value.dtype} instead."
        )
    return float(value.detach().cpu())
