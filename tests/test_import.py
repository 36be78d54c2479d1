"""Bringing parameters in: `pipeline.write_store`, names with '/' in every store, and `gradcheck import`.

Real files throughout: .npz written by numpy, .safetensors by safetensors, .pt by torch.save,
model files on disk, and the stores read back with Zarr.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

import pipeline
from pipeline.storage.inputs import read_arrays, read_layout, write_group
from pipeline.storage.output import read_output_attrs

from .conftest import run_cli

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


# -- pipeline.write_store -----------------------------------------------------------------------------


def test_write_store_keeps_values_dtypes_and_the_mappings_order_with_nested_names(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {
        "layers/1/w": rng.standard_normal((3, 2)).astype(np.float32),
        "head.weight": rng.standard_normal(4),
        "layers/0/w": rng.standard_normal((2, 3)),
        "scale": np.float64(0.5),  # a scalar: a 0-d array
        "layers/0/b": [0.25, -1.0, 3.0],  # anything np.asarray takes
    }
    path = tmp_path / "params.zarr"
    pipeline.write_store(str(path), arrays)
    order, written = _stored(path)
    assert order == ["layers/1/w", "head.weight", "layers/0/w", "scale", "layers/0/b"]  # not sorted: as given
    _assert_same(written, arrays)
    # '/' makes groups on disk; '.' is part of a name.
    assert isinstance(zarr.open_group(str(path), mode="r")["layers/0"], zarr.Group)
    assert (path / "layers" / "1" / "w" / "zarr.json").is_file()
    assert (path / "head.weight" / "zarr.json").is_file()
    # ... and it is a params store: the layout follows `order`, offsets and dtypes included.
    assert read_layout(str(path)).to_dict() == [
        {"name": "layers/1/w", "shape": [3, 2], "offset": 0, "dtype": "float32"},
        {"name": "head.weight", "shape": [4], "offset": 6, "dtype": "float64"},
        {"name": "layers/0/w", "shape": [2, 3], "offset": 10, "dtype": "float64"},
        {"name": "scale", "shape": [], "offset": 16, "dtype": "float64"},
        {"name": "layers/0/b", "shape": [3], "offset": 17, "dtype": "float64"},
    ]
    # A given order wins; data stores may hold integers and booleans.
    other = tmp_path / "data.zarr"
    pipeline.write_store(str(other), {"x": np.arange(3), "mask": np.array([True, False])}, order=["mask", "x"])
    order, written = _stored(other)
    assert order == ["mask", "x"]
    _assert_same(written, {"x": np.arange(3), "mask": np.array([True, False])})


def test_write_store_is_exported_without_loading_zarr_at_import() -> None:
    from pipeline.storage import inputs

    assert pipeline.write_store is inputs.write_store
    assert "write_store" in pipeline.__all__
    with pytest.raises(AttributeError, match=r"module 'pipeline' has no attribute 'write_stores'"):
        pipeline.write_stores  # noqa: B018


def test_write_store_takes_torch_tensors(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    weight = torch.linspace(-1, 1, 6, dtype=torch.float32).reshape(2, 3).requires_grad_(True)
    bias = torch.tensor([0.5, 2.0], dtype=torch.float64)
    pipeline.write_store(str(tmp_path / "p.zarr"), {"fc.weight": weight, "fc.bias": bias})
    order, written = _stored(tmp_path / "p.zarr")
    assert order == ["fc.weight", "fc.bias"]
    _assert_same(written, {"fc.weight": weight.detach().numpy(), "fc.bias": np.array([0.5, 2.0])})
    with pytest.raises(
        pipeline.StoreError,
        match=r"^Cannot write the store '.*bf.zarr': entry 'w' is a Tensor of dtype torch.bfloat16, which numpy "
        r"cannot hold \(Got unsupported ScalarType BFloat16\); convert it to float32 or float64 first.$",
    ):
        pipeline.write_store(str(tmp_path / "bf.zarr"), {"v": bias, "w": torch.ones(2, dtype=torch.bfloat16)})
    assert not (tmp_path / "bf.zarr").exists()


def test_write_store_takes_jax_arrays_named_by_key_paths(tmp_path: Path) -> None:
    jax = pytest.importorskip("jax")
    tree = {"layers": [{"w": jax.numpy.arange(6.0).reshape(2, 3)}, {"w": jax.numpy.ones(3)}]}
    named = {
        "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path): leaf
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    }
    assert list(named) == ["layers/0/w", "layers/1/w"]
    pipeline.write_store(str(tmp_path / "p.zarr"), named)
    order, written = _stored(tmp_path / "p.zarr")
    assert order == ["layers/0/w", "layers/1/w"]
    _assert_same(
        written, {"layers/0/w": np.arange(6.0, dtype=np.float32).reshape(2, 3), "layers/1/w": np.ones(3, np.float32)}
    )


def test_write_store_replaces_only_what_it_wrote(tmp_path: Path) -> None:
    mine = tmp_path / "params.zarr"
    pipeline.write_store(str(mine), {"w": np.zeros(3)})
    pipeline.write_store(str(mine), {"v": np.ones(2), "w": np.full(3, 7.0)}, order=["w", "v"])  # its own: replaced
    order, written = _stored(mine)
    assert order == ["w", "v"]
    _assert_same(written, {"w": np.full(3, 7.0), "v": np.ones(2)})
    # Anything else is left as it is: a folder of files, a Zarr group written otherwise, a file.
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "keep.txt").write_text("mine")
    other = tmp_path / "other.zarr"
    write_group(str(other), {"w": np.arange(3.0)})
    a_file = tmp_path / "a_file"
    a_file.write_text("mine too")
    before = _listing(tmp_path)
    for path in (notes, other, a_file):
        with pytest.raises(pipeline.StoreExistsError, match=rf"^'{path}' exists; choose another path or remove it.$"):
            pipeline.write_store(str(path), {"w": np.zeros(3)})
    assert _listing(tmp_path) == before


@pytest.mark.parametrize(
    ("arrays", "order", "message"),
    [
        ({"w": np.zeros(2), "names": "abc"}, None, r"entry 'names' is str of dtype <U3, not an array of numbers."),
        ({"w": None}, None, r"entry 'w' is NoneType of dtype object, not an array of numbers."),
        ({"w": {"nested": np.zeros(2)}}, None, r"entry 'w' is dict of dtype object, not an array of numbers."),
        (
            {"w": [[1.0, 2.0], [3.0]]},
            None,
            r"entry 'w' is list, which numpy cannot convert \(ValueError: setting an array element with a sequence.",
        ),
        ({}, None, r"there are no arrays to write \(the mapping is empty\)."),
        ([np.zeros(2)], None, r"expected a mapping of name -> array. Got list instead."),
        (
            {"a//b": np.zeros(2)},
            None,
            r"names must be non-empty strings whose '/'-separated parts are not empty, '.' or '..' and do not start "
            r"with '__'. Got 'a//b' instead.",
        ),
        ({"__meta": np.zeros(2)}, None, r"names must be .* Got '__meta' instead."),
        (
            {"layers": np.zeros(2), "layers/0/w": np.zeros(2)},
            None,
            r"names must not include both 'layers' and 'layers/0/w': in a store, 'layers' is the group holding "
            r"'layers/0/w'.",
        ),
        (
            {"w": np.zeros(2), "b": np.zeros(2)},
            ["w", "c", "w"],
            r"`order` names c, which are not among the arrays; lists w more than once; leaves out b; it must list "
            r"every array once.",
        ),
        ({"w": np.zeros(2)}, "w", r"`order` must be a list of the arrays' names. Got 'w' instead."),
    ],
)
def test_write_store_refuses_what_is_not_named_arrays_of_numbers(
    tmp_path: Path, arrays: Any, order: Any, message: str
) -> None:
    path = tmp_path / "p.zarr"
    with pytest.raises(pipeline.StoreError, match=rf"^Cannot write the store '{path}': {message}"):
        pipeline.write_store(str(path), arrays, order=order)
    assert os.listdir(tmp_path) == []  # nothing written, nothing left aside


def test_a_write_that_fails_midway_leaves_no_half_store_and_the_old_one_whole(tmp_path: Path) -> None:
    # A name the filesystem refuses (over 255 bytes): the first array is written, the second fails.
    failing = {"w": np.ones(4), "x" * 300: np.ones(2)}
    path = tmp_path / "params.zarr"
    with pytest.raises(
        pipeline.StoreError, match=rf"^The store '{path}' cannot be written: OSError: \[Errno 36\] File name too long"
    ):
        pipeline.write_store(str(path), failing)
    assert os.listdir(tmp_path) == []
    # Replacing a store: until the new one is whole, the old one stays as it was.
    pipeline.write_store(str(path), {"w": np.arange(4.0)})
    before = _listing(tmp_path)
    with pytest.raises(pipeline.StoreError, match=r"File name too long"):
        pipeline.write_store(str(path), failing)
    assert _listing(tmp_path) == before
    order, written = _stored(path)
    assert order == ["w"]
    _assert_same(written, {"w": np.arange(4.0)})
    with pytest.raises(
        pipeline.StoreNotFoundError,
        match=rf"^Cannot write the store '{tmp_path}/nowhere/p.zarr': its folder '{tmp_path}/nowhere' does not exist.$",
    ):
        pipeline.write_store(str(tmp_path / "nowhere" / "p.zarr"), {"w": np.ones(2)})


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


def test_names_with_slashes_and_dots_run_end_to_end_and_the_report_names_them_by_path(tmp_path: Path) -> None:
    params, data = _nested_problem()
    pipeline.write_store(str(tmp_path / "params.zarr"), params)
    pipeline.write_store(str(tmp_path / "data.zarr"), data)
    s = float(np.sum(data["batch/x"]))
    pipeline.write_store(str(tmp_path / "gradient.zarr"), {n: s * np.cos(p) + p for n, p in params.items()})
    (tmp_path / "net.py").write_text(_NESTED_MODEL)
    (tmp_path / "check.yaml").write_text(
        f"model: {tmp_path / 'net.py'}:planted\nparams: params.zarr\ndata: data.zarr\noutput: out.zarr\n"
    )
    # On a Dask worker (the stores read there) with the planted bug: exit 1, the tensor named by its path.
    planted = run_cli("run", str(tmp_path / "check.yaml"), "--workers", "1")
    assert planted.returncode == 1, planted.stderr
    assert "Wrong tensors, from the last layer back: layers/1/w\n" in planted.stdout
    assert "  layers/1/w: analytic is 2x the numeric gradient everywhere" in planted.stdout
    table = [line.split() for line in planted.stdout.splitlines() if line.rstrip().endswith((" ok", " WRONG"))]
    assert [(row[0], row[-1]) for row in table] == [
        ("layers/0/w", "ok"),
        ("layers/0/b", "ok"),
        ("layers/1/w", "WRONG"),
        ("head.weight", "ok"),
    ]
    assert "  layers/1/w[1, 0]  " in planted.stdout  # its worst elements, by path and multi-index
    report = json.loads(run_cli("report", str(tmp_path / "out.zarr"), "--json").stdout)
    assert [t["name"] for t in report["tensors"]] == _NESTED_ORDER
    assert report["failing"] == ["layers/1/w"]
    assert report["n_params"] == 6 + 3 + 6 + 2
    assert {w["tensor"] for w in report["worst"][:6]} == {"layers/1/w"}
    for worst in report["worst"][:6]:
        assert worst["analytic"] / worst["numeric"] == pytest.approx(2.0, rel=1e-8)
    layout = read_output_attrs(str(tmp_path / "out.zarr"))["layout"]
    assert [(t["name"], t["offset"]) for t in layout] == list(zip(_NESTED_ORDER, [0, 6, 9, 15], strict=True))
    again = run_cli("report", str(tmp_path / "out.zarr"))
    assert again.returncode == 1
    assert again.stdout == planted.stdout
    # In this process, the correct model against the nested gradient store: it passes.
    passed = run_cli(
        "run",
        str(tmp_path / "check.yaml"),
        "--inline",
        "--overwrite",
        "--json",
        "--set",
        f"model={tmp_path / 'net.py'}:correct",
        "--set",
        f"gradient={tmp_path / 'gradient.zarr'}",
    )
    assert passed.returncode == 0, passed.stderr
    assert json.loads(passed.stdout)["difference"] < 1e-10


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
