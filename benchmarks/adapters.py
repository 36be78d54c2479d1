"""The framework adapters' batched paths against one call per perturbation, and against the frameworks' own checkers.

    python benchmarks/adapters.py            # about 10 minutes on 2 cores
    python benchmarks/adapters.py --quick    # smaller models, for a smoke run

Side by side in one run (this machine is shared and noisy: ratios, not absolute times):

1. A JAX MLP of about 1e5 parameters, a full check in this process with the default settings, on data of
   1 and of 16 rows (the batched path saves a call's overhead, so its gain shrinks as the loss's own work grows):
   ``JaxModel`` batched (its default) against the same ``JaxModel`` with ``batch="off"`` (one jitted
   loss call per perturbation); the two numeric gradients must agree within the scheme's error bars.
2. The same MLP in torch: ``TorchModel`` batched (``torch.func.vmap``) against ``batch=False``.
3. The custom-op examples (``gradcheck example torch-custom-op`` / ``jax-custom-vjp``): correct and
   planted, checked by gradcheck with default settings, by ``torch.autograd.gradcheck`` (fast mode off
   and on) and by ``jax.test_util.check_grads``: wall time, whether the planted bug is found, and
   whether the wrong tensor is named.

Writes ``benchmarks/results/adapters.json``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import itertools
import json
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import pipeline

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "adapters.json")


def _mlp_sizes(quick: bool) -> list[int]:
    # 128·256 + 256 + 256·256 + 256 + 256·16 + 16 = 103,696 parameters
    return [32, 64, 64, 8] if quick else [128, 256, 256, 16]


def _timed_check(model: Any, data: dict[str, np.ndarray], folder: str, name: str) -> tuple[float, Any, Any]:
    """Seconds for a full default check in this process, its report, and its output group (kept to compare)."""
    import zarr

    output = os.path.join(folder, f"{name}.zarr")
    start = time.perf_counter()
    report = pipeline.check(model, model.params, data, output=output)
    seconds = time.perf_counter() - start
    return seconds, report, zarr.open_group(output, mode="r")


def _agree_within_bars(a: Any, b: Any) -> dict[str, Any]:
    """Whether two runs' numeric gradients agree within the sum of their error bars (allowances)."""
    na, nb = np.asarray(a["numeric"][:]), np.asarray(b["numeric"][:])
    bars = np.asarray(a["allowed"][:]) + np.asarray(b["allowed"][:])
    gap = np.abs(na - nb)
    return {
        "within_bars": bool(np.all(gap <= bars)),
        "max_gap_over_bar": float(np.max(gap / np.maximum(bars, np.finfo(np.float64).tiny))),
        "identical": bool(np.array_equal(na, nb)),
    }


def _data(rng: np.random.Generator, sizes: list[int], rows: int) -> dict[str, np.ndarray]:
    return {
        "x": rng.normal(size=(rows, sizes[0])).astype(np.float32),
        "y": rng.normal(size=(rows, sizes[-1])).astype(np.float32),
    }


def _side_by_side(batched: Any, plain: Any, data: dict[str, np.ndarray], folder: str, rows: int) -> dict[str, Any]:
    """The same check of the same model, batched and one call per perturbation, one after the other."""
    kind = type(batched).__name__
    t_batched, r_batched, out_batched = _timed_check(batched, data, folder, f"{kind}-batched-{rows}")
    t_plain, r_plain, out_plain = _timed_check(plain, data, folder, f"{kind}-plain-{rows}")
    return {
        "n_params": r_batched.n_params,
        "data_rows": rows,
        "batched_seconds": t_batched,
        "plain_seconds": t_plain,
        "speedup": t_plain / t_batched,
        "verdicts": [r_batched.verdict, r_plain.verdict],
        "evaluation": r_batched.evaluation,
        "loss_evaluations": [r_batched.timings.get("loss_evaluations"), r_plain.timings.get("loss_evaluations")],
        **_agree_within_bars(out_batched, out_plain),
    }


def jax_mlp(quick: bool, folder: str, rows: int) -> dict[str, Any]:
    import jax.numpy as jnp

    from pipeline.adapters.jax import JaxModel

    sizes = _mlp_sizes(quick)
    rng = np.random.default_rng(0)
    params = [
        {"w": (rng.normal(size=(a, b)) / np.sqrt(a)).astype(np.float32), "b": np.zeros(b, np.float32)}
        for a, b in itertools.pairwise(sizes)
    ]
    data = _data(rng, sizes, rows)

    def loss_fn(p: Any, d: Any) -> Any:
        h = d["x"]
        for k, layer in enumerate(p):
            h = h @ layer["w"] + layer["b"]
            h = jnp.tanh(h) if k < len(p) - 1 else h
        return jnp.mean((h - d["y"]) ** 2)

    return _side_by_side(JaxModel(loss_fn, params), JaxModel(loss_fn, params, batch="off"), data, folder, rows)


def torch_mlp(quick: bool, folder: str, rows: int) -> dict[str, Any]:
    import torch

    from pipeline.adapters.torch import TorchModel

    sizes = _mlp_sizes(quick)
    torch.manual_seed(0)
    layers: list[torch.nn.Module] = []
    for k, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers += [torch.nn.Linear(a, b)] + ([torch.nn.Tanh()] if k < len(sizes) - 2 else [])
    net = torch.nn.Sequential(*layers)
    rng = np.random.default_rng(0)
    data = _data(rng, sizes, rows)

    def loss_fn(m: torch.nn.Module, d: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.mean((m(d["x"]) - d["y"]) ** 2)

    return _side_by_side(TorchModel(net, loss_fn), TorchModel(net, loss_fn, batch=False), data, folder, rows)


def _time(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    try:
        value: Any = fn()
    except Exception as e:  # the frameworks' checkers raise on a mismatch
        value = e
    return time.perf_counter() - start, value


def against_frameworks() -> dict[str, Any]:
    """gradcheck, torch.autograd.gradcheck (fast mode off, on) and jax's check_grads on the custom-op examples."""
    results: dict[str, Any] = {}
    for module_name in ("torch_custom_op", "jax_custom_vjp"):
        example = importlib.import_module(f"pipeline.examples.{module_name}")
        for planted in (False, True):
            model = example.planted if planted else example.correct
            seconds, report = _time(lambda: pipeline.check(model, model.params, example.data()))  # noqa: B023
            row: dict[str, Any] = {
                "gradcheck": {"seconds": seconds, "verdict": report.verdict, "failing": list(report.failing)},
                "planted_tensor": example.PLANTED_TENSOR if planted else None,
            }
            for name, run in example.framework_checks(planted).items():
                took, outcome = _time(run)
                failed = isinstance(outcome, Exception) or outcome is False
                first = (str(outcome).strip().splitlines() or [""])[0][:160] if failed else ""
                row[name] = {"seconds": took, "found": failed, "message": first}
            results[f"{module_name} {'planted' if planted else 'correct'}"] = row
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller MLPs (a smoke run)")
    parser.add_argument(
        "--rows", default="1,16", help="the data's batch sizes to run the MLPs with, comma-separated (default 1,16)"
    )
    args = parser.parse_args()
    missing = [name for name in ("torch", "jax") if importlib.util.find_spec(name) is None]
    if missing:
        parser.exit(2, f'{parser.prog}: needs {" and ".join(missing)}: pip install -e ".[bench,torch,jax]"\n')
    sizes = [int(r) for r in args.rows.split(",")]
    with tempfile.TemporaryDirectory() as folder:
        results: dict[str, Any] = {
            "jax_mlp": [jax_mlp(args.quick, folder, rows) for rows in sizes],
            "torch_mlp": [torch_mlp(args.quick, folder, rows) for rows in sizes],
            "custom_ops": against_frameworks(),
        }
    for key in ("jax_mlp", "torch_mlp"):
        for r in results[key]:
            print(
                f"{key}: {r['n_params']} parameters, data of {r['data_rows']} rows: batched {r['batched_seconds']:.2f} s, "
                f"one call per perturbation {r['plain_seconds']:.2f} s: {r['speedup']:.1f}x; verdicts {r['verdicts']}; "
                f"numeric gradients within bars: {r['within_bars']} (max gap/bar {r['max_gap_over_bar']:.3g}, "
                f"identical: {r['identical']})"
            )
        print(f"  {results[key][0]['evaluation']}")
    print("\ncustom ops (seconds; found: whether the check failed; gradcheck names the failing tensors):")
    for label, row in results["custom_ops"].items():
        cells = []
        for name, cell in row.items():
            if name == "planted_tensor":
                continue
            if name == "gradcheck":
                cells.append(f"gradcheck {cell['seconds']:.2f}s {cell['verdict']} {cell['failing']}")
            else:
                cells.append(f"{name} {cell['seconds']:.2f}s found={cell['found']}")
        print(f"  {label} (planted in {row['planted_tensor']}): " + "; ".join(cells))
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
    print(f"\nwritten to {RESULTS}")


if __name__ == "__main__":
    main()
