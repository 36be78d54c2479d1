"""Finite differences: pure numerics, no I/O and no Dask.

The centered difference of the seed, ``(J(θ + ε·e_i) − J(θ − ε·e_i)) / 2ε``,
taken by perturbing one entry of a parameter array in place and restoring it,
so that no copy of the parameters is made per index.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np

__all__ = ["MINUS", "PLUS", "batched_central_differences", "central_differences", "normalized_difference"]


#: Codes for which side of a centered difference had a non-finite loss.
PLUS, MINUS = 1, 2


def central_differences(
    loss: Callable[[], float],
    flat: np.ndarray,
    positions: Iterable[int],
    epsilon: float,
    nonfinite: np.ndarray | None = None,
) -> np.ndarray:
    """Centered differences of ``loss`` along entries of ``flat``.

    Parameters
    ----------
    loss : callable
        Evaluates the loss at the current contents of ``flat`` (and whatever
        else it closes over).
    flat : ndarray of shape (m,)
        A writable 1-D view of one parameter tensor; perturbed in place.
    positions : iterable of int
        Entries of ``flat`` to differentiate along.
    epsilon : float
        The step ε.
    nonfinite : ndarray of shape (len(positions),), optional
        Filled with which loss was not finite per position: ``PLUS``, ``MINUS``,
        both (``PLUS | MINUS``) or 0.

    Returns
    -------
    ndarray of shape (len(positions),), float64
        ``(loss(θ + ε) − loss(θ − ε)) / 2ε`` per position, bit for bit the seed's
        formula. ``flat`` is restored exactly, even if ``loss`` raises.

    Notes
    -----
    The step is added in ``flat``'s dtype and the quotient divides by ``2ε``,
    not by the step the floats actually took, as the seed does.
    """
    positions = list(positions)
    numeric = np.empty(len(positions), dtype=np.float64)
    two_epsilon = 2 * epsilon
    for j, k in enumerate(positions):
        original = flat[k]
        try:
            flat[k] = original + epsilon
            plus = loss()
            flat[k] = original - epsilon
            minus = loss()
        finally:
            flat[k] = original
        numeric[j] = (plus - minus) / two_epsilon
        if nonfinite is not None:
            nonfinite[j] = (PLUS if not math.isfinite(plus) else 0) | (MINUS if not math.isfinite(minus) else 0)
    return numeric


def normalized_difference(diff_norm: float, scale: float) -> float:
    """The seed's ``||g − g~|| / (||g|| + ||g~||)``, given ``scale = ||g|| + ||g~||``.

    Two zero gradients agree: ``0 / 0`` is taken as ``0``.
    """
    denominator = scale
    if denominator == 0:
        return 0.0 if diff_norm == 0 else math.inf
    return diff_norm / denominator


def batched_central_differences(
    loss_batch: Callable[[dict[str, np.ndarray]], np.ndarray],
    params: dict[str, np.ndarray],
    entries: list[tuple[str, int]],
    epsilon: float,
    nonfinite: np.ndarray | None = None,
) -> np.ndarray:
    """Centered differences along ``entries`` with one call of a batched loss.

    Parameters
    ----------
    loss_batch : callable
        Takes every tensor with a leading axis of ``K`` (one parameter set per row)
        and returns the ``K`` losses.
    params : dict of str to ndarray
        The parameters at θ; not modified.
    entries : list of (tensor name, flat position)
        What to differentiate along: row ``2 j`` of the batch is θ + ε along entry
        ``j``, row ``2 j + 1`` is θ − ε.
    epsilon : float
        The step ε.
    nonfinite : ndarray of shape (len(entries),), optional
        Filled as :func:`central_differences` does.

    Returns
    -------
    ndarray of shape (len(entries),), float64
        The same quotient as :func:`central_differences`, with the perturbed values
        computed the same way; only the model's own batched arithmetic may differ.
    """
    rows = 2 * len(entries)
    batch = {name: np.repeat(array[np.newaxis], rows, axis=0) for name, array in params.items()}
    for j, (name, k) in enumerate(entries):
        flat = batch[name].reshape(rows, -1)  # a view: writes reach the batch
        original = params[name].reshape(-1)[k]  # in the tensor's dtype, as in central_differences
        flat[2 * j, k] = original + epsilon
        flat[2 * j + 1, k] = original - epsilon
    losses = np.asarray(loss_batch(batch), dtype=np.float64)
    if losses.shape != (rows,):
        raise ValueError(f"loss_batch must return one loss per row, shape ({rows},). Got {losses.shape} instead.")
    plus, minus = losses[0::2], losses[1::2]
    if nonfinite is not None:
        nonfinite[:] = np.where(np.isfinite(plus), 0, PLUS) | np.where(np.isfinite(minus), 0, MINUS)
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite losses are recorded, not warned about
        result: np.ndarray = (plus - minus) / (2 * epsilon)
    return result
