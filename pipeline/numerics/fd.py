"""Finite differences: pure numerics, no I/O and no Dask.

A derivative along one parameter entry is estimated from losses at a few points
``θ + s·h·e_i`` (a *stencil*), taken by perturbing that entry in place and
restoring it, so that no copy of the parameters is made per index. Three schemes:

``central``
    ``(J(θ + h) − J(θ − h)) / 2h``: the seed's formula, 2 losses, error O(h²).
``richardson``
    ``D(h) + (D(h) − D(2h)) / 3`` from two central differences: 4 losses, error
    O(h⁴), and ``|D(h) − D(2h)| / 3`` estimates the truncation error.
``complex-step``
    ``Im J(θ + i·h) / h`` for a model that computes its loss in complex
    arithmetic: 1 loss, no cancellation, exact to rounding.

Steps are either fixed (the seed's ``epsilon``; the quotient divides by ``2ε``
exactly as the seed does) or ``auto``: ``EPS**(1/(order+1)) · max(1, |θ_i|)``
for the parameter's dtype, dividing by the step the floats actually took.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "AUTO_POWER",
    "MINUS",
    "PLUS",
    "SCHEMES",
    "STENCILS",
    "Estimate",
    "batched_stencil_losses",
    "close_enough",
    "estimate",
    "noise_level",
    "normalized_difference",
    "points",
    "stencil_losses",
    "step_sizes",
]


#: Codes for which side of θ had a non-finite loss.
PLUS, MINUS = 1, 2

SCHEMES = ("central", "richardson", "complex-step")
#: The multiples of the step each scheme evaluates the loss at, in order.
STENCILS: dict[str, tuple[complex, ...]] = {
    "central": (1, -1),
    "richardson": (1, -1, 2, -2),
    "complex-step": (1j,),
}
#: The real stencils' multiples, as arrays (made once: a shard of a small model is a few
#: dozen numpy calls, and each one counts).
MULTIPLES = {
    scheme: np.array([s.real for s in stencil]) for scheme, stencil in STENCILS.items() if scheme != "complex-step"
}
#: ``epsilon: auto`` takes ``EPS ** power · max(1, |θ_i|)``: the step that balances an
#: error of order ``h**p`` against rounding of order ``EPS / h`` is ``EPS ** (1 / (p + 1))``.
AUTO_POWER = {"central": 1 / 3, "richardson": 1 / 5}
#: The complex step cancels nothing, so it can be tiny: truncation vanishes below rounding.
COMPLEX_STEP = 1e-20


def step_sizes(values: np.ndarray, scheme: str, epsilon: float | None) -> np.ndarray:
    """The step per entry of ``values``: the fixed ``epsilon``, or automatic when it is None."""
    if epsilon is not None:
        return np.full(values.shape, float(epsilon))
    scale = np.maximum(1.0, np.abs(values.astype(np.float64)))
    if scheme == "complex-step":
        return COMPLEX_STEP * scale
    eps = float(np.finfo(values.dtype).eps)
    return np.asarray(eps ** AUTO_POWER[scheme] * scale)


def points(values: np.ndarray, steps: np.ndarray, scheme: str) -> tuple[np.ndarray, np.ndarray]:
    """The perturbed values per entry and stencil point, and the steps they actually took.

    Returns ``(perturbed, taken)``, both of shape ``(len(values), len(stencil))``:
    ``perturbed`` in the values' dtype (complex for ``complex-step``), ``taken`` the
    exact float64 difference ``perturbed − value`` (the imaginary step for complex).
    """
    values = np.asarray(values)
    if scheme == "complex-step":
        perturbed = values.astype(np.complex128)[:, None] + 1j * steps[:, None]
        return perturbed, steps[:, None].astype(np.float64)
    # In the values' dtype, as the model will see them; for float64 this is the seed's θ_i ± ε.
    perturbed = (values[:, None] + MULTIPLES[scheme] * steps[:, None]).astype(values.dtype, copy=False)
    taken = perturbed.astype(np.float64, copy=False) - values.astype(np.float64, copy=False)[:, None]
    return perturbed, taken


def stencil_losses(
    loss: Callable[[], complex], flat: np.ndarray, positions: Iterable[int], perturbed: np.ndarray
) -> np.ndarray:
    """The loss with entry ``positions[j]`` of ``flat`` set to each ``perturbed[j, s]`` in turn.

    ``flat`` is perturbed in place and restored exactly, even if ``loss`` raises.
    Returns an array like ``perturbed`` (float64, or complex128 for complex points).
    """
    dtype = np.complex128 if np.iscomplexobj(perturbed) else np.float64
    losses = np.empty(perturbed.shape, dtype=dtype)
    for j, k in enumerate(positions):
        original = flat[k]
        try:
            for s in range(perturbed.shape[1]):
                flat[k] = perturbed[j, s]
                losses[j, s] = loss()
        finally:
            flat[k] = original
    return losses


def batched_stencil_losses(
    loss_batch: Callable[[dict[str, np.ndarray]], np.ndarray],
    params: dict[str, np.ndarray],
    columns: np.ndarray,
    perturbed: np.ndarray,
    theta: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`stencil_losses` with one call of a batched loss.

    ``loss_batch`` takes every tensor with a leading axis of ``K`` (one parameter
    set per row) and returns the ``K`` losses. ``columns`` index the parameters
    flattened and concatenated in the dict's order (the flat index space). Row
    ``m·j + s`` is θ with entry ``columns[j]`` set to ``perturbed[j, s]``.
    ``params`` is not modified; ``theta``, their concatenation, may be given to save making it.
    """
    m = perturbed.shape[1]
    rows = m * len(columns)
    # One matrix of every parameter set, one row each, built with one fancy-indexed write;
    # the tensors are views of its columns (copies only for a dtype other than the matrix's).
    if theta is None:
        theta = np.concatenate([array.reshape(-1) for array in params.values()])
    matrix = np.repeat(theta[np.newaxis], rows, axis=0)
    # Viewed as (entry, stencil point, column): row m·j + s gets perturbed[j, s] in column columns[j].
    matrix.reshape(len(columns), m, -1)[np.arange(len(columns)), :, columns] = perturbed
    batch, start = {}, 0
    for name, array in params.items():
        view = matrix[:, start : start + array.size]
        start += array.size
        batch[name] = (view if view.dtype == array.dtype else view.astype(array.dtype)).reshape(rows, *array.shape)
    losses = np.asarray(loss_batch(batch), dtype=np.float64)
    if losses.shape != (rows,):
        raise ValueError(f"loss_batch must return one loss per row, shape ({rows},). Got {losses.shape} instead.")
    return losses.reshape(len(columns), m)


@dataclass(frozen=True, slots=True)
class Estimate:
    """Derivative estimates along some entries, with what is needed to judge them.

    ``numeric``: the estimate. ``bar``: its error bar, rounding (the loss's noise
    carried through the scheme's weights) plus the truncation error where the
    scheme measures it. ``lower``/``upper``: the one-sided slopes
    ``(J(θ + h) − J(θ)) / h`` and ``(J(θ) − J(θ − h)) / h``, which disagree at a
    kink. ``nonfinite``: ``PLUS``, ``MINUS``, both, or 0 per entry. ``rounding``: the part of
    ``bar`` that is the noise's (the rest is truncation). ``smooth``: True
    where the losses show the function smooth within the stencil (richardson's
    second differences agree), so that no kink can explain a disagreement.
    """

    numeric: np.ndarray
    bar: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    nonfinite: np.ndarray
    smooth: np.ndarray
    rounding: np.ndarray | None = None  # the part of ``bar`` that is rounding (all of it where None)
    kinked: np.ndarray | None = None  # the second differences at h and 2h disagree: a kink inside the stencil


def estimate(
    losses: np.ndarray,
    taken: np.ndarray,
    scheme: str,
    *,
    epsilon: float | None,
    loss0: float,
    noise: float | np.ndarray,
) -> Estimate:
    """Turn stencil losses into derivative estimates and error bars.

    Parameters
    ----------
    losses, taken : ndarray of shape (n, len(stencil))
        From :func:`stencil_losses` and :func:`points`.
    scheme : str
        One of :data:`SCHEMES`.
    epsilon : float or None
        The fixed step (the quotient then divides by ``2ε``, bit for bit the seed's
        formula), or None for automatic steps (it divides by the steps taken).
    loss0 : float
        The loss at θ, for the one-sided slopes.
    noise : float or ndarray
        The loss's evaluation noise (an absolute standard deviation), or one per entry.
    """
    if scheme == "complex-step":
        numeric = losses[:, 0].imag / taken[:, 0]
        finite = np.isfinite(losses[:, 0])
        zero = np.zeros_like(numeric)
        nonfinite = np.where(finite, 0, PLUS | MINUS).astype(np.int8)
        return Estimate(numeric, zero, numeric, numeric, nonfinite, np.ones(numeric.shape, dtype=bool))
    if scheme == "central":
        return _central(losses, taken, epsilon=epsilon, loss0=loss0, noise=noise)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):  # non-finite losses are recorded
        plus, minus = losses[:, 0::2], losses[:, 1::2]  # columns h, 2h on each side
        spans = 2 * epsilon * np.array([1.0, 2.0])[None, : plus.shape[1]] if epsilon is not None else None
        span = spans if spans is not None else taken[:, 0::2] - taken[:, 1::2]
        central = (plus - minus) / span
        weights = 1 / span  # each central difference's weight on its two losses
        d1, d2 = central[:, 0], central[:, 1]
        numeric = d1 + (d1 - d2) / 3
        w1, w2 = 4 / 3 * weights[:, 0], 1 / 3 * weights[:, 1]
        rounding = noise * np.sqrt(2 * (w1**2 + w2**2))
        truncation, smooth, kinked = _richardson_truncation(losses, taken, loss0, d1, d2, noise)
        bar = rounding + truncation
        upper = (losses[:, 0] - loss0) / taken[:, 0]
        lower = (loss0 - losses[:, 1]) / -taken[:, 1]
    finite_plus = np.all(np.isfinite(plus), axis=1)
    finite_minus = np.all(np.isfinite(minus), axis=1)
    nonfinite = (np.where(finite_plus, 0, PLUS) | np.where(finite_minus, 0, MINUS)).astype(np.int8)
    return Estimate(numeric, bar, lower, upper, nonfinite, smooth, rounding, kinked)


def _central(
    losses: np.ndarray, taken: np.ndarray, *, epsilon: float | None, loss0: float, noise: float | np.ndarray
) -> Estimate:
    """:func:`estimate` for central differences: the seed's formula, few numpy calls (a shard of a
    small model spends as long here as in its losses)."""
    plus, minus = losses[:, 0], losses[:, 1]
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):  # non-finite losses are recorded
        if epsilon is not None:
            span = 2 * epsilon
            numeric = (plus - minus) / span
            bar = np.full(numeric.shape, (noise * math.sqrt(2)) / abs(span))
        else:
            span = taken[:, 0] - taken[:, 1]
            numeric = (plus - minus) / span
            bar = (noise * math.sqrt(2)) / np.abs(span)
        # (J(θ ± h) − J(θ)) / ±h: the one-sided slopes, (loss0 − minus) / −down exactly for the lower one
        slopes = (losses - loss0) / taken
    if np.isfinite(losses).all():
        nonfinite = np.zeros(numeric.shape, dtype=np.int8)
    else:
        nonfinite = (~np.isfinite(plus) * PLUS | ~np.isfinite(minus) * MINUS).astype(np.int8)
    return Estimate(numeric, bar, slopes[:, 1], slopes[:, 0], nonfinite, np.zeros(numeric.shape, dtype=bool))


#: Second differences at h and 2h that differ by more than this fraction mean the loss is
#: not smooth within 2h of θ (a kink): the Richardson error bar falls back to D(h)'s own.
SMOOTH_CURVATURE = 0.1
#: Where they differ by more than this fraction the element is a suspect (:func:`.tolerance.suspects`): a kink
#: inside both steps bends D(h) and D(2h) alike, and changes the curvature less than it biases them.
KINKED_CURVATURE = 0.02
#: ...and R's error is only taken as ``e²/|D(h)|`` once D(h) is accurate to this fraction
#: (the asymptotic regime, where each order is smaller than the one before).
ASYMPTOTIC = 1e-3


def _richardson_truncation(
    losses: np.ndarray, taken: np.ndarray, loss0: float, d1: np.ndarray, d2: np.ndarray, noise: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The truncation error of ``R = D(h) + (D(h) − D(2h))/3`` per entry, where the loss is smooth, and
    where a kink lies inside the stencil.

    ``e = |D(h) − D(2h)|/3`` is D(h)'s error (order h²); R's is of order h⁴. Where the loss
    is smooth, each order shrinks by about the same factor, so R's error is about
    ``e · (e / |D(h)|)``, once ``e / |D(h)|`` is small (:data:`ASYMPTOTIC`). Smooth means the second differences at h and 2h agree (within
    :data:`SMOOTH_CURVATURE` and their noise); where they do not, a kink lies within 2h
    and R is no better than D(h): the bar is ``e`` itself. That bar cannot see kinks inside both steps,
    which bend D(h) and D(2h) alike (a ReLU pre-activation a few thousandths from 0 against a float32
    step of 0.04): such an element is a suspect (:func:`.tolerance.suspects`).
    """
    e = np.abs(d1 - d2) / 3
    h1, h2 = taken[:, 0], taken[:, 2]
    curvature_h = (losses[:, 0] - 2 * loss0 + losses[:, 1]) / (h1 * h1)
    curvature_2h = (losses[:, 2] - 2 * loss0 + losses[:, 3]) / (h2 * h2)
    curvature_noise = 4 * noise / (h1 * h1)
    change = np.abs(curvature_h - curvature_2h) - 10 * curvature_noise
    scale = np.maximum(np.abs(curvature_h), np.abs(curvature_2h))
    kinked = ~(change <= KINKED_CURVATURE * scale)
    relative = np.divide(e, np.abs(d1), out=np.ones_like(e), where=d1 != 0)
    smooth = (change <= SMOOTH_CURVATURE * scale) & (relative <= ASYMPTOTIC)
    return np.where(smooth, e * relative, e), smooth, kinked


def close_enough(values: Sequence[float]) -> bool:
    """ECNoise's rule that points are not too far apart: their values vary by at most 10% of their size.
    Where the middle value is exactly 0 it is skipped: a loss that is 0 at θ varies by 100% over any
    spacing, and its noise is still measurable."""
    f = np.asarray(values, dtype=np.float64)
    return bool(f[f.size // 2] == 0 or np.ptp(f) <= 0.1 * np.max(np.abs(f)))


def noise_ceiling(values: Sequence[float] | np.ndarray, lowest: int = 1) -> float:
    """A bound on the noise of a function from its values at equally spaced points (at least 6): the smallest of
    ECNoise's scaled levels ``sqrt(γ_k · mean(Δ^k f²))`` of orders ``lowest`` to 4 (``lowest`` 2: not the first,
    which is the slope where the points are far finer than the function's scale). Noise of standard deviation σ puts
    each near σ; a function's shape adds its own. Unlike :func:`noise_level` it holds at any spacing: a level measured
    at another spacing far above it is not noise. Orders whose differences are all exactly 0 (a polynomial evaluated
    without rounding along this line) bound nothing, nor do points too close (:func:`too_close`: a loss that moves
    in steps coarser than the spacing): infinite where nothing is bounded."""
    f = np.asarray(values, dtype=np.float64)
    if too_close(f):
        return math.inf
    levels, gamma = [], 1.0
    for k in range(1, min(4, f.size - 5) + 1):
        f = np.diff(f)
        gamma *= 0.5 * k / (2 * k - 1)
        if k >= lowest:
            levels.append(math.sqrt(gamma * float(np.mean(f**2))))
    return min((level for level in levels if level > 0), default=math.inf)  # exactly 0: exact arithmetic, not noise


def too_close(values: Sequence[float] | np.ndarray) -> bool:
    """ECNoise's rule that points are too close: half or more of their neighbours' values are equal (the loss moves
    in steps coarser than the spacing)."""
    return bool(np.count_nonzero(np.diff(np.asarray(values, dtype=np.float64)) == 0) >= len(values) / 2)


def noise_level(values: Sequence[float], errors: bool = False) -> float | None:
    """The noise of a function from its values at equally spaced points (Moré and Wild's ECNoise).

    Differences of increasing order of a smooth function shrink; of noise they do
    not. At the first order ``k`` whose scaled estimates ``sqrt(γ_k · mean(Δ^k f²))``
    agree with the next two within a factor 4, and whose differences change
    sign, that estimate is the noise's standard deviation.

    Returns None when the points were too close (the values are mostly equal) or
    too far apart (:func:`close_enough`, or no order is dominated by noise). ``errors``: the values are
    differences of two evaluations, about 0, to which the 10% rule does not apply.
    """
    f = np.asarray(values, dtype=np.float64)
    nf = f.size
    top = min(6, nf - 1)
    if nf < 4 or not (errors or close_enough(f.tolist())) or too_close(f):
        return None
    levels, signs, gamma = [], [], 1.0
    for k in range(1, top + 1):
        f = np.diff(f)
        gamma *= 0.5 * k / (2 * k - 1)
        levels.append(math.sqrt(gamma * float(np.mean(f**2))))
        signs.append(bool(f.min() * f.max() < 0))
    for k in range(top - 2):
        window = levels[k : k + 3]
        if max(window) <= 4 * min(window) and signs[k]:
            return levels[k]
    return None


def normalized_difference(diff_norm: float, scale: float) -> float:
    """The seed's ``||g − g~|| / (||g|| + ||g~||)``, given ``scale = ||g|| + ||g~||``.

    Two zero gradients agree: ``0 / 0`` is taken as ``0``.
    """
    denominator = scale
    if denominator == 0:
        return 0.0 if diff_norm == 0 else math.inf
    return diff_norm / denominator
