"""The Taylor test along one random direction: how the remainder of the loss's first-order expansion shrinks.

Pure numpy. For models too expensive for per-element checks, as computational science verifies adjoints
(pyadjoint's ``taylor_test``, PETSc, Devito): along a tangent ``u``, the remainder ``|J(θ+t·u) − J(θ) − t·g·u|``
converges at order 2 for a correct ``g·u`` and at order 1 for a wrong one. :mod:`.directions` runs it (the
``direction_test: taylor`` setting) and takes central differences at finer steps (:mod:`.refine`) where it finds a
first order.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .tolerance import AGREE, INCONCLUSIVE, NONDIFFERENTIABLE, VERIFY_LIMIT, WRONG, Tolerance

__all__ = ["TAYLOR_MULTIPLES", "Taylor", "taylor"]

#: The Taylor test's multiples of the tangent, halving (pyadjoint's ``taylor_test`` takes 4 steps; more
#: here, so that a first-order error hidden by curvature at the coarse steps shows at the fine ones).
TAYLOR_MULTIPLES = (8.0, 4.0, 2.0, 1.0, 0.5, 0.25, 0.125, 0.0625)
#: A remainder counts when it is this many times the loss's noise.
TAYLOR_SIGNIFICANT = 100.0
#: A correct gradient's remainders converge at order 2, a wrong one's at order 1: orders of at
#: least the first figure agree; an order at most the second disagrees; between, inconclusive.
TAYLOR_AGREE, TAYLOR_WRONG = 1.8, 1.3
#: A first order is wrong only where at least this many significant orders show it: one, from the two coarsest
#: steps alone, is often their higher-order terms cancelling (a correct float32 GPT-2's direction: 1.06, then
#: every finer remainder below the noise).
TAYLOR_WRONG_PAIRS = 2


@dataclass(frozen=True, slots=True)
class Taylor:
    """The Taylor test along one tangent: the observed orders of convergence and their verdict.

    ``numeric``: the central difference at the finest significant step. ``allowed``: the error of ``g·u``
    the finest steps could hide (see :func:`taylor`). ``status``: a tolerance status code. ``first_order``:
    the remainders converged at order 1 (``WRONG`` where at least :data:`TAYLOR_WRONG_PAIRS` orders show it), or
    ``g·u`` lies outside the slopes at a kink, or the loss is not finite at the finest step (``numeric`` NaN:
    past the edge of its domain): central differences at finer steps should decide
    (:func:`.directions.check_direction`).
    """

    numeric: float
    allowed: float
    status: int
    orders: tuple[float, ...]
    first_order: bool = False


def taylor(
    along: Callable[[float], tuple[float | complex, float]],
    slope: float,
    loss0: float,
    noise: float,
    tolerance: Tolerance,
) -> Taylor:
    """The Taylor test (pyadjoint's ``taylor_test``, as PETSc and Devito verify adjoints).

    ``along(m)`` gives the loss at ``θ + m·u`` and the ``t`` the floats took; ``slope`` is ``g·u``. The
    remainders ``|J(θ + t·u) − J(θ) − t·g·u|`` at :data:`TAYLOR_MULTIPLES` shrink at order 2 when ``g·u``
    is right and at order 1 when it is not; only remainders above the loss's noise count
    (:data:`TAYLOR_SIGNIFICANT`), and the finest three decide. It agrees only when, besides, the finest
    steps leave room for an error of at most :data:`~.tolerance.VERIFY_LIMIT` of ``|g·u|``. The loss
    is also evaluated at ``θ − t·u``: where the symmetric part ``J(θ+t·u) + J(θ−t·u) − 2J(θ)`` is first
    order too, the line crosses a kink, and ``g·u`` is a valid subgradient when it lies between the
    one-sided slopes (non-differentiable), wrong when not.

    The room is measured on the odd part, ``(J(θ+t·u) − J(θ−t·u))/2 − t·g·u``: the remainder's curvature term
    ``f''·t²/2`` can cancel an error's ``−e·t`` (a 0.1% error beside a curvature twice its size left a remainder of
    2e-4·t, converging at order 4), and the odd part has none. Its own cubic term can cancel an error at one step,
    not at the next: the room is the larger of the two finest steps', plus that term as their difference shows it.

    The room holds the error itself: an error below :data:`~.tolerance.VERIFY_LIMIT` that the orders do not show
    fits in it, and the room stated as the power was then the error missed (held-out sweep 42: ×1.001 passed at a
    power of 0.0999%). So the orders agree only where, besides, the finest central difference agrees with ``g·u``
    to within what its steps leave uncertain: twice its truncation (the two finest steps' difference over 3) and
    its rounding (``tolerance``'s safety times the loss's noise over the step). An error of ``g·u`` could hide in
    that and in the truncation itself: that is the power an agreeing direction states. A measured disagreement
    beyond it is ``first_order`` (the second look decides), not wrong: kinks within the steps bend the finest
    differences too.
    """
    plus = [along(m) for m in TAYLOR_MULTIPLES]
    minus = [along(-m) for m in TAYLOR_MULTIPLES]
    t = np.array([took for _, took in plus], dtype=np.float64)
    up = np.array([float(np.real(v)) for v, _ in plus]) - loss0
    down = np.array([float(np.real(v)) for v, _ in minus]) - loss0
    t_down = np.array([took for _, took in minus], dtype=np.float64)
    remainders = np.abs(up - t * slope)
    symmetric = np.abs(up + down) / 2
    floor = TAYLOR_SIGNIFICANT * noise
    with np.errstate(divide="ignore", invalid="ignore"):
        orders = np.log2(remainders[:-1] / remainders[1:]) / np.log2(t[:-1] / t[1:])
        sym_orders = np.log2(symmetric[:-1] / symmetric[1:]) / np.log2(t[:-1] / t[1:])
        central = (up - down) / (t - t_down)
        room = np.fmax(np.abs(central - slope), floor / np.abs(t))
    pairs = np.flatnonzero((remainders[:-1] > floor) & (remainders[1:] > floor))[-3:]
    sym_pairs = np.flatnonzero((symmetric[:-1] > floor) & (symmetric[1:] > floor))[-2:]
    counted = orders[pairs]
    finest = int(pairs[-1]) + 1 if pairs.size else len(t) - 1
    numeric = float(central[finest])
    # the larger of the two finest steps' room, and their difference's third: the cubic term d·t² that the finest
    # central difference still carries (D(2t) − D(t) = 3·d·t²)
    coarser = max(finest - 1, 0)
    truncation = float(abs(central[finest] - central[coarser]) / 3)
    allowed = float(np.max(room[coarser : finest + 1])) + truncation
    # What the finest central difference leaves uncertain: its truncation (twice the cubic term, for terms beyond
    # it) and its rounding (tolerance's safety on the loss's noise over the step). An error of g·u may hide in that,
    # and in the truncation itself: the power stated. No atol or rtol: the loss's noise scales with the loss, and
    # float32 central's rtol is the verify limit itself.
    with np.errstate(divide="ignore", invalid="ignore"):  # a step the floats did not take: nothing is measured
        rounding = float(tolerance.safety * noise / np.abs(t[finest]))
    measured, hidden = 2 * truncation + rounding, 3 * truncation + rounding
    off = False
    kink = sym_pairs.size >= 2 and bool(np.all(sym_orders[sym_pairs] <= TAYLOR_WRONG))
    order_one = bool(counted.size) and bool(counted.max() <= TAYLOR_WRONG)
    if not math.isfinite(slope):  # NaN or inf in the gradient: every remainder is NaN, and no order counts
        status = WRONG
    elif not np.isfinite(up[-1] + down[-1]):  # the loss not finite even at the finest step: past its domain's
        status, numeric, allowed = WRONG, math.nan, math.nan  # edge, wrong unless finer steps decide
    elif kink:  # a valid subgradient lies between the one-sided slopes, to within their noise
        s_up, s_down = up[finest] / t[finest], down[finest] / t_down[finest]
        low, high, resolution = min(s_up, s_down), max(s_up, s_down), floor / abs(t[finest])
        status = NONDIFFERENTIABLE if low - resolution <= slope <= high + resolution else WRONG
    elif order_one:
        status = WRONG if counted.size >= TAYLOR_WRONG_PAIRS else INCONCLUSIVE
    elif not (math.isfinite(numeric) and math.isfinite(hidden)):  # no step taken: nothing measured, nothing verified
        status = INCONCLUSIVE
    elif abs(numeric - slope) > measured:  # a disagreement the finest steps measured: the second look decides
        status, off = INCONCLUSIVE, True
    elif hidden > VERIFY_LIMIT * abs(slope):
        status, allowed = INCONCLUSIVE, hidden
    elif not counted.size or counted.min() >= TAYLOR_AGREE:
        status, allowed = AGREE, hidden
    else:
        status = INCONCLUSIVE
    # finer central differences decide a first order, a measured disagreement, and a value outside the slopes at a kink
    first_order = math.isfinite(slope) and (status == WRONG or off or (order_one and not kink))
    return Taylor(numeric, allowed, status, tuple(float(o) for o in orders), first_order)
