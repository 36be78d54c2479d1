"""The Zarr layout: what a params, data or gradient store must be, and the output's safety."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from pipeline.errors import OutputExistsError, StoreError, StoreNotFoundError
from pipeline.numerics.layout import Layout
from pipeline.numerics.plan import slots_for
from pipeline.storage.inputs import read_layout, validate_gradient, write_group
from pipeline.storage.output import prepare_output, read_output_attrs


def _params(tmp_path: Path, attrs: dict[str, object] | None = None, **arrays: np.ndarray) -> str:
    path = str(tmp_path / "params.zarr")
    write_group(path, arrays or {"w": np.zeros((2, 3)), "b": np.zeros(3)}, attrs)
    return path


def test_order_fixes_the_layout_and_sorting_is_the_default(tmp_path: Path) -> None:
    path = _params(tmp_path, {"order": ["w", "b"]})
    assert read_layout(path).to_dict() == [
        {"name": "w", "shape": [2, 3], "offset": 0, "dtype": "float64"},
        {"name": "b", "shape": [3], "offset": 6, "dtype": "float64"},
    ]
    assert read_layout(_params(tmp_path / "x")).names == ("b", "w")


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"order": ["w", "b", "c"]}, r"`order` names c, which the group does not hold."),
        ({"order": ["w"]}, r"`order` leaves out b; list every parameter tensor once."),
        ({"order": ["w", "b", "w"]}, r"`order` lists w more than once."),
        ({"order": "w,b"}, r"attribute `order` must be a list of array names. Got 'w,b' instead."),
    ],
)
def test_bad_order_attributes_are_named(tmp_path: Path, attrs: dict[str, object], message: str) -> None:
    with pytest.raises(StoreError, match=message):
        read_layout(_params(tmp_path, attrs))


def test_bad_params_stores_are_named(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFoundError, match=r"The params store '.*missing.zarr' does not exist"):
        read_layout(str(tmp_path / "missing.zarr"))
    with pytest.raises(StoreError, match=r"array 'n' has dtype int64; parameters must be float32 or float64."):
        read_layout(_params(tmp_path / "a", n=np.arange(3)))
    empty = str(tmp_path / "empty.zarr")
    zarr.open_group(empty, mode="w")
    with pytest.raises(StoreError, match=r"holds no arrays; expected one array per parameter tensor."):
        read_layout(empty)
    lone = str(tmp_path / "lone.zarr")
    zarr.create_array(lone, shape=(3,), dtype="f8")
    with pytest.raises(
        StoreError, match=r"The params store '.*lone.zarr' is a Zarr array; expected a group of arrays."
    ):
        read_layout(lone)


def test_gradient_stores_must_match_the_params(tmp_path: Path) -> None:
    layout = Layout.from_shapes(["w", "b"], {"w": (2, 3), "b": (3,)}, {"w": "float64", "b": "float64"})
    good = str(tmp_path / "g.zarr")
    write_group(good, {"w": np.zeros((2, 3)), "b": np.zeros(3)})
    validate_gradient(good, layout)
    wrong_shape = str(tmp_path / "g2.zarr")
    write_group(wrong_shape, {"w": np.zeros((3, 2)), "b": np.zeros(3)})
    with pytest.raises(StoreError, match=r"array 'w' has shape \(3, 2\); the params have \(2, 3\)."):
        validate_gradient(wrong_shape, layout)
    wrong_names = str(tmp_path / "g3.zarr")
    write_group(wrong_names, {"w": np.zeros((2, 3)), "bias": np.zeros(3)})
    with pytest.raises(StoreError, match=r"must hold one array per parameter tensor: missing b; unexpected bias."):
        validate_gradient(wrong_names, layout)


def test_an_output_is_never_written_over_unless_it_is_ours(tmp_path: Path) -> None:
    layout = Layout.from_shapes(["w"], {"w": (10,)}, {"w": "float64"})
    out = str(tmp_path / "out.zarr")
    prepare_output(out, layout, slots_for(layout, None), 4, "run-a", overwrite=False)
    numeric = zarr.open_array(out, path="numeric", mode="r")
    assert numeric.shape == (10,)
    assert numeric.chunks == (4,)
    assert np.isnan(numeric[:]).all()
    assert read_output_attrs(out)["layout"] == layout.to_dict()
    prepare_output(out, layout, slots_for(layout, None), 4, "run-a", overwrite=False)  # the same run: reused
    with pytest.raises(OutputExistsError, match=r"holds the result of a different check; pass --overwrite"):
        prepare_output(out, layout, slots_for(layout, None), 4, "run-b", overwrite=False)
    prepare_output(out, layout, slots_for(layout, None), 5, "run-b", overwrite=True)
    assert zarr.open_array(out, path="numeric", mode="r").chunks == (5,)
    # Someone else's group or folder is never touched, with or without --overwrite.
    params = _params(tmp_path)
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    for path in (params, str(folder)):
        with pytest.raises(OutputExistsError, match=r"exists and is not a gradcheck output; choose another `output`."):
            prepare_output(path, layout, slots_for(layout, None), 4, "run-c", overwrite=True)
    assert (folder / "keep.txt").read_text() == "mine"
    assert read_layout(params).names == ("b", "w")
