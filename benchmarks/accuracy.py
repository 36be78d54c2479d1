"""Accuracy: planted bugs found and localised, false alarms on correct models, in one run.

Usage: pip install -e . && python benchmarks/accuracy.py [--workers 2] [--json PATH]

Runs the zoo (pipeline/examples/zoo.py: logistic regression, MLPs with relu, tanh and
sigmoid, softmax cross-entropy, a 1-D convolution, a layer norm, an L2 penalty, an
embedding lookup, each with hand-written gradients) through the pipeline on one local
cluster, correct and with each planted bug (a 3x scale, a sign flip, a transpose, a
missing term, one wrong element, an index off by one), under three settings:

- default:    what a config that names nothing gets (richardson, epsilon auto, per-element error bars);
- seed:       the seed's fixed step 1e-7 and global threshold 2e-7;
- torch-rule: torch.autograd.gradcheck's rule (step 1e-6, |a - n| <= 1e-5 + 1e-3·|n| per element);
- jax-rule:   jax's check_grads (one random direction, step 1e-4, tolerance 1e-5 in float64,
              2e-3 in float32), with one direction per tensor so that it can name a tensor.

A bug counts as found when the check fails naming exactly the planted tensor; a correct
model must pass (the relu MLP sits on a ReLU kink on purpose). Correct models are
checked in float64 and float32; bugs in float64 and float32. Then sharpness (one
element 1e-5 off, float64), and the seed's correct network under each step rule. Prints the tables; writes JSON (default
benchmarks/results/accuracy.json).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from distributed import Client

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import pipeline  # noqa: E402
from pipeline.config import ClusterConfig  # noqa: E402
from pipeline.examples import seed_mlp, zoo  # noqa: E402
from pipeline.execution.cluster import connect  # noqa: E402
from pipeline.report import text_table  # noqa: E402

DTYPES = {"float64": np.float64, "float32": np.float32}


def zoo_outcomes(client: Client) -> list[zoo.Outcome]:
    """Every model, correct and with each of its bugs, under every setting, in both dtypes."""
    outcomes = []
    for dtype in DTYPES.values():
        for settings in zoo.SETTINGS:
            for kind in zoo.MODELS:
                for bug in (None, *(b for b, _ in zoo.model(kind).bugs())):
                    outcomes.append(zoo.run_case(kind, bug, settings, dtype, client))
    return outcomes


def subtle_outcomes(client: Client) -> list[zoo.Outcome]:
    """Sharpness: one element 1e-5 off (relative), float64, under every setting."""
    return [zoo.run_case(kind, "subtle", s, np.float64, client) for s in zoo.SETTINGS for kind in zoo.MODELS]


def seed_network(client: Client) -> dict[str, float]:
    """The seed's correct network: its difference under each step rule."""
    params, data = seed_mlp.problem()
    rules: dict[str, dict[str, object]] = {
        "seed (central, epsilon 1e-7)": {"scheme": "central", "epsilon": 1e-7},
        "central, epsilon auto": {"scheme": "central"},
        "richardson, epsilon auto (default)": {},
        "complex-step": {"scheme": "complex-step"},
    }
    figures = {}
    for name, settings in rules.items():
        if settings.get("scheme") == "complex-step":
            continue  # the seed's network is not declared complex
        report = pipeline.check(seed_mlp.correct, params, data, client=client, **settings)  # type: ignore[arg-type]
        figures[name] = report.difference
    return figures


def _mark(outcome: zoo.Outcome | None) -> str:
    if outcome is None:
        return ""
    if outcome.bug is None:
        return "pass" if outcome.passed else "FALSE ALARM"
    if outcome.right:
        return "found"
    return "missed" if outcome.passed else "wrong tensor"


def print_tables(outcomes: list[zoo.Outcome], subtle: list[zoo.Outcome], seed: dict[str, float]) -> None:
    index = {(o.dtype, o.settings, o.kind, o.bug): o for o in outcomes}
    for dtype in DTYPES:
        print(f"\n{dtype}: per model and planted bug (found = fails naming exactly the planted tensor)")
        rows = [["model", "bug", "tensor", *zoo.SETTINGS, "diagnosis (default settings)"]]
        for kind in zoo.MODELS:
            for bug, tensor in [(None, "-"), *zoo.model(kind).bugs()]:
                cells = [_mark(index.get((dtype, s, kind, bug))) for s in zoo.SETTINGS]
                default = index[(dtype, "default", kind, bug)]
                rows.append([kind, bug or "correct", tensor, *cells, "; ".join(default.diagnosis)[:90]])
        print("\n".join(text_table(rows)))
    print("\nSummary")
    rows = [["dtype", "settings", "bugs found", "false alarms", "kinks marked"]]
    for dtype in DTYPES:
        for settings in zoo.SETTINGS:
            mine = [o for o in outcomes if o.dtype == dtype and o.settings == settings]
            bugs = [o for o in mine if o.bug is not None]
            correct = [o for o in mine if o.bug is None]
            rows.append(
                [
                    dtype,
                    settings,
                    f"{sum(o.right for o in bugs)}/{len(bugs)}",
                    f"{sum(not o.passed for o in correct)}/{len(correct)}",
                    str(sum(o.n_nondifferentiable for o in correct)),
                ]
            )
    print("\n".join(text_table(rows)))
    print("\nSharpness, float64: one element 1e-5 off (relative), found per setting")
    rows = [["model", "tensor", *zoo.SETTINGS]]
    for kind in zoo.MODELS:
        per_setting = {o.settings: o for o in subtle if o.kind == kind}
        rows.append([kind, per_setting["default"].tensor or "", *[_mark(per_setting[s]) for s in zoo.SETTINGS]])
    rows.append(
        ["all", "", *[f"{sum(o.right for o in subtle if o.settings == s)}/{len(zoo.MODELS)}" for s in zoo.SETTINGS]]
    )
    print("\n".join(text_table(rows)))
    print("\nThe seed's correct network (47 parameters): normalized difference")
    print("\n".join(text_table([["step rule", "difference"], *[[k, f"{v:.3e}"] for k, v in seed.items()]])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "accuracy.json"))
    args = parser.parse_args()
    start = time.perf_counter()
    with connect(ClusterConfig(workers=args.workers), 10**9) as client:
        outcomes = zoo_outcomes(client)
        subtle = subtle_outcomes(client)
        seed = seed_network(client)
    print_tables(outcomes, subtle, seed)
    print(f"\n{len(outcomes) + len(subtle) + len(seed)} checks in {time.perf_counter() - start:.0f} s")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(
        json.dumps(
            {
                "outcomes": [asdict(o) | {"right": o.right} for o in outcomes],
                "subtle": [asdict(o) | {"right": o.right} for o in subtle],
                "seed_network": seed,
            },
            indent=1,
        )
    )
    print(f"Wrote {args.json}")


if __name__ == "__main__":
    main()
