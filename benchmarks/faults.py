"""Faults in a loop: every scenario of ``tests/faults.py``, repeated, each judged bit for bit.

Usage: python benchmarks/faults.py [--client-kills K] [--repeats R] [--json PATH]

- K SIGKILLs in a row of a ``gradcheck run`` (with every process it started) at random moments,
  each resuming the last, a finished chunk cut short after every other kill; in this process
  (``--inline``) and on a local cluster (``--workers 2``);
- a ``dask worker`` SIGKILLed during the probe, and during the shards;
- the scheduler of a ``dask scheduler`` cluster SIGKILLed mid-run (a one-line error, exit 2), the
  same command resuming on a new cluster;
- the output on a full disk (a small tmpfs: exit 2 in one line), resumed after making room.

After each, the final numeric gradient is compared with an uninterrupted run's, bit for bit.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests import faults  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client-kills", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kill-size", type=int, default=2000, help="indices of the check the client kills hit")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "faults.json")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    results: dict[str, list[bool]] = {}
    said: dict[str, str] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        expected = faults.reference(root / "reference")
        # The kill loops check a larger problem (4 s of losses in one process): most kills find it running.
        large = faults.reference(root / "reference-large", n=args.kill_size)

        def kills(*where: str) -> Callable[[Path], bool]:
            def scenario(folder: Path) -> bool:
                identical, interrupted = faults.client_kills(
                    folder, large, args.client_kills, rng, *where, n=args.kill_size
                )
                said[f"client kills ({' '.join(where)})"] = f"{interrupted} of {args.client_kills} found it running"
                return identical

            return scenario

        scenarios: dict[str, Callable[[Path], bool]] = {
            f"{args.client_kills} client kills in a row, in-process": kills("--inline"),
            f"{args.client_kills} client kills in a row, local cluster": kills("--workers", "2"),
            "worker killed during the probe": lambda f: faults.worker_kill(f, expected, rng, during_probe=True),
            "worker killed during the shards": lambda f: faults.worker_kill(f, expected, rng, during_probe=False),
        }

        def scheduler(folder: Path) -> bool:
            ok, line = faults.scheduler_kill(folder, expected, rng)
            said["scheduler killed mid-run"] = line
            return ok

        def disk(folder: Path) -> bool:
            outcome = faults.disk_full(folder, expected)
            if outcome is None:
                raise SystemExit("a full disk needs a tmpfs, which needs root")
            said["full disk"] = outcome[1]
            return outcome[0]

        scenarios["scheduler killed mid-run"] = scheduler
        scenarios["full disk"] = disk
        for name, scenario in scenarios.items():
            repeats = 1 if "client kills" in name else args.repeats
            results[name] = [scenario(root / f"{name}-{k}".replace(" ", "-")) for k in range(repeats)]
            print(f"{name:45s} {sum(results[name])}/{len(results[name])} bit-identical", flush=True)
    for name, line in said.items():
        print(f"  {name}: {line}")
    total = sum(len(r) for r in results.values())
    identical = sum(sum(r) for r in results.values())
    print(f"all scenarios: {identical}/{total} bit-identical, {time.perf_counter() - started:.0f} s")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"format_version": 1, "results": results, "said": said}, indent=2))


if __name__ == "__main__":
    main()
