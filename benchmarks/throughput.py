"""Throughput of the pipeline against the black-box limit, the seed's loop and scipy, in one run.

Usage: pip install -e ".[bench]" && python benchmarks/throughput.py [--models seed,mlp-1e4,...] [--json PATH]

A full check of n indices costs 2n loss evaluations; on c cores no black-box method
can finish faster than 2n·t_loss/c. For each model this prints:

- t_loss alone, in this process (best of short bursts), and sustained for 2 s inside every
  worker of each run at once, just before it: the figure efficiency is judged by;
- the seed's loop (copy the vector, perturb, rebuild the dict, two losses per index) and
  scipy's approx_derivative(method='3-point'), each on one core, the fastest of repeats
  within a second; on large models they are timed on the first --baseline-indices
  indices and scaled to n (marked "~");
- the pipeline on 1 worker and on all cores: wall time with and without cluster start-up,
  efficiency = 2n·t_loss(worker) / (wall·workers), the time of the loss evaluations
  alone, the loss-equivalents an index cost (2, fewer for a staged model: its
  efficiency can pass 1) and peak memory per worker.

Every process is held to one BLAS thread, as the pipeline's workers are, so that a core
is a core. Figures are ratios within one run: the machine is shared.
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"  # before numpy is imported

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import pipeline  # noqa: E402
import pipeline.storage.inputs  # noqa: E402
from pipeline.api import make_problem  # noqa: E402
from pipeline.config import ClusterConfig, Config  # noqa: E402
from pipeline.examples import mlp, seed_mlp  # noqa: E402
from pipeline.execution.cluster import connect, worker_addresses  # noqa: E402
from pipeline.storage.inputs import write_group  # noqa: E402

Arrays = dict[str, np.ndarray]
MODELS: dict[str, Callable[[], tuple[str, Any, Arrays, Arrays]]] = {
    "seed": lambda: ("pipeline.examples.seed_mlp:correct", seed_mlp.correct, *seed_mlp.problem()),
    # t_loss of 1 ms or more, sustained, as the efficiency target asks.
    "mlp-1e4": lambda: ("pipeline.examples.mlp:mlp", mlp.mlp, *mlp.problem((64, 96, 96, 1), batch=768)),
    "mlp-2e5": lambda: ("pipeline.examples.mlp:mlp", mlp.mlp, *mlp.problem((256, 512, 128, 1), batch=16)),
    # The same 4-layer MLP, plain and declaring its stages: past the black-box limit.
    "mlp4": lambda: ("pipeline.examples.mlp:mlp", mlp.mlp, *mlp.problem((32, 64, 64, 64, 1), batch=256)),
    "mlp4-staged": lambda: ("pipeline.examples.mlp:staged4", mlp.staged4, *mlp.problem((32, 64, 64, 64, 1), batch=256)),
    # Four equal layers: the most a staged check can save when a layer costs in proportion to its
    # parameters, 1 / (1/2 + 1/(2·4)) = 1.6x fewer loss-equivalents.
    "mlp4-equal": lambda: ("pipeline.examples.mlp:mlp", mlp.mlp, *mlp.problem((64, 64, 64, 64, 64), batch=256)),
    "mlp4-equal-staged": lambda: (
        "pipeline.examples.mlp:staged4",
        mlp.staged4,
        *mlp.problem((64, 64, 64, 64, 64), batch=256),
    ),
}


def loss_seconds(model: Any, params: Arrays, data: Arrays, budget: float = 1.0) -> float:
    """The fastest of repeated batches of loss evaluations, per evaluation."""
    model.loss(params, data)
    best, spent = float("inf"), 0.0
    while spent < budget:
        start = time.perf_counter()
        for _ in range(10):
            model.loss(params, data)
        took = time.perf_counter() - start
        best, spent = min(best, took / 10), spent + took
    return best


def sustained_loss_seconds(ref: str, params: Arrays, data: Arrays, seconds: float = 2.0) -> float:
    """The mean time of a loss evaluated over and over for ``seconds``.

    Not the best of short bursts: this machine runs bursts about twice as fast as
    sustained load (a plain process here: 0.59 ms best-of, 1.1-1.5 ms sustained), and a
    check is sustained load.
    """
    model = pipeline.model.load_model(ref)
    model.loss(params, data)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        model.loss(params, data)
        count += 1
    return (time.perf_counter() - start) / count


def best_seconds(run: Callable[[], Any], budget: float = 1.0) -> float:
    """The fastest of repeated runs, run at least once and again until ``budget`` seconds are spent:
    a baseline as warm as the pipeline's workers are (a 47-parameter loop run once, cold, takes
    up to twice as long)."""
    best, spent = float("inf"), 0.0
    while spent < budget:
        start = time.perf_counter()
        run()
        took = time.perf_counter() - start
        best, spent = min(best, took), spent + took
    return best


def seed_loop(model: Any, params: Arrays, data: Arrays, indices: int) -> None:
    """The seed's loop over the first ``indices`` indices: copy the vector, perturb, rebuild the dict, two losses."""
    names = list(params)
    theta = np.concatenate([params[n].reshape(-1) for n in names])
    offsets = np.cumsum([0] + [params[n].size for n in names])

    def as_dict(vector: np.ndarray) -> Arrays:
        return {n: vector[offsets[k] : offsets[k + 1]].reshape(params[n].shape) for k, n in enumerate(names)}

    for i in range(indices):
        plus, minus = np.copy(theta), np.copy(theta)
        plus[i] += 1e-7
        minus[i] -= 1e-7
        _ = (model.loss(as_dict(plus), data) - model.loss(as_dict(minus), data)) / 2e-7


def seed_loop_seconds(model: Any, params: Arrays, data: Arrays, indices: int) -> float:
    """The seed's loop over the first ``indices`` indices (the fastest of :func:`best_seconds`)."""
    return best_seconds(lambda: seed_loop(model, params, data, indices))


def scipy_seconds(model: Any, params: Arrays, data: Arrays, indices: int) -> float:
    """scipy's 3-point approx_derivative over the first ``indices`` indices (the rest held fixed; the
    fastest of :func:`best_seconds`)."""
    from scipy.optimize._numdiff import approx_derivative

    names = list(params)
    theta = np.concatenate([params[n].reshape(-1) for n in names])
    offsets = np.cumsum([0] + [params[n].size for n in names])

    def loss(sub: np.ndarray) -> float:
        vector = theta.copy()
        vector[:indices] = sub
        return float(
            model.loss(
                {n: vector[offsets[k] : offsets[k + 1]].reshape(params[n].shape) for k, n in enumerate(names)}, data
            )
        )

    return best_seconds(lambda: approx_derivative(loss, theta[:indices], method="3-point"))


#: Models this small are also timed sustained inside the workers (:func:`check_rates_in_worker`).
SUSTAINED_MAX_PARAMS = 1000


def check_rates_in_worker(problem: Any, params: Arrays, data: Arrays, rounds: int = 5) -> dict[str, float]:
    """Seconds per whole check, sustained, inside this worker: the seed's loop against the
    evaluation a pipeline shard runs over every index (``groups.first_pass``, what a run's
    ``evaluate_seconds`` times), alternating in rounds of 0.2 s each so both see the same load.

    Like for like, both warm: a single evaluation of a 47-index shard after even 10 ms idle costs
    300-600 µs on this machine in a plain process as well (cold caches), whichever code runs.
    """
    from pipeline.execution import dask
    from pipeline.numerics import groups as shard_groups

    loaded, _ = dask._load(problem)  # the model, parameters and data, as a shard has them
    model, layout = loaded.model, problem.settings.layout
    groups = shard_groups.by_dtype([(spec, np.arange(lo, hi)) for spec, lo, hi in layout.segments(0, layout.n_params)])
    spent = {"seed_loop": 0.0, "evaluate": 0.0}
    counts = dict.fromkeys(spent, 0)
    runs: dict[str, Callable[[], Any]] = {
        "seed_loop": lambda: seed_loop(model, params, data, layout.n_params),
        "evaluate": lambda: shard_groups.first_pass(loaded, groups),
    }
    for run in runs.values():
        run()  # warm
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            while time.perf_counter() - start < 0.2:
                run()
                counts[name] += 1
            spent[name] += time.perf_counter() - start
    return {name: spent[name] / counts[name] for name in spent}


def pipeline_run(ref: str, folder: Path, workers: int) -> dict[str, float]:
    """A full check on a fresh local cluster of ``workers``; wall from before the cluster starts."""
    config = Config.from_dict(
        {
            "model": ref,
            "params": str(folder / "params.zarr"),
            "data": str(folder / "data.zarr"),
            "output": str(folder / f"out-{workers}.zarr"),
            "scheme": "central",  # 2 losses per index: the black-box limit 2n·t_loss is about this scheme
            "epsilon": 1e-6,
        }
    )
    start = time.perf_counter()
    with connect(ClusterConfig(workers=workers), 10**9) as client:
        up = time.perf_counter()
        # t_loss in these very workers, all at once (as loaded as during the run), just
        # before the run: the machine is shared, and figures a minute apart differ.
        params = pipeline.storage.inputs.read_arrays("params", config.params)
        data = pipeline.storage.inputs.read_arrays("data", config.data)
        addresses = worker_addresses(client)
        futures = [client.submit(sustained_loss_seconds, ref, params, data, workers=[a], pure=False) for a in addresses]
        t_worker = sum(f.result() for f in futures) / len(futures)
        ready = time.perf_counter()
        report = pipeline.run(config, client=client, overwrite=True)
        done = time.perf_counter()
        peak_kib = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        rates = {}
        if sum(a.size for a in params.values()) <= SUSTAINED_MAX_PARAMS:  # a whole check is one small shard
            layout = pipeline.storage.inputs.read_layout(config.params)
            # The run's own problem, as the shards got it (the noise only sets error bars: timing alone here).
            problem = make_problem(config, layout, ref)
            problem = dataclasses.replace(
                problem, settings=dataclasses.replace(problem.settings, loss0=report.loss, noise=())
            )
            checks = [
                client.submit(check_rates_in_worker, problem, params, data, workers=[a], pure=False) for a in addresses
            ]
            per_worker: list[dict[str, float]] = [f.result() for f in checks]
            rates = {
                f"sustained_{name}_seconds": sum(r[name] for r in per_worker) / len(per_worker)
                for name in per_worker[0]
            }
    return {
        **rates,
        "t_loss_worker_seconds": t_worker,
        "wall_seconds": (up - start) + (done - ready),
        "startup_seconds": up - start,
        "shards_seconds": report.timings["shards_seconds"],
        "evaluate_seconds": report.timings["evaluate_seconds"],
        "loss_equivalents_per_index": report.timings["loss_equivalents_per_index"],
        "run_seconds": done - ready,
        "shard_size": report.timings["shard_size"],
        "peak_worker_mib": max(peak_kib.values()) / 1024,
        "difference": report.difference,
    }


def bench(name: str, baseline_indices: int, cores: int) -> dict[str, Any]:
    ref, model, params, data = MODELS[name]()
    n = sum(p.size for p in params.values())
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        write_group(str(folder / "params.zarr"), params, {"order": list(params)})
        write_group(str(folder / "data.zarr"), data)
        t_loss = loss_seconds(model, params, data)
        k = min(n, baseline_indices)
        loop = seed_loop_seconds(model, params, data, k) * n / k
        scipy = scipy_seconds(model, params, data, k) * n / k
        runs = {w: pipeline_run(ref, folder, w) for w in sorted({1, cores})}
    row: dict[str, Any] = {
        "model": name,
        "n_params": n,
        "t_loss_seconds": t_loss,
        "baselines_extrapolated_from": k,
        "seed_loop_seconds": loop,
        "scipy_seconds": scipy,
        "params_and_data_mib": (sum(a.nbytes for a in params.values()) + sum(a.nbytes for a in data.values())) / 2**20,
        "runs": {},
    }
    for w, r in runs.items():
        limit = 2 * n * r["t_loss_worker_seconds"]  # the black-box limit on one core
        row["runs"][w] = {
            **r,
            "efficiency": limit / (r["shards_seconds"] * w),
            "efficiency_with_startup": limit / (r["wall_seconds"] * w),
            "speedup_vs_seed_loop": loop / r["wall_seconds"],
            "evaluate_speedup_vs_seed_loop": loop / r["evaluate_seconds"],
            **(
                {"sustained_speedup_vs_seed_loop": r["sustained_seed_loop_seconds"] / r["sustained_evaluate_seconds"]}
                if "sustained_evaluate_seconds" in r
                else {}
            ),
            "speedup_vs_scipy": scipy / r["wall_seconds"],
        }
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)} (default: all)"
    )
    parser.add_argument("--baseline-indices", type=int, default=4000)
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "throughput.json")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    rows = [bench(name, args.baseline_indices, cores) for name in args.models.split(",")]
    print(
        f"{'model':8} {'n':>7} {'t_loss':>9} {'in worker':>9} {'seed loop':>10} {'scipy':>9} "
        f"{'workers':>7} {'wall':>8} {'no start':>8} {'eff':>5} {'eff+start':>9} {'vs loop':>8} {'vs scipy':>8} {'evaluate':>9} {'vs loop':>8} {'loss-eq':>7} {'peak MiB':>8}"
    )
    for row in rows:
        mark = "~" if row["baselines_extrapolated_from"] < row["n_params"] else " "
        for w, r in row["runs"].items():
            print(
                f"{row['model']:8} {row['n_params']:7d} {row['t_loss_seconds'] * 1e3:7.3f}ms {r['t_loss_worker_seconds'] * 1e3:7.3f}ms "
                f"{mark}{row['seed_loop_seconds']:8.4f}s {mark}{row['scipy_seconds']:7.3f}s {w:7d} {r['wall_seconds']:7.2f}s "
                f"{r['shards_seconds']:7.2f}s {r['efficiency']:5.2f} {r['efficiency_with_startup']:9.2f} "
                f"{r['speedup_vs_seed_loop']:7.2f}x {r['speedup_vs_scipy']:7.2f}x {r['evaluate_seconds'] * 1e3:7.2f}ms "
                f"{r['evaluate_speedup_vs_seed_loop']:7.1f}x {r['loss_equivalents_per_index']:7.2f} {r['peak_worker_mib']:8.1f}"
            )
    for row in rows:
        for w, r in row["runs"].items():
            if "sustained_evaluate_seconds" in r:
                print(
                    f"{row['model']} on {w} worker(s), a whole check sustained in each worker: the seed's loop "
                    f"{r['sustained_seed_loop_seconds'] * 1e3:.3f} ms, the shard's evaluation "
                    f"{r['sustained_evaluate_seconds'] * 1e3:.3f} ms: {r['sustained_speedup_vs_seed_loop']:.1f}x"
                )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"format_version": 1, "cores": cores, "models": rows}, indent=2))
    print(
        f"(efficiency = 2n·t_loss(worker) / (time·workers); ~ = extrapolated from the first indices; JSON: {args.json})"
    )


if __name__ == "__main__":
    main()
