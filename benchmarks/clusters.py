"""Wall time of the same check on a LocalCluster and on clusters started with `dask scheduler` / `dask worker`.

Usage: python benchmarks/clusters.py [--repeats N] [--workers N] [--json PATH]

The check is the throughput benchmark's mlp-1e4 (about 10^4 parameters, a loss of
about 1 ms), `scheme: central`, ε 1e-6, run as `gradcheck run` in a fresh process:
1. on its own LocalCluster (`--workers N`; cluster start-up included in the wall time);
2. on a CLI-started cluster of N single-threaded workers, by address (plain TCP), as
   `dask worker` starts them by default (the nanny sets MALLOC_TRIM_THRESHOLD_);
3. the same with deploy/dask/dask.yaml as the workers' Dask configuration (it unsets it);
4. on such a cluster over mutual TLS, with certificates made here;
5. as `gradcheck submit` on it, followed with `gradcheck status`'s reader to the end.
Each is the median of --repeats runs (`--overwrite`); the clusters start once, before
the timed runs. Ratios within one run are what compare on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.errors import GradcheckError  # noqa: E402
from pipeline.examples import mlp  # noqa: E402
from pipeline.execution import jobs  # noqa: E402
from pipeline.storage.inputs import write_group  # noqa: E402
from tests.clusters import Certificates, dask_cluster, make_certificates  # noqa: E402


def _gradcheck(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True, check=False, cwd=REPO
    )


def _timed(run: Callable[[], dict[str, Any]], repeats: int) -> dict[str, float]:
    walls, shards = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        report = run()
        walls.append(time.perf_counter() - start)
        shards.append(report["timings"]["shards_seconds"])
    return {"wall_seconds": statistics.median(walls), "shards_seconds": statistics.median(shards)}


def _run(config: Path, *where: str) -> dict[str, Any]:
    result = _gradcheck("run", str(config), "--overwrite", "--json", "--no-progress", *where)
    if result.returncode != 0:
        raise SystemExit(f"gradcheck run {' '.join(where)} failed: {result.stderr.strip()}")
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def _submitted(config: Path, output: Path, address: str) -> dict[str, Any]:
    submitted = _gradcheck("submit", str(config), "--overwrite", "--scheduler", address)
    if submitted.returncode != 0:
        raise SystemExit(f"gradcheck submit failed: {submitted.stderr.strip()}")
    # In this process: a `gradcheck status` process every poll would take a core from the workers.
    while _state(output) != "finished":
        time.sleep(0.2)
    report: dict[str, Any] = json.loads(_gradcheck("report", str(output), "--json").stdout)
    return report


def _state(output: Path) -> str:
    try:
        return jobs.status(str(output)).state
    except GradcheckError:
        return "not started"  # the output is not there yet, or has no progress record


def _on_cluster(case: str, config: Path, address: str, certificates: Certificates | None) -> Callable[[], Any]:
    """One timed run of ``case`` on the cluster at ``address``."""
    if case == "submitted":
        return lambda: _submitted(config, config.parent / "out.zarr", address)
    tls: tuple[str, ...] = ()
    if certificates is not None:
        tls = (
            f"--set=cluster.security.ca={certificates.ca}",
            f"--set=cluster.security.cert={certificates.client_cert}",
            f"--set=cluster.security.key={certificates.client_key}",
        )
    return lambda: _run(config, "--scheduler", address, *tls)


CASES = ("local", "cli_tcp", "cli_tcp_config", "cli_tls_config", "submitted")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gradcheck-clusters-") as scratch:
        folder = Path(scratch)
        params, data = mlp.problem((64, 96, 96, 1), batch=768)
        write_group(str(folder / "params.zarr"), params, {"order": list(params)})
        write_group(str(folder / "data.zarr"), data)
        config = folder / "check.yaml"
        config.write_text(
            "model: pipeline.examples.mlp:mlp\nparams: params.zarr\ndata: data.zarr\noutput: out.zarr\n"
            "scheme: central\nepsilon: 1.0e-6\n"
        )
        n = sum(a.size for a in params.values())
        results: dict[str, Any] = {"n_params": n, "workers": args.workers, "repeats": args.repeats}
        cases = args.cases.split(",")
        untrimmed = {"DASK_CONFIG": str(REPO / "deploy" / "dask")}
        for case in cases:
            if case == "local":
                results[case] = _timed(lambda: _run(config, "--workers", str(args.workers)), args.repeats)
                continue
            certificates = make_certificates(folder / "certs") if case == "cli_tls_config" else None
            env = {} if case == "cli_tcp" else untrimmed
            with dask_cluster(folder / case, workers=args.workers, certificates=certificates, env=env) as cluster:
                results[case] = _timed(_on_cluster(case, config, cluster.address, certificates), args.repeats)
    print(f"{n} parameters, {args.workers} workers, median of {args.repeats}:")
    print(f"{'where':<16} {'wall s':>8} {'shards s':>9} {'wall / ' + cases[0]:>13}")
    for key in cases:
        row = results[key]
        ratio = row["wall_seconds"] / results[cases[0]]["wall_seconds"]
        print(f"{key:<16} {row['wall_seconds']:>8.2f} {row['shards_seconds']:>9.2f} {ratio:>13.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
