"""Direction checks: the analytic ``g·u`` against the loss's change along random tangents of one tensor.

A direction moves every element of a tensor by about its own step at once, so it costs the
scheme's stencil whatever the tensor's size: the check for tensors too large to check element
by element, judged like an element (with a second look) or by the Taylor test.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from ..model import as_loss_value
from .fd import STENCILS, estimate, step_sizes
from .problem import PIECE, Loaded, call_model, pieces
from .reduce import DirectionResult
from .refine import Row, beyond_the_edge, known_rows, second_look
from .taylor import taylor
from .tolerance import CONVERGED, INCONCLUSIVE, NONDIFFERENTIABLE, WRONG, inconclusive, judge, suspects

__all__ = ["check_direction", "direction_dots"]


#: Directions are seeded by (this, the tensor's number, the direction's number): every run
#: of the same check takes the same directions.
DIRECTION_SEED = 9001


def _signs(loaded: Loaded, tensor: str, number: int) -> np.ndarray:
    """The ``number``-th direction's signs over a tensor, one seeded random bit per element (1 is +), packed.

    A direction's tangent ``u`` is a sign per element (Rademacher: a direction of a 10^8-element tensor is drawn
    in milliseconds) times the element's own step relative to a unit parameter's (:func:`_ratios`), so every
    element moves by about its step and ``g·u`` keeps gradient units.
    """
    rng = np.random.default_rng([DIRECTION_SEED, loaded.number[tensor], number])
    return np.frombuffer(rng.bytes(-(-loaded.params[tensor].size // 8)), dtype=np.uint8)


def _bits(signs: np.ndarray, at: slice) -> np.ndarray:
    """The sign bits of elements ``at`` (a piece starting at a multiple of 8), as booleans."""
    return np.unpackbits(signs[at.start // 8 : -(-at.stop // 8)], count=at.stop - at.start).view(bool)


def _ratios(loaded: Loaded, tensor: str, uniform: bool) -> Iterator[tuple[slice, np.ndarray]]:
    """Each element's step relative to a unit parameter's, in the tensor's dtype, piece by piece (all 1 where
    ``uniform``: see :func:`_uniform`)."""
    settings = loaded.settings
    flat = loaded.params[tensor].reshape(-1)
    unit = _unit_step(loaded, tensor)
    ones = np.ones(min(flat.size, PIECE), dtype=flat.dtype)
    for at in pieces(flat.size):
        if uniform:
            yield at, ones[: at.stop - at.start]
        else:
            yield at, (step_sizes(flat[at], settings.scheme, settings.epsilon) / unit).astype(flat.dtype)


def _uniform(loaded: Loaded, tensor: str) -> bool:
    """Whether every element's step ratio is 1: a fixed step, or no element beyond 1 in magnitude (the common
    case: a tangent is then its signs, drawn without a step per element and never held whole)."""
    flat = loaded.params[tensor].reshape(-1)
    if loaded.settings.epsilon is not None:
        return True
    return all(float(np.max(np.abs(flat[at]))) <= 1.0 for at in pieces(flat.size))


def element_steps(loaded: Loaded, tensor: str, positions: np.ndarray) -> np.ndarray:
    """The steps of ``tensor``'s elements at ``positions`` relative to a unit parameter's, in its dtype (as
    :func:`_ratios`): a tangent through those elements alone moves each by about its own step."""
    settings = loaded.settings
    flat = loaded.params[tensor].reshape(-1)
    return (step_sizes(flat[positions], settings.scheme, settings.epsilon) / _unit_step(loaded, tensor)).astype(
        flat.dtype
    )


def _unit_step(loaded: Loaded, tensor: str) -> float:
    """The step of an element of magnitude at most 1 in ``tensor``: a direction's ``t`` is in its units."""
    settings = loaded.settings
    one = np.ones(1, dtype=loaded.params[tensor].dtype)
    return float(step_sizes(one, settings.scheme, settings.epsilon)[0])


def direction_dots(
    loaded: Loaded, analytic: dict[str, np.ndarray], directions: Sequence[tuple[str, int]]
) -> tuple[float, ...]:
    """``g·u`` along each direction ``(tensor, number)``, from the analytic gradient ``analytic``: computed
    where the gradient is (once per run), piece by piece, so the gradient is never shipped or stored whole.

    One pass over each tensor serves all its directions: ``g·u = Σ ±(g_i·ratio_i)``, the sign a direction's bit.
    """
    dots: dict[tuple[str, int], float] = {}
    for tensor in dict.fromkeys(name for name, _ in directions):
        numbers = [number for name, number in directions if name == tensor]
        signs = {number: _signs(loaded, tensor, number) for number in numbers}
        g = analytic[tensor].reshape(-1)
        parts: dict[int, list[float]] = {number: [] for number in numbers}
        for at, ratio in _ratios(loaded, tensor, _uniform(loaded, tensor)):
            # a gradient with inf in it gives a NaN g·u, which no direction test agrees with
            with np.errstate(invalid="ignore", over="ignore"):
                weighted = g[at].astype(np.float64) * ratio
                total = float(weighted.sum())
                for number in numbers:  # Σ w·(2·bit − 1) = 2·Σ w·bit − Σ w
                    parts[number].append(2 * float(weighted @ _bits(signs[number], at)) - total)
        for number in numbers:  # (math.fsum raises on inf − inf)
            finite = all(math.isfinite(part) for part in parts[number])
            dots[tensor, number] = math.fsum(parts[number]) if finite else math.nan
    return tuple(dots[direction] for direction in directions)


def check_direction(
    loaded: Loaded,
    tensor: str,
    number: int,
    dot: float,
    through: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    regular: int = 0,
    jumps_cross: bool | None = None,
) -> DirectionResult:
    """Compare ``g·u`` (``dot``: :func:`direction_dots`) with the loss's change along a random tangent ``u``
    of one tensor (:func:`_signs`).

    The loss is evaluated at ``θ ± t·u`` for the scheme's multiples of the unit step: every element
    moves by about its own step, so the check's power does not fade with the tensor's size. Each
    quotient divides by the ``t`` the floats took along ``u`` (the projection of the move actually
    made). The direction is judged like an element: inconclusive when its bar exceeds
    :data:`~.tolerance.VERIFY_LIMIT` of ``|g·u|``, looked at again (:mod:`.refine`) when it disagrees or
    is that wide. With ``settings.taylor`` it is judged by the Taylor test instead (:func:`.taylor.taylor`).

    Costs the scheme's stencil in losses (more for a second look or the Taylor test) whatever the
    tensor's size, and one copy of that tensor (the moved tensor) plus ``u``: one byte per element where no
    element exceeds 1 in magnitude (its signs), else a second copy.

    ``through``: ``u`` itself instead of a random one, per tensor its non-zero elements' positions and values (tensors
    of one dtype, ``tensor`` among them; :func:`element_steps`): the line through a group's kinks
    (:func:`.together.judge_lines`), ``number`` naming it. Its noise is the noisiest of its tensors'. ``regular``:
    the sign of those kinks' gaps (the slope moving up less the one moving down): on a kink with a gap of that sign,
    the line is judged as an element on a kink is, ``g·u`` between its slopes, instead of deciding nothing.
    ``jumps_cross``: whether a jump at θ that curvature outweighs is a crossing, deciding nothing (a random
    direction's rule; by default only without ``through``).
    """
    started = time.perf_counter()
    settings = loaded.settings
    number_of = loaded.number[tensor]
    spec = settings.layout.tensors[number_of]
    unit = _unit_step(loaded, tensor)
    uniform = through is None and _uniform(loaded, tensor)
    tangent: dict[str, np.ndarray] = {}
    for name, (positions, values) in (through or {}).items():
        tangent[name] = np.zeros(loaded.params[name].size, dtype=values.dtype)
        tangent[name][positions] = values
    if through is None:
        flat = loaded.params[tensor].reshape(-1)
        signs = _signs(loaded, tensor, number)
        # ±1 held in one byte per element (a quarter of a float32 copy), or ±ratio in the tensor's dtype
        u = np.empty(flat.size, dtype=np.int8 if uniform else flat.dtype)
        for at, ratio in _ratios(loaded, tensor, uniform):
            u[at] = np.where(_bits(signs, at), ratio, -ratio)
        tangent = {tensor: u}
    if uniform:
        norm_sq = float(loaded.params[tensor].size)
    else:
        norm_sq = math.fsum(
            float(u[at].astype(np.float64) @ u[at].astype(np.float64))
            for u in tangent.values()
            for at in pieces(u.size)
        )
    norm_sq = max(norm_sq, float(np.finfo(np.float64).tiny))

    complex_step = settings.scheme == "complex-step"
    # per tensor moved: its values, its tangent, and the moved copy (flat, and shaped for the loss)
    moves = []
    for name, u in tangent.items():
        theta = loaded.params[name]
        shifted = np.empty(theta.shape, dtype=np.complex128 if complex_step else theta.dtype)
        moves.append((name, theta.reshape(-1), u, shifted))
    evaluations, in_losses, moving = 0, 0.0, 0.0
    largest = max(flat.size for _, flat, _, _ in moves)
    buffer = np.empty(min(largest, PIECE), dtype=moves[0][1].dtype)  # one piece of the move

    def along(multiple: complex) -> tuple[float | complex, float]:
        """The loss at ``θ + t·u`` for ``t = multiple·unit``, and the ``t`` the floats took along ``u``.

        The move is made in the tensor's own dtype, in cache-sized pieces: moving a 2.5·10^7-element float32
        tensor costs about a loss of a model that size, not several.
        """
        nonlocal evaluations, in_losses, moving
        began = time.perf_counter()
        projected = 0.0
        for _, flat, u, shifted in moves:
            moved = shifted.reshape(-1)
            if complex_step:
                for at in pieces(flat.size):
                    moved[at] = flat[at] + (multiple * unit) * u[at]
                continue
            scale = flat.dtype.type(multiple.real * unit)
            for at in pieces(flat.size):
                piece = buffer[: at.stop - at.start]
                np.multiply(u[at], scale, out=piece)
                np.add(flat[at], piece, out=moved[at])
                np.subtract(moved[at], flat[at], out=piece)  # the move the floats took, projected on u:
                np.multiply(piece, u[at], out=piece)
                # summed pairwise in the tensor's dtype (for float32, to about 1e-7: its own rounding)
                projected += float(piece.sum())
        before = time.perf_counter()
        moving += before - began
        value = call_model(
            f"loss along direction {number} of {tensor}",
            loaded.model.loss,
            {**loaded.evaluated, **{name: shifted for name, _, _, shifted in moves}},
            loaded.data,
        )
        in_losses += time.perf_counter() - before
        evaluations += 1
        if complex_step:
            return complex(value), multiple.imag * unit
        # not finite past the edge of the loss's domain: judged as an element's is (see below)
        return as_loss_value(value, f"along direction {number} of {tensor}", finite=False), projected / norm_sq

    noise = max(settings.noise_of(loaded.number[name]) for name in tangent)
    step = unit
    analytic = np.array([dot])
    tolerance = settings.tolerance_for(spec.dtype)
    precision = "float64" if settings.promote else spec.dtype

    def look_again(
        noise: float,
        known: Sequence[Row],
        first: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
        smooth: np.ndarray,
        past_edge: np.ndarray | bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
        """The second look along ``u`` (:func:`.refine.second_look`), its verdict, and why it decided nothing
        (:attr:`~.reduce.DirectionResult.undecided`); ``first``: the first estimate's ``(numeric, allowed, status,
        bar)``, whose losses are the ``known`` rows. Where they were not finite (``past_edge``), the finer steps
        decide where they do for an element (:func:`.refine.beyond_the_edge`)."""

        def pair(_: np.ndarray, multiple: np.ndarray) -> Row:
            (plus, up), (minus, down) = along(float(multiple[0])), along(-float(multiple[0]))
            return np.array([plus]), np.array([minus]), np.array([up]), np.array([down])

        refined = second_look(
            pair,
            1,
            np.ones(1),
            settings.loss0,
            np.array([noise]),
            np.abs(analytic),
            known,
            CONVERGED.get(precision, CONVERGED["float32"]),
            0.0,
            analytic,
            (first[0], first[3], smooth) if known else None,
            past_edge,
            follow=False,
            resolution=settings.eps(spec.dtype) * abs(settings.loss0),
        )
        numeric, allowed, status = refined.judge(analytic, first, tolerance)
        # A kink at θ on the line is a gap between its one-sided slopes, and a valid subgradient of one kink lies
        # between them; but a direction crosses every kink of its tensor at θ at once, and their sum's slopes need
        # not hold a valid g·u (relu(x) − relu(y) at (0, 0) is flat along (1, 1), and its valid subgradient (1, 0)
        # gives g·u = 1; held-out sweep 52: correct ReLUs at exact zeros failed their directions). Such a direction
        # is on a kink, not wrong. Nor is one whose losses stayed not finite (past the edge of the loss's domain,
        # closer than its steps: a float32 entropy term at p = 1e-3, review 53), where an element's stays wrong:
        # the elements near the edge are judged each on its own. Either decided nothing, and a wrong gradient puts
        # g·u there too, which the directions that agree need not see (review 53: a max-pool routed to the wrong
        # element): its tensor's directions verify nothing (:func:`.reduce.with_directions`).
        # A direction between the slopes tells as little (review 55: a max-pool bug passed beside a sample).
        # A jump at θ that the curvature outweighs at the coarse steps shows as a gap that changes sign and does not
        # halve on the other side (several float32 ReLUs at exactly 0 on binary inputs, integer weights): a kink too.
        # (or, not flat enough for a kink, as a gap that stopped halving, toward a jump at θ, where g·u is off the
        # line's estimate: a wrong gradient there is as likely as on a crossing). Not on a line through kinks
        # (``through``), where a line that decides nothing leaves its kinks to their elements: there it stays wrong
        # (review 72: a max-pool tie bug under a strong quadratic term, on such a line, passed so)
        crossed = bool(np.asarray(refined.crossing).any()) or bool(
            (through is None if jumps_cross is None else jumps_cross)
            and np.isfinite(refined.jump).any()
            and not refined.kink[0]
            and status[0] == WRONG
        )
        kinked = bool((refined.kink[0] or crossed) and math.isfinite(dot))
        # Wrong by the line on a kink that shows as that change of sign: the other rules call the line smooth or a
        # kink, and judged so it named real bugs that every element's own slopes allow (review 57: a tie routed to
        # both elements, |a − b| with sign(0) = +1 for both, under a concave curvature): nothing verifies its tensor.
        # Review 57 saw the kink only so; with the loss's noise measured beside kinks at θ (not taken from them), the
        # finer rows show it as a kink too, and a rule asking for the change of sign alone passed those bugs again.
        crossing = kinked and crossed and bool(status[0] == WRONG)
        # A line through kinks whose gaps all have one sign, on a kink with a gap of that sign: they add up along it
        # as a maximum's (or a minimum's) do, and a valid g·u lies between its slopes (:func:`.together.judge_lines`)
        # (judged on the slopes alone: on a kink the table's wide bar, which lets a value "agree" with its mean, is
        # no evidence, and a float32 line's would take in twice the maximum's rise)
        holds = bool(
            regular
            and refined.kink[0]
            and np.all(refined.settled)
            and np.sign(np.asarray(refined.gap).reshape(-1)[0]) == regular
        )
        if holds:
            lower, upper = float(refined.lower[0]), float(refined.upper[0])
            room = float(tolerance.room(lower, upper, float(np.max(refined.margin))))
            beyond = not lower - room <= dot <= upper + room
            numeric, allowed = np.array([(lower + upper) / 2]), np.array([(upper - lower) / 2 + room])
            status = np.array([WRONG if beyond else NONDIFFERENTIABLE], dtype=np.int8)
        kinked = kinked and not holds
        status = np.where(kinked & (status == WRONG), NONDIFFERENTIABLE, status)
        edge = np.asarray(past_edge)
        numeric, allowed, status = beyond_the_edge(edge, first[0], (numeric, allowed, status), INCONCLUSIVE)
        lost = bool(edge.any() and not math.isfinite(numeric[0]))
        return numeric, allowed, status, ("crossing" if crossing else "kink" if kinked else "edge" if lost else "")

    def result(
        numeric: float, allowed: float, status: int, orders: tuple[float, ...] = (), undecided: str = ""
    ) -> DirectionResult:
        elapsed = time.perf_counter() - started
        # on a kink at θ without a second look (the Taylor test's own verdict between the slopes) decides nothing too
        undecided = undecided or ("kink" if status == NONDIFFERENTIABLE else "")
        return DirectionResult(
            tensor,
            number,
            dot,
            numeric,
            allowed,
            status,
            step,
            orders,
            evaluations,
            elapsed,
            in_losses,
            moving,
            undecided,
        )

    if settings.taylor and not complex_step:
        checked = taylor(along, dot, settings.loss0, noise, tolerance)
        if not checked.first_order or not settings.second_look:
            return result(checked.numeric, checked.allowed, checked.status, checked.orders)
        # A first order the Taylor test saw is wrong only where central differences at finer steps confirm it,
        # by the dtype's tolerance: kinks within the steps (a ReLU layer over a batch) also make remainders of
        # order 1, and so does an error below the tolerance (float32's rounding of g·u).
        taylor_first = (
            np.array([checked.numeric]),
            np.array([checked.allowed]),
            np.array([checked.status]),
            np.array([checked.allowed]),
        )
        rounding = max(noise, settings.eps(spec.dtype) * abs(settings.loss0))
        smooth, past_edge = np.zeros(1, dtype=bool), not math.isfinite(checked.numeric)
        numeric, allowed, status, undecided = look_again(rounding, (), taylor_first, smooth, past_edge)
        return result(float(numeric[0]), float(allowed[0]), int(status[0]), checked.orders, undecided)
    points_ = [along(1j if complex_step else s.real) for s in STENCILS[settings.scheme]]
    losses = np.array([[value for value, _ in points_]])
    taken = np.array([[took for _, took in points_]])
    if not complex_step:
        noise = max(noise, settings.eps(spec.dtype) * float(np.max(np.abs(losses))))
    est = estimate(losses, taken, settings.scheme, epsilon=None, loss0=settings.loss0, noise=noise)
    allowed, status = judge(analytic, est.numeric, est.bar, est.lower, est.upper, tolerance, est.smooth)
    numeric = est.numeric
    if (
        settings.second_look
        and not complex_step
        and suspects(analytic, numeric, est.bar, status, tolerance, 0.0, precision, est.rounding, est.kinked)[0]
    ):
        known = known_rows(losses, taken, settings.scheme)  # the first pass's points are not evaluated again
        first = (numeric, allowed, status, est.bar)
        numeric, allowed, status, undecided = look_again(noise, known, first, est.smooth, est.nonfinite != 0)
        return result(float(numeric[0]), float(allowed[0]), int(status[0]), undecided=undecided)
    # a direction is always judged (by the dtype's tolerance even under `tolerance: none`)
    status = inconclusive(analytic, numeric, est.bar, status, tolerance)
    return result(float(numeric[0]), float(allowed[0]), int(status[0]))
