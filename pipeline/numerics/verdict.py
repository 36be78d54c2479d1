"""The verdict's parts as plain data: per tensor, per element, and the non-finite losses.

The reducer (:mod:`.reduce`) makes them; the report (:mod:`pipeline.report`) holds and prints them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["NonFinite", "NonFiniteLoss", "TensorReport", "WorstElement", "json_float", "read_float"]


def read_float(value: Any) -> float:
    """A float read back from JSON, where null stands for NaN."""
    return math.nan if value is None else float(value)


def json_float(value: float) -> float | None:
    """A float for JSON: standard JSON has no NaN or infinity."""
    return value if math.isfinite(value) else None


@dataclass(frozen=True, slots=True)
class TensorReport:
    """One tensor's metrics.

    ``power``: the relative error this tensor's check could have detected, its widest allowance of
    an agreeing element against that element's reference magnitude (NaN when no element was judged).
    ``verified``: at least one of its elements (or directions) agreed within an allowance narrow
    enough to count; a tensor whose checked elements were all inconclusive or kinks is not verified.
    ``noise``: the loss's noise along it, and ``noise_source`` where that figure came from.
    ``n_unproven``: of its inconclusive elements, those that disagree beyond their allowance but whose
    second look could not confirm it (kinks inside the steps, finer rows moving toward the analytic value).
    ``n_zero``: of its inconclusive elements, those whose analytic and numeric values are both exactly 0 within
    allowances narrower than 1% of the gradient's RMS: the loss does not move with them at θ (dead units, an
    unused parameter), not a derivative the steps could not resolve.
    ``n_verified``: its checked elements that agreed within an allowance narrow enough to count (as the
    reducer counted them; a report written before it was recorded derives it from the other counts).
    ``rounding``: its float32 analytic gradient's largest difference from the same model's in float64 at θ
    (0 where not measured): shown beside a wrong tensor it could explain, deciding nothing.
    ``n_float32_only``: its float32 elements wrong in float32 but right when the same model computes in float64
    (:func:`~.tolerance.float32_only`): the tensor is not verified.
    ``n_unsettled``: of its inconclusive elements, those the second look did not settle at its finest steps
    (:data:`~.tolerance.UNSETTLED`: its table did not converge, or the analytic value lies outside one-sided slopes
    still moving): the tensor is not verified.
    ``n_together``: of its elements on a kink, those that moved together disagree with the gradient
    (:data:`~.tolerance.TOGETHER`): the tensor is not verified.
    ``coarse_gradient``: the dtype of ``model.grad``'s array for it where coarser than the one it is judged in
    (float32 for float64 parameters), else "": shown beside a wrong tensor it could explain, deciding nothing.
    ``inconclusive_power``: its inconclusive elements' widest allowance against their own magnitude (not those exactly
    0 in both; NaN where there are none): an error within it there would not have been seen, whatever ``power`` says
    (review 96: forces with 2% bars passed a 2% error beside a stated power of 0.96%).
    """

    name: str
    shape: tuple[int, ...]
    difference: float
    contribution: float
    max_abs_error: float
    passed: bool
    n_checked: int = 0
    n_wrong: int = 0
    n_nondifferentiable: int = 0
    step_min: float = math.nan
    step_max: float = math.nan
    diagnosis: tuple[str, ...] = ()
    n_directions: int = 0
    n_directions_wrong: int = 0
    worst: WorstElement | None = None
    n_inconclusive: int = 0
    power: float = math.nan
    verified: bool = True
    noise: float = math.nan
    noise_source: str = ""
    n_directions_inconclusive: int = 0
    n_unproven: int = 0
    n_zero: int = 0
    n_verified: int = 0
    rounding: float = 0.0
    n_float32_only: int = 0
    n_unsettled: int = 0
    n_together: int = 0
    coarse_gradient: str = ""
    inconclusive_power: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "shape": list(self.shape),
            "difference": json_float(self.difference),
            "contribution": json_float(self.contribution),
            "max_abs_error": json_float(self.max_abs_error),
            "passed": self.passed,
            "n_checked": self.n_checked,
            "n_wrong": self.n_wrong,
            "n_nondifferentiable": self.n_nondifferentiable,
            "step": [json_float(self.step_min), json_float(self.step_max)],
            "diagnosis": list(self.diagnosis),
            "n_directions": self.n_directions,
            "n_directions_wrong": self.n_directions_wrong,
            "worst": None if self.worst is None else self.worst.to_dict(),
            "n_inconclusive": self.n_inconclusive,
            "power": json_float(self.power),
            "verified": self.verified,
            "noise": json_float(self.noise),
            "noise_source": self.noise_source,
            "n_directions_inconclusive": self.n_directions_inconclusive,
            "n_unproven": self.n_unproven,
            "n_zero": self.n_zero,
            "n_verified": self.n_verified,
            "analytic_rounding": json_float(self.rounding),
            "n_float32_only": self.n_float32_only,
            "n_unsettled": self.n_unsettled,
            "n_together": self.n_together,
            "coarse_gradient": self.coarse_gradient,
            "inconclusive_power": json_float(self.inconclusive_power),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TensorReport:
        """Read back :meth:`to_dict`."""
        step = raw.get("step", [None, None])
        return cls(
            raw["name"],
            tuple(raw["shape"]),
            read_float(raw["difference"]),
            read_float(raw["contribution"]),
            read_float(raw["max_abs_error"]),
            bool(raw["passed"]),
            int(raw.get("n_checked", 0)),
            int(raw.get("n_wrong", 0)),
            int(raw.get("n_nondifferentiable", 0)),
            read_float(step[0]),
            read_float(step[1]),
            tuple(raw.get("diagnosis", ())),
            int(raw.get("n_directions", 0)),
            int(raw.get("n_directions_wrong", 0)),
            None if raw.get("worst") is None else WorstElement.from_dict(raw["worst"]),
            int(raw.get("n_inconclusive", 0)),
            read_float(raw.get("power")),
            bool(raw.get("verified", True)),
            read_float(raw.get("noise")),
            str(raw.get("noise_source", "")),
            int(raw.get("n_directions_inconclusive", 0)),
            int(raw.get("n_unproven", 0)),
            int(raw.get("n_zero", 0)),
            int(
                raw.get(
                    "n_verified",
                    raw.get("n_checked", 0)
                    - raw.get("n_wrong", 0)
                    - raw.get("n_nondifferentiable", 0)
                    - raw.get("n_inconclusive", 0),
                )
            ),
            read_float(raw.get("analytic_rounding", 0.0)),
            int(raw.get("n_float32_only", 0)),
            int(raw.get("n_unsettled", 0)),
            int(raw.get("n_together", 0)),
            str(raw.get("coarse_gradient", "")),
            read_float(raw.get("inconclusive_power")),
        )


@dataclass(frozen=True, slots=True)
class WorstElement:
    """One element, located by tensor and multi-index."""

    tensor: str
    index: tuple[int, ...]
    analytic: float
    numeric: float
    abs_error: float
    allowed: float = math.nan
    status: str = "agrees"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "tensor": self.tensor,
            "index": list(self.index),
            "analytic": json_float(self.analytic),
            "numeric": json_float(self.numeric),
            "abs_error": json_float(self.abs_error),
            "allowed": json_float(self.allowed),
            "status": self.status,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> WorstElement:
        """Read back :meth:`to_dict`."""
        return cls(
            raw["tensor"],
            tuple(raw["index"]),
            read_float(raw["analytic"]),
            read_float(raw["numeric"]),
            read_float(raw["abs_error"]),
            read_float(raw.get("allowed")),
            raw.get("status", "agrees"),
        )


@dataclass(frozen=True, slots=True)
class NonFiniteLoss:
    """An element where the loss at θ + ε (``plus``), θ − ε (``minus``) or both was NaN or infinite."""

    tensor: str
    index: tuple[int, ...]
    side: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"tensor": self.tensor, "index": list(self.index), "side": self.side}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> NonFiniteLoss:
        """Read back :meth:`to_dict`."""
        return cls(raw["tensor"], tuple(raw["index"]), raw["side"])


@dataclass(frozen=True, slots=True)
class NonFinite:
    """How many elements had a non-finite loss, and the first of them in index order."""

    count: int = 0
    elements: tuple[NonFiniteLoss, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"count": self.count, "elements": [e.to_dict() for e in self.elements]}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> NonFinite:
        """Read back :meth:`to_dict`."""
        return cls(int(raw["count"]), tuple(NonFiniteLoss.from_dict(e) for e in raw["elements"]))
