"""Per-element verdicts: does an element's analytic value agree with its numeric estimate?

Pure numpy. An element agrees when

    |a − n| <= atol + rtol·|n| + safety·bar

where ``bar`` is the numeric estimate's own error bar (the loss's measured
noise carried through the scheme, plus the truncation error where the scheme
measures it; see :mod:`pipeline.fd`). The error bar does the work; ``atol`` and
``rtol`` are small floors, kept as data per dtype and scheme below, and
overridable in the config.

An element that disagrees is *non-differentiable* rather than wrong when θ sits
on a kink: its one-sided slopes disagree with each other (beyond the allowance),
the analytic value lies between them (ReLU at 0: any value in between is a valid
subgradient), and the losses do not show the function smooth there (richardson
compares the second differences at h and 2h; two points cannot tell).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["AGREE", "DEFAULTS", "NONDIFFERENTIABLE", "UNCHECKED", "WRONG", "Tolerance", "default_tolerance", "judge"]

#: Element status codes, as stored in the output's ``status`` array.
AGREE, WRONG, NONDIFFERENTIABLE, UNCHECKED = 0, 1, 2, 3


@dataclass(frozen=True, slots=True)
class Tolerance:
    """How far an analytic value may be from its numeric estimate."""

    atol: float
    rtol: float
    safety: float = 10.0

    def to_dict(self) -> dict[str, float]:
        """JSON-ready form."""
        return {"atol": self.atol, "rtol": self.rtol, "safety": self.safety}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Tolerance:
        """Read back :meth:`to_dict`."""
        return cls(float(raw["atol"]), float(raw["rtol"]), float(raw.get("safety", 10.0)))


#: Defaults per (parameter dtype, scheme). The rtol floors cover what the error bar
#: cannot see: central differences do not measure their truncation error, and no
#: scheme sees rounding inside the analytic gradient itself. Measured on the accuracy
#: zoo (benchmarks/accuracy.py): no false alarm, every planted bug found.
DEFAULTS: dict[tuple[str, str], Tolerance] = {
    ("float64", "central"): Tolerance(atol=1e-12, rtol=1e-5),
    ("float64", "richardson"): Tolerance(atol=1e-13, rtol=1e-7),
    ("float64", "complex-step"): Tolerance(atol=1e-14, rtol=1e-10),
    ("float32", "central"): Tolerance(atol=1e-6, rtol=1e-2),
    ("float32", "richardson"): Tolerance(atol=1e-6, rtol=1e-3),
    ("float32", "complex-step"): Tolerance(atol=1e-6, rtol=1e-4),
}


def default_tolerance(dtype: str, scheme: str) -> Tolerance:
    """The default tolerance for tensors of ``dtype`` checked with ``scheme``."""
    return DEFAULTS[(dtype if dtype in ("float32", "float64") else "float64", scheme)]


def judge(
    analytic: np.ndarray,
    numeric: np.ndarray,
    bar: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    tolerance: Tolerance,
    smooth: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Each element's allowance and status (``AGREE``, ``WRONG`` or ``NONDIFFERENTIABLE``).

    A non-finite estimate is ``WRONG``; its allowance is NaN. Where ``smooth`` is True
    the losses rule a kink out, so a disagreement there is always ``WRONG``.
    """
    with np.errstate(invalid="ignore"):
        allowed = tolerance.atol + tolerance.rtol * np.abs(numeric) + tolerance.safety * bar
        error = np.abs(analytic - numeric)
        wrong = ~(error <= allowed)
        low, high = np.minimum(lower, upper), np.maximum(lower, upper)
        kink = (
            wrong
            & (high - low > allowed)
            & (True if smooth is None else ~smooth)
            & (analytic >= low - allowed)
            & (analytic <= high + allowed)
        )
    status = np.where(kink, NONDIFFERENTIABLE, np.where(wrong, WRONG, AGREE)).astype(np.int8)
    return allowed, status
