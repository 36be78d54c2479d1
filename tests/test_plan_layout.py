"""The flat index space and the plan: pure, checked against numpy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.numerics.layout import Layout
from pipeline.numerics.plan import auto_shard_size, make_plan

shapes = st.lists(st.lists(st.integers(0, 4), min_size=0, max_size=3).map(tuple), min_size=1, max_size=5)


def _layout(shape_list: list[tuple[int, ...]]) -> Layout:
    names = [f"t{k}" for k in range(len(shape_list))]
    return Layout.from_shapes(names, dict(zip(names, shape_list, strict=True)), dict.fromkeys(names, "float64"))


@given(n=st.integers(0, 5000), shard_size=st.integers(1, 700))
def test_plan_covers_the_index_space_exactly_once(n: int, shard_size: int) -> None:
    plan = make_plan(n, shard_size)
    covered = np.concatenate([np.arange(s.start, s.stop) for s in plan]) if plan else np.array([], dtype=int)
    np.testing.assert_array_equal(covered, np.arange(n))
    assert [s.index for s in plan] == list(range(len(plan)))
    # Chunk alignment: shard k is exactly chunk k of an array chunked by shard_size.
    assert all(s.start == s.index * shard_size and 0 < s.size <= shard_size for s in plan)


def test_plan_rejects_an_empty_shard_size() -> None:
    with pytest.raises(ValueError, match=r"`shard_size` must be at least 1\. Got 0 instead\."):
        make_plan(10, 0)


@pytest.mark.parametrize(
    ("n", "loss_seconds", "workers", "expected"),
    [
        (47, 1e-5, 2, 47),  # a tiny model: one task, not worth balancing
        (4000, 1e-4, 2, 500),  # 4 shards per worker (of 0.1 s each)
        (800, 1e-4, 2, 500),  # 4 per worker would be tasks of 0.02 s: 0.1 s tasks instead
        (10**6, 1e-3, 2, 500),  # 1000 losses of 1 ms: a task of about 1 s
        (10**7, 1e-3, 64, 1000),  # 1 s tasks would be 20,000 of them: at most 10,000 shards, of 2 s
        (10**7, 1e-2, 64, 1000),  # a 10 ms loss: 10,000 tasks of 20 s rather than 200,000 of 1 s
        (10**7, 1e-5, 64, 39063),  # a fast loss: balance decides (4 per worker), as before
        (10, 10.0, 2, 1),  # a loss of 10 s: one index per task
        (1, 1e-6, 8, 1),
    ],
)
def test_auto_shard_size_aims_at_one_second_tasks_four_per_worker_and_at_most_10000(
    n: int, loss_seconds: float, workers: int, expected: int
) -> None:
    assert auto_shard_size(n, loss_seconds, workers) == expected


@given(shape_list=shapes)
def test_locate_matches_concatenated_c_order_flattening(shape_list: list[tuple[int, ...]]) -> None:
    layout = _layout(shape_list)
    # The reference: label every element by (tensor, multi-index), flatten each in C order, concatenate.
    expected = [
        (spec.name, tuple(int(k) for k in multi))
        for spec in layout.tensors
        for multi in (np.ndindex(*spec.shape) if spec.shape else [()])
    ]
    assert layout.n_params == len(expected)
    assert [layout.locate(i) for i in range(layout.n_params)] == expected


@given(shape_list=shapes, data=st.data())
def test_segments_split_a_range_at_tensor_boundaries(shape_list: list[tuple[int, ...]], data: st.DataObject) -> None:
    layout = _layout(shape_list)
    start = data.draw(st.integers(0, layout.n_params))
    stop = data.draw(st.integers(start, layout.n_params))
    pieces = [(spec.name, spec.offset + lo, spec.offset + hi) for spec, lo, hi in layout.segments(start, stop)]
    flat = [spec.name for spec in layout.tensors for _ in range(spec.size)]
    assert [name for name, lo, hi in pieces for _ in range(lo, hi)] == flat[start:stop]


def test_locate_rejects_indices_outside_the_space() -> None:
    layout = _layout([(2, 2)])
    with pytest.raises(IndexError, match=r"Index 4 is outside the flat index space \[0, 4\)"):
        layout.locate(4)


def test_layout_round_trips_through_its_dict_form() -> None:
    layout = _layout([(5, 4), (), (3,)])
    assert Layout.from_dict(layout.to_dict()) == layout
    assert [t["offset"] for t in layout.to_dict()] == [0, 20, 21]
