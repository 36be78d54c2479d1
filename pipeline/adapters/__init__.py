"""Framework adapters: a PyTorch module or a JAX loss as a model (see :mod:`pipeline.model`).

``TorchModel`` (:mod:`pipeline.adapters.torch`) and ``JaxModel`` (:mod:`pipeline.adapters.jax`)
speak the model protocol on numpy arrays, so they run wherever a model runs (in-process, on a
local cluster, on workers that import the model file), and the framework's autograd computes the
analytic gradient: a custom ``autograd.Function`` backward or a ``custom_vjp`` rule is what is
checked. Both offer ``perturbed_losses``, the core's batched path: one call evaluates many
perturbations of one tensor inside the framework. The core imports no framework; each adapter
imports its own only when it is made.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["AGREE_ULPS", "DropsData", "first_sentence", "flat_rows", "parameter_dtype", "same_data"]

#: A tensor's first batched loss may differ from one plain call by this many rounding units of the loss (a
#: batched kernel's summation order; in JAX, a product through which the tensor moves without a copy); more,
#: and the batched call computes another function there: that tensor is evaluated the plain way.
AGREE_ULPS = 64


def parameter_dtype(params: Mapping[str, np.ndarray]) -> np.dtype:
    """The dtype a check evaluates in: the widest floating dtype of the parameters (float64 under
    ``precision: float64``). Floating data is cast to it, so that one check runs in one precision."""
    return np.result_type(*(np.dtype(array.dtype) for array in params.values()), np.float32)


def flat_rows(positions: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``perturbed_losses``' arguments as one row per loss: each position repeated for each of its values."""
    return np.repeat(np.asarray(positions, dtype=np.int64), values.shape[1]), values.reshape(-1)


def same_data(made_from: Mapping[str, Any] | None, data: Mapping[str, Any]) -> bool:
    """Whether ``data`` holds the very arrays ``made_from`` (a copy of the mapping an adapter made its
    tensors from) held: an entry replaced in the same dict (a new batch) is new data."""
    return (
        made_from is not None
        and made_from.keys() == data.keys()
        and all(made_from[key] is array for key, array in data.items())
    )


class DropsData:
    """An adapter whose pickled state leaves out ``_data``, the framework's copies of one process's data."""

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_data"] = None
        return state


def first_sentence(error: BaseException) -> str:
    """An error's type and the first sentence of its message: why a batched call could not run, as the report
    says it (a framework's messages run to paragraphs)."""
    text = str(error).strip().splitlines()
    first = (text[0] if text else "").split(". ")[0].rstrip(".")
    return f"{type(error).__name__}: {first}"
