"""Bringing parameters in: `pipeline.write_store`, names with '/' in every store, and `gradcheck import`.

Real files throughout: .npz written by numpy, .safetensors by safetensors, .pt by torch.save,
model files on disk, and the stores read back with Zarr.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

import pipeline
from pipeline.storage.inputs import read_arrays, read_layout, write_group
from pipeline.storage.output import read_output_attrs

from .conftest import REPO, run_cli

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


def test_write_store_writes_a_url_in_place_and_refuses_what_is_there(tmp_path: Path) -> None:
    fsspec = pytest.importorskip("fsspec")
    root = f"memory://{tmp_path.name}"  # fsspec's in-memory filesystem, shared by this process
    url = f"{root}/params.zarr"
    pipeline.write_store(url, {"layers/0/w": np.arange(4.0).reshape(2, 2), "b": np.array([1, 2], dtype=np.float32)})
    assert read_layout(url).names == ("layers/0/w", "b")
    _assert_same(
        read_arrays("data", url), {"layers/0/w": np.arange(4.0).reshape(2, 2), "b": np.array([1, 2], dtype=np.float32)}
    )
    pipeline.write_store(url, {"w": np.ones(1)})  # its own: replaced
    assert read_layout(url).names == ("w",)
    memory = fsspec.filesystem("memory")
    memory.pipe(f"/{tmp_path.name}/notes/keep.txt", b"mine")
    with pytest.raises(pipeline.StoreExistsError, match=rf"^'{root}/notes' exists; choose another path or remove it.$"):
        pipeline.write_store(f"{root}/notes", {"w": np.ones(1)})
    assert memory.cat(f"/{tmp_path.name}/notes/keep.txt") == b"mine"
    memory.rm(f"/{tmp_path.name}", recursive=True)


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


# -- gradcheck import -------------------------------------------------------------------------------


def _import(source: Path | str, store: Path) -> subprocess.CompletedProcess[str]:
    return run_cli("import", str(source), str(store))


def test_import_npz_keeps_the_files_order_values_and_dtypes(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    arrays = {
        "layers/1/w": rng.standard_normal((3, 2)).astype(np.float32),
        "b": rng.standard_normal(3),
        "conv.weight": rng.standard_normal((2, 1, 3)),
        "steps": np.arange(5),
    }
    np.savez(tmp_path / "weights.npz", **arrays)  # type: ignore[arg-type]
    store = tmp_path / "params.zarr"
    done = _import(tmp_path / "weights.npz", store)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout == (
        f"Wrote 4 arrays to '{store}': 15 float elements, and steps (int64), not float32 or float64: a data store "
        "(parameters are floats).\n"
    )
    order, written = _stored(store)
    assert order == ["layers/1/w", "b", "conv.weight", "steps"]
    _assert_same(written, arrays)


def test_import_npz_refuses_object_arrays_without_unpickling(tmp_path: Path) -> None:
    np.savez(tmp_path / "objects.npz", w=np.zeros(2), meta=np.array([{"lr": 0.1}], dtype=object))
    _one_line(
        _import(tmp_path / "objects.npz", tmp_path / "p.zarr"),
        f"'{tmp_path / 'objects.npz'}': array 'meta' holds Python objects, which would have to be unpickled; "
        "gradcheck will not. Save arrays of numbers.",
    )
    (tmp_path / "fake.npz").write_bytes(np.zeros(3).tobytes())
    _one_line(
        _import(tmp_path / "fake.npz", tmp_path / "p.zarr"),
        f"'{tmp_path / 'fake.npz'}' is not an .npz file (not a zip archive of arrays, as np.savez writes).",
    )
    assert not (tmp_path / "p.zarr").exists()


def _safetensors_order(path: Path) -> list[str]:
    """The tensors of a .safetensors file in the order of their bytes, from its header."""
    raw = path.read_bytes()
    header = json.loads(raw[8 : 8 + struct.unpack("<Q", raw[:8])[0]])
    header.pop("__metadata__", None)
    return sorted(header, key=lambda name: header[name]["data_offsets"][0])


def test_import_safetensors_keeps_the_files_order_values_and_dtypes(tmp_path: Path) -> None:
    numpy_files = pytest.importorskip("safetensors.numpy")
    rng = np.random.default_rng(2)
    arrays = {
        "encoder/layer.0/w": rng.standard_normal((4, 3)).astype(np.float32),
        "alpha": rng.standard_normal(2),
        "zeta": rng.standard_normal((2, 2)).astype(np.float32),
        "ids": np.arange(3, dtype=np.int32),
    }
    source = tmp_path / "model.safetensors"
    numpy_files.save_file(arrays, str(source))
    store = tmp_path / "params.zarr"
    done = _import(source, store)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        f"Wrote 4 arrays to '{store}': 18 float elements, and ids (int32), not float32 or float64: a data store "
        "(parameters are floats).\n"
    )
    order, written = _stored(store)
    assert order == _safetensors_order(source)
    assert sorted(order) == sorted(arrays)
    _assert_same(written, arrays)


def test_import_safetensors_names_a_bfloat16_tensor(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    torch_files = pytest.importorskip("safetensors.torch")
    source = tmp_path / "bf16.safetensors"
    torch_files.save_file({"w": torch.ones(2), "emb": torch.ones(3, dtype=torch.bfloat16)}, str(source))
    _one_line(
        _import(source, tmp_path / "p.zarr"),
        f"'{source}': tensor 'emb' is BF16, which numpy cannot hold; save it as float32 (tensor.float()) and import "
        "again.",
    )
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    _one_line(
        _import(tmp_path / "junk.safetensors", tmp_path / "p.zarr"),
        f"'{tmp_path / 'junk.safetensors'}' is not a safetensors file: Error while deserializing header: header too "
        "small",
    )
    assert not (tmp_path / "p.zarr").exists()


def _torch_net() -> Any:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))


def test_import_a_torch_state_dict_in_its_order(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    net = _torch_net()
    expected = {name: tensor.numpy() for name, tensor in net.state_dict().items()}
    torch.save(net.state_dict(), tmp_path / "net.pt")
    # A checkpoint holding the state_dict beside other things, as the PyTorch tutorials save one.
    torch.save({"epoch": 7, "model_state_dict": net.state_dict(), "loss": 0.25}, tmp_path / "checkpoint.pth")
    torch.save({"state_dict": net.state_dict()}, tmp_path / "lightning.pt")
    for source in ("net.pt", "checkpoint.pth", "lightning.pt"):
        store = tmp_path / f"{source}.zarr"
        done = _import(tmp_path / source, store)
        assert done.returncode == 0, done.stderr
        assert (
            done.stdout
            == f"Wrote 4 arrays to '{store}': 26 float elements (as a params store, the parameters checked; or a data store).\n"
        )
        order, written = _stored(store)
        assert order == ["0.weight", "0.bias", "2.weight", "2.bias"]
        _assert_same(written, expected)
        assert written["0.weight"].dtype == np.float32


class Sentinel:
    """Leaves a file behind if it is ever unpickled: what a malicious pickle could do instead."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __setstate__(self, state: dict[str, str]) -> None:
        Path(state["marker"]).write_text("unpickled")
        self.__dict__.update(state)


def test_import_refuses_a_torch_file_that_is_not_weights_only_without_unpickling_it(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    marker = tmp_path / "unpickled.txt"
    torch.save({"w": torch.ones(2), "hook": Sentinel(str(marker))}, tmp_path / "model.pt")
    Sentinel.__setstate__(Sentinel(""), {"marker": str(tmp_path / "probe.txt")})  # the trap works when called
    assert (tmp_path / "probe.txt").read_text() == "unpickled"
    _one_line(
        _import(tmp_path / "model.pt", tmp_path / "p.zarr"),
        f"'{tmp_path / 'model.pt'}' is not a weights-only file (it pickles tests.test_import.Sentinel): gradcheck "
        "will not unpickle it, since unpickling can run any code. Save the model's state_dict() instead.",
    )
    assert not marker.exists()
    assert not (tmp_path / "p.zarr").exists()


def test_import_refuses_torch_files_that_are_not_state_dicts_naming_what_is_wrong(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    torch.save({"w": torch.ones(2), "step": 3, "opt": {"lr": torch.ones(1)}}, tmp_path / "mixed.pt")
    torch.save([torch.ones(2), torch.zeros(2)], tmp_path / "list.pt")
    torch.save({"w": torch.ones(2), "emb": torch.ones(3, dtype=torch.bfloat16)}, tmp_path / "bf16.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "list.pt").read_bytes()[:100])  # a copy cut short
    cases = {
        "mixed.pt": "'{}': 'step' (int), 'opt' (dict) are not tensors; a state_dict maps names to tensors.",
        "list.pt": "'{}' holds a list, not a state_dict (a mapping of name -> tensor).",
        "bf16.pt": "Cannot import '{}': entry 'emb' is a Tensor of dtype torch.bfloat16, which numpy cannot hold "
        "(Got unsupported ScalarType BFloat16); convert it to float32 or float64 first.",
        "junk.pt": "'{}' is not a PyTorch file torch.load can read: error: unpack requires a buffer of 4 bytes",
        "cut.pt": "'{}' is not a PyTorch file torch.load can read: RuntimeError: PytorchStreamReader failed reading "
        "zip archive: failed finding central directory.",
    }
    for name, message in cases.items():
        _one_line(_import(tmp_path / name, tmp_path / "p.zarr"), message.format(tmp_path / name))
    assert not (tmp_path / "p.zarr").exists()


_ADAPTER = """\
import numpy as np


class Adapter:
    # What a framework adapter offers: its parameters, in its own order, named by path.
    def __init__(self):
        self.params = {
            "layers/0/w": np.arange(6.0).reshape(2, 3),
            "layers/0/b": np.zeros(3, dtype=np.float32),
            "out.scale": np.float64(2.5),
        }

    def loss(self, params, data):
        return 0.0

    def grad(self, params, data):
        return {name: np.zeros_like(p) for name, p in params.items()}


adapter = Adapter()
weights = {"z": np.ones(2), "a": np.full((2, 2), 3.0)}
listed = [np.ones(2)]
"""


def test_import_a_python_object_its_params_or_a_mapping(tmp_path: Path) -> None:
    (tmp_path / "net.py").write_text(_ADAPTER)
    source: dict[str, Any] = {}
    exec(_ADAPTER, source)
    for attr, expected, parameters in (
        ("adapter", source["adapter"].params, 10),
        ("weights", source["weights"], 6),
    ):
        store = tmp_path / f"{attr}.zarr"
        done = _import(f"{tmp_path / 'net.py'}:{attr}", store)
        assert done.returncode == 0, done.stderr
        assert done.stdout == (
            f"Wrote {len(expected)} arrays to '{store}': {parameters} float elements (as a params store, the parameters checked; or a data store).\n"
        )
        order, written = _stored(store)
        assert order == list(expected)
        _assert_same(written, expected)
    _one_line(
        _import(f"{tmp_path / 'net.py'}:listed", tmp_path / "p.zarr"),
        f"'{tmp_path / 'net.py'}:listed' names a list; expected a mapping of name -> array, or an object with a "
        "`.params` mapping (a model adapter).",
    )
    _one_line(
        _import(f"{tmp_path / 'net.py'}:absent", tmp_path / "p.zarr"),
        f"Model '{tmp_path / 'net.py'}:absent': '{tmp_path / 'net.py'}' has no attribute 'absent'.",
    )
    _one_line(
        _import(tmp_path / "net.py", tmp_path / "p.zarr"),
        f"Cannot import '{tmp_path / 'net.py'}': expected an .npz, .safetensors, .pt or .pth file, or an object as "
        f"path/to/file.py:attr. Got a '.py' file instead (name the object in it: '{tmp_path / 'net.py'}:attr').",
    )
    assert not (tmp_path / "p.zarr").exists()


def test_import_refuses_unknown_and_missing_sources_and_an_existing_store(tmp_path: Path) -> None:
    np.save(tmp_path / "w.npy", np.ones(3))
    _one_line(
        _import(tmp_path / "w.npy", tmp_path / "p.zarr"),
        f"Cannot import '{tmp_path / 'w.npy'}': expected an .npz, .safetensors, .pt or .pth file, or an object as "
        "path/to/file.py:attr. Got a '.npy' file instead.",
    )
    _one_line(
        _import(tmp_path / "weights", tmp_path / "p.zarr"),
        f"Cannot import '{tmp_path / 'weights'}': expected an .npz, .safetensors, .pt or .pth file, or an object as "
        "path/to/file.py:attr. Got a file without a suffix instead.",
    )
    _one_line(
        _import(tmp_path / "absent.npz", tmp_path / "p.zarr"), f"The file '{tmp_path / 'absent.npz'}' does not exist."
    )
    assert sorted(os.listdir(tmp_path)) == ["w.npy"]
    # STORE exists: whatever it is, even a store an earlier import wrote, it is left as it is.
    np.savez(tmp_path / "w.npz", w=np.ones(3))
    assert _import(tmp_path / "w.npz", tmp_path / "p.zarr").returncode == 0
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    before = _listing(tmp_path)
    for store in ("p.zarr", "notes"):
        _one_line(
            _import(tmp_path / "w.npz", tmp_path / store),
            f"'{tmp_path / store}' exists; choose another path or remove it.",
        )
    assert _listing(tmp_path) == before


@pytest.mark.parametrize(
    ("module", "source", "needs"),
    [
        ("torch", "net.pt", "PyTorch: pip install torch"),
        ("safetensors", "net.safetensors", "the safetensors package: pip install safetensors"),
    ],
)
def test_import_without_the_files_library_says_what_to_install(
    tmp_path: Path, module: str, source: str, needs: str
) -> None:
    (tmp_path / source).write_bytes(b"weights")
    # The library made unimportable in a fresh process, as on the core install without it.
    script = f"import sys; sys.modules[{module!r}] = None; from pipeline.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run(
        [sys.executable, "-c", script, "import", str(tmp_path / source), str(tmp_path / "p.zarr")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    _one_line(done, f"Reading '{tmp_path / source}' needs {needs}")
    assert not (tmp_path / "p.zarr").exists()


def test_import_usage_errors_are_one_line() -> None:
    done = run_cli("import", "weights.npz")
    assert done.returncode == 2
    assert done.stderr == (
        "gradcheck import: error: the following arguments are required: STORE (see gradcheck import --help)\n"
    )
    helped = run_cli("import", "--help")
    assert helped.returncode == 0
    assert "usage: gradcheck import [-h] SOURCE STORE" in helped.stdout
    assert "torch.load(weights_only=True)" in " ".join(helped.stdout.split())


@pytest.mark.parametrize(
    ("name", "said"),
    [("MLP", "an MLP"), ("UNet", "a UNet"), ("int", "an int"), ("dict", "a dict"), ("Linear", "a Linear")],
)
def test_a_type_name_gets_the_article_it_is_read_with(name: str, said: str) -> None:
    # a newcomer's `gradcheck import mlp.py:correct` said "names a MLP"
    from pipeline.storage.imports import _article

    assert f"{_article(name)} {name}" == said
