"""Wall time, loss fraction, memory and output size of a sampled check as the model grows (the scale issue).

Usage: python benchmarks/scale.py [--sizes 1e7,1e8] [--quick] [--keep DIR] [--json PATH]

For each size n, the float32 tanh network of benchmarks/scale_model.py (4 layers of d×d
weights and d biases, d chosen so that 4·(d² + d) ≈ n; its loss takes about 35 ms at
d = 5000 on one thread) is written as params and data stores, and checked by
`gradcheck run` in a subprocess on a local cluster of 2 workers: 100 sampled elements per
tensor (seed 0) and 8 random directions per tensor, the other settings the defaults.
While it runs, the resident memory of the `gradcheck` process (the client, which also
hosts the scheduler) and of each Dask worker process it starts is sampled every 50 ms
(psutil), and each process's high-water mark (VmHWM) is read as well.

Per size it prints and records: the wall time of the command; the report's timings; the
fraction of the time in loss evaluations, two ways (the probe's loss time × evaluations
over workers × (total − cluster start − probe), and the shards' summed loss time over
workers × shards' wall time); each worker's first-seen and peak RSS, and its peak over
an idle worker's RSS (a worker of a 2-worker cluster started here first, with the pipeline
imported: a first-seen RSS is a bare interpreter's, before Dask's imports) against 1.5 × (params + data) + the model's working set (its gradient: the
params' size in float32); the client's peak against 300 MB; the output's size on disk
(apparent and in blocks) against 10 MB; and, when `gradcheck plan CONFIG --json`
exists, its estimates against the measured figures. Then how each figure grows from
one size to the next. MB are 10^6 bytes throughout, as the targets are.

--quick runs n = 10^6 only (a smoke test); --keep DIR keeps the stores, configs, outputs
and logs there; results go to benchmarks/results/scale.json unless --json says otherwise.
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import psutil  # noqa: E402
import yaml  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import scale_model  # noqa: E402  (beside this file: python puts benchmarks/ on the path)

import pipeline  # noqa: E402

MB = 1e6
SAMPLE_SECONDS = 0.05
WORKERS = 2
SAMPLED = 100
DIRECTIONS = 8
CLIENT_TARGET = 300 * MB
OUTPUT_TARGET = 10 * MB
SINGLE_THREADED = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
# `python -m pipeline.cli`, not the `gradcheck` script: that one may be installed from another checkout.
GRADCHECK = [sys.executable, "-m", "pipeline.cli"]


@dataclass
class Seen:
    """One process's resident memory as sampled: first seen, peak, high-water mark, and a trace of its changes."""

    pid: int
    role: str
    cmdline: str
    first_seconds: float
    first_rss: int
    peak_rss: int = 0
    hwm: int = 0  # VmHWM, last read while the process lived: the kernel's exact peak
    last_rss: int = 0
    trace: list[tuple[float, float]] = field(default_factory=list)  # (seconds, MB) when it moved by >= 1 MB

    def update(self, seconds: float, rss: int, hwm: int) -> None:
        self.peak_rss = max(self.peak_rss, rss)
        self.hwm = max(self.hwm, hwm)
        if not self.trace or abs(rss / MB - self.trace[-1][1]) >= 1:
            self.trace.append((round(seconds, 3), round(rss / MB, 1)))
        self.last_rss = rss

    @property
    def peak(self) -> int:
        return max(self.peak_rss, self.hwm)

    def figures(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "role": self.role,
            "cmdline": self.cmdline[:200],
            "first_seen_seconds": self.first_seconds,
            "baseline_bytes": self.first_rss,
            "peak_sampled_bytes": self.peak_rss,
            "hwm_bytes": self.hwm,
            "peak_bytes": self.peak,
            "peak_over_baseline_bytes": self.peak - self.first_rss,
            "trace_seconds_mb": self.trace,
        }


def _hwm(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:")), 0)
    except OSError:
        return 0


def _role(cmdline: list[str]) -> str:
    """A Dask worker of the LocalCluster is a multiprocessing child (spawn or forkserver); the rest is other."""
    text = " ".join(cmdline)
    if "resource_tracker" in text:
        return "other"
    if "spawn_main" in text or "forkserver" in text or "distributed" in text:
        return "worker"
    return "other"


class Sampler(threading.Thread):
    """Samples the RSS of ``pid`` and of all its descendants every ``SAMPLE_SECONDS`` until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.started = time.perf_counter()
        self.seen: dict[int, Seen] = {}
        self.samples = 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            self.sample()
            self.halt.wait(SAMPLE_SECONDS)
        self.sample()

    def sample(self) -> None:
        seconds = time.perf_counter() - self.started
        try:
            processes = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return
        for process in processes:
            try:
                rss = process.memory_info().rss
                entry = self.seen.get(process.pid)
                if entry is None:
                    cmdline = process.cmdline()
                    role = "client" if process.pid == self.root.pid else _role(cmdline)
                    entry = self.seen[process.pid] = Seen(process.pid, role, " ".join(cmdline), seconds, rss)
                entry.update(seconds, rss, _hwm(process.pid))
            except psutil.Error:
                continue  # it ended between the listing and the read
        self.samples += 1


def _imported_rss() -> int:
    """This process's RSS once it has imported what a worker's tasks import (run on an idle worker)."""
    import gc

    import pipeline.execution.dask
    import pipeline.storage.inputs
    import pipeline.storage.output  # noqa: F401

    gc.collect()
    return int(psutil.Process().memory_info().rss)


def idle_worker_bytes() -> list[int]:
    """The RSS of each worker of a fresh 2-worker local cluster, started as `gradcheck run` starts it, idle.

    A worker's first-seen RSS is a bare interpreter's (about 9 MB): its imports of Dask,
    numpy and Zarr (about 100 MB) come before it loads anything of the problem. This is the
    baseline that the bound is about: a worker with the pipeline imported, holding nothing.
    """
    from pipeline.config import ClusterConfig
    from pipeline.execution.cluster import connect

    with connect(ClusterConfig(workers=WORKERS), WORKERS) as client:
        time.sleep(1.0)  # let the workers' start-up settle
        return sorted(client.run(_imported_rss).values())


def _disk(folder: Path) -> dict[str, int]:
    files = size = blocks = 0
    for root, _, names in os.walk(folder):
        for name in names:
            stat = os.lstat(os.path.join(root, name))
            files += 1
            size += stat.st_size
            blocks += stat.st_blocks * 512
    return {"files": files, "bytes": size, "du_bytes": blocks}


def _json_of(command: list[str], log: Path, timeout: float) -> tuple[int | None, dict[str, Any] | None, str]:
    """Run ``command``; its exit code, its stdout as JSON (None if it is not), and its last line of stderr."""
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, cwd=REPO, env=_env(), timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return None, None, f"timed out after {timeout:g} s"
    log.write_text(
        f"$ {' '.join(command)}\n--- exit {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    )
    try:
        parsed = json.loads(done.stdout)
    except json.JSONDecodeError:
        parsed = None
    lines = done.stderr.strip().splitlines()
    return done.returncode, parsed if isinstance(parsed, dict) else None, lines[-1] if lines else ""


def _env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, **SINGLE_THREADED, "PYTHONPATH": str(REPO) + (os.pathsep + path if path else "")}


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def measure(n_target: float, folder: Path, idle: int) -> dict[str, Any]:
    """Write the problem of about ``n_target`` parameters into ``folder``, check it, and measure the run.

    ``idle`` is an idle worker's RSS with the pipeline imported (:func:`idle_worker_bytes`).
    """
    folder.mkdir(parents=True, exist_ok=True)
    params, data = scale_model.problem(n_target, seed=0)
    n = sum(p.size for p in params.values())
    d = params["W0"].shape[0]
    params_bytes = sum(p.nbytes for p in params.values())
    data_bytes = sum(x.nbytes for x in data.values())
    grad_bytes = sum(p.size * 4 for p in params.values())  # what model.grad returns: float32, the params' shapes
    pipeline.write_store(str(folder / "params.zarr"), params)
    pipeline.write_store(str(folder / "data.zarr"), data)
    del params, data
    out = folder / "out.zarr"
    config = {
        "model": str(REPO / "benchmarks" / "scale_model.py") + ":model",
        "params": str(folder / "params.zarr"),
        "data": str(folder / "data.zarr"),
        "output": str(out),
        "indices": {"sample_per_tensor": SAMPLED, "seed": 0},
        "directions": DIRECTIONS,
        "cluster": {"workers": WORKERS},
    }
    config_path = folder / "scale.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    plan_code, plan, plan_note = _json_of([*GRADCHECK, "plan", str(config_path), "--json"], folder / "plan.log", 600)
    if plan is None:
        print(f"  gradcheck plan: skipped (exit {plan_code}: {plan_note or 'no JSON on stdout'})")

    command = [*GRADCHECK, "run", str(config_path), "--overwrite"]
    load_before = os.getloadavg()  # the machine is shared: times are only comparable at a similar load
    with open(folder / "run.log", "w") as log:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=_env())
        sampler = Sampler(process.pid)
        sampler.start()
        code = process.wait()
        wall = time.perf_counter() - start
        sampler.halt.set()
        sampler.join()
    report_code, report, report_note = _json_of([*GRADCHECK, "report", str(out), "--json"], folder / "report.log", 120)
    if report is None:
        raise SystemExit(f"`gradcheck report` gave no JSON (exit {report_code}: {report_note}); see {folder}")
    timings: dict[str, float] = report["timings"]
    disk = _disk(out)

    client = next(s for s in sampler.seen.values() if s.role == "client")
    workers = sorted((s for s in sampler.seen.values() if s.role == "worker"), key=lambda s: s.first_seconds)
    others = [s for s in sampler.seen.values() if s.role == "other"]
    bound = 1.5 * (params_bytes + data_bytes) + grad_bytes
    n_workers = timings.get("workers", WORKERS) or WORKERS
    steady = timings["total_seconds"] - timings["cluster_seconds"] - timings["probe_seconds"]
    worst_over = max((w.peak - w.first_rss for w in workers), default=0)
    worst_over_idle = max((w.peak - idle for w in workers), default=0)
    worker_peak = max((w.peak for w in workers), default=0)
    figures: dict[str, Any] = {
        "n_target": n_target,
        "n_params": n,
        "d": d,
        "params_bytes": params_bytes,
        "data_bytes": data_bytes,
        "grad_bytes": grad_bytes,
        "exit_code": code,
        "verdict": report.get("verdict"),
        "n_checked": report.get("n_checked"),
        "directions_checked": len(report.get("directions") or []),
        "wall_seconds": wall,
        "load_average_before_after": [load_before[0], os.getloadavg()[0]],
        "timings": timings,
        "loss_fraction_from_probe": (timings["loss_evaluations"] * timings["loss_seconds"]) / (n_workers * steady)
        if steady > 0
        else None,
        "loss_fraction_from_shards": timings["evaluate_seconds"] / (n_workers * timings["shards_seconds"])
        if timings["shards_seconds"] > 0
        else None,
        "loss_fraction_measured": _measured_fraction(timings, n_workers),
        "loss_fraction_with_moves": _measured_fraction(timings, n_workers, moves=True),
        "client": client.figures(),
        "workers": [w.figures() for w in workers],
        "other_processes": [o.figures() for o in others],
        "samples": sampler.samples,
        "worker_bound_bytes": bound,
        "worker_peak_bytes": worker_peak,
        "worker_peak_over_baseline_bytes": worst_over,
        "worker_over_bound": worst_over / bound,
        "worker_idle_bytes": idle,
        "worker_peak_over_idle_bytes": worst_over_idle,
        "worker_over_idle_over_bound": worst_over_idle / bound,
        "client_peak_bytes": client.peak,
        "client_over_target": client.peak / CLIENT_TARGET,
        "output": disk,
        "output_over_target": disk["bytes"] / OUTPUT_TARGET,
        "plan": plan,
        "plan_exit_code": plan_code,
    }
    if plan is not None:
        measured = {
            "loss_evaluations": timings["loss_evaluations"],
            "wall_seconds": wall,
            "worker_memory_bytes": worker_peak,
            "client_memory_bytes": client.peak,
            "output_bytes": disk["bytes"],
        }
        figures["plan_over_measured"] = {
            key: _ratio(plan.get(key), value)
            for key, value in measured.items()
            if isinstance(plan.get(key), int | float)
        }
    _print_size(figures)
    return figures


def _mb(value: float) -> str:
    return f"{value / MB:10.1f} MB"


def _print_size(f: dict[str, Any]) -> None:
    t = f["timings"]
    print(f"\nn = {f['n_params']:,} parameters (d = {f['d']}); params {_mb(f['params_bytes']).strip()}")
    print(
        f"  exit code {f['exit_code']}, verdict {f['verdict']}, {f['n_checked']} elements and {f['directions_checked']} directions checked"
    )
    load = ", ".join(f"{x:.1f}" for x in f["load_average_before_after"])
    print(
        f"  wall time of `gradcheck run`       {f['wall_seconds']:10.2f} s  (1-minute load average before, after: {load})"
    )
    for key in (
        "total_seconds",
        "cluster_seconds",
        "probe_seconds",
        "analytic_seconds",
        "shards_seconds",
        "evaluate_seconds",
        "directions_seconds",
        "directions_evaluate_seconds",
        "directions_move_seconds",
    ):
        print(f"    {key:<32} {t.get(key, float('nan')):10.2f} s")
    print(
        f"    loss at θ (probe)                {t['loss_seconds'] * 1e3:10.2f} ms × {t['loss_evaluations']:.0f} evaluations"
    )
    for key in (
        "loss_fraction_from_probe",
        "loss_fraction_from_shards",
        "loss_fraction_measured",
        "loss_fraction_with_moves",
    ):
        value = f[key]
        print(f"  {key.replace('_', ' '):<34} {'n/a' if value is None else f'{value:10.1%}'}")
    client = f["client"]
    print(
        f"  client peak RSS                    {_mb(client['peak_bytes'])}  ({f['client_over_target']:.2f} of 300 MB)"
    )
    for i, w in enumerate(f["workers"]):
        print(
            f"  worker {i} peak RSS                  {_mb(w['peak_bytes'])}  (first seen {_mb(w['baseline_bytes']).strip()}, "
            f"over it {_mb(w['peak_over_baseline_bytes']).strip()})"
        )
    print(
        f"  worker bound 1.5(params+data)+grad {_mb(f['worker_bound_bytes'])}  (worst peak over first seen: "
        f"{f['worker_over_bound']:.2f} of it)"
    )
    print(
        f"  worker peak over an idle worker    {_mb(f['worker_peak_over_idle_bytes'])}  (idle {_mb(f['worker_idle_bytes']).strip()}; "
        f"{f['worker_over_idle_over_bound']:.2f} of the bound)"
    )
    out = f["output"]
    print(
        f"  output on disk                     {_mb(out['bytes'])}  ({out['files']} files, du {_mb(out['du_bytes']).strip()}; "
        f"{f['output_over_target']:.2f} of 10 MB)"
    )
    if f.get("plan_over_measured"):
        ratios = ", ".join(f"{k} {v:.2f}" for k, v in f["plan_over_measured"].items() if v is not None)
        print(f"  plan / measured                    {ratios}")


GROWTH: tuple[tuple[str, str], ...] = (
    ("parameters", "n_params"),
    ("wall seconds", "wall_seconds"),
    ("total seconds (report)", "timings.total_seconds"),
    ("cluster seconds", "timings.cluster_seconds"),
    ("probe seconds", "timings.probe_seconds"),
    ("shards seconds", "timings.shards_seconds"),
    ("loss seconds (probe)", "timings.loss_seconds"),
    ("loss evaluations", "timings.loss_evaluations"),
    ("loss fraction (probe)", "loss_fraction_from_probe"),
    ("loss fraction (shards)", "loss_fraction_from_shards"),
    ("loss fraction (measured)", "loss_fraction_measured"),
    ("loss fraction (with moves)", "loss_fraction_with_moves"),
    ("client peak MB", "client_peak_bytes"),
    ("worker peak MB", "worker_peak_bytes"),
    ("worker peak over first seen MB", "worker_peak_over_baseline_bytes"),
    ("worker peak over idle MB", "worker_peak_over_idle_bytes"),
    ("worker bound MB", "worker_bound_bytes"),
    ("output MB", "output.bytes"),
    ("output du MB", "output.du_bytes"),
    ("output files", "output.files"),
)


def _get(figures: dict[str, Any], path: str) -> float | None:
    value: Any = figures
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return float(value) if isinstance(value, int | float) else None


def growth(small: dict[str, Any], large: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    rows = {}
    for label, path in GROWTH:
        a, b = _get(small, path), _get(large, path)
        scale = MB if label.endswith(" MB") else 1.0
        rows[label] = {
            "small": None if a is None else a / scale,
            "large": None if b is None else b / scale,
            "ratio": _ratio(b, a),
        }
    return rows


def _print_growth(small: dict[str, Any], large: dict[str, Any], rows: dict[str, dict[str, float | None]]) -> None:
    print(f"\ngrowth from {small['n_params']:.2e} to {large['n_params']:.2e} parameters")
    print(f"  {'figure':<30} {'small':>12} {'large':>12} {'large/small':>12}")
    for label, row in rows.items():
        cells = [("n/a" if row[k] is None else f"{row[k]:.4g}") for k in ("small", "large", "ratio")]
        print(f"  {label:<30} {cells[0]:>12} {cells[1]:>12} {cells[2]:>12}")


def _measured_fraction(timings: dict[str, float], workers: float, *, moves: bool = False) -> float | None:
    """The time spent inside the model's loss, as the run measured it (the shards' and the directions' loss
    calls, and the probe's losses at its timed pace), over the workers' time after start-up and loading.
    With ``moves``, also the time taken to move each direction's tensor to the point evaluated (an element's
    perturbation is in the shards' figure already).

    Loading is what the run's timings leave unaccounted: the total less the cluster's start, the probe, the
    analytic step and the shards.
    """
    if "directions_move_seconds" not in timings:
        return None
    accounted = sum(timings[k] for k in ("cluster_seconds", "probe_seconds", "analytic_seconds", "shards_seconds"))
    loading = max(0.0, timings["total_seconds"] - accounted)
    after = timings["total_seconds"] - timings["cluster_seconds"] - loading
    in_losses = (
        timings["evaluate_seconds"]
        + timings["directions_evaluate_seconds"]
        + (timings["noise_evaluations"] + 3) * timings["loss_seconds"]
        + (timings["directions_move_seconds"] if moves else 0.0)
    )
    return in_losses / (workers * after) if after > 0 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1e7,1e8", help="comma-separated parameter counts")
    parser.add_argument("--quick", action="store_true", help="n = 10^6 only: a smoke test")
    parser.add_argument("--keep", type=Path, default=None, help="keep stores, configs, outputs and logs here")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "scale.json")
    args = parser.parse_args()
    sizes = [1e6] if args.quick else [float(s) for s in args.sizes.split(",")]
    idle = idle_worker_bytes()
    print(f"an idle worker with the pipeline imported: {', '.join(f'{b / MB:.1f}' for b in idle)} MB")
    results = []
    with tempfile.TemporaryDirectory(prefix="gradcheck-scale-") as scratch:
        base = args.keep.resolve() if args.keep else Path(scratch)
        for n_target in sizes:
            print(f"size {n_target:.0e}: writing the stores and running the check in {base}")
            results.append(measure(n_target, base / f"n{n_target:.0e}", min(idle)))
    rows = []
    for small, large in itertools.pairwise(results):
        table = growth(small, large)
        _print_growth(small, large, table)
        rows.append({"from": small["n_params"], "to": large["n_params"], "figures": table})
    summary = {
        "format_version": 1,
        "settings": {"workers": WORKERS, "sample_per_tensor": SAMPLED, "directions": DIRECTIONS},
        "idle_worker_bytes": idle,
        "targets": {"client_bytes": CLIENT_TARGET, "output_bytes": OUTPUT_TARGET, "loss_fraction": 0.8},
        "sizes": results,
        "growth": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=2))
    print(f"\nwritten to {args.json}")


if __name__ == "__main__":
    main()
