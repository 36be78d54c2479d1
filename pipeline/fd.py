"""Finite differences: pure numerics, no I/O and no Dask.

The centered difference of the seed, ``(J(θ + ε·e_i) − J(θ − ε·e_i)) / 2ε``,
taken by perturbing one entry of a parameter array in place and restoring it,
so that no copy of the parameters is made per index.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np

__all__ = ["MINUS", "PLUS", "central_differences", "normalized_difference"]


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
