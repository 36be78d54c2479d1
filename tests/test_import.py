"""Bringing parameters in: `pipeline.write_store`, names with '/' in every store, and `gradcheck import`.

Real files throughout: .npz written by numpy, .safetensors by safetensors, .pt by torch.save,
model files on disk, and the stores read back with Zarr.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import zarr

import pipeline
from pipeline.storage.inputs import read_arrays

Arrays = dict[str, np.ndarray]


def _stored(path: Path) -> tuple[list[str], Arrays]:
    """A store's ``order`` attribute and its arrays (at any depth), read back."""
    order = zarr.open_group(str(path), mode="r").attrs["order"]
    assert isinstance(order, list)
    return order, read_arrays("data", str(path))


def _assert_same(written: Arrays, expected: dict[str, Any]) -> None:
    assert sorted(written) == sorted(expected)
    for name, array in expected.items():
        want = np.asarray(array)
        assert written[name].dtype == want.dtype, name
        assert written[name].shape == want.shape, name
        np.testing.assert_array_equal(written[name], want, strict=True)


def _one_line(result: subprocess.CompletedProcess[str], message: str) -> None:
    """Exit 2, nothing on stdout, and exactly this one line on stderr."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr == f"gradcheck: error: {message}\n"


def _listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- names with '/' through the whole pipeline ------------------------------------------------------

# J = s · Σ_t Σ sin(θ_t) + ½ Σ_t Σ θ_t², s = Σ x over the data's nested `batch/x`: dJ/dθ_t = s·cos θ_t + θ_t.
# `planted` doubles the gradient of `layers/1/w`.
_NESTED_MODEL = """\
import numpy as np


class Net:
    def __init__(self, wrong=None):
        self.wrong = wrong

    def loss(self, params, data):
        s = float(np.sum(data["batch/x"]))
        return float(sum(s * np.sum(np.sin(p)) + 0.5 * np.sum(p * p) for p in params.values()))

    def grad(self, params, data):
        s = float(np.sum(data["batch/x"]))
        grad = {name: s * np.cos(p) + p for name, p in params.items()}
        if self.wrong is not None:
            grad[self.wrong] = 2 * grad[self.wrong]
        return grad


correct = Net()
planted = Net("layers/1/w")
"""

_NESTED_ORDER = ["layers/0/w", "layers/0/b", "layers/1/w", "head.weight"]


def _nested_problem() -> tuple[Arrays, Arrays]:
    rng = np.random.default_rng(3)
    shapes = {"layers/0/w": (2, 3), "layers/0/b": (3,), "layers/1/w": (3, 2), "head.weight": (2,)}
    params = {name: rng.uniform(-1, 1, shape) for name, shape in shapes.items()}
    return params, {"batch/x": rng.uniform(0.5, 1.5, 4)}


def test_check_takes_names_with_slashes_in_memory_and_through_stores_alike(tmp_path: Path) -> None:
    source: dict[str, Any] = {}
    exec(_NESTED_MODEL, source)  # the same model, as an object
    params, data = _nested_problem()
    in_memory = pipeline.check(source["planted"], params, data)
    stored = pipeline.check(source["planted"], params, data, output=str(tmp_path / "out.zarr"))
    assert in_memory.failing == stored.failing == ("layers/1/w",)
    assert [t.name for t in stored.tensors] == _NESTED_ORDER
    assert stored.difference == in_memory.difference
    assert [(w.tensor, w.index, w.analytic, w.numeric) for w in stored.worst] == [
        (w.tensor, w.index, w.analytic, w.numeric) for w in in_memory.worst
    ]
