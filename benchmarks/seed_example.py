"""Wall time of `gradcheck run` on the seed example, against the seed's own loop, in one run.

Usage: python benchmarks/seed_example.py [--repeats N] [--json PATH]

Prints, for the example's correct variant: the seed's single-process loop
(copy the vector, perturb, rebuild the dict, two losses per index), the whole
`gradcheck run` command (process start, cluster start-up included) and its
parts as the report gives them. Ratios, not absolute times, are what compare
across runs on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.examples import seed_mlp, write_example  # noqa: E402


def _seed_loop_seconds(repeats: int) -> float:
    from tests.reference import seed_loop

    params, data = seed_mlp.problem()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        seed_loop(seed_mlp.correct, params, data, seed_mlp.ORDER, 1e-7)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "example"
        write_example("seed-mlp", str(folder))
        walls, reports = [], []
        for repeat in range(args.repeats):
            output = f"output={folder / f'out-{repeat}.zarr'}"  # a fresh output: a full run, not a resume
            start = time.perf_counter()
            result = subprocess.run(
                [sys.executable, "-m", "pipeline.cli", "run", str(folder / "correct.yaml"), "--json", "--set", output],
                capture_output=True,
                text=True,
                check=True,
                cwd=REPO,
            )
            walls.append(time.perf_counter() - start)
            reports.append(json.loads(result.stdout))
    seed = _seed_loop_seconds(args.repeats)
    median = statistics.median(walls)
    part = {key: statistics.median(r["timings"][key] for r in reports) for key in reports[0]["timings"]}
    figures: dict[str, Any] = {
        "format_version": 1,
        "repeats": args.repeats,
        "seed_loop_seconds": seed,
        "command_wall_seconds": median,
        "command_wall_seconds_all": walls,
        "report_timings": part,
        "difference": reports[0]["difference"],
        "command_over_seed_loop": median / seed,
    }
    print(f"seed loop (1 process, 94 losses)   {seed * 1e3:8.1f} ms")
    print(
        f"gradcheck run, whole command       {median:8.2f} s   (median of {args.repeats}: {', '.join(f'{w:.2f}' for w in walls)})"
    )
    print(f"  inside: cluster start-up         {part['cluster_seconds']:8.2f} s")
    print(f"          probe (loss, grad at θ)  {part['probe_seconds'] * 1e3:8.1f} ms")
    print(
        f"          shards                   {part['shards_seconds']:8.2f} s   ({part['evaluations_per_second']:.0f} losses/s)"
    )
    print(f"          total in the process     {part['total_seconds']:8.2f} s")
    print(f"command / seed loop                {median / seed:8.0f}x   (start-up dominates a 47-parameter check)")
    print(f"difference                         {reports[0]['difference']:.10e}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
