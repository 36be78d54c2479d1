"""In-process checks against Dask ones, in one run: per-check time, a plain script, a pytest file, bit-identity.

Usage: python benchmarks/inline.py [--repeats N] [--json PATH]

Measures, on the seed network (47 parameters, the README's example):

- ``pipeline.check`` in this process, warm, per check (default settings and the seed's),
  against the same check on a shared Dask client (two worker processes) and on a new
  local cluster per check;
- ``python script.py`` doing one check end to end, imports included;
- ``pytest`` on a file of 20 seed-sized checks through the ``gradcheck`` fixture (the
  whole command: interpreter, pytest and plugin start-up included);
- whether an in-process run and a Dask run give the same report, bit for bit, on every
  example model and scheme (as ``tests/test_inline.py`` checks them).

Targets (issue 13): <= 20 ms per in-process check, <= 1.5 s for the script, <= 3 s for the
pytest file. Times are the median of ``--repeats`` (best in brackets): this machine is shared.
Commands run with Python's bytecode cache on, after one warm-up run that fills it.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
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

import numpy as np  # noqa: E402

import pipeline  # noqa: E402
from pipeline.examples import mlp, seed_mlp, zoo  # noqa: E402

SCRIPT = """\
import pipeline
from pipeline.examples import seed_mlp

report = pipeline.check(seed_mlp.planted, *seed_mlp.problem())
print(report.passed, report.failing)
"""

TEST_FILE = """\
import pytest
from pipeline.examples import seed_mlp

PARAMS, DATA = seed_mlp.problem()


@pytest.mark.parametrize("k", range(20))
def test_seed_network(gradcheck, k):
    gradcheck(seed_mlp.correct, PARAMS, DATA)
"""


def _times(run: Callable[[], Any], repeats: int) -> list[float]:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return seconds


def _summary(seconds: list[float]) -> dict[str, float]:
    return {"median_seconds": statistics.median(seconds), "best_seconds": min(seconds)}


def _command(args: list[str], cwd: Path) -> Callable[[], None]:
    # As on a user's machine, where Python caches bytecode: this sandbox sets PYTHONDONTWRITEBYTECODE,
    # which recompiles every module of pytest, numpy and ours at each start (about 1 s more).
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)

    def run() -> None:
        done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")

    return run


def _without_timings(report: pipeline.Report) -> dict[str, Any]:
    """The report less what differs between any two runs: its timings and its cost (wall time, memory)."""
    as_dict = report.to_dict()
    del as_dict["timings"], as_dict["cost"]
    return as_dict


def bit_identity(client: Any) -> dict[str, Any]:
    """Every example model (and a planted bug of each zoo model) under every scheme it supports."""
    cases: list[tuple[str, Any, tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]] = [
        ("seed-correct", seed_mlp.correct, seed_mlp.problem()),
        ("seed-planted", seed_mlp.planted, seed_mlp.problem()),
        ("mlp", mlp.mlp, mlp.problem(sizes=(4, 5, 1), batch=8)),
        ("mlp-staged", mlp.staged(3), mlp.problem(sizes=(4, 5, 3, 1), batch=8)),
        *((kind, zoo.model(kind), zoo.model(kind).problem()) for kind in zoo.MODELS),
        *((f"{kind}-float32", zoo.model(kind), zoo.model(kind).problem(np.float32)) for kind in zoo.MODELS),
        *(
            (f"{kind}-{bug}", zoo.planted(kind, bug), zoo.model(kind).problem())
            for kind in zoo.MODELS
            for bug, _ in zoo.model(kind).bugs()[:1]
        ),
    ]
    compared, differing = 0, []
    for name, model, (params, data) in cases:
        schemes = ["central", "richardson", *(["complex-step"] if getattr(model, "complex_step", False) else [])]
        for scheme in schemes:
            settings: dict[str, Any] = {"scheme": scheme, "shard_size": 7, "directions": 1}
            inline = pipeline.check(model, params, data, **settings)
            on_dask = pipeline.check(model, params, data, client=client, **settings)
            compared += 1
            if _without_timings(inline) != _without_timings(on_dask):
                differing.append(f"{name}/{scheme}")
    return {"compared": compared, "differing": differing}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "inline.json")
    args = parser.parse_args()
    logging.getLogger("distributed").setLevel(logging.ERROR)
    params, data = seed_mlp.problem()
    figures: dict[str, Any] = {"format_version": 1}

    variants: dict[str, dict[str, Any]] = {
        "default": {},
        "seed": {"scheme": "central", "epsilon": 1e-7, "threshold": 2e-7},
    }
    for label, settings in variants.items():
        pipeline.check(seed_mlp.correct, params, data, **settings)  # warm
        figures[f"inline_check_{label}"] = _summary(
            _times(functools.partial(pipeline.check, seed_mlp.correct, params, data, **settings), 5 * args.repeats)
        )

    from pipeline.config import ClusterConfig
    from pipeline.execution.cluster import connect

    with connect(ClusterConfig(workers=2), 2) as client:
        pipeline.check(seed_mlp.correct, params, data, client=client)  # warm: the workers have imported the model
        figures["dask_shared_client_check_default"] = _summary(
            _times(lambda: pipeline.check(seed_mlp.correct, params, data, client=client), args.repeats)
        )
        figures["bit_identity"] = bit_identity(client)
    figures["dask_new_local_cluster_check_default"] = _summary(
        _times(lambda: pipeline.check(seed_mlp.correct, params, data, workers=2), max(3, args.repeats // 5))
    )

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        (folder / "script.py").write_text(SCRIPT)
        (folder / "test_seed_checks.py").write_text(TEST_FILE)
        _command([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_seed_checks.py"], folder)()
        figures["plain_script"] = _summary(_times(_command([sys.executable, "script.py"], folder), args.repeats))
        pytest_file = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_seed_checks.py"]
        figures["pytest_file_of_20_checks"] = _summary(_times(_command(pytest_file, folder), max(3, args.repeats // 2)))
        # pytest with no test at all: what of the file's time is pytest's own start-up.
        (folder / "test_nothing.py").write_text("def test_nothing():\n    pass\n")
        empty = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_nothing.py"]
        figures["pytest_file_of_one_empty_test"] = _summary(_times(_command(empty, folder), max(3, args.repeats // 2)))

    ms = 1e3
    inline = figures["inline_check_default"]
    shared = figures["dask_shared_client_check_default"]
    fresh = figures["dask_new_local_cluster_check_default"]
    print("seed network (47 parameters), median [best]:")
    print(
        f"  in this process, defaults     {inline['median_seconds'] * ms:7.1f} ms [{inline['best_seconds'] * ms:.1f}]  (target <= 20 ms)"
    )
    seed = figures["inline_check_seed"]
    print(f"  in this process, seed's       {seed['median_seconds'] * ms:7.1f} ms [{seed['best_seconds'] * ms:.1f}]")
    print(
        f"  shared Dask client (2 workers){shared['median_seconds'] * ms:7.1f} ms [{shared['best_seconds'] * ms:.1f}]"
        f"  -> in-process is {shared['median_seconds'] / inline['median_seconds']:.0f}x faster"
    )
    print(
        f"  new local cluster (2 workers) {fresh['median_seconds'] * ms:7.1f} ms [{fresh['best_seconds'] * ms:.1f}]"
        f"  -> in-process is {fresh['median_seconds'] / inline['median_seconds']:.0f}x faster"
    )
    script = figures["plain_script"]
    print(
        f"python script.py, one check     {script['median_seconds']:7.2f} s  [{script['best_seconds']:.2f}]  (target <= 1.5 s)"
    )
    tests = figures["pytest_file_of_20_checks"]
    empty_run = figures["pytest_file_of_one_empty_test"]
    print(
        f"pytest, 20 seed-sized checks    {tests['median_seconds']:7.2f} s  [{tests['best_seconds']:.2f}]  (target <= 3 s; "
        f"pytest with one empty test: {empty_run['median_seconds']:.2f} s)"
    )
    identity = figures["bit_identity"]
    print(
        f"in-process vs Dask reports      {identity['compared'] - len(identity['differing'])}/{identity['compared']} "
        f"bit-identical (model x scheme){'; differing: ' + ', '.join(identity['differing']) if identity['differing'] else ''}"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
