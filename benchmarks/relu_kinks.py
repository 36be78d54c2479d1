"""ReLU kinks off θ: float32 ReLU networks, 3% errors planted at elements a kink lies near, in one run.

Usage: pip install -e . && python benchmarks/relu_kinks.py [--seeds N] [--json PATH]

An ordinary float32 ReLU network (``tests/models.py``'s ``ReluNet``, 10-12-12-5, a batch of 50, He
init, normal data) has no unit exactly on its kink, so its loss is smooth at θ and every element has
one derivative. But along an element of a ReLU layer's weights or biases the loss has a kink wherever
a sample's unit turns on or off, and with 50 samples one often lies within float32's first step
(``EPS**(1/5)·max(1, |θ|)``, 0.04): the coarse steps cross it, and what float32's noise lets the steps
resolve may look like a kink at θ, whose one-sided slopes excuse any value between them. A 3% error
there must not pass as the kink's subgradient.

For each seed, the elements of W1, b1, W2 and b2 are grouped by the distance from θ to the nearest
kink of their own layer along them, in first steps: under 0.05 (closer than float32's steps can go),
0.05 to 0.2, 0.2 to 1, and 1 to 2; up to ``PER_BUCKET`` of each are drawn (a fixed draw). Each is checked
with the defaults (``pipeline.check``, in this process) with the correct gradient times 1.03 and times
0.97 there (an element whose derivative is 0 is not drawn), and the network once with its correct gradient.
It prints, per bucket, how the errors fared (failed, not verified, passed; and of the passes, those whose
element was called a kink: a silent pass, the loss being smooth at θ; an inconclusive element is named in
the report) and how the correct networks did, and writes every verdict and element status to JSON.

A second table places the kink: a 6-6-6-4 network (``tests.models.relu_kink_off_theta``) whose first unit sits
1e-7, 1e-6 or 1e-5 first steps from its kink at one sample (4e-9 to 4e-7 of ``b1[0]``, a float32 unit or two),
``b1[0]`` planted the same way. Float32 cannot tell such a kink from one at θ; the model's float64 copy can. About
5 minutes on one core.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import pipeline  # noqa: E402
from pipeline.report import text_table  # noqa: E402
from tests import models  # noqa: E402

Arrays = dict[str, np.ndarray]
#: The planted errors: the correct gradient at one element times these.
FACTORS = (1.03, 0.97)
#: Distance buckets, in float32 first steps, from θ to the element's nearest kink.
BUCKETS = ((0.0, 0.05), (0.05, 0.2), (0.2, 1.0), (1.0, 2.0))
#: Elements drawn per bucket and seed.
PER_BUCKET = 4
#: The placed kinks' distances from θ along b1[0], in float32 first steps (the second table).
PLACED = (1e-7, 1e-6, 1e-5)
FIRST_STEP = float(np.finfo(np.float32).eps) ** 0.2


def nearest_kinks(params: Arrays, data: Arrays) -> dict[tuple[str, tuple[int, ...]], float]:
    """Per element of W1, b1, W2, b2: the distance to the nearest kink of its own layer along it, in first steps
    (a sample whose unit's input crosses 0 there; along a first-layer element the second layer's kinks move too,
    and are not counted)."""
    p = {name: value.astype(np.float64) for name, value in params.items()}
    x = data["X"].astype(np.float64)
    z1 = x @ p["W1"] + p["b1"]
    a1 = np.maximum(z1, 0)
    z2 = a1 @ p["W2"] + p["b2"]
    found: dict[tuple[str, tuple[int, ...]], float] = {}
    for name, rows, z in (("1", x, z1), ("2", a1, z2)):
        weights = p[f"W{name}"]
        for i, j in np.ndindex(weights.shape):
            moving = rows[:, i] != 0  # a sample whose input is 0 does not move with the weight
            t = np.abs(z[moving, j] / rows[moving, i]) if moving.any() else np.array([np.inf])
            found[(f"W{name}", (i, j))] = float(t.min()) / (FIRST_STEP * max(1.0, abs(float(weights[i, j]))))
        for j in range(z.shape[1]):
            bias = float(p[f"b{name}"][j])
            found[(f"b{name}", (j,))] = float(np.abs(z[:, j]).min()) / (FIRST_STEP * max(1.0, abs(bias)))
    return found


def planted_error(
    params: Arrays, data: Arrays, element: tuple[str, tuple[int, ...]], factor: float, **row: Any
) -> dict[str, Any]:
    """One planted error's verdict and its element's status, with ``row``'s fields."""
    tensor, index = element
    report = pipeline.check(models.ReluNet(planted=(tensor, index, factor)), params, data, worst=10**6)
    (status,) = [w.status for w in report.worst if w.tensor == tensor and w.index == index]
    return {
        **row,
        "tensor": tensor,
        "index": list(index),
        "factor": factor,
        "verdict": report.verdict,
        "status": status,
    }


def placed(seeds: int) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """The second table's correct networks' verdicts (by seed and distance) and planted errors' (at b1[0])."""
    correct: dict[str, str] = {}
    planted: list[dict[str, Any]] = []
    for seed in range(seeds):
        for ratio in PLACED:
            params, data = models.relu_kink_off_theta(seed, ratio)
            correct[f"{seed} {ratio:g}"] = pipeline.check(models.ReluNet(), params, data).verdict
            for factor in FACTORS:
                planted.append(planted_error(params, data, ("b1", (0,)), factor, seed=seed, bucket=f"{ratio:g}"))
    return correct, planted


def run(seeds: int) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """The correct networks' verdicts per seed, and every planted error's."""
    rng = np.random.default_rng(0)
    correct: dict[str, str] = {}
    planted: list[dict[str, Any]] = []
    for seed in range(seeds):
        params, data = models.relu_problem(seed, sizes=(10, 12, 12, 5), batch=50, dtype=np.float32)
        correct[str(seed)] = pipeline.check(models.ReluNet(), params, data).verdict
        distances = nearest_kinks(params, data)
        gradient = models.ReluNet().grad(params, data)
        for low, high in BUCKETS:  # (an element whose derivative is 0 cannot be planted wrong so)
            inside = sorted(key for key, d in distances.items() if low <= d < high and gradient[key[0]][key[1]] != 0)
            for k in rng.permutation(len(inside))[:PER_BUCKET]:
                element = inside[k]
                row = {"seed": seed, "distance": distances[element], "bucket": f"{low:g} to {high:g}"}
                planted.extend(planted_error(params, data, element, factor, **row) for factor in FACTORS)
    return correct, planted


def print_table(correct: dict[str, str], planted: list[dict[str, Any]], buckets: list[str], title: str) -> None:
    rows = [[title, "errors", "failed", "not verified", "PASSED", "of them on a kink"]]
    for bucket in [*buckets, "all"]:
        mine = [r for r in planted if bucket in ("all", r["bucket"])]
        fared = Counter(r["verdict"] for r in mine)
        kinks = sum(r["verdict"] == "passed" and r["status"] == "non-differentiable" for r in mine)
        verdicts = [str(fared[v]) for v in ("failed", "not verified", "passed")]
        rows.append([bucket, str(len(mine)), *verdicts, str(kinks)])
    print("\n".join(text_table(rows)))
    fared = Counter(correct.values())
    print(f"correct networks: {fared['passed']} passed, {fared['not verified']} not verified, {fared['failed']} failed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "relu_kinks.json"))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    started = time.perf_counter()
    correct, planted = run(args.seeds)
    print_table(correct, planted, [f"{low:g} to {high:g}" for low, high in BUCKETS], "nearest kink (first steps)")
    print(f"{len(planted)} planted errors on {args.seeds} networks in {time.perf_counter() - started:.0f} s\n")
    started = time.perf_counter()
    near_correct, near = placed(args.seeds)
    print_table(near_correct, near, [f"{ratio:g}" for ratio in PLACED], "kink placed at (first steps)")
    print(f"{len(near)} planted errors at b1[0] in {time.perf_counter() - started:.0f} s")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    result = {"correct": correct, "planted": planted, "placed": {"correct": near_correct, "planted": near}}
    Path(args.json).write_text(json.dumps(result, indent=1))
    print(f"Wrote {args.json}")


if __name__ == "__main__":
    main()
