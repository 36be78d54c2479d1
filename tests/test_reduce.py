"""The reducer against numpy on the whole vector."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.numerics.layout import Layout
from pipeline.numerics.plan import make_plan
from pipeline.numerics.reduce import (
    ULP_SHIFT,
    ShardResult,
    Verdict,
    combine,
    exact_squares,
    exact_sum,
    failing_tensors,
    summarize_shard,
)
from pipeline.numerics.tolerance import AGREE, NONDIFFERENTIABLE, UNCHECKED, WRONG

SHAPES = {"W1": (5, 4), "b1": (5, 1), "W2": (3, 5), "b3": ()}
LAYOUT = Layout.from_shapes(list(SHAPES), SHAPES, dict.fromkeys(SHAPES, "float64"))


def _summaries(
    analytic: np.ndarray,
    numeric: np.ndarray,
    shard_size: int,
    worst: int,
    allowed: np.ndarray | None = None,
    status: np.ndarray | None = None,
) -> list[ShardResult]:
    """What the shard tasks of a run return, for whole vectors cut into shards (elements not judged by default)."""
    n = LAYOUT.n_params
    allowed = np.full(n, np.nan) if allowed is None else allowed
    status = np.full(n, AGREE, dtype=np.int8) if status is None else status
    step = np.linspace(1e-6, 2e-6, n)
    return [
        summarize_shard(
            LAYOUT,
            s,
            analytic[s.start : s.stop],
            numeric[s.start : s.stop],
            np.zeros(s.size, dtype=np.int8),
            allowed[s.start : s.stop],
            status[s.start : s.stop],
            step[s.start : s.stop],
            worst=worst,
            seconds=0.0,
            loaded=False,
        )
        for s in make_plan(LAYOUT.n_params, shard_size)
    ]


def _reduce(
    analytic: np.ndarray, numeric: np.ndarray, shard_size: int, worst: int = 5, threshold: float = 1e-3
) -> Verdict:
    results = _summaries(analytic, numeric, shard_size, worst)
    results.reverse()  # arrival order must not matter
    return combine(LAYOUT, results, threshold=threshold, worst=worst)


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), shard_size=st.integers(1, 50), noise=st.sampled_from([0.0, 1e-9, 1e-2, 1.0]))
def test_metrics_equal_numpy_on_the_whole_vector(seed: int, shard_size: int, noise: float) -> None:
    rng = np.random.default_rng(seed)
    analytic = rng.normal(size=LAYOUT.n_params)
    numeric = analytic + noise * rng.normal(size=LAYOUT.n_params)
    verdict = _reduce(analytic, numeric, shard_size)
    expected = np.linalg.norm(analytic - numeric) / (np.linalg.norm(analytic) + np.linalg.norm(numeric))
    assert verdict.difference == pytest.approx(expected, rel=1e-12, abs=1e-300)
    assert verdict.n_checked == LAYOUT.n_params
    scale = np.linalg.norm(analytic) + np.linalg.norm(numeric)
    for t in verdict.tensors:
        spec = next(s for s in LAYOUT.tensors if s.name == t.name)
        a, n = analytic[spec.offset : spec.stop], numeric[spec.offset : spec.stop]
        own = np.linalg.norm(a - n) / (np.linalg.norm(a) + np.linalg.norm(n))
        assert t.difference == pytest.approx(own, rel=1e-12, abs=1e-300)
        assert t.contribution == pytest.approx(np.linalg.norm(a - n) / scale, rel=1e-12, abs=1e-300)
        assert t.max_abs_error == np.max(np.abs(a - n))
    # The contributions decompose the difference.
    assert math.fsum(t.contribution**2 for t in verdict.tensors) == pytest.approx(verdict.difference**2, rel=1e-12)
    # The worst elements are numpy's top 5 by absolute error, worst first, located in their tensors.
    top = np.argsort(-np.abs(analytic - numeric), kind="stable")[:5]
    assert [(w.tensor, w.index) for w in verdict.worst] == [LAYOUT.locate(int(i)) for i in top]
    assert [w.abs_error for w in verdict.worst] == [float(abs(analytic[i] - numeric[i])) for i in top]


def test_the_verdict_does_not_depend_on_arrival_order() -> None:
    rng = np.random.default_rng(7)
    analytic = rng.normal(size=LAYOUT.n_params) * 10.0 ** rng.integers(-8, 8, LAYOUT.n_params)
    numeric = analytic * (1 + 1e-3 * rng.normal(size=LAYOUT.n_params))
    results = _summaries(analytic, numeric, shard_size=3, worst=3)
    verdicts = set()
    for seed in range(20):
        order = np.random.default_rng(seed).permutation(len(results))
        verdicts.add(combine(LAYOUT, [results[k] for k in order], threshold=2e-7, worst=3))
    assert len(verdicts) == 1


def test_one_wrong_element_is_the_worst_and_its_tensor_alone_fails() -> None:
    rng = np.random.default_rng(0)
    analytic = rng.normal(size=LAYOUT.n_params)
    numeric = analytic * (1 + 1e-9 * rng.normal(size=LAYOUT.n_params))
    i = LAYOUT.tensors[2].offset + 7  # W2[1, 2]
    analytic[i] += 1.0
    verdict = _reduce(analytic, numeric, shard_size=6, threshold=2e-7)
    assert not verdict.passed
    assert (verdict.worst[0].tensor, verdict.worst[0].index) == ("W2", (1, 2))
    assert [t.name for t in verdict.tensors if not t.passed] == ["W2"]


def test_judged_elements_decide_rank_and_count_and_kinks_do_not_fail() -> None:
    rng = np.random.default_rng(1)
    n = LAYOUT.n_params
    analytic = rng.normal(size=n)
    numeric = analytic + 1e-3 * rng.normal(size=n)
    allowed = np.full(n, 1.0)
    status = np.full(n, AGREE, dtype=np.int8)
    w1, b1, w2 = (spec.offset for spec in LAYOUT.tensors[:3])
    # A small error far beyond a tiny allowance outranks a larger one within a large allowance.
    allowed[w2 + 3], numeric[w2 + 3], status[w2 + 3] = 1e-9, analytic[w2 + 3] + 1e-6, WRONG
    numeric[w1] = analytic[w1] + 0.5  # within its allowance of 1
    status[b1 + 2] = NONDIFFERENTIABLE  # a kink: counted, never a failure
    status[w1 + 5 : w1 + 9] = UNCHECKED  # a sample skipped these: not counted at all
    verdict = combine(LAYOUT, _summaries(analytic, numeric, 4, 3, allowed, status), threshold=None, worst=3)
    assert not verdict.passed
    assert (verdict.worst[0].tensor, verdict.worst[0].index, verdict.worst[0].status) == ("W2", (0, 3), "wrong")
    assert verdict.worst[0].allowed == 1e-9
    assert [t.name for t in verdict.tensors if not t.passed] == ["W2"]
    by_name = {t.name: t for t in verdict.tensors}
    assert (by_name["W2"].n_wrong, by_name["b1"].n_nondifferentiable, by_name["W1"].n_checked) == (1, 1, 16)
    # Each tensor names its own worst element, whichever shards it spans.
    assert by_name["W2"].worst is not None
    assert by_name["W2"].worst.index == (0, 3)
    assert by_name["W1"].worst is not None
    assert by_name["W1"].worst.index == (0, 0)
    assert (verdict.n_wrong, verdict.n_nondifferentiable, verdict.n_checked) == (1, 1, n - 4)
    # Without the wrong element, no threshold: the check passes.
    status[w2 + 3] = AGREE
    allowed[w2 + 3] = 1.0
    assert combine(LAYOUT, _summaries(analytic, numeric, 4, 3, allowed, status), threshold=None, worst=3).passed


def test_failing_set_is_the_largest_contributors_until_the_rest_passes() -> None:
    contributions = {"a": 0.3, "b": 0.2, "c": 1e-7, "d": 1.5e-7}
    difference = math.sqrt(sum(c * c for c in contributions.values()))
    assert failing_tensors(contributions, difference, 2e-7) == {"a", "b"}
    # Noise spread thinly over tensors can fail the check with no tensor above the threshold:
    # the largest contributors are still named, so a failing check always names a tensor.
    # Equal contributions: the later tensors (nearer the output) are named first.
    spread = dict.fromkeys("abcd", 1.5e-7)
    assert failing_tensors(spread, 3e-7, 2e-7) == {"b", "c", "d"}
    assert failing_tensors(contributions, 1e-7, 2e-7) == set()


def test_nan_numeric_values_fail_and_rank_first() -> None:
    analytic = np.ones(LAYOUT.n_params)
    numeric = analytic.copy()
    numeric[LAYOUT.tensors[1].offset] = np.nan
    verdict = _reduce(analytic, numeric, shard_size=4)
    assert not verdict.passed
    assert verdict.worst[0].tensor == "b1"
    assert math.isnan(verdict.worst[0].abs_error)
    assert [t.name for t in verdict.tensors if not t.passed] == ["b1"]


@given(
    values=st.lists(
        st.one_of(st.floats(0, 1, allow_nan=False), st.sampled_from([0.0, 1e-9, 2e-7, math.inf])),
        min_size=1,
        max_size=12,
    ),
    threshold=st.sampled_from([1e-9, 2e-7, 1e-3]),
)
def test_failing_set_equals_the_greedy_definition(values: list[float], threshold: float) -> None:
    contributions = {f"t{k}": v for k, v in enumerate(values)}
    difference = math.sqrt(math.fsum(v * v for v in values))
    # The definition, step by step: drop the largest until the rest is within the threshold.
    expected: set[str] = set()
    rest = dict(contributions)
    while difference > threshold and math.sqrt(math.fsum(v * v for v in rest.values())) > threshold:
        largest = max(rest, key=lambda n: (rest[n], n))
        expected.add(largest)
        del rest[largest]
    got = failing_tensors(contributions, difference, threshold)
    # Ties between equal contributions may be broken either way; the sizes and values must agree.
    assert len(got) == len(expected)
    assert sorted(contributions[n] for n in got) == sorted(contributions[n] for n in expected)


@given(
    st.lists(
        st.floats(allow_nan=False, allow_infinity=False, width=64, min_value=-1e150, max_value=1e150),
        min_size=0,
        max_size=300,
    ),
    st.integers(min_value=0, max_value=300),
)
def test_exact_sums_are_exact_and_do_not_depend_on_the_split(values: list[float], cut: int) -> None:
    array = np.array(values, dtype=np.float64)
    exact = sum((Fraction(v) for v in values), Fraction(0))
    assert Fraction(exact_sum(array), 1 << ULP_SHIFT) == exact
    assert exact_sum(array[:cut]) + exact_sum(array[cut:]) == exact_sum(array)
    wide = np.tile(array, 3)  # past the Python loop's size: numpy's path, the same integer
    assert exact_sum(wide) == 3 * exact_sum(array)


@pytest.mark.parametrize("huge", [1e200, -1e160, 1.7e308])
def test_a_huge_finite_gradient_fails_with_its_element_named_and_does_not_crash(huge: float) -> None:
    """Review 104: soft-DTW's backward recursion with a sign error reaches 1e221, finite; its square overflowed the
    float64 sum of squares (``int(inf)``: an OverflowError out of ``pipeline.check``, a crash where a verdict was due).
    The squares of such values are summed as integers, and the difference is what it is, 1 to the float."""
    import pipeline

    class Quadratic:
        def loss(self, params: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> float:
            return float(0.5 * np.sum(params["w"] ** 2))

        def grad(self, params: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            gradient = params["w"].copy()
            gradient[1] = huge
            return {"w": gradient}

    report = pipeline.check(Quadratic(), {"w": np.array([0.3, -1.2, 0.7])}, {})
    assert report.failing == ("w",), report
    assert report.difference == 1.0, report
    assert "only element [1] is wrong" in str(report)
    values = np.array([huge, 3.0, -huge])
    assert Fraction(exact_squares(values), 1 << ULP_SHIFT) == 2 * Fraction(huge) ** 2 + 9
