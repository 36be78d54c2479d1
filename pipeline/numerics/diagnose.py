"""Diagnosis: what a wrong tensor's gradient looks like, in words a user can act on.

Pure numpy. Given one tensor's analytic and numeric gradients (and how far
apart each element may be), recognise the usual bugs of a hand-written backward
pass: a constant factor, a flipped sign, a transposed matrix, a gradient that is
never written (a missing term), an index off by one, a single wrong element.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from .layout import Layout
from .tolerance import UNCHECKED, WRONG
from .verdict import TensorReport

__all__ = ["MAX_ELEMENTS", "diagnose", "diagnose_tensors"]

#: Larger tensors are not read back whole for a diagnosis.
MAX_ELEMENTS = 2**24


def _close(candidate: np.ndarray, numeric: np.ndarray, allowed: np.ndarray) -> bool:
    """Whether ``candidate`` explains ``numeric`` within the allowances, and says something (not all zero)."""
    return bool(np.all(np.abs(candidate - numeric) <= allowed)) and bool(np.any(numeric != 0))


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
    """``along axis k`` when the analytic gradient is the numeric one moved by one position."""
    candidates = [(axis, step) for axis in range(numeric.ndim) for step in (1, -1)]
    for axis, step in candidates:
        if numeric.shape[axis] < 3:
            continue
        n = np.moveaxis(numeric, axis, 0)
        a = np.moveaxis(analytic, axis, 0)
        room = np.moveaxis(allowed, axis, 0)
        # analytic[i] == numeric[i + step] wherever both exist
        inner_a, inner_n, inner_room = (a[:-1], n[1:], room[1:]) if step == 1 else (a[1:], n[:-1], room[:-1])
        if _close(inner_a, inner_n, inner_room) and not _close(a, n, room):
            direction = "next" if step == 1 else "previous"
            return f"along axis {axis}: element i holds the {direction} element's gradient (an index off by one)"
    return None


def diagnose(
    shape: tuple[int, ...],
    analytic: np.ndarray,
    numeric: np.ndarray,
    allowed: np.ndarray,
    status: np.ndarray,
) -> tuple[str, ...]:
    """Sentences describing how one tensor's analytic gradient is wrong.

    Parameters
    ----------
    shape : tuple of int
        The tensor's shape; the arrays are its flat (C-order) elements.
    analytic, numeric, allowed, status : ndarray
        Per element, as stored in the output (``allowed`` NaN when elements are
        not judged; ``status`` UNCHECKED for elements a sample skipped).
    """
    checked = (status != UNCHECKED) & np.isfinite(numeric) & np.isfinite(analytic)
    if not np.any(checked):
        return ()
    a, n = analytic[checked], numeric[checked]
    # Where elements are not judged (tolerance: none), allow a relative 1e-3.
    fallback = 1e-3 * np.abs(n) + 1e-8 * float(np.max(np.abs(n)))
    room = np.where(np.isfinite(allowed[checked]), allowed[checked], fallback)
    wrong = np.flatnonzero((status == WRONG) | ~np.isfinite(numeric))
    sentences: list[str] = []
    whole = bool(np.all(checked))
    if np.all(a == 0) and np.any(np.abs(n) > room):
        return ("the analytic gradient is zero everywhere, the numeric one is not: a missing term",)
    k = _ratio(a, n, room)
    if k is not None and abs(k - 1) > 1e-3:
        if abs(k + 1) <= 1e-3:
            return ("the sign is flipped: analytic = -1 x numeric everywhere",)
        return (f"analytic is {k:.4g}x the numeric gradient everywhere",)
    if whole and len(shape) == 2 and shape[0] > 1 and shape[1] > 1:
        transposed = numeric.reshape(shape).T.reshape(-1)
        if _close(analytic, transposed, room + np.abs(transposed) * 1e-12) and not _close(analytic, numeric, room):
            what = "the transpose of" if shape[0] == shape[1] else "laid out as the transpose of"
            return (f"analytic is {what} the numeric gradient",)
    if whole and len(shape) >= 1 and np.prod(shape) >= 3:
        moved = _shift(analytic.reshape(shape), numeric.reshape(shape), room.reshape(shape))
        if moved is not None:
            return (f"analytic is the numeric gradient shifted by one {moved}",)
    if wrong.size == 1:
        k0 = int(wrong[0])
        index = [int(i) for i in np.unravel_index(k0, shape)] if shape else []
        sentences.append(
            f"only element {index} is wrong: analytic {analytic[k0]:.6g}, numeric {numeric[k0]:.6g}"
            + (f" ({analytic[k0] / numeric[k0]:.4g}x)" if numeric[k0] != 0 else "")
        )
    elif wrong.size:
        sentences.append(f"{wrong.size} of {int(np.count_nonzero(checked))} checked elements are wrong")
        zeros = np.count_nonzero(analytic[wrong] == 0)
        if zeros == wrong.size:
            sentences.append("the analytic gradient is zero at all of them: a missing term there")
    return tuple(sentences)


def diagnose_tensors(
    layout: Layout, tensors: tuple[TensorReport, ...], output: Callable[[], Any]
) -> tuple[TensorReport, ...]:
    """The tensors, each wrong one with its :func:`diagnose`, from the output's arrays.

    ``output()`` gives the arrays (``analytic``, ``numeric``, ``allowed``, ``status``); it is
    called only if a tensor is wrong (opening a stored output costs a few milliseconds).
    """
    diagnosed = []
    for spec, tensor in zip(layout.tensors, tensors, strict=True):
        if not tensor.passed and spec.size <= MAX_ELEMENTS:
            arrays = output()
            window = slice(spec.offset, spec.stop)
            a, n, allowed, status = (
                np.asarray(array[window]) for array in (arrays.analytic, arrays.numeric, arrays.allowed, arrays.status)
            )
            tensor = dataclasses.replace(tensor, diagnosis=diagnose(spec.shape, a, n, allowed, status))
        diagnosed.append(tensor)
    return tuple(diagnosed)
