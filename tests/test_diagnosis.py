"""Diagnosis in words, rule by rule: the sentences speak of the wrong elements only, name the mask bug and its
reverse, and a failed check's headline says what failed."""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import numpy as np

import pipeline
from pipeline.numerics.diagnose import diagnose
from pipeline.numerics.reduce import DirectionResult, with_directions
from pipeline.numerics.tolerance import AGREE, INCONCLUSIVE, NONDIFFERENTIABLE, UNCHECKED, WRONG
from pipeline.numerics.verdict import TensorReport
from pipeline.report import Report

#: The seed's settings (``gradient_check_n``): no per-element verdicts, a threshold on the whole difference.
SEED: dict[str, Any] = {"scheme": "central", "epsilon": 1e-7, "threshold": 2e-7, "tolerance": "none"}
MASK = (
    "most often a mask (ReLU, dropout, padding) applied in the forward pass but not in the backward, or a surrogate "
    "gradient (straight-through, a softened relaxation) of a loss that is piecewise constant there (a hard argmax, a "
    "threshold, a quantiser: its gradient is 0)"
)
MASKED_TERM = "a term masked out in the backward pass where the forward pass keeps it"


def _unjudged(
    shape: tuple[int, ...], analytic: np.ndarray, numeric: np.ndarray, status: np.ndarray | None = None
) -> tuple[str, ...]:
    """The diagnosis of a run with ``tolerance: none``: ``allowed`` NaN, every element ``AGREE``."""
    size = int(np.prod(shape))
    status = np.full(size, AGREE, dtype=np.int8) if status is None else status
    return diagnose(shape, analytic, numeric, np.full(size, np.nan), status)


def _judged(
    shape: tuple[int, ...], analytic: np.ndarray, numeric: np.ndarray, status: np.ndarray | None = None
) -> tuple[str, ...]:
    """The diagnosis with per-element verdicts: a relative 1e-6 allowed, status WRONG beyond it unless given."""
    allowed = 1e-6 * np.abs(numeric) + 1e-12
    if status is None:
        status = np.where(np.abs(analytic - numeric) <= allowed, AGREE, WRONG).astype(np.int8)
    return diagnose(shape, analytic, numeric, allowed, status)


# --- where the wrong elements lie, and a transpose inside a tensor ---------------------------------------------------


def test_wrong_elements_that_fill_a_block_of_rows_are_placed_there() -> None:
    # A fused K/V weight (16, 8) whose backward gets the V half (rows 8-15) wrong and the K half right; a 2D tensor's
    # count with no other pattern used to say only "64 of 128 checked elements are wrong".
    rng = np.random.default_rng(0)
    numeric = rng.normal(size=(16, 8))
    analytic = numeric.copy()
    analytic[8:] += rng.normal(size=(8, 8))
    assert _judged((16, 8), analytic.reshape(-1), numeric.reshape(-1)) == (
        "64 of 128 checked elements are wrong, at index 8-15 of axis 0, every checked element there",
    )
    # one of four stacked LSTM gates (axis 0 of (4, 5, 3)), wrong at some of its elements only
    numeric = rng.normal(size=(4, 5, 3))
    analytic = numeric.copy()
    analytic[2, :3] *= 1 + rng.uniform(0.1, 1, size=(3, 3))
    assert _judged((4, 5, 3), analytic.reshape(-1), numeric.reshape(-1)) == (
        "9 of 60 checked elements are wrong, at index 2 of axis 0",
    )


def test_scattered_wrong_elements_and_a_vectors_few_are_not_given_a_region() -> None:
    rng = np.random.default_rng(1)
    numeric = rng.normal(size=(6, 6))
    analytic = numeric.copy()
    analytic[[0, 1, 2, 3, 4], [0, 2, 4, 1, 5]] += 1.0  # 5 of 6 rows, 5 of 6 columns
    assert _judged((6, 6), analytic.reshape(-1), numeric.reshape(-1)) == ("5 of 36 checked elements are wrong",)
    numeric = rng.normal(size=12)
    analytic = numeric.copy()
    analytic[[1, 5]] += 1.0
    assert _judged((12,), analytic, numeric) == ("2 of 12 checked elements are wrong: [1], [5]",)
    analytic[[6, 7, 8]] += 1.0  # a vector's block: 1, 5-8
    assert _judged((12,), analytic, numeric) == ("5 of 12 checked elements are wrong, at index 1, 5-8",)


def test_a_few_wrong_elements_are_named_and_the_edges_of_a_field_said_so() -> None:
    # Review 94: a Dirichlet heat equation's hand-written adjoint, wrong at u0[0] and u0[63] only (the boundary rows of
    # its stencil), was told "2 of 64 checked elements are wrong", with nothing on where
    rng = np.random.default_rng(2)
    numeric = rng.normal(size=64)
    analytic = numeric.copy()
    analytic[[0, 63]] += [0.3, -0.2]
    assert _judged((64,), analytic, numeric) == (
        "2 of 64 checked elements are wrong: [0], [63] (each at an edge of the tensor: a boundary's stencil?)",
    )
    field = rng.normal(size=(16, 16))
    wrong = field.copy()
    wrong[0, 5] += 1.0
    wrong[9, 15] -= 0.5
    assert _judged((16, 16), wrong.reshape(-1), field.reshape(-1)) == (
        "2 of 256 checked elements are wrong, at index 0, 9 of axis 0 (each at an edge of the tensor: a boundary's "
        "stencil?)",
    )
    # corners only: every wrong element at both ends of one axis (review 136: a batch of fields, wrong at [0, 0] and
    # [0, 63])
    batch = rng.normal(size=(8, 64))
    cornered = batch.copy()
    cornered[0, [0, 63]] += [1.0, -1.0]
    assert _judged((8, 64), cornered.reshape(-1), batch.reshape(-1))[0].endswith("a boundary's stencil?)")
    inside = numeric.copy()
    inside[[5, 40]] += [0.3, -0.2]
    assert _judged((64,), inside, numeric) == ("2 of 64 checked elements are wrong: [5], [40]",)


def test_wrong_elements_at_one_end_of_an_axis_only_are_no_boundary() -> None:
    # Review 133: word2vec's output embedding written, not accumulated, at a repeated context index, the vocabulary's
    # last row (12, 6): "at index 11 of axis 0, every checked element there (each at an edge of the tensor: a
    # boundary's stencil?)" sent a user after a boundary. One end of one axis is as likely any row; two ends say more.
    rng = np.random.default_rng(4)
    numeric = rng.normal(size=(12, 8))
    analytic = numeric.copy()
    analytic[11] *= 0.5
    assert _judged((12, 8), analytic.reshape(-1), numeric.reshape(-1)) == (
        "analytic is 0.5x the numeric gradient at the 8 wrong elements (of 96 checked), at index 11 of axis 0, every "
        "checked element there",
    )
    analytic = numeric.copy()
    analytic[11] += rng.normal(size=8)  # the whole row, its corners at both ends of axis 1 (review 135)
    assert _judged((12, 8), analytic.reshape(-1), numeric.reshape(-1)) == (
        "8 of 96 checked elements are wrong, at index 11 of axis 0, every checked element there",
    )
    analytic = numeric.copy()
    analytic[11, [2, 5]] += [0.4, -0.3]
    assert _judged((12, 8), analytic.reshape(-1), numeric.reshape(-1)) == (
        "2 of 96 checked elements are wrong, at index 11 of axis 0",
    )


def test_a_gradient_moved_by_one_along_two_axes_at_once_is_said_so() -> None:
    # Review 133: a convolution's input gradient cropped from its padded gradient at P - 1 instead of P, so that
    # dx[n, c, i, j] holds the gradient of x[n, c, i - 1, j - 1], read as "196 of 196 checked elements are wrong"
    rng = np.random.default_rng(5)
    numeric = rng.normal(size=(2, 2, 7, 7))
    analytic = np.zeros_like(numeric)
    analytic[:, :, 1:, 1:] = numeric[:, :, :-1, :-1]
    analytic[:, :, 0, :] = rng.normal(size=(2, 2, 7))  # the padding's gradient, which no element of x has
    analytic[:, :, :, 0] = rng.normal(size=(2, 2, 7))
    assert _judged(numeric.shape, analytic.reshape(-1), numeric.reshape(-1)) == (
        "analytic is the numeric gradient shifted by one along axes 2 and 3 at once: element [i, j] there holds the "
        "gradient of [i - 1, j - 1] (an index off by one along both: a padding or crop offset?)",
    )
    # a constant field whose first row and column are wrong is as close unmoved as moved: no shift (review 135)
    constant = np.full((16, 16), 1 / 256)
    edged = constant.copy()
    edged[0, :], edged[:, 0] = rng.normal(size=16) * 1e-3, rng.normal(size=16) * 1e-3
    assert not any("shifted" in sentence for sentence in _judged((16, 16), edged.reshape(-1), constant.reshape(-1)))
    # along one axis the sentence is the one it was
    analytic = np.zeros_like(numeric)
    analytic[:, :, :-1, :] = numeric[:, :, 1:, :]
    assert _judged(numeric.shape, analytic.reshape(-1), numeric.reshape(-1)) == (
        "analytic is the numeric gradient shifted by one along axis 2: element i holds the next element's gradient "
        "(an index off by one)",
    )


def test_a_one_element_tensor_wrong_is_its_value_not_a_factor_everywhere() -> None:
    # Review 133: a Huber regression's bias, its derivative taken as the quadratic's everywhere, read as "analytic is
    # 5.629x the numeric gradient everywhere": one value has a ratio to anything, and no factor was found
    assert _judged((1,), np.array([-0.216424]), np.array([-0.0384447])) == (
        "its value is wrong: analytic -0.216424, numeric -0.0384447 (5.629x)",
    )
    assert _judged((), np.array([0.5]), np.array([-0.5])) == ("its value is wrong: analytic 0.5, numeric -0.5 (-1x)",)


def test_a_region_counts_only_the_rows_that_have_a_gradient_and_says_how_many_more_indices() -> None:
    # Found by review 46. An embedding (12, 8) whose backward doubles dims 0-3 of the 6 rows in the batch: the wrong
    # elements fill every row that has a gradient (the others are 0 in both), so the region is the dims, not the rows.
    rng = np.random.default_rng(5)
    numeric = np.zeros((12, 8))
    rows = np.array([1, 3, 7, 9, 10, 11])
    numeric[rows] = rng.normal(size=(6, 8))
    analytic = numeric.copy()
    analytic[:, :4] *= 2
    assert _judged((12, 8), analytic.reshape(-1), numeric.reshape(-1)) == (
        "analytic is 2x the numeric gradient at the 24 wrong elements (of 96 checked), at index 0-3 of axis 1, "
        "every checked element there",
    )
    # "and N more" counts indices, not runs: rows 1, 3, 7 and 9-11 of a (24, 8), all other rows live and right
    numeric = rng.normal(size=(24, 8))
    analytic = numeric.copy()
    analytic[rows] += 1.0
    assert _judged((24, 8), analytic.reshape(-1), numeric.reshape(-1)) == (
        "48 of 192 checked elements are wrong, at index 1, 3, 7 and 3 more of axis 0, every checked element there",
    )


def test_a_channel_left_at_zero_is_placed_and_a_sample_gets_no_region() -> None:
    # A conv weight (6, 2, 3, 3) whose channel 3 a loop never wrote: the masked-term sentence says where
    rng = np.random.default_rng(6)
    numeric = rng.normal(size=(6, 2, 3, 3))
    analytic = numeric.copy()
    analytic[3] = 0.0
    (said,) = _judged((6, 2, 3, 3), analytic.reshape(-1), numeric.reshape(-1))
    assert said.startswith(
        "analytic is exactly 0 at 18 elements ([3, 0, 0, 0], [3, 0, 0, 1], [3, 0, 0, 2] and 15 "
        "more; at index 3 of axis 0, every checked element there) where the loss does change"
    )
    # a sample of a fused (16, 64) weight wrong in rows 0-7 is spread over the long axis: no region at all
    numeric = rng.normal(size=(16, 64))
    analytic = numeric.copy()
    analytic[:8] *= 2.828
    positions = np.sort(rng.choice(16 * 64, size=20, replace=False))
    allowed = 1e-6 * np.abs(numeric.reshape(-1)[positions]) + 1e-12
    a, n = analytic.reshape(-1)[positions], numeric.reshape(-1)[positions]
    status = np.where(np.abs(a - n) <= allowed, AGREE, WRONG).astype(np.int8)
    (said,) = diagnose((16, 64), a, n, allowed, status, positions)
    assert said.startswith("analytic is 2.828x the numeric gradient at the ")
    assert "axis" not in said


def test_a_kernel_whose_rows_and_columns_are_swapped_is_a_transpose_inside_the_tensor() -> None:
    # conv dw (filters, channels, 3, 3) with each 3x3 kernel transposed: its diagonals agree, 36 of 54 are wrong
    rng = np.random.default_rng(2)
    numeric = rng.normal(size=(3, 2, 3, 3))
    analytic = np.swapaxes(numeric, 2, 3)
    assert _judged((3, 2, 3, 3), analytic.reshape(-1), numeric.reshape(-1)) == (
        "analytic is the numeric gradient with axes 2 and 3 swapped (a transpose inside the tensor)",
    )


def test_gradients_each_within_its_allowance_of_zero_are_not_read_as_a_pattern() -> None:
    """Review 79: a saturated float32 softmax's W, its numeric gradient 0 but for two values far inside their
    allowances, and two analytic values off 0, was said to be "shifted by one along axis 0": any values fit there."""
    numeric = np.zeros((3, 4))
    numeric[2, 2:] = (-3.1e-6, 3.1e-6)
    allowed = np.full((3, 4), 1e-6)
    allowed[2, 2:] = 3.5e-5
    analytic = numeric.copy()
    analytic[0, 3], analytic[1, 3] = 9.3e-7, -2.0e-6
    status = np.where(np.abs(analytic - numeric) <= allowed, AGREE, WRONG).astype(np.int8)
    sentences = diagnose((3, 4), analytic.reshape(-1), numeric.reshape(-1), allowed.reshape(-1), status.reshape(-1))
    assert not any("off by one" in sentence for sentence in sentences), sentences
    assert sentences[0].startswith("only element [1, 3] is wrong"), sentences  # what it does show


def test_a_kernel_flipped_along_its_spatial_axes_is_named() -> None:
    # conv dw (filters, channels, 3, 3) computed as a correlation where the forward pass convolves: each kernel
    # rotated by 180 degrees (review 74: the diagnosis said only "12 of 18 wrong")
    rng = np.random.default_rng(3)
    numeric = rng.normal(size=(3, 2, 3, 3))
    assert _judged((3, 2, 3, 3), np.flip(numeric, (2, 3)).reshape(-1), numeric.reshape(-1)) == (
        "analytic is the numeric gradient reversed along axes 2 and 3 (a flipped kernel: a correlation where a "
        "convolution is meant, or the reverse)",
    )
    # a 1-D convolution's kernel (out, in, width), reversed along its width
    numeric = rng.normal(size=(4, 2, 5))
    (said,) = _judged((4, 2, 5), np.flip(numeric, 2).reshape(-1), numeric.reshape(-1))
    assert said.startswith("analytic is the numeric gradient reversed along axis 2 (a flipped kernel")
    # not a swap of two (stacked gates), nor an embedding whose one used row went to the last (review 75)
    numeric = rng.normal(size=(2, 4, 3))
    swapped = np.concatenate([numeric[1:], numeric[:1]])
    assert "flipped kernel" not in " ".join(_judged((2, 4, 3), swapped.reshape(-1), numeric.reshape(-1)))
    numeric = np.zeros((3, 6))
    numeric[0] = rng.normal(size=6)
    assert "flipped kernel" not in " ".join(_judged((3, 6), numeric[::-1].reshape(-1), numeric.reshape(-1)))


# --- a penalty term left out of the backward pass, or counted twice ---------------------------------------------------

PENALTY_LEFT_OUT = (
    "numeric − analytic = 0.01·θ at every checked element: the backward pass misses a term 0.01·θ (an L2 penalty's "
    "or weight decay's gradient left out, or with too small a coefficient)"
)


def test_a_difference_proportional_to_the_parameters_is_a_penalty_term_left_out_or_counted_twice() -> None:
    # The seed's lesson: gradient checking works with penalty terms; a newcomer's MLP left 0.01·W2 out of dW2 and
    # was told "24 of 24 checked elements are wrong"
    rng = np.random.default_rng(3)
    theta, data_term = rng.normal(size=12), rng.normal(size=12)
    numeric = data_term + 0.01 * theta
    allowed = 1e-9 * np.abs(numeric) + 1e-12
    status = np.full(12, WRONG, dtype=np.int8)
    assert diagnose((3, 4), data_term, numeric, allowed, status, values=theta) == (PENALTY_LEFT_OUT,)
    assert diagnose((3, 4), numeric + 0.01 * theta, numeric, allowed, status, values=theta) == (
        "analytic − numeric = 0.01·θ at every checked element: the backward pass has 0.01·θ more than the loss's "
        "gradient (a penalty's gradient counted twice or with too large a coefficient, or one the loss does not have)",
    )
    # a difference that is not proportional to θ is not a penalty; nor is anything without θ
    assert diagnose((3, 4), data_term, numeric + 1e-3 * rng.normal(size=12), allowed, status, values=theta) == (
        "12 of 12 checked elements are wrong",
    )
    assert diagnose((3, 4), data_term, numeric, allowed, status) == ("12 of 12 checked elements are wrong",)
    # parameters all equal (a layer norm's gain of ones, found by review 46): a constant difference is a term
    # proportional to them, or a constant
    ones = np.ones(12)
    assert diagnose((3, 4), data_term, data_term + 0.01, allowed, status, values=ones) == (
        "numeric − analytic = 0.01 at every checked element, whose parameters are all 1: the backward pass misses "
        "a term 0.01·θ (a penalty's or weight decay's gradient) or a constant 0.01",
    )
    # not constant, or a single parameter: nothing
    assert diagnose((3, 4), data_term, numeric, allowed, status, values=ones) == (
        "12 of 12 checked elements are wrong",
    )
    (said,) = diagnose((1,), data_term[:1], numeric[:1], allowed[:1], status[:1], values=theta[:1])
    assert "θ" not in said
    # one element beyond its allowance and the other within a wide one: one c fits any such pair (review 97: a GP's
    # two lengthscales, one wrong, read as "151.5·θ at every checked element")
    pair, wide = np.array([131679.1, 209934.5]), np.array([7.57, 37.95])
    difference = np.array([-7.881, -9.867])
    two = np.array([WRONG, AGREE], dtype=np.int8)
    assert not any(
        "θ" in said for said in diagnose((2,), pair, pair + difference, wide, two, values=np.array([-0.052, -0.065]))
    )

    # θ is read (from a store, for a run that has one) only when no pattern before explained the tensor
    def unread() -> np.ndarray:
        raise AssertionError("read")

    assert diagnose((3, 4), 2 * numeric, numeric, allowed, status, values=unread) == (
        "analytic is 2x the numeric gradient everywhere",
    )
    assert diagnose((3, 4), data_term, numeric, allowed, status, values=lambda: theta) == (PENALTY_LEFT_OUT,)


class _RidgeMLP:
    """tanh MLP, squared error plus 0.005·(||W1||² + ||W2||²); ``left_out`` drops W2's penalty from its gradient."""

    def __init__(self, left_out: bool = False) -> None:
        self.left_out = left_out

    def loss(self, p: dict[str, np.ndarray], d: dict[str, np.ndarray]) -> float:
        z = np.tanh(d["X"] @ p["W1"]) @ p["W2"]
        return float(0.5 * np.mean((z - d["y"]) ** 2) + 0.005 * (np.sum(p["W1"] ** 2) + np.sum(p["W2"] ** 2)))

    def grad(self, p: dict[str, np.ndarray], d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        h = np.tanh(d["X"] @ p["W1"])
        e = (h @ p["W2"] - d["y"]) / d["y"].size
        dw2 = h.T @ e + (0.0 if self.left_out else 0.01 * p["W2"])
        return {"W1": d["X"].T @ (e @ p["W2"].T * (1 - h * h)) + 0.01 * p["W1"], "W2": dw2}


def test_a_check_names_the_penalty_its_backward_pass_left_out() -> None:
    rng = np.random.default_rng(4)
    params = {"W1": rng.normal(size=(4, 6)), "W2": rng.normal(size=(6, 3))}
    data = {"X": rng.normal(size=(16, 4)), "y": rng.normal(size=(16, 3))}
    assert pipeline.check(_RidgeMLP(), params, data).passed
    report = pipeline.check(_RidgeMLP(left_out=True), params, data)
    assert report.failing == ("W2",)
    assert report.tensors[1].diagnosis == (PENALTY_LEFT_OUT,)


# --- a constant factor or a flipped sign: "everywhere" only when every checked element is wrong ---------------------


def test_a_factor_on_2_of_3_elements_is_not_everywhere_under_the_fallback_allowance() -> None:
    # The case: the third element agrees (0 and 0), so a factor fitted to all three fits it too;
    # it is still not wrong, and the factor holds at the 2 wrong elements only.
    numeric = np.array([0.5, -1.25, 0.0])
    analytic = np.array([0.5 * 0.8965, -1.25 * 0.8965, 0.0])
    assert _unjudged((3,), analytic, numeric) == (
        "analytic is 0.8965x the numeric gradient at the 2 wrong elements (of 3 checked)",
    )


def test_a_factor_on_some_elements_only_with_per_element_verdicts() -> None:
    numeric = np.array([1.0, 2.0, 3.0, 4.0])
    analytic = np.array([1.0, 6.0, 3.0, 12.0])
    assert _judged((2, 2), analytic, numeric) == (
        "analytic is 3x the numeric gradient at the 2 wrong elements (of 4 checked), at index 1 of axis 1, "
        "every checked element there",
    )


def test_a_factor_on_every_element_is_everywhere() -> None:
    numeric = np.array([0.3, -1.0, 2.5, 0.7, -0.2, 1.1])
    for say in (_unjudged, _judged):
        assert say((2, 3), 2 * numeric, numeric) == ("analytic is 2x the numeric gradient everywhere",)


def test_a_sign_flipped_at_the_wrong_elements_only() -> None:
    numeric = np.array([1.0, 2.0, 3.0, 4.0])
    analytic = np.array([-1.0, 2.0, -3.0, 4.0])
    assert _unjudged((4,), analytic, numeric) == (
        "the sign is flipped: analytic = -1 x numeric at the 2 wrong elements (of 4 checked)",
    )
    assert _unjudged((4,), -numeric, numeric) == ("the sign is flipped: analytic = -1 x numeric everywhere",)


def test_an_element_of_another_status_is_checked_and_not_wrong() -> None:
    # A kink (2) and an element too noisy to verify (4) count as checked: the factor is not "everywhere".
    numeric = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    analytic = 2 * numeric
    status = np.array([WRONG, WRONG, NONDIFFERENTIABLE, WRONG, INCONCLUSIVE], dtype=np.int8)
    assert _judged((5,), analytic, numeric, status) == (
        "analytic is 2x the numeric gradient at the 3 wrong elements (of 5 checked)",
    )
    # Nor is an element of an unknown status judged by the fallback allowance.
    status = np.array([AGREE, AGREE, AGREE, AGREE, INCONCLUSIVE], dtype=np.int8)
    assert _unjudged((5,), analytic, numeric, status) == (
        "analytic is 2x the numeric gradient at the 4 wrong elements (of 5 checked)",
    )


def test_unchecked_elements_are_not_counted_wrong() -> None:
    # A sampled run stores NaN as the numeric value of the elements it skipped.
    numeric = np.array([1.0, np.nan, 3.0, np.nan, 5.0, np.nan])
    analytic = np.array([1.0, 7.0, 3.5, 8.0, 5.0, 9.0])
    status = np.array([AGREE, UNCHECKED, WRONG, UNCHECKED, AGREE, UNCHECKED], dtype=np.int8)
    assert diagnose((6,), analytic, numeric, np.full(6, 1e-6), status) == (
        "only element [2] is wrong: analytic 3.5, numeric 3 (1.167x)",
    )


def test_one_wrong_element_close_to_its_numeric_value_shows_the_digits_that_differ_and_by_how_much() -> None:
    # A 3e-6 relative error printed to 6 digits read "analytic 3.54477, numeric 3.54476 (1x)"; a scalar's index read "[]".
    numeric = np.array([1.0, 3.544765])
    analytic = np.array([1.0, 3.544765 * (1 + 3e-6)])
    status = np.array([AGREE, WRONG], dtype=np.int8)
    assert diagnose((2,), analytic, numeric, np.full(2, 1e-9), status) == (
        "only element [1] is wrong: analytic 3.5447756, numeric 3.544765 (relative difference 3e-06)",
    )
    assert diagnose((), analytic[1:], numeric[1:], np.full(1, 1e-9), status[1:]) == (
        "its value is wrong: analytic 3.5447756, numeric 3.544765 (relative difference 3e-06)",
    )


def test_wrong_elements_all_slightly_off_say_how_slightly_and_what_differs_so_little() -> None:
    """Held-out sweep 49: torchdiffeq's adjoint gradient at a solver tolerance of 1e-6 read only "3 of 3 checked
    elements are wrong"; the README's paragraph on losses computed to a tolerance explains it."""
    numeric = np.array([1.0, 2.0, 3.0, 4.0])
    analytic = numeric * (1 + np.array([1e-6, -2e-6, 3e-6, 0.0]))
    status = np.array([WRONG, WRONG, WRONG, AGREE], dtype=np.int8)
    (sentence,) = diagnose((4,), analytic, numeric, np.full(4, 1e-9), status)
    assert sentence == (
        "3 of 4 checked elements are wrong, each by at most 3e-06 relative: a loss or gradient computed to a "
        "tolerance (an iterative solver, an ODE integrator) differs by about that much, and so does a small term "
        "left out"
    )
    analytic[0] = 1.01  # one of them far off: no such sentence
    assert diagnose((4,), analytic, numeric, np.full(4, 1e-9), status) == ("3 of 4 checked elements are wrong",)


def test_one_wrong_element_beside_inconclusive_ones_is_not_called_the_only_one() -> None:
    """Held-out sweep 47: a whole float32 LSTM weight 0.1% off, most of its elements inconclusive (bars too wide to
    tell), read "only element [0, 2] is wrong", an indexing bug's sentence."""
    numeric = np.linspace(1.0, 2.0, 6)
    analytic = numeric * 1.002
    status = np.array([AGREE, WRONG, INCONCLUSIVE, INCONCLUSIVE, AGREE, INCONCLUSIVE], dtype=np.int8)
    assert diagnose((2, 3), analytic, numeric, np.full(6, 1e-9), status) == (
        "element [0, 1] is wrong: analytic 1.2024, numeric 1.2 (1.002x); 3 of the other 5 checked elements are "
        "inconclusive, so it may not be the only one",
    )

    # dead units (0 against 0, exact) do not make it one of many; a sample says it is one
    status[[2, 3, 5]] = INCONCLUSIVE
    numeric[[2, 3, 5]] = analytic[[2, 3, 5]] = 0.0
    assert diagnose((2, 3), analytic, numeric, np.full(6, 1e-9), status) == (
        "only element [0, 1] is wrong: analytic 1.2024, numeric 1.2 (1.002x)",
    )
    sampled = diagnose((4, 3), analytic, numeric, np.full(6, 1e-9), status, positions=np.array([0, 1, 2, 5, 7, 11]))
    assert sampled == (
        "element [0, 1] is wrong: analytic 1.2024, numeric 1.2 (1.002x) (a sample: 6 of the tensor's "
        "12 elements checked)",
    )


# --- the mask and its reverse --------------------------------------------------------------------------------------


def _relu_layer() -> tuple[np.ndarray, np.ndarray]:
    """A (3, 4) weight's numeric gradient with 5 dead units (exactly 0), and the same as the analytic one."""
    numeric = np.arange(1.0, 13.0) / 7
    dead = [1, 4, 7, 9, 10]
    numeric[dead] = 0.0
    return numeric.copy(), numeric


def test_analytic_non_zero_where_the_loss_does_not_change_is_a_mask_missing_from_the_backward() -> None:
    analytic, numeric = _relu_layer()
    analytic[[1, 4, 7, 9, 10]] = [0.3, -0.2, 0.5, 0.1, 0.4]
    sentence = (
        "analytic is non-zero at 5 elements ([0, 1], [1, 0], [1, 3] and 2 more) where the loss does not change "
        f"at all (numeric exactly 0): {MASK}"
    )
    assert _unjudged((3, 4), analytic, numeric) == (sentence,)
    assert _judged((3, 4), analytic, numeric) == (sentence,)


def test_a_mask_on_most_of_the_wrong_elements_is_named_with_the_count_of_all() -> None:
    analytic, numeric = _relu_layer()
    analytic[[1, 4, 7, 9, 10]] = [0.3, -0.2, 0.5, 0.1, 0.4]
    analytic[11] *= 1.5  # one more wrong element, of another kind
    assert _judged((3, 4), analytic, numeric) == (
        "6 of 12 checked elements are wrong",
        "analytic is non-zero at 5 elements ([0, 1], [1, 0], [1, 3] and 2 more) where the loss does not change "
        f"at all (numeric exactly 0): {MASK}",
    )


def test_the_wrong_elements_besides_a_mask_are_described_by_their_ratio_where_they_share_one() -> None:
    """Held-out sweep 47: a sign flipped in fast-soft-sort's projection VJP showed as "non-zero where the loss does
    not change" at the flat elements, and nothing was said of the others."""
    analytic, numeric = _relu_layer()
    analytic[[1, 4, 7]] = [0.3, -0.2, 0.5]
    analytic[[0, 11]] *= -1
    assert _judged((3, 4), analytic, numeric) == (
        "5 of 12 checked elements are wrong",
        f"analytic is non-zero at 3 elements ([0, 1], [1, 0], [1, 3]) where the loss does not change at all "
        f"(numeric exactly 0): {MASK}",
        "at the other 2 wrong elements analytic is -1 x (the sign is flipped) the numeric gradient",
    )
    analytic[11] *= 3  # no ratio in common: nothing more is said
    assert len(_judged((3, 4), analytic, numeric)) == 2
    # nor of a ratio within ten times the estimates' own error (float32 noise under `tolerance: none`: review 50)
    analytic, numeric = _relu_layer()
    analytic[[1, 4, 7]] = [0.3, -0.2, 0.5]
    analytic[[0, 11]] *= 0.995
    assert len(_unjudged((3, 4), analytic, numeric)) == 2


def test_a_single_masked_element_gives_its_values_and_the_mask() -> None:
    analytic, numeric = _relu_layer()
    analytic[4] = 0.25
    assert _judged((3, 4), analytic, numeric) == (
        "only element [1, 0] is wrong: analytic 0.25, numeric 0",
        f"analytic is non-zero at 1 element ([1, 0]) where the loss does not change at all (numeric exactly 0): {MASK}",
    )


def test_analytic_zero_at_some_elements_where_the_loss_changes_is_a_term_masked_where_it_should_not_be() -> None:
    numeric = np.array([0.4, -1.3, 0.9, 2.2, -0.6, 1.7])
    analytic = numeric.copy()
    analytic[[1, 4]] = 0.0
    assert _unjudged((6,), analytic, numeric) == (
        f"analytic is exactly 0 at 2 elements ([1], [4]) where the loss does change (numeric non-zero): {MASKED_TERM}",
    )


def test_analytic_zero_at_every_element_is_a_missing_term() -> None:
    numeric = np.array([0.4, -1.3, 0.9, 2.2])
    assert _judged((4,), np.zeros(4), numeric) == (
        "the analytic gradient is zero everywhere, the numeric one is not: a missing term",
    )
    # Where the numeric gradient is 0 too, that element is not wrong: not "everywhere".
    numeric[2] = 0.0
    assert _judged((4,), np.zeros(4), numeric) == (
        "the analytic gradient is zero at every checked element, the numeric one is not at 3 of the 4 "
        "([0], [1], [3]): a missing term",
    )


class ReluWithoutMask:
    """J = ½ Σ (relu(x W1 + b1) W2 - y)², with a backward pass that forgets ReLU's mask."""

    def loss(self, params: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> float:
        hidden = np.maximum(data["x"] @ params["W1"] + params["b1"], 0)
        return float(0.5 * np.sum((hidden @ params["W2"] - data["y"]) ** 2))

    def grad(self, params: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        hidden = np.maximum(data["x"] @ params["W1"] + params["b1"], 0)
        residual = hidden @ params["W2"] - data["y"]
        g_hidden = residual @ params["W2"].T  # should be multiplied by (hidden > 0)
        return {"W1": data["x"].T @ g_hidden, "b1": g_hidden.sum(0), "W2": hidden.T @ residual}


def test_a_relu_mask_missing_from_the_backward_pass_is_named_in_a_real_check() -> None:
    # Units 1 and 3 are dead on every sample: the loss does not move with their weights, bit for bit.
    rng = np.random.default_rng(1)
    params = {
        "W1": rng.normal(size=(3, 6)),
        "b1": np.array([50.0, -50, 50, -50, 50, 50]),
        "W2": rng.normal(size=(6, 2)),
    }
    data = {"x": rng.normal(size=(8, 3)), "y": rng.normal(size=(8, 2))}
    choices: tuple[dict[str, Any], ...] = ({}, SEED)
    for settings in choices:
        report = pipeline.check(ReluWithoutMask(), params, data, **settings)
        assert report.failing == ("W1", "b1")
        by_name = {t.name: t.diagnosis for t in report.tensors}
        assert by_name["W1"] == (
            "analytic is non-zero at 6 elements ([0, 1], [0, 3], [1, 1] and 3 more; at index 1, 3 of axis 1, every "
            f"checked element there) where the loss does not change at all (numeric exactly 0): {MASK}",
        )
        assert by_name["b1"] == (
            f"analytic is non-zero at 2 elements ([1], [3]) where the loss does not change at all (numeric exactly 0): {MASK}",
        )


# --- nothing wrong by itself, and non-finite values ----------------------------------------------------------------


def test_a_tensor_with_no_wrong_element_says_so() -> None:
    numeric = np.array([1.0, 2.0, 3.0])
    analytic = numeric * (1 + 3e-6)
    assert _unjudged((3,), analytic, numeric) == (
        "none of the 3 checked elements is off by more than 1e-3 relative (elements are not judged); "
        "the largest |a-n| is 9e-06, at [2]",
    )
    status = np.full(3, AGREE, dtype=np.int8)
    assert diagnose((3,), analytic, numeric, np.full(3, 1e-5), status) == (
        "none of the 3 checked elements is wrong by itself; the largest |a-n| is 9e-06, at [2]",
    )


def test_a_non_finite_numeric_value_is_named_and_the_rest_read_apart() -> None:
    numeric = np.array([np.nan, 1.0, 2.0, 3.0])
    analytic = np.array([1.0, 2.0, 4.0, 3.0])
    assert _unjudged((4,), analytic, numeric) == (
        "the numeric gradient is not finite (a non-finite loss) at 1 element: [0]",
        "analytic is 2x the numeric gradient at the 2 other wrong elements (of 4 checked)",
    )


# --- random directions ---------------------------------------------------------------------------------------------


def _tensor(diagnosis: tuple[str, ...] = ()) -> TensorReport:
    return TensorReport("w", (4,), 0.1, 0.1, 0.1, passed=not diagnosis, diagnosis=diagnosis)


def _direction(number: int, analytic: float, numeric: float) -> DirectionResult:
    status = AGREE if abs(analytic - numeric) <= 1e-6 else WRONG
    return DirectionResult("w", number, analytic, numeric, 1e-6, status, 1e-5)


def test_a_factor_along_some_random_directions_only_is_not_every_direction() -> None:
    directions = [_direction(0, 2.0, 1.0), _direction(1, 1.5, 1.5), _direction(2, -4.0, -2.0)]
    (tensor,) = with_directions((_tensor(),), directions)
    assert tensor.diagnosis == ("analytic is 2x the numeric gradient along the 2 wrong random directions (of 3)",)
    assert not tensor.passed
    (tensor,) = with_directions((_tensor(),), [_direction(0, 2.0, 1.0), _direction(2, -4.0, -2.0)])
    assert tensor.diagnosis == ("analytic is 2x the numeric gradient along every random direction",)


def test_a_factor_close_to_1_along_the_directions_is_not_printed_as_1x() -> None:
    """Held-out sweep 49: a VJP 1e-5 too large read "analytic is 1x the numeric gradient along every random
    direction", which reads as agreement."""
    (tensor,) = with_directions((_tensor(),), [_direction(0, 1.00001, 1.0), _direction(1, -2.00002, -2.0)])
    assert tensor.diagnosis == ("analytic is the numeric gradient times 1 + 1e-05 along every random direction",)
    # ratios that differ by more than their distance from 1 get the values, with the digits that differ
    (tensor,) = with_directions((_tensor(),), [_direction(0, 1.00001, 1.0), _direction(1, -2.00006, -2.0)])
    assert tensor.diagnosis == (
        "2 of 2 random directions disagree; along direction 1, g·v = -2.00006 but the loss changes at -2",
    )


def test_wrong_directions_are_said_after_what_the_elements_showed() -> None:
    elements = "none of the 3 checked elements is wrong by itself; the largest |a-n| is 9e-06, at [2]"
    (tensor,) = with_directions((_tensor((elements,)),), [_direction(0, 2.0, 1.0), _direction(1, 1.5, 1.0)])
    assert tensor.diagnosis == (
        elements,
        "2 of 2 random directions disagree; along direction 0, g·v = 2 but the loss changes at 1",
    )


# --- the headline ---------------------------------------------------------------------------------------------------


class SlightlyOff:
    """J = ½ Σ c·w², with a backward pass 3e-6 too large: no element is off by 1e-3, the seed's threshold fails."""

    def loss(self, params: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> float:
        return float(0.5 * np.sum(data["c"] * params["w"] ** 2))

    def grad(self, params: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"w": data["c"] * params["w"] * (1 + 3e-6)}


def _problem() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    return {"w": rng.uniform(-1, 1, (4, 4))}, {"c": rng.uniform(0.5, 2, (4, 4))}


def _check(**settings: Any) -> Report:
    params, data = _problem()
    return pipeline.check(SlightlyOff(), params, data, **settings)


def test_a_check_failed_on_the_threshold_alone_says_so_in_the_headline() -> None:
    seed = _check(**SEED)
    assert not seed.passed
    assert seed.n_wrong == 0
    headline = str(seed).splitlines()[0]
    assert headline == f"gradcheck FAILED: difference {seed.difference:.3e} > threshold 2e-07"
    (tensor,) = seed.tensors
    assert tensor.diagnosis[0].startswith(
        "none of the 16 checked elements is off by more than 1e-3 relative (elements are not judged)"
    )

    # With per-element verdicts every element agrees: the headline leads with the threshold, never "0 of 16 wrong".
    judged = _check(**{**SEED, "tolerance": "auto"})
    assert not judged.passed
    assert judged.n_wrong == 0
    headline = str(judged).splitlines()[0]
    assert "0 of 16 elements wrong" not in headline
    assert headline == (
        f"gradcheck FAILED: difference {judged.difference:.3e} > threshold 2e-07; none of the 16 checked elements wrong"
    )


def test_the_headline_names_a_tensor_that_failed_for_no_other_reason_as_not_verified() -> None:
    report = _check(**{**SEED, "tolerance": "auto", "threshold": None})
    assert report.passed
    assert (
        str(report).splitlines()[0] == f"gradcheck PASSED: 0 of 16 elements wrong; difference {report.difference:.3e}"
    )
    unverified = dataclasses.replace(
        report,
        passed=False,
        verdict="not verified",
        not_verified=("w",),
        tensors=tuple(dataclasses.replace(t, verified=False) for t in report.tensors),
    )
    assert str(unverified).splitlines()[0] == (
        f"gradcheck NOT VERIFIED: 1 tensor not verified (w); none of the 16 checked elements wrong; "
        f"difference {report.difference:.3e}"
    )


class LogLoss:
    """J = Σ log w, exact gradient 1/w; w[0] sits within a step of 0, so the loss below it is not finite."""

    def loss(self, params: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> float:
        with np.errstate(invalid="ignore"):
            return float(np.sum(np.log(params["w"])))

    def grad(self, params: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"w": 1 / params["w"]}


def test_the_headline_names_non_finite_losses_and_random_directions() -> None:
    w = np.array([5e-8, 1.0, 2.0, 3.0])
    report = pipeline.check(LogLoss(), {"w": w}, {}, scheme="central", epsilon=1e-7, threshold=2e-7)
    assert report.nonfinite.count == 1
    assert math.isnan(report.difference)
    assert (
        str(report).splitlines()[0]
        == "gradcheck FAILED: 1 of 4 elements wrong; non-finite loss at 1 element; difference nan"
    )
    assert report.tensors[0].diagnosis == ("the numeric gradient is not finite (a non-finite loss) at 1 element: [0]",)
    # its worst element has no estimate, and says so (review 99: it read "numeric nan, |a-n| nan where nan is allowed")
    assert (
        "  w: worst element w[0]: analytic 2e+07, no numeric estimate (the loss was not finite at its steps: see the "
        "non-finite losses below)"
    ) in str(report)

    params, data = _problem()
    doubled = pipeline.check(TwiceTheGradient(), params, data, indices="none", directions=2)
    assert str(doubled).splitlines()[0] == (
        f"gradcheck FAILED: 2 of 2 random directions wrong; difference along the random directions "
        f"{doubled.difference:.3e}"
    )
    # no element was checked: the table has no element figures to show, not zeros
    row = next(line for line in str(doubled).splitlines() if line.startswith(f"  {doubled.tensors[0].name} "))
    cells = re.split(r"\s{2,}", row.strip())  # tensor, shape, difference, contribution, max |a-n|, noise, wrong, ...
    assert cells[2:5] == ["-", "-", "-"]
    assert cells[6:9] == ["-", "-", "-"]
    assert doubled.tensors[0].diagnosis == ("analytic is 2x the numeric gradient along every random direction",)


class TwiceTheGradient(SlightlyOff):
    """The same loss; a backward pass twice too large."""

    def grad(self, params: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"w": 2 * data["c"] * params["w"]}


class _ReluLayer:
    """``Σ V·relu(X·W + b)``, backward by hand with relu'(0) = 0 (as nnfs, CS231n and numpy-ml take it): correct."""

    def loss(self, params: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> float:
        return float(np.sum(data["V"] * np.maximum(data["X"] @ params["W"] + params["b"], 0)))

    def grad(self, params: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        dz = data["V"] * (data["X"] @ params["W"] + params["b"] > 0)
        return {"W": data["X"].T @ dz, "b": dz.sum(axis=0)}


class _ReluNet:
    """Softmax cross-entropy of ``relu(X·W1 + b1)·W2 + b2``, backward by hand with relu'(0) = 0: correct."""

    @staticmethod
    def _forward(params: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
        z = data["X"] @ params["W1"] + params["b1"]
        h = np.maximum(z, 0)
        s = h @ params["W2"] + params["b2"]
        e = np.exp(s - s.max(axis=1, keepdims=True))
        return z, h, e / e.sum(axis=1, keepdims=True)

    def loss(self, params: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> float:
        _, _, prob = self._forward(params, data)
        return float(-np.mean(np.log(prob[np.arange(data["y"].size), data["y"]])))

    def grad(self, params: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        z, h, prob = self._forward(params, data)
        ds = prob.copy()
        ds[np.arange(data["y"].size), data["y"]] -= 1
        ds /= data["y"].size
        dz = (ds @ params["W2"].T) * (z > 0)
        return {"W1": data["X"].T @ dz, "b1": dz.sum(axis=0), "W2": h.T @ ds, "b2": ds.sum(axis=0)}


def test_a_correct_relu_network_failed_at_exact_kinks_is_told_of_them_and_shown_a_wrong_element() -> None:
    """A held-out review: on integer data and weights a correct ReLU network can fail (several units exactly on their
    kink: the README says so). Its diagnosis said "a term masked out in the backward pass", a bug that was not there,
    and named as the worst element a kink beside the wrong one (its allowance narrower, its rank higher). The kinks
    are now named as the other cause, and the worst element of a wrong tensor is a wrong one. Since its elements beyond
    their slopes are judged at points near θ (:mod:`pipeline.numerics.nearby`), where the units are off their kinks,
    neither fails: their values lie within those derivatives, but the ReLUs' derivatives along every kink at once
    scatter there, so those elements are not verified; without the second look, which does that, the layer fails as
    before, diagnosed so."""
    relu = np.random.default_rng(3)
    for _ in range(3):  # the third draw fails, a kink ranked above its wrong element
        params = {"W": relu.integers(-2, 3, (4, 6)).astype(float), "b": relu.integers(-1, 2, 6).astype(float)}
        data = {"X": relu.integers(-2, 3, (10, 4)).astype(float), "V": relu.standard_normal((10, 6))}
    assert pipeline.check(_ReluLayer(), params, data).verdict == "not verified"
    report = pipeline.check(_ReluLayer(), params, data, second_look=False)
    assert report.failing == ("W",), str(report)
    assert report.tensors[0].worst is not None
    assert report.tensors[0].worst.status == "wrong", str(report)
    assert "W: worst element W[3, 3]" in str(report)
    rng = np.random.default_rng(45)
    params = {
        "W1": rng.integers(-2, 3, (4, 8)).astype(float),
        "b1": rng.integers(-1, 2, 8).astype(float),
        "W2": 0.5 * rng.standard_normal((8, 3)),
        "b2": 0.1 * rng.standard_normal(3),
    }
    data = {"X": rng.integers(-2, 3, (10, 4)).astype(float), "y": rng.integers(0, 3, 10)}
    assert pipeline.check(_ReluNet(), params, data).verdict == "not verified"
    # its first layer's picture where a check still fails it (float32 without a float64 twin, or points near θ
    # that miss the value): analytic 0 where the numeric is not, beside kinks
    numeric = np.linspace(0.5, 1.5, 32)
    analytic = np.where(np.arange(32) < 3, 0.0, numeric)
    status = np.where(np.arange(32) < 3, WRONG, np.where(np.arange(32) < 6, NONDIFFERENTIABLE, AGREE)).astype(np.int8)
    (masked,) = [
        line for line in _judged((4, 8), analytic, numeric, status) if "masked out in the backward pass" in line
    ]
    assert "or, beside its 3 elements on kinks" in masked
    assert "relu'(0) = 0 puts a correct gradient beyond both one-sided slopes" in masked


# --- a symmetric matrix's gradient: its symmetric part, its diagonal -------------------------------------------------


def test_a_missing_symmetrisation_and_a_wrong_diagonal_are_named() -> None:
    """Review 97: hand-written matrix adjoints. A loss that sees ``S`` only through ``(S + Sᵀ)/2`` whose backward pass
    returned ``G`` unsymmetrised read as "30 of 36 checked elements are wrong"; so did its off-diagonal elements
    doubled, without saying which. Now each is named, and so is the reverse; both as the fact, an antisymmetric
    difference, and its causes (review 98: a penalty on W − Wᵀ left out, read as "the backward pass symmetrises")."""
    rng = np.random.default_rng(0)
    g = rng.normal(size=(6, 6))
    part = (g + g.T) / 2
    allowed, theta = np.full(36, 1e-9), rng.normal(size=36)

    def said(analytic: np.ndarray, numeric: np.ndarray) -> tuple[str, ...]:
        a, n = analytic.reshape(-1), numeric.reshape(-1)
        status = np.where(np.abs(a - n) > allowed, WRONG, AGREE).astype(np.int8)
        return diagnose((6, 6), a, n, allowed, status, values=theta)

    assert said(g, part) == (
        "analytic − numeric is antisymmetric, the numeric gradient symmetric: their symmetric parts agree (the "
        "analytic one's, (G + Gᵀ)/2, is the numeric gradient). A loss that sees this matrix only through its "
        "symmetric part, with a backward pass that does not symmetrise G, looks so; so does an antisymmetric term "
        "the loss does not have",
    )
    assert said(part, g) == (
        "analytic − numeric is antisymmetric, the analytic gradient symmetric: it is the numeric gradient's "
        "symmetric part (G + Gᵀ)/2. A term antisymmetric in the matrix left out of the backward pass (a penalty on "
        "S − Sᵀ) looks so; so does a backward pass that symmetrises where the loss sees the whole matrix",
    )
    doubled = np.where(np.eye(6, dtype=bool), part, 2 * part)
    assert said(doubled, part) == (
        "analytic is 2x the numeric gradient at the 30 wrong elements (of 36 checked), off the diagonal, every checked "
        "element there",
    )
    halved = np.where(np.eye(6, dtype=bool), part / 2, part)
    assert said(halved, part) == (
        "analytic is 0.5x the numeric gradient at the 6 wrong elements (of 36 checked), on the diagonal, every checked "
        "element there",
    )
    assert said(g.T, g) == ("analytic is the transpose of the numeric gradient",)


class _LogDet:
    """``log det((S + Sᵀ)/2)``, its gradient ``A⁻¹`` symmetric; ``unsymmetrised`` adds a term ``C`` to the loss
    through ``A`` and returns ``A⁻¹ + C`` without symmetrising it."""

    def __init__(self, unsymmetrised: bool = False) -> None:
        self.unsymmetrised = unsymmetrised

    def loss(self, params: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> float:
        a = (params["S"] + params["S"].T) / 2
        return float(np.linalg.slogdet(a)[1] + np.sum(data["C"] * a))

    def grad(self, params: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        g = np.linalg.inv((params["S"] + params["S"].T) / 2) + data["C"]
        return {"S": g if self.unsymmetrised else (g + g.T) / 2}


def test_a_check_names_the_symmetrisation_its_backward_pass_left_out() -> None:
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    params = {"S": q @ np.diag(np.linspace(1, 3, 6)) @ q.T}
    data = {"C": 0.1 * rng.normal(size=(6, 6))}
    assert pipeline.check(_LogDet(), params, data).passed
    report = pipeline.check(_LogDet(unsymmetrised=True), params, data)
    assert report.failing == ("S",)
    assert "analytic − numeric is antisymmetric, the numeric gradient symmetric" in str(report)


def test_one_wrong_element_beside_kinks_at_theta_carries_the_caveat_that_kinks_may_interact() -> None:
    """Review 118: CS231n's max-pool on an integer image, its first-maximum gradient valid, failed at one element
    beside 151 kinks, and the report left out what it says beside several: where kinks interact, a valid subgradient
    can lie outside an element's own slopes. Said for one wrong element as for several; not where the wrong ones
    outnumber the kinks (a real bug's)."""
    rng = np.random.default_rng(0)
    numeric = rng.normal(size=12)
    analytic, allowed = numeric.copy(), np.full(12, 1e-6)
    status = np.full(12, AGREE, dtype=np.int8)
    status[:4] = NONDIFFERENTIABLE
    analytic[4] += 1.0
    status[4] = WRONG
    caveat = "so its wrong element may be right: check again at inputs without ties or exact zeros"
    sentences = diagnose((12,), analytic, numeric, allowed, status)
    assert sentences[0].startswith("only element [4] is wrong"), sentences
    assert "4 of its elements sit on kinks at θ" in sentences[1], sentences
    assert caveat in sentences[1], sentences
    analytic[5:7] += 1.0
    status[5:7] = WRONG
    assert "so its wrong elements may be right" in " ".join(diagnose((12,), analytic, numeric, allowed, status))
    analytic[7:10] += 1.0
    status[7:10] = WRONG  # six wrong, four kinks
    assert "may be right" not in " ".join(diagnose((12,), analytic, numeric, allowed, status))
