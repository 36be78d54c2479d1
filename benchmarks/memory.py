"""Peak memory of a worker checking a 10^7-parameter model (issue 5's memory target).

Usage: python benchmarks/memory.py [--sizes 2500,2000,2500,1] [--batch 4] [--sampled K] [--json PATH]

With --sampled K, a whole check runs instead (pipeline.run on a 1-worker LocalCluster):
K random elements per tensor and 4 random directions per tensor, central differences.

A full check of 10^7 indices is 2·10^7 losses, so until sampling exists this runs the
worker's real path on part of the index space: the probe (loss and gradient at θ), the
analytic write, then shards in every tensor, on a 1-worker LocalCluster. It reports the
worker's resident memory before the run (its baseline), the peak over it, the growth
from the first shard to the last (a per-index allocation would show there), and the
bound 1.5 × (params + data) + the model's working set (here its gradient, the size of
the parameters).
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.api import run  # noqa: E402
from pipeline.config import ClusterConfig, Config  # noqa: E402
from pipeline.examples import mlp  # noqa: E402
from pipeline.execution import dask as tasks  # noqa: E402
from pipeline.execution.cluster import connect  # noqa: E402
from pipeline.numerics.plan import make_plan, slots_for  # noqa: E402
from pipeline.numerics.problem import Settings  # noqa: E402
from pipeline.storage import inputs, output  # noqa: E402

MIB = 2**20


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2500,2000,2500,1")
    parser.add_argument("--batch", type=int, default=4)
    # Output chunks are shards: small shards of a 10^7 model mean millions of chunk files.
    parser.add_argument("--shard-size", type=int, default=4096)
    parser.add_argument("--sampled", type=int, default=0, help="run a whole sampled check, K elements per tensor")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.json is None:
        name = f"memory-sampled-{args.sampled}.json" if args.sampled else "memory.json"
        args.json = REPO / "benchmarks" / "results" / name
    params, data = mlp.problem([int(s) for s in args.sizes.split(",")], batch=args.batch)
    n = sum(p.size for p in params.values())
    store_mib = (sum(p.nbytes for p in params.values()) + sum(d.nbytes for d in data.values())) / MIB
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        inputs.write_group(str(folder / "params.zarr"), params, {"order": list(params)})
        inputs.write_group(str(folder / "data.zarr"), data)
        grad_mib = sum(p.nbytes for p in params.values()) / MIB  # what model.grad returns
        del params, data
        layout = inputs.read_layout(str(folder / "params.zarr"))
        problem = tasks.Problem(
            run_id=uuid.uuid4().hex,
            model="pipeline.examples.mlp:mlp",
            params=str(folder / "params.zarr"),
            data=str(folder / "data.zarr"),
            gradient=None,
            output=str(folder / "out.zarr"),
            settings=Settings(layout=layout, epsilon=1e-6, worst=10, scheme="central"),
        )
        plan = make_plan(n, args.shard_size)
        # Shards at the start of every tensor: each tensor's perturbation path runs.
        chosen = [plan[spec.offset // args.shard_size] for spec in layout.tensors]
        if args.sampled:
            sampled = _sampled_run(problem, args.sampled)
            bound = 1.5 * store_mib + grad_mib
            sampled |= {"n_params": n, "params_and_data_mib": store_mib, "bound_mib": bound}
            over = float(sampled["worker_peak_mib"]) - float(sampled["worker_baseline_mib"])  # type: ignore[arg-type]
            print(f"parameters                    {n:,} ({store_mib:.1f} MiB with the data)")
            print(f"a whole sampled check         {sampled['seconds']:.1f} s, verdict {sampled['passed']}")
            print(f"  {sampled['n_checked']} elements and {sampled['directions']} directions checked")
            print(f"worker peak over its baseline {over:8.1f} MiB; bound {bound:.1f} MiB -> {over / bound:.2f} of it")
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(sampled, indent=2))
            return
        with connect(ClusterConfig(workers=1), 1) as client:
            baseline = next(iter(client.run(_rss_mib).values()))
            start = time.perf_counter()
            client.submit(tasks.probe_task, problem, pure=False).result()
            output.prepare_output(
                problem.output, layout, slots_for(layout, None), args.shard_size, "memory-benchmark", overwrite=True
            )
            client.submit(tasks.analytic_task, problem, (), (), pure=False).result()
            after_analytic = next(iter(client.run(_rss_mib).values()))
            rss_after_shards = []
            for shard in chosen:
                client.submit(tasks.shard_task, problem, shard, pure=False).result()
                rss_after_shards.append(next(iter(client.run(_rss_mib).values())))
            seconds = time.perf_counter() - start
            peak = next(iter(client.run(_peak_mib).values()))
    bound = 1.5 * store_mib + grad_mib
    figures = {
        "format_version": 1,
        "n_params": n,
        "params_and_data_mib": store_mib,
        "worker_baseline_mib": baseline,
        "worker_peak_mib": peak,
        "peak_over_baseline_mib": peak - baseline,
        "bound_mib": bound,
        "rss_after_analytic_mib": after_analytic,
        "rss_after_each_shard_mib": rss_after_shards,
        "shards": [[s.start, s.stop] for s in chosen],
        "seconds": seconds,
    }
    print(f"parameters                    {n:,} ({store_mib:.1f} MiB with the data)")
    print(f"worker before the run         {baseline:8.1f} MiB")
    print(f"worker peak                   {peak:8.1f} MiB   (+{peak - baseline:.1f} MiB over its baseline)")
    print(
        f"bound 1.5 (params+data)+grad  {bound:8.1f} MiB   -> peak over baseline is {(peak - baseline) / bound:.2f} of it"
    )
    print(f"resident after the analytic   {after_analytic:8.1f} MiB")
    print(
        f"resident after each shard     {', '.join(f'{r:.1f}' for r in rss_after_shards)} MiB (growth {rss_after_shards[-1] - rss_after_shards[0]:+.1f})"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=2))


def _sampled_run(problem: tasks.Problem, k: int) -> dict[str, object]:
    """A whole check through pipeline.run: k elements per tensor, 4 directions per tensor."""
    config = Config.from_dict(
        {
            "model": "pipeline.examples.mlp:mlp",
            "params": problem.params,
            "data": problem.data,
            "output": problem.output,
            "scheme": "central",
            "indices": {"sample_per_tensor": k, "seed": 0},
            "directions": 4,
        }
    )
    with connect(ClusterConfig(workers=1), 1) as client:
        baseline = next(iter(client.run(_rss_mib).values()))
        start = time.perf_counter()
        report = run(config, client=client)
        seconds = time.perf_counter() - start
        peak = next(iter(client.run(_peak_mib).values()))
    return {
        "format_version": 1,
        "sampled_per_tensor": k,
        "n_checked": report.n_checked,
        "directions": len(report.directions),
        "passed": report.passed,
        "difference": report.difference,
        "seconds": seconds,
        "loss_evaluations": report.timings["loss_evaluations"],
        "worker_baseline_mib": baseline,
        "worker_peak_mib": peak,
    }


if __name__ == "__main__":
    main()
