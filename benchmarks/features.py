"""Features: one-element losses with kinks and smooth features near θ, correct and 3% wrong, in one run.

Usage: pip install -e . && python benchmarks/features.py [--dtype float64|float32] [--json PATH]

The second look (pipeline/numerics/refine.py) must tell a wrong derivative from a step too coarse for
the function. These losses are built to make that hard: one parameter ``x`` at θ = 0, 0.37 and 1000
(30 in float32), and a loss ``exp(r·(x − θ)) + feature``: the exponential's curvature bends the
one-sided slopes (``r·h`` = c/100 at the first step h, ``c`` = 0 to 200 in the key), and the feature is
one of:

- ``sp``:    softplus of width 1e-1 to 1e-5 of h (``kh`` = h over the width), θ at ``off`` widths from it;
- ``abs``:   a kink ``|x − θ − d|``, ``d`` from ±1e-7 to ±0.5 of h;
- ``tanh``:  an odd feature ``s·tanh((x − θ)/s + off)``, ``s`` 1e-6 to 1e-1 of h: its slopes' gap is 0;
- ``sin``:   ``sin(w·(x − θ) + φ)/w``, 0.1 to 30 radians per step;
- ``2abs``, ``2relu``: two kinks either side of θ, 1e-6 to 0.1 of h away;
- ``cubic``, ``oneexp``: a kink with curvature on one side only.

Each is checked with the defaults (``pipeline.check``, in this process) with its exact derivative and
with it times 1.03. A correct derivative should pass, or be named not verified where the steps cannot
resolve the feature; it must not fail (a false alarm). A 3% error should fail; not verified is a stated
limit; a pass is a silent pass only if an element called "agrees" was wrong beyond its allowance (the
table counts every pass). It prints, per family and dtype, how the correct and the wrong derivative
fared, and writes every verdict to JSON. About 2 minutes per dtype on one core.

An adversarial review built these families to test changes to the second look's stopping rules; each
rule change is measured against them (and the accuracy zoo, and held-out third-party layers) before it
lands.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import pipeline  # noqa: E402
from pipeline.report import text_table  # noqa: E402

DTYPES = {"float64": np.float64, "float32": np.float32}
#: The planted error: the analytic derivative times this.
WRONG_BY = 1.03

Case = tuple[str, Callable[[float], float], float]  # (key, loss of x, its derivative at θ)


class OneElement:
    """A loss of one parameter ``x`` (evaluated in float64, rounded to the parameter's dtype) and its
    analytic derivative ``slope``."""

    def __init__(self, f: Callable[[float], float], slope: float, dtype: type) -> None:
        self.f, self.slope, self.dtype = f, slope, dtype

    def loss(self, params: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> float:
        return float(self.dtype(self.f(float(params["x"][0]))))

    def grad(self, params: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"x": np.array([self.slope], dtype=self.dtype)}


def _softplus(x: float, theta: float, r: float, k: float, off: float) -> float:
    z = k * (x - theta) + off
    return math.exp(r * (x - theta)) + (max(z, 0.0) + math.log1p(math.exp(-abs(z)))) / k


def _abs(x: float, theta: float, r: float, d: float) -> float:
    return math.exp(r * (x - theta)) + abs(x - theta - d)


def _tanh(x: float, theta: float, r: float, s: float, off: float) -> float:
    return math.exp(r * (x - theta)) + s * math.tanh((x - theta) / s + off)


def _sin(x: float, theta: float, rate: float, phase: float) -> float:
    return math.sin(rate * (x - theta) + phase) / rate


def _two_abs(x: float, theta: float, r: float, a: float, b: float) -> float:
    return math.exp(r * (x - theta)) + abs(x - theta - a) + 0.5 * abs(x - theta + b)


def _two_relu(x: float, theta: float, r: float, a: float, b: float) -> float:
    return math.exp(r * (x - theta)) + max(x - theta - a, 0.0) - 0.7 * max(x - theta + b, 0.0)


def _cubic(x: float, theta: float, cubic: float, jump: float, d: float) -> float:
    u = max(x - theta - d, 0.0)
    return jump * u + cubic * u**3 + 5 * (x - theta) ** 2


def _one_exp(x: float, theta: float, rate: float, jump: float, d: float) -> float:
    return jump * max(x - theta - d, 0.0) * math.exp(rate * (x - theta - d)) + (x - theta)


def cases(h: float, theta: float) -> Iterator[Case]:
    """Every family's losses at ``theta``, scaled to the first step ``h``."""
    for c in (0, 1, 5, 20, 60, 200):
        r = c / h * 1e-2  # the exponential's rate: c/100 per first step
        for kh in np.logspace(1, 5, 17):
            for off in (0.0, 0.3, -1.0, 3.0):
                f = partial(_softplus, theta=theta, r=r, k=kh / h, off=off)
                yield f"sp c={c} kh={kh:.3g} off={off}", f, r + 1 / (1 + math.exp(-off))
        for df in np.concatenate([np.logspace(-7, -0.3, 24), -np.logspace(-7, -0.3, 24)]):
            f = partial(_abs, theta=theta, r=r, d=df * h)
            yield f"abs c={c} d/h={df:.3g}", f, r + (1 if df < 0 else -1)
        for width in np.logspace(-6, -1, 11):
            for off in (0.0, 0.5, -1.0, 2.0):
                f = partial(_tanh, theta=theta, r=r, s=width * h, off=off)
                yield f"tanh c={c} s/h={width:.2g} off={off}", f, r + (1 - math.tanh(off) ** 2)
    for w in (0.1, 1, 3, 10, 30):
        for phase in (0.0, 0.3, 1.0, 1.5, 2.0):
            yield f"sin wh={w} ph={phase}", partial(_sin, theta=theta, rate=w / h, phase=phase), math.cos(phase)
    for c in (0, 5, 60):
        r = c / h * 1e-2
        for d1 in (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1):
            for d2 in (2e-6, 3e-5, 5e-4, 3e-3, 3e-2):
                yield f"2abs c={c} d1={d1} d2={d2}", partial(_two_abs, theta=theta, r=r, a=d1 * h, b=d2 * h), r - 0.5
                yield f"2relu c={c} d1={d1} d2={d2}", partial(_two_relu, theta=theta, r=r, a=d1 * h, b=d2 * h), r - 0.7
    for size in (1, 10, 100, 1e3, 1e4, 1e5):
        cubic, rate = size * (1e-2 / h) ** 2, size * 1e-2 / h
        for jump in (0.1, 1.0):
            for dd in (0.0, 1e-3, -1e-2, -1e-4):
                d = dd * h
                f = partial(_cubic, theta=theta, cubic=cubic, jump=jump, d=d)
                yield f"cubic a={size} j={jump} d/h={dd}", f, (jump + 3 * cubic * d * d) if d < 0 else 0.0
                f = partial(_one_exp, theta=theta, rate=rate, jump=jump, d=d)
                slope = 1 + (jump * math.exp(-rate * d) * (1 - rate * d) if d < 0 else 0.0)
                yield f"oneexp a={size} j={jump} d/h={dd}", f, slope


def verdict(f: Callable[[float], float], slope: float, theta: float, dtype: type) -> str:
    """The check's verdict, or ``error`` where the loss itself could not be evaluated (an overflow)."""
    try:
        report = pipeline.check(OneElement(f, slope, dtype), {"x": np.array([theta], dtype=dtype)}, {})
    except pipeline.ModelError:
        return "error"
    return report.verdict


def run(dtype_name: str) -> dict[str, dict[str, str]]:
    dtype: type = DTYPES[dtype_name]
    found: dict[str, dict[str, str]] = {}
    for theta in (0.0, 0.37, 1000.0) if dtype is np.float64 else (0.0, 0.37, 30.0):
        h = float(np.finfo(np.dtype(dtype)).eps) ** 0.2 * max(1.0, abs(theta))
        for key, f, slope in cases(h, theta):
            found[f"θ={theta} {key}"] = {
                "correct": verdict(f, slope, theta, dtype),
                "wrong": verdict(f, WRONG_BY * slope, theta, dtype),
            }
    return found


def print_table(results: dict[str, dict[str, dict[str, str]]]) -> None:
    rows = [
        [
            "dtype",
            "family",
            "cases",
            "correct: passed",
            "not verified",
            "FAILED",
            "3% wrong: failed",
            "not verified",
            "PASSED",
        ]
    ]
    for dtype_name, found in results.items():
        families = sorted({key.split()[1] for key in found})
        for family in [*families, "all"]:
            mine = [v for key, v in found.items() if family == "all" or key.split()[1] == family]
            mine = [v for v in mine if "error" not in v.values()]
            right, wrong = Counter(v["correct"] for v in mine), Counter(v["wrong"] for v in mine)
            rows.append(
                [dtype_name, family, str(len(mine))]
                + [str(right[v]) for v in ("passed", "not verified", "failed")]
                + [str(wrong[v]) for v in ("failed", "not verified", "passed")]
            )
    print("\n".join(text_table(rows)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", choices=tuple(DTYPES), action="append", help="default: both")
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "features.json"))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    started = time.perf_counter()
    results = {name: run(name) for name in args.dtype or DTYPES}
    print_table(results)
    print(
        f"{sum(len(r) for r in results.values())} losses, each checked twice, in {time.perf_counter() - started:.0f} s"
    )
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=1))
    print(f"Wrote {args.json}")


if __name__ == "__main__":
    main()
