"""Accuracy: planted bugs found and localised, false alarms on correct models, in one run.

Usage: pip install -e . && python benchmarks/accuracy.py [--workers 2] [--json PATH]
       python benchmarks/accuracy.py --only-power [--plant tensor|element] [--json PATH]

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

Detection power (JSON key ``power``; ``--only-power`` runs this section alone, in this
process, with no cluster: ``pipeline.check`` without a client). The zoo above and the hard zoo
(pipeline/examples/hard.py: a ReLU kink next to smooth layers, an offset of 1000 into a
tiny-variance layer norm, a sharp exponential, a loss exactly 0 made of ~1e6 terms, a
1e5-element weight checked by random directions, and a smooth tanh control) is checked
correct and with a relative error r = 1e-1, 1e-2, ..., 1e-7 planted in each tensor
(``grad[t] *= 1 + r``; ``--plant element``: in its largest element only), under each
setting above (``wide-float32`` with ``indices: none, directions: 8`` merged into every
setting but jax-rule's one direction), in float64 and float32. Per model, tensor, dtype
and setting the table gives the smallest r detected (the check fails and names exactly
the planted tensor), descending until a size is missed (the first miss is kept in the
JSON), and whether the correct model passes: ``pass``, ``FALSE ALARM`` (it names this
tensor), ``(other)`` (it names other tensors only), ``not verified`` (it fails naming no
tensor). A smallest r marked ``*`` is not a detection: the correct model already fails
naming that tensor. Then the second look's cost (JSON key ``second_look``): on every correct
model of both zoos with the defaults, the losses it took against the shards' own, per zoo and
in all. About a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from distributed import Client

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import pipeline  # noqa: E402
from pipeline.config import ClusterConfig  # noqa: E402
from pipeline.examples import hard, seed_mlp, zoo  # noqa: E402
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


@dataclass(frozen=True)
class Tried:
    """One planted error and what the check said."""

    r: float
    passed: bool
    failing: tuple[str, ...]

    def detected(self, tensor: str) -> bool:
        """Failed, naming exactly the planted tensor."""
        return not self.passed and self.failing == (tensor,)


@dataclass(frozen=True)
class Power:
    """The smallest relative error detected in one tensor under one setting, and how the correct model fared."""

    model: str
    tensor: str
    dtype: str
    settings: str
    plant: str
    smallest_detected: float | None
    first_missed: float | None
    tried: tuple[Tried, ...]
    correct_passed: bool
    correct_failing: tuple[str, ...]

    @property
    def false_alarm(self) -> str:
        """``pass``, ``FALSE ALARM`` (the correct model fails naming this tensor), ``(other)`` or ``not verified``."""
        if self.correct_passed:
            return "pass"
        if not self.correct_failing:
            return "not verified"
        return "FALSE ALARM" if self.tensor in self.correct_failing else "(other)"

    @property
    def first_missed_as(self) -> str | None:
        """How the first size missed was missed: the check passed, or it failed naming other tensors too (or instead)."""
        missed = next((t for t in self.tried if not t.detected(self.tensor)), None)
        if missed is None:
            return None
        return "passed" if missed.passed else f"failing {', '.join(missed.failing) or 'no tensor'}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"false_alarm": self.false_alarm, "first_missed_as": self.first_missed_as}


@dataclass(frozen=True)
class Subject:
    """A model of either zoo, as the power section checks it."""

    zoo: str
    kind: str
    correct: Any
    tensors: tuple[str, ...]

    def problem(self, dtype: type) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        return self.correct.problem(dtype)  # type: ignore[no-any-return]

    def planted(self, tensor: str, r: float, element: bool) -> Any:
        if self.zoo == "hard":
            return hard.planted(self.kind, tensor, r, element=element)
        if element:
            raise ValueError("--plant element is for the hard zoo's models only")
        return hard.plant_in(self.correct, tensor, r)

    def settings(self, name: str, dtype: type) -> dict[str, object]:
        if self.zoo == "hard":
            return hard.settings_for(self.kind, name, dtype)
        return zoo.chosen_settings(name, dtype)


def subjects(element: bool) -> list[Subject]:
    """The hard zoo's models, and (planting in whole tensors) the zoo's."""
    found = [Subject("hard", kind, hard.model(kind), hard.model(kind).tensors) for kind in hard.MODELS]
    if not element:
        found += [Subject("zoo", kind, zoo.model(kind), tuple(zoo.model(kind).problem()[0])) for kind in zoo.MODELS]
    return found


def _power_check(
    subject: Any, problem: Subject, dtype: type, settings: dict[str, object]
) -> tuple[bool, tuple[str, ...]]:
    params, data = problem.problem(dtype)
    report = pipeline.check(subject, params, data, **settings)  # type: ignore[arg-type]
    return report.passed, report.failing


def power_outcomes(element: bool = False) -> list[Power]:
    """Every tensor of both zoos, dtype and setting: plant r = 1e-1, 1e-2, ... until one is missed. In this process."""
    outcomes = []
    for subject in subjects(element):
        for dtype_name, dtype in DTYPES.items():
            for settings in zoo.SETTINGS:
                chosen = subject.settings(settings, dtype)
                correct_passed, correct_failing = _power_check(subject.correct, subject, dtype, chosen)
                for tensor in subject.tensors:
                    tried: list[Tried] = []
                    for r in hard.RATES:
                        tried.append(
                            Tried(r, *_power_check(subject.planted(tensor, r, element), subject, dtype, chosen))
                        )
                        if not tried[-1].detected(tensor):
                            break  # a smaller error would be missed too
                    found = [t.r for t in tried if t.detected(tensor)]
                    missed = [t.r for t in tried if not t.detected(tensor)]
                    outcomes.append(
                        Power(
                            subject.kind,
                            tensor,
                            dtype_name,
                            settings,
                            "element" if element else "tensor",
                            min(found) if found else None,
                            missed[0] if missed else None,
                            tuple(tried),
                            correct_passed,
                            correct_failing,
                        )
                    )
    return outcomes


def second_look_cost() -> list[dict[str, Any]]:
    """The second look's losses against the shards' own, on every correct model of both zoos, defaults, in this process."""
    rows = []
    for subject in subjects(element=False):
        for dtype_name, dtype in DTYPES.items():
            params, data = subject.problem(dtype)
            report = pipeline.check(subject.correct, params, data, **subject.settings("default", dtype))  # type: ignore[arg-type]
            t = report.timings
            looked = t["second_look_evaluations"]
            shards = t["loss_evaluations"] - looked - t["noise_evaluations"] - 2
            rows.append(
                {
                    "zoo": subject.zoo,
                    "model": subject.kind,
                    "dtype": dtype_name,
                    "passed": report.passed,
                    "shard_evaluations": shards,
                    "second_look_elements": t["second_look_elements"],
                    "second_look_evaluations": looked,
                    "noise_evaluations": t["noise_evaluations"],
                }
            )
    return rows


def print_second_look(rows: list[dict[str, Any]]) -> None:
    print(
        "\nThe second look's cost on the correct models (defaults): losses it took against the shards' own (extra), "
        "and against all a run without it takes (of run: the shards, the noise probe and the loss at θ twice)"
    )
    table = [["model", "dtype", "suspects", "second look", "shards", "extra", "of run"]]

    def without(mine: list[dict[str, Any]]) -> float:
        return float(sum(r["shard_evaluations"] + r["noise_evaluations"] + 2 for r in mine))

    for r in rows:
        extra = r["second_look_evaluations"] / max(1.0, r["shard_evaluations"])
        table.append(
            [
                r["model"],
                r["dtype"],
                str(int(r["second_look_elements"])),
                str(int(r["second_look_evaluations"])),
                str(int(r["shard_evaluations"])),
                f"{100 * extra:.1f}%",
                f"{100 * r['second_look_evaluations'] / without([r]):.1f}%",
            ]
        )
    # the hard zoo's models are made to need it (kinks at θ, a step far too coarse, a sharp exponential)
    for zoo_name in ("zoo", "hard", "all"):
        for dtype in DTYPES:
            mine = [r for r in rows if r["dtype"] == dtype and zoo_name in ("all", r["zoo"])]
            looked = sum(r["second_look_evaluations"] for r in mine)
            shards = sum(r["shard_evaluations"] for r in mine)
            label = {"zoo": "first zoo", "hard": "hard zoo", "all": "both zoos"}[zoo_name]
            table.append(
                [
                    label,
                    dtype,
                    "",
                    str(int(looked)),
                    str(int(shards)),
                    f"{100 * looked / shards:.1f}%",
                    f"{100 * looked / without(mine):.1f}%",
                ]
            )
    print("\n".join(text_table(table)))


def _smallest(outcome: Power) -> str:
    if outcome.smallest_detected is None:
        return "none"
    star = "*" if outcome.false_alarm == "FALSE ALARM" else ""
    return f"{outcome.smallest_detected:.0e}{star}"


def print_power(outcomes: list[Power]) -> None:
    where = "its largest element" if outcomes and outcomes[0].plant == "element" else "the whole tensor"
    print(
        f"\nDetection power: the smallest relative error r planted in {where} that the check finds "
        "(fails naming exactly that tensor), r = 1e-1 ... 1e-7; and the correct model's verdict"
    )
    index = {(o.model, o.tensor, o.dtype, o.settings): o for o in outcomes}
    rows = [["model", "tensor", "dtype", *(f"r {s}" for s in zoo.SETTINGS), *(f"correct {s}" for s in zoo.SETTINGS)]]
    for subject in subjects(element=bool(outcomes) and outcomes[0].plant == "element"):
        for dtype in DTYPES:
            for tensor in subject.tensors:
                mine = [index[(subject.kind, tensor, dtype, s)] for s in zoo.SETTINGS]
                rows.append([subject.kind, tensor, dtype, *map(_smallest, mine), *(o.false_alarm for o in mine)])
    print("\n".join(text_table(rows)))
    print("* not a detection: the correct model already fails naming this tensor")
    print(
        "\nSummary: tensors whose smallest r detected is 1e-3 or 1e-5 or smaller (rows marked * not counted) / "
        "tensors; correct models passing / checked, failing naming tensors, failing naming none"
    )
    rows = [["dtype", "settings", "1e-3 found", "1e-5 found", "correct pass", "false alarms", "not verified"]]
    for dtype in DTYPES:
        for settings in zoo.SETTINGS:
            mine = [o for o in outcomes if o.dtype == dtype and o.settings == settings]
            real = [o for o in mine if o.false_alarm != "FALSE ALARM"]
            models = {o.model: o for o in mine}.values()
            rows.append(
                [
                    dtype,
                    settings,
                    f"{sum(o.smallest_detected is not None and o.smallest_detected <= 1e-3 for o in real)}/{len(mine)}",
                    f"{sum(o.smallest_detected is not None and o.smallest_detected <= 1e-5 for o in real)}/{len(mine)}",
                    f"{sum(o.correct_passed for o in models)}/{len(models)}",
                    str(sum(bool(o.correct_failing) for o in models)),
                    str(sum(not o.correct_passed and not o.correct_failing for o in models)),
                ]
            )
    print("\n".join(text_table(rows)))


def _write_json(path: str, results: dict[str, Any]) -> None:
    """Write ``results``; with only some keys, update them in the JSON already there."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    previous: dict[str, Any] = {}
    if target.exists():
        try:
            previous = json.loads(target.read_text())
        except ValueError:
            previous = {}
    target.write_text(json.dumps(previous | results, indent=1))
    print(f"Wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "accuracy.json"))
    parser.add_argument("--only-power", action="store_true", help="run only the detection-power section, in-process")
    parser.add_argument(
        "--plant",
        choices=("tensor", "element"),
        default="tensor",
        help="power: plant r in the tensor or its largest element",
    )
    args = parser.parse_args()
    start = time.perf_counter()
    results: dict[str, Any] = {}
    if not args.only_power:
        with connect(ClusterConfig(workers=args.workers), 10**9) as client:
            outcomes = zoo_outcomes(client)
            subtle = subtle_outcomes(client)
            seed = seed_network(client)
        print_tables(outcomes, subtle, seed)
        print(f"\n{len(outcomes) + len(subtle) + len(seed)} checks in {time.perf_counter() - start:.0f} s")
        results = {
            "outcomes": [asdict(o) | {"right": o.right} for o in outcomes],
            "subtle": [asdict(o) | {"right": o.right} for o in subtle],
            "seed_network": seed,
        }
    started = time.perf_counter()
    power = power_outcomes(element=args.plant == "element")
    print_power(power)
    checks = sum(len(o.tried) for o in power) + len({(o.model, o.dtype, o.settings) for o in power})
    print(f"\n{checks} power checks in {time.perf_counter() - started:.0f} s, in this process")
    cost = second_look_cost()
    print_second_look(cost)
    _write_json(args.json, results | {"power": [o.to_dict() for o in power], "second_look": cost})


if __name__ == "__main__":
    main()
