"""Diagnosis: what a wrong tensor's gradient looks like, in words a user can act on.

Pure numpy. Given one tensor's analytic and numeric gradients (and how far
apart each element may be), recognise the usual bugs of a hand-written backward
pass: a constant factor, a flipped sign, a transposed matrix, a flipped kernel, a gradient that is
never written (a missing term), an index off by one, a single wrong element.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import GradcheckError
from .plan import Slots
from .tolerance import AGREE, INCONCLUSIVE, NONDIFFERENTIABLE, TOGETHER, UNCHECKED, UNSETTLED, WRONG
from .verdict import TensorReport

__all__ = ["MAX_ELEMENTS", "diagnose", "diagnose_tensors", "digits_apart"]

#: Larger tensors are not read back whole for a diagnosis.
MAX_ELEMENTS = 2**24
#: How many indices a sentence lists before it says "and N more".
LISTED = 3


def digits_apart(a: float, n: float) -> int:
    """Significant digits enough to print ``a`` and ``n`` apart where they differ (6 to 17)."""
    relative = abs(a - n) / abs(n) if n != 0 else math.inf
    return min(17, max(6, 2 + math.ceil(-math.log10(relative)))) if 0 < relative < math.inf else 6


#: Wrong elements all within this relative difference, with no pattern, are said to be slightly off.
SLIGHTLY = 1e-4


def _slightly(analytic: np.ndarray, numeric: np.ndarray) -> str:
    """Where every wrong element is off by less than :data:`SLIGHTLY` relative: how far, and what differs so little
    (held-out sweep 49: torchdiffeq's adjoint gradient at a solver tolerance of 1e-6 read only "3 of 3 checked
    elements are wrong")."""
    with np.errstate(invalid="ignore", divide="ignore"):
        relative = np.abs(analytic - numeric) / np.abs(numeric)
    if not relative.size or not np.all(relative < SLIGHTLY):
        return ""
    return (
        f", each by at most {float(relative.max()):.2g} relative: a loss or gradient computed to a tolerance (an "
        "iterative solver, an ODE integrator) differs by about that much, and so does a small term left out"
    )


def _close(candidate: np.ndarray, numeric: np.ndarray, allowed: np.ndarray) -> bool:
    """Whether ``candidate`` explains ``numeric`` within the allowances, and says something: some numeric value beyond
    its allowance (review 79: a float32 softmax's gradients, each within its allowance of 0, were read as "shifted by
    one")."""
    return bool(np.all(np.abs(candidate - numeric) <= allowed)) and bool(np.any(np.abs(numeric) > allowed))


def _ratio(analytic: np.ndarray, numeric: np.ndarray, allowed: np.ndarray) -> float | None:
    """The constant ``k`` with ``analytic ≈ k · numeric`` everywhere, if there is one."""
    scale = float(numeric @ numeric)
    if scale == 0:
        return None
    k = float(analytic @ numeric) / scale
    if k == 0 or not np.isfinite(k):
        return None
    return k if _close(analytic / k, numeric, allowed) else None


def _shift(analytic: np.ndarray, numeric: np.ndarray, allowed: np.ndarray) -> str | None:
    """``along axis k: ...`` when the analytic gradient is the numeric one moved by one position along one axis, or
    ``along axes j and k at once: ...`` along two (a convolution's input gradient cropped from its padded one a pixel
    off: review 133, said only as "196 of 196 checked elements are wrong")."""
    if _close(analytic, numeric, allowed):
        return None
    long = [axis for axis in range(numeric.ndim) if numeric.shape[axis] >= 3]
    ones = [((axis, step),) for axis in long for step in (1, -1)]
    pairs = [
        ((first, one), (second, two))
        for i, first in enumerate(long)
        for second in long[i + 1 :]
        for one in (1, -1)
        for two in (1, -1)
    ]
    for moves in ones + pairs:
        # analytic[i] == numeric[i + step] wherever both exist, along each moved axis
        a_at, n_at = [slice(None)] * numeric.ndim, [slice(None)] * numeric.ndim
        for axis, step in moves:
            a_at[axis], n_at[axis] = (
                (slice(None, -1), slice(1, None)) if step == 1 else (slice(1, None), slice(None, -1))
            )
        inner_a = analytic[tuple(a_at)]
        # and not where the numeric gradient there is as close unmoved (a constant or smooth field, whose wrong
        # elements lie along its edges: review 135, a boundary's rows read as "shifted by one along axes 0 and 1")
        if _close(inner_a, numeric[tuple(n_at)], allowed[tuple(n_at)]) and not _close(
            inner_a, numeric[tuple(a_at)], allowed[tuple(a_at)]
        ):
            if len(moves) == 1:
                (axis, step), direction = moves[0], "next" if moves[0][1] == 1 else "previous"
                return f"along axis {axis}: element i holds the {direction} element's gradient (an index off by one)"
            (j, one), (k, two) = moves
            return (
                f"along axes {j} and {k} at once: element [i, j] there holds the gradient of "
                f"[i {'+' if one == 1 else '-'} 1, j {'+' if two == 1 else '-'} 1] (an index off by one along both: "
                "a padding or crop offset?)"
            )
    return None


def _index(shape: tuple[int, ...], flat: int) -> str:
    """One element's index in its tensor, as ``[2, 1]`` (``[]`` for a scalar)."""
    return str([int(i) for i in np.unravel_index(flat, shape)] if shape else [])


def _where(shape: tuple[int, ...], flat: np.ndarray) -> str:
    """The first few of these elements' indices, as ``[0, 1], [2, 3], [4, 0] and 2 more``."""
    shown = ", ".join(_index(shape, int(k)) for k in flat[:LISTED])
    return shown + (f" and {flat.size - LISTED} more" if flat.size > LISTED else "")


def _elements(count: int) -> str:
    return f"{count} element{'' if count == 1 else 's'}"


def _runs(indices: np.ndarray) -> str:
    """Sorted distinct indices as runs: ``8-15``, ``0, 2, 5-7``; after :data:`LISTED` runs, ``and N more`` indices."""
    breaks = np.flatnonzero(np.diff(indices) != 1) + 1
    runs = [(int(run[0]), int(run[-1])) for run in np.split(indices, breaks)]
    shown = ", ".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in runs[:LISTED])
    rest = sum(hi - lo + 1 for lo, hi in runs[LISTED:])
    return shown + (f" and {rest} more" if rest else "")


def _region(shape: tuple[int, ...], wrong: np.ndarray, live: np.ndarray) -> str:
    """Where the ``wrong`` elements (flat positions) lie, when they fill at most half of the indices of some axis
    that the ``live`` elements (checked, and not exactly 0 in both gradients) span: ``at index 8-15 of axis 0,
    every checked element there`` (a block computed apart: the K half of a fused K/V weight, one gate of an
    LSTM's stacked weights, the channel a loop missed). The axis where that share is smallest. Indices that no
    live element reaches (embedding rows not in the batch, categories absent from it: both gradients 0) do not
    count: the wrong elements filling every row that has a gradient say nothing about rows. Nothing where they
    are scattered over more than half of every axis, nor for a vector's one or two wrong elements or scattered
    ones (its count says as much)."""
    if len(shape) == 0 or wrong.size == 0:
        return ""
    at, alive = np.unravel_index(wrong, shape), np.unravel_index(live, shape)
    if len(shape) == 2 and shape[0] == shape[1] > 2:  # a square matrix's diagonal, or all but it
        on = alive[0] == alive[1]
        for where, chosen in (("on the diagonal", on), ("off the diagonal", ~on)):
            if 0 < np.count_nonzero(chosen) < live.size and np.array_equal(np.sort(wrong), np.sort(live[chosen])):
                return f"{where}, every checked element there"
    best: tuple[float, int, np.ndarray] | None = None
    for axis in range(len(shape)):
        indices = np.unique(at[axis])
        share = indices.size / max(1, np.unique(alive[axis]).size)
        if share <= 0.5 and (best is None or share < best[0]):
            best = (share, axis, indices)
    if best is None or (len(shape) == 1 and (wrong.size < 3 or np.count_nonzero(np.diff(best[2]) != 1) >= LISTED)):
        return ""
    _, axis, indices = best
    if len(shape) == 1:  # a vector's indices are its elements
        return f"at index {_runs(indices)}"
    inside = np.isin(alive[axis], indices)
    every = ", every checked element there" if int(np.count_nonzero(inside)) == wrong.size else ""
    return f"at index {_runs(indices)} of axis {axis}{every}"


def _symmetrised(n: int, analytic: np.ndarray, numeric: np.ndarray, room: np.ndarray) -> str | None:
    """A sentence where one of an n×n tensor's gradients is symmetric and the other is not, and the symmetric one is the
    other's symmetric part, ``(G + Gᵀ)/2``: their difference is antisymmetric. It states that fact and its commonest
    causes: a loss that sees the matrix only through its symmetric part (a covariance, ``(S + Sᵀ)/2``) whose backward
    pass returns ``G`` unsymmetrised (review 97: read as "30 of 36 checked elements are wrong"), a backward pass that
    symmetrises where the loss sees the whole matrix, or an antisymmetric term missing on one side (review 98: a
    penalty on ``W − Wᵀ`` left out read as a backward pass that symmetrises; advice to symmetrise would hide it)."""
    a, g = analytic.reshape(n, n), numeric.reshape(n, n)

    def symmetric(x: np.ndarray) -> bool:
        return _close(x.T.reshape(-1), x.reshape(-1), room)

    said = (
        (
            g,
            a,
            "analytic − numeric is antisymmetric, the numeric gradient symmetric: their symmetric parts agree (the "
            "analytic one's, (G + Gᵀ)/2, is the numeric gradient). A loss that sees this matrix only through its "
            "symmetric part, with a backward pass that does not symmetrise G, looks so; so does an antisymmetric term "
            "the loss does not have",
        ),
        (
            a,
            g,
            "analytic − numeric is antisymmetric, the analytic gradient symmetric: it is the numeric gradient's "
            "symmetric part (G + Gᵀ)/2. A term antisymmetric in the matrix left out of the backward pass (a penalty on "
            "S − Sᵀ) looks so; so does a backward pass that symmetrises where the loss sees the whole matrix",
        ),
    )
    for even, other, sentence in said:  # the symmetric one is the other's symmetric part
        half = ((other + other.T) / 2).reshape(-1)
        if _close(half, even.reshape(-1), room) and symmetric(even) and not symmetric(other):
            return sentence
    return None


def _few(shape: tuple[int, ...], wrong: np.ndarray, checked: int) -> str:
    """``: [0], [63]`` for at most :data:`LISTED` wrong elements (flat positions), a quarter of the ``checked`` ones at
    most, with :func:`_edges`; nothing for more (the worst elements below list them)."""
    if wrong.size > LISTED or 4 * wrong.size > checked:
        return ""
    return f": {_where(shape, wrong)}{_edges(shape, wrong)}"


#: An axis this long at least has edges worth naming: wrong elements all at its first or last index there.
EDGE_AXIS = 8


def _edges(shape: tuple[int, ...], wrong: np.ndarray) -> str:
    """`` (each at an edge of the tensor: a boundary's stencil?)`` where every wrong element (flat positions; two or more)
    lies at the first or last index of an axis of :data:`EDGE_AXIS` or more: a boundary condition's rows of a
    discretised operator, which its hand-written adjoint transposed wrongly (review 94: a Dirichlet heat equation's
    adjoint wrong at ``u0[0]`` and ``u0[63]`` only, said as "2 of 64 checked elements are wrong"), and where they lie at
    two such ends or more: one end alone is as likely any row (review 133: word2vec's context row written, not
    accumulated, at a repeated index, the vocabulary's last, read as a boundary)."""
    long = [axis for axis, n in enumerate(shape) if n >= EDGE_AXIS]
    if wrong.size < 2 or not long:
        return ""
    at = np.unravel_index(wrong, shape)
    ends = [end for axis in long for end in (at[axis] == 0, at[axis] == shape[axis] - 1)]
    edge = np.any(ends, axis=0)
    # the ends that hold wrong elements at no other end (a corner is at two: a whole last row reaches both ends of
    # the other axis at its corners, review 135)
    alone = np.sum(ends, axis=0) == 1
    edges = sum(bool(np.any(end & alone)) for end in ends)
    # or where along some axis every one lies at its first or last index, both held: corners too (review 136: a batch
    # of fields wrong at [0, 0] and [0, 63])
    spanned = any(
        bool(np.all(first | last) and first.any() and last.any())
        for first, last in zip(ends[0::2], ends[1::2], strict=True)
    )
    return (
        " (each at an edge of the tensor: a boundary's stencil?)"
        if (edges >= 2 or spanned) and bool(np.all(edge))
        else ""
    )


def _swapped(shape: tuple[int, ...], analytic: np.ndarray, numeric: np.ndarray, room: np.ndarray) -> str | None:
    """``axes i and j`` when the analytic gradient is the numeric one with two axes of the same length
    swapped: a transpose inside the tensor (a convolution kernel's rows and columns)."""
    for i in range(len(shape)):
        for j in range(i + 1, len(shape)):
            if shape[i] != shape[j] or shape[i] < 2:
                continue
            swapped = np.swapaxes(numeric.reshape(shape), i, j).reshape(-1)
            if _close(analytic, swapped, room + np.abs(swapped) * 1e-12):
                return f"axes {i} and {j}"
    return None


def _flipped(shape: tuple[int, ...], analytic: np.ndarray, numeric: np.ndarray, room: np.ndarray) -> str | None:
    """``axis i`` or ``axes i and j`` when the analytic gradient is the numeric one reversed along them: a flipped
    kernel (a convolution's backward pass written as a correlation, or the reverse; review 74)."""
    tensor = numeric.reshape(shape)
    # a reversal of 2 is a swap (two stacked gates, two directions of a bidirectional layer): no kernel to name; nor an
    # axis with a slice of zeros (an embedding whose one used row went to the last: a wrap, review 75)
    used = [
        bool(np.all(np.any(tensor != 0, axis=tuple(k for k in range(len(shape)) if k != i)))) for i in range(len(shape))
    ]
    long = [i for i, n in enumerate(shape) if n >= 3 and used[i]]
    for axes in [(i,) for i in long] + [(i, j) for k, i in enumerate(long) for j in long[k + 1 :]]:
        flipped = np.flip(tensor, axes).reshape(-1)
        if _close(analytic, flipped, room + np.abs(flipped) * 1e-12):
            return f"axis {axes[0]}" if len(axes) == 1 else f"axes {axes[0]} and {axes[1]}"
    return None


def _penalty(analytic: np.ndarray, numeric: np.ndarray, allowed: np.ndarray, values: np.ndarray) -> str | None:
    """A sentence when ``numeric − analytic = c·θ`` at every element (``values``: θ): the backward pass misses a
    term proportional to the parameters, or has it with the wrong coefficient (c > 0: an L2 penalty's or weight
    decay's ``λ·θ`` left out, or halved), or has more of it than the loss (c < 0: counted twice). The sentence
    states the fact and its commonest causes; other terms proportional to θ fit it too (a weight-norm
    projection, a norm penalty's gradient written as ``λ·θ``). Where the parameters are all equal (a layer norm's
    gain of ones) the difference is a constant, and the sentence says it may be either. Nothing for a single
    parameter, whose difference is proportional to anything, nor where fewer than two elements differ beyond their
    allowance: one parameter ``c`` fits one such element exactly, and the others' allowances then test nothing (review
    97: a GP's two lengthscales, one wrong, read as "151.5·θ at every checked element"). The seed's own lesson:
    gradient checking works with penalty terms, and a penalty forgotten in the backward pass is a bug it finds."""
    with np.errstate(invalid="ignore"):
        beyond = int(np.count_nonzero(np.abs(numeric - analytic) > allowed))
    if not np.all(np.isfinite(values)) or beyond < 2:
        return None
    theta = values.astype(np.float64)
    scale = float(theta @ theta)
    if scale == 0 or theta.size < 2:
        return None
    if np.ptp(theta) <= 1e-12 * np.max(np.abs(theta)):
        # Equal values (a layer norm's gain of ones, biases of ones): a constant difference is proportional to them,
        # and may be a constant term as well
        d = float(np.mean(numeric - analytic))
        if d == 0 or not bool(np.all(np.abs(numeric - analytic - d) <= allowed)):
            return None
        which, more = ("numeric − analytic", "misses") if d > 0 else ("analytic − numeric", "has too much of")
        return (
            f"{which} = {abs(d):.4g} at every checked element, whose parameters are all {theta[0]:.4g}: the backward "
            f"pass {more} a term {abs(d) / abs(theta[0]):.4g}·θ (a penalty's or weight decay's gradient) or a "
            f"constant {abs(d):.4g}"
        )
    c = float((numeric - analytic) @ theta) / scale
    if c == 0 or not np.isfinite(c) or not bool(np.all(np.abs(numeric - analytic - c * theta) <= allowed)):
        return None
    if c > 0:
        return (
            f"numeric − analytic = {c:.4g}·θ at every checked element: the backward pass misses a term "
            f"{c:.4g}·θ (an L2 penalty's or weight decay's gradient left out, or with too small a coefficient)"
        )
    return (
        f"analytic − numeric = {-c:.4g}·θ at every checked element: the backward pass has {-c:.4g}·θ more than the "
        "loss's gradient (a penalty's gradient counted twice or with too large a coefficient, or one the loss "
        "does not have)"
    )


def _mask(shape: tuple[int, ...], flat: np.ndarray, region: str = "") -> str:
    """Analytic non-zero where the loss does not move at all: the forward pass masks, the backward does not."""
    return (
        f"analytic is non-zero at {_elements(flat.size)} ({_where(shape, flat)}{region}) where the loss does not "
        "change at all (numeric exactly 0): most often a mask (ReLU, dropout, padding) applied in the forward pass "
        "but not in the backward, or a surrogate gradient (straight-through, a softened relaxation) of a loss that is "
        "piecewise constant there (a hard argmax, a threshold, a quantiser: its gradient is 0)"
    )


def _masked_term(shape: tuple[int, ...], flat: np.ndarray, region: str = "") -> str:
    """Analytic exactly zero, at some elements only, where the loss does move: a term masked where it should not be."""
    return (
        f"analytic is exactly 0 at {_elements(flat.size)} ({_where(shape, flat)}{region}) where the loss does change "
        "(numeric non-zero): a term masked out in the backward pass where the forward pass keeps it"
    )


def diagnose(
    shape: tuple[int, ...],
    analytic: np.ndarray,
    numeric: np.ndarray,
    allowed: np.ndarray,
    status: np.ndarray,
    positions: np.ndarray | None = None,
    values: np.ndarray | Callable[[], np.ndarray | None] | None = None,
) -> tuple[str, ...]:
    """Sentences describing how one tensor's analytic gradient is wrong.

    The sentences speak of the wrong elements only: a pattern is said to hold
    "everywhere" only when every checked element is wrong. An element is wrong
    when its status says so, when either gradient is not finite there, or, where
    elements are not judged (``allowed`` NaN, status ``AGREE``), when it is off by
    more than a relative 1e-3. Any other status (a kink, an element too noisy to
    verify) is checked but not wrong; ``UNCHECKED`` is not checked.

    Parameters
    ----------
    shape : tuple of int
        The tensor's shape; the arrays are its flat (C-order) elements.
    analytic, numeric, allowed, status : ndarray
        Per element, as stored in the output (``allowed`` NaN when elements are
        not judged; ``status`` UNCHECKED for elements a sample skipped).
    positions : ndarray, optional
        Where the arrays hold only some elements (a sampled run's), each one's flat position in the tensor.
    values : ndarray or callable, optional
        The parameters θ at the same elements, or a function that reads them (called only when no pattern before
        it explained the tensor): a difference proportional to them is a penalty term (:func:`_penalty`).
    """
    held = shape  # where the elements' indices are named
    if positions is not None and positions.size == int(np.prod(shape)):
        positions = None  # a sample of every element: the whole tensor, in order
    sample = positions
    if sample is not None:
        shape = (sample.size,)  # the patterns are read over the sampled elements

    def named(flat: np.ndarray) -> np.ndarray:
        """Held elements ``flat`` as flat positions in the tensor."""
        return flat if sample is None else np.asarray(sample[flat])

    considered = status != UNCHECKED
    n_checked = int(np.count_nonzero(considered))
    if not n_checked:
        return ()
    finite = np.isfinite(numeric) & np.isfinite(analytic)
    checked = considered & finite
    # Where elements are not judged (tolerance: none), allow a relative 1e-3.
    scale = float(np.max(np.abs(numeric[checked]), initial=0.0))
    with np.errstate(invalid="ignore"):
        fallback = 1e-3 * np.abs(numeric) + 1e-8 * scale
        room_all = np.where(np.isfinite(allowed), allowed, fallback)
        off = ~(np.abs(analytic - numeric) <= room_all)
    unjudged = ~np.isfinite(allowed) & (status == AGREE)
    wrong = considered & ((status == WRONG) | ~finite | (unjudged & off))
    sentences: list[str] = []
    for bad, what in (
        (considered & ~np.isfinite(numeric), "the numeric gradient is not finite (a non-finite loss)"),
        (considered & np.isfinite(numeric) & ~np.isfinite(analytic), "the analytic gradient is not finite"),
    ):
        if np.any(bad):
            flat = np.flatnonzero(bad)
            sentences.append(f"{what} at {_elements(flat.size)}: {_where(held, named(flat))}")
    if not np.any(wrong):
        error = np.where(checked, np.abs(analytic - numeric), -np.inf)
        worst = int(np.argmax(error))
        within = (
            "is wrong by itself"
            if not np.any(unjudged & checked)
            else "is off by more than 1e-3 relative (elements are not judged)"
        )
        return (
            f"none of the {n_checked} checked elements {within}; the largest |a-n| is {error[worst]:.3g}, "
            f"at {_index(held, int(named(np.array([worst]))[0]))}",
        )
    # The patterns below are read on the finite wrong elements.
    flat = np.flatnonzero(wrong & finite)
    if not flat.size:
        return tuple(sentences)
    everywhere = flat.size == n_checked
    a, room = analytic[checked], room_all[checked]
    if np.all(a == 0):
        if everywhere:
            return ("the analytic gradient is zero everywhere, the numeric one is not: a missing term",)
        return (
            *sentences,
            f"the analytic gradient is zero at every checked element, the numeric one is not at "
            f"{flat.size} of the {n_checked} ({_where(held, named(flat))}): a missing term",
        )
    # Where the wrong elements lie, when they fill part of an axis only; not in a sample, whose elements are spread
    # over every axis at random (a long axis would look the least filled).
    dead = (analytic == 0) & (numeric == 0)  # 0 against 0: no gradient there (dead units, rows not in the batch)
    live = considered & ~dead
    region = "" if everywhere or sample is not None or flat.size < 2 else _region(held, flat, np.flatnonzero(live))
    # (one element has a ratio to anything: review 133, a bias's wrong formula read as "5.629x ... everywhere")
    k = _ratio(analytic[flat], numeric[flat], room_all[flat]) if flat.size > 1 else None
    if k is not None and abs(k - 1) > 1e-3:
        scope = (
            "everywhere"
            if everywhere
            else f"at the {flat.size}{' other' if sentences else ''} wrong elements (of {n_checked} checked)"
            + (f", {region}" if region else "")
        )
        if abs(k + 1) <= 1e-3:
            return (*sentences, f"the sign is flipped: analytic = -1 x numeric {scope}")
        return (*sentences, f"analytic is {k:.4g}x the numeric gradient {scope}")
    theta = None
    if values is not None and bool(np.all(checked)):
        theta = values() if callable(values) else values
    if theta is not None:
        penalty = _penalty(analytic, numeric, room_all, theta)
        if penalty is not None:
            return (*sentences, penalty)
    whole = bool(np.all(checked)) and positions is None  # a sample has no neighbours to compare
    if whole and len(shape) == 2 and shape[0] > 1 and shape[1] > 1:
        transposed = numeric.reshape(shape).T.reshape(-1)
        if _close(analytic, transposed, room + np.abs(transposed) * 1e-12) and not _close(analytic, numeric, room):
            what = "the transpose of" if shape[0] == shape[1] else "laid out as the transpose of"
            return (f"analytic is {what} the numeric gradient",)
        if shape[0] == shape[1] and (symmetry := _symmetrised(shape[0], analytic, numeric, room)) is not None:
            return (symmetry,)
    if whole and len(shape) > 2 and not _close(analytic, numeric, room):
        axes = _swapped(shape, analytic, numeric, room)
        if axes is not None:
            return (f"analytic is the numeric gradient with {axes} swapped (a transpose inside the tensor)",)
    if whole and len(shape) >= 1 and np.prod(shape) >= 3:
        moved = _shift(analytic.reshape(shape), numeric.reshape(shape), room.reshape(shape))
        if moved is not None:
            return (f"analytic is the numeric gradient shifted by one {moved}",)
    if whole and len(shape) >= 2 and not _close(analytic, numeric, room):
        axes = _flipped(shape, analytic, numeric, room)
        if axes is not None:
            return (
                f"analytic is the numeric gradient reversed along {axes} (a flipped kernel: a correlation where a "
                "convolution is meant, or the reverse)",
            )
    n_wrong = int(np.count_nonzero(wrong))
    # The commonest bug of all: a mask the forward pass applies and the backward does not, or the reverse.
    # Either is named when it is what most of the wrong elements show.
    patterns = ((flat[numeric[flat] == 0], _mask), (flat[analytic[flat] == 0], _masked_term))
    found = next(((at, say) for at, say in patterns if 2 * at.size > flat.size), None)
    if n_wrong == 1:
        k0 = int(flat[0])
        a0, n0 = float(analytic[k0]), float(numeric[k0])
        # "only" where the others were verified: beside inconclusive elements one proven wrong may be one of many
        # (a whole tensor 0.1% off, in float32, where most bars were too wide to tell)
        # (not dead units, 0 against 0, whose analytic value is exact: review 50); nor where a sample checked some only
        unsure = int(np.count_nonzero(considered & np.isin(status, (INCONCLUSIVE, UNSETTLED)) & ~dead))
        only = "element" if unsure or sample is not None else "only element"
        which = f"{only} {_index(held, int(named(flat[:1])[0]))}" if math.prod(held) > 1 else "its value"
        # enough digits that the two differ where they do; a ratio that rounds to 1 says nothing, a relative difference does
        relative = abs(a0 - n0) / abs(n0) if n0 != 0 else math.inf
        digits = digits_apart(a0, n0)
        if n0 == 0:
            how = ""
        elif abs(a0 / n0 - 1) >= 1e-3:
            how = f" ({a0 / n0:.4g}x)"
        else:
            how = f" (relative difference {relative:.2g})"
        sentences.append(
            f"{which} is wrong: analytic {a0:.{digits}g}, numeric {n0:.{digits}g}{how}"
            + (
                f"; {unsure} of the other {n_checked - 1} checked elements are inconclusive, so it may not be the "
                "only one"
                if unsure and held
                else ""
            )
            + (
                f" (a sample: {n_checked} of the tensor's {int(np.prod(held))} elements checked)"
                if sample is not None
                else ""
            )
        )
    elif found is None or found[0].size < n_wrong:
        sentences.append(
            f"{n_wrong} of {n_checked} checked elements are wrong"
            + (f", {region}{_edges(held, named(flat))}" if region else _few(held, named(flat), n_checked))
            + _slightly(analytic[flat], numeric[flat])
        )
    # No pattern, a few wrong elements (one, too: review 118) beside as many kinks at θ or more: kinks that interact
    # (review 74: numpy-ml's max-pool, 3x3 windows at stride 1 on an integer image, its first-maximum gradient equal to
    # torch's, failed 40 of 40 seeds). Not where the wrong elements outnumber the kinks: a real bug's (review 75: said
    # beside any kink, it showed under 64% of real bugs' tensors, a doubled gradient's too)
    kinks = int(np.count_nonzero(np.isin(status, (NONDIFFERENTIABLE, TOGETHER))))
    if (found is None or (n_wrong > 1 and found[0].size < n_wrong)) and 0 < n_wrong <= kinks:
        sentences.append(
            f"{kinks} of its elements sit on kinks at θ; where kinks interact (overlapping max-pool windows "
            "sharing a tied input, ReLU inputs exactly 0 on several paths), a valid subgradient can lie outside an "
            f"element's own one-sided slopes, so {'its wrong element' if n_wrong == 1 else 'its wrong elements'} may "
            "be right: check again at inputs without ties or exact zeros (integer images plus 1e-3 noise, non-zero "
            "biases), where every element has one derivative"
        )
    if found is not None:
        # where they lie, when the pattern is every wrong element's (a channel a loop left at 0)
        sentences.append(found[1](held, named(found[0]), f"; {region}" if region and found[0].size == n_wrong else ""))
        if found[1] is _masked_term and kinks:
            # beside kinks at θ, relu'(0) = 0 at several units exactly on their kink does the same with a correct
            # gradient (a held-out review: the sentence alone pointed at a bug that was not there)
            sentences[-1] += (
                f"; or, beside its {kinks} element{'s' if kinks > 1 else ''} on kinks, several units exactly on a kink "
                "at θ (ReLU inputs exactly 0: integer data or weights, zero initialisation), where relu'(0) = 0 puts a "
                "correct gradient beyond both one-sided slopes: check at random weights"
            )
        # and what the rest show, where they share a ratio (a sign flipped, where a flat region makes the others)
        rest = np.setdiff1d(flat, found[0])
        k = _ratio(analytic[rest], numeric[rest], room_all[rest]) if rest.size > 1 else None
        with np.errstate(invalid="ignore", divide="ignore"):  # a ratio well beyond the estimates' own error (review 50)
            loose = 10 * float(np.max(room_all[rest] / np.abs(numeric[rest]), initial=0.0)) if rest.size else 0.0
        if k is not None and abs(k - 1) > max(1e-3, loose):
            ratio = "-1 x (the sign is flipped)" if abs(k + 1) <= 1e-3 else f"{k:.4g}x"
            sentences.append(f"at the other {rest.size} wrong elements analytic is {ratio} the numeric gradient")
    return tuple(sentences)


def diagnose_tensors(
    slots: Slots,
    tensors: tuple[TensorReport, ...],
    output: Callable[[], Any],
    params: Callable[[str], np.ndarray] | None = None,
) -> tuple[TensorReport, ...]:
    """The tensors, each wrong one with its :func:`diagnose`, from the output's arrays.

    ``output()`` gives the arrays (``analytic``, ``numeric``, ``allowed``, ``status``) over the run's
    ``slots``; it is called only if a tensor is wrong (opening a stored output costs a few milliseconds).
    ``params(name)``, where given, is a wrong tensor's parameter values (for :func:`_penalty`).
    """
    diagnosed = []
    for number, tensor in enumerate(tensors):  # in flattening order, as the slots
        at, positions = slots.of_tensor(number)
        if not tensor.passed and at.size <= MAX_ELEMENTS:
            arrays = output()
            window = slice(at.offset, at.stop)
            a, n, allowed, status = (
                np.asarray(array[window]) for array in (arrays.analytic, arrays.numeric, arrays.allowed, arrays.status)
            )
            values = None if params is None else functools.partial(_values, params, tensor.name, positions)
            diagnosis = diagnose(tensor.shape, a, n, allowed, status, positions, values)
            tensor = dataclasses.replace(tensor, diagnosis=diagnosis)
        diagnosed.append(tensor)
    return tuple(diagnosed)


def _values(params: Callable[[str], np.ndarray], name: str, positions: np.ndarray | None) -> np.ndarray | None:
    """Tensor ``name``'s parameters at the checked ``positions`` (all where None), read only when a diagnosis needs
    them; None where they cannot be read (a hint the verdict does not need)."""
    try:
        flat = np.asarray(params(name)).reshape(-1)
    except (GradcheckError, OSError, KeyError, ValueError):
        return None
    return flat if positions is None else flat[positions]
