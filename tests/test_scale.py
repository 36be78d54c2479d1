"""Checks of models too large to check element by element: output proportional to the work, and `gradcheck plan`.

A sampled run (or one of random directions only) keeps only the elements it checks; its values must be the
ones a full run computes at those elements, bit for bit, and its report the same kind of report.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from distributed import Client

import pipeline
from pipeline.examples import seed_mlp
from pipeline.numerics.layout import Layout
from pipeline.numerics.plan import slots_for
from pipeline.numerics.problem import Settings
from pipeline.storage.inputs import write_group
from pipeline.storage.output import read_output_attrs, verify

from .conftest import file_model_check, run_cli

PER_INDEX = ("analytic", "numeric", "nonfinite", "allowed", "status", "step")
COST_KEYS = {"loss_evaluations", "wall_seconds", "worker_memory_bytes", "client_memory_bytes", "output_bytes"}


def _arrays(output: str, names: tuple[str, ...] = PER_INDEX) -> dict[str, np.ndarray]:
    return {name: np.asarray(zarr.open_array(output, path=name, mode="r")[:]) for name in names}


def _folder_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def test_a_sampled_run_keeps_only_its_elements_with_the_full_runs_values(client: Client, tmp_path: Path) -> None:
    params, data = seed_mlp.problem()
    sample = {"sample_per_tensor": 3, "seed": 5}
    full_out, sampled_out = str(tmp_path / "full.zarr"), str(tmp_path / "sampled.zarr")
    full = pipeline.check(seed_mlp.planted, params, data, output=full_out)
    sampled = pipeline.check(
        seed_mlp.planted, params, data, indices=sample, directions=2, shard_size=4, client=client, output=sampled_out
    )
    # Independent of the slots' code: every tensor's k elements, drawn as the documented seeding draws them.
    expected: list[int] = []
    offset = 0
    for number, array in enumerate(params.values()):
        chosen = (
            np.arange(array.size)
            if array.size <= 3
            else np.random.default_rng([5, number]).choice(array.size, 3, replace=False)
        )
        expected.extend(int(i) for i in offset + np.sort(chosen))
        offset += array.size
    stored = _arrays(sampled_out, (*PER_INDEX, "index"))
    assert stored["index"].tolist() == expected
    assert all(stored[name].shape == (len(expected),) for name in PER_INDEX)  # not n = 47
    reference = _arrays(full_out)
    for name in PER_INDEX:  # the same numbers as the full run at those elements, bit for bit
        np.testing.assert_array_equal(stored[name], reference[name][stored["index"]])
    # The report names the same wrong elements, located in their tensors.
    assert not sampled.passed
    assert sampled.n_checked == len(expected)
    layout = Layout.from_shapes(
        list(params), {n: a.shape for n, a in params.items()}, {n: a.dtype.name for n, a in params.items()}
    )
    wrong = {layout.locate(int(i)) for i in np.flatnonzero(reference["status"] == 1)}
    for element in sampled.worst:
        assert ((element.tensor, tuple(element.index)) in wrong) == (element.status == "wrong")
    assert sampled.failing == full.failing == ("b1", "W2")  # the planted tensors, named
    # It verifies, and the same command resumes it: every shard read back, the same report.
    assert verify(sampled_out).corrupt == ()
    assert verify(sampled_out).shards == 4
    again = pipeline.check(
        seed_mlp.planted, params, data, indices=sample, directions=2, shard_size=4, client=client, output=sampled_out
    )
    assert again.timings["resumed_shards"] == 4
    assert again.tensors == sampled.tensors
    assert again.worst == sampled.worst


def test_a_directions_only_run_stores_nothing_per_element_and_still_finds_the_bug(tmp_path: Path) -> None:
    folder = tmp_path / "example"
    assert run_cli("example", "seed-mlp", str(folder)).returncode == 0
    for which, code in (("correct", 0), ("planted", 1)):
        result = run_cli(
            "run", str(folder / f"{which}.yaml"), "--inline", "--set", "indices=none", "--set", "directions=4",
            "--set", "scheme=richardson", "--set", "epsilon=auto", "--set", "threshold=none",
        )  # fmt: skip
        assert result.returncode == code, result.stdout + result.stderr
        output = str(folder / f"{which}-output.zarr")
        assert all(array.shape == (0,) for array in _arrays(output).values())
        assert _folder_bytes(output) < 64 * 2**10
        report = read_output_attrs(output)["report"]
        assert report["n_checked"] == 0
        assert len(report["directions"]) == 24
        assert (which == "planted") == any(d["status"] == "wrong" for d in report["directions"])
        assert report["failing"] == (["b1", "W2"] if which == "planted" else [])  # the planted tensors, named


def test_plan_estimates_what_the_run_then_takes(tmp_path: Path) -> None:
    folder = tmp_path / "example"
    assert run_cli("example", "seed-mlp", str(folder)).returncode == 0
    config = str(folder / "correct.yaml")
    settings = ["--set", "indices={sample_per_tensor: 4, seed: 0}", "--set", "directions=2", "--inline"]
    planned = run_cli("plan", config, "--json", *settings)
    assert planned.returncode == 0, planned.stderr
    estimate = json.loads(planned.stdout)
    assert set(estimate) >= COST_KEYS
    assert not (folder / "correct-output.zarr").exists()  # nothing written, nothing run
    ran = run_cli("run", config, "--json", *settings)
    report = json.loads(ran.stdout)
    assert report["cost"]["estimated"]["loss_evaluations"] == estimate["loss_evaluations"]
    actual = report["cost"]["actual"]
    assert set(actual) == COST_KEYS
    # the count foresees every loss but the second look's (none here) and the probe's own extras
    assert abs(estimate["loss_evaluations"] - actual["loss_evaluations"]) <= 8
    assert actual["output_bytes"] == pytest.approx(_folder_bytes(str(folder / "correct-output.zarr")), rel=0.2)
    assert estimate["output_bytes"] >= actual["output_bytes"] / 2
    # --t-loss: nothing is read or evaluated; the losses' time is the figure given
    given = json.loads(run_cli("plan", config, "--json", "--t-loss", "2", *settings).stdout)
    assert given["loss_source"] == "given (--t-loss)"
    assert given["wall_seconds"] >= 2 * (given["loss_evaluations"] - 64)
    text = run_cli("plan", config, *settings).stdout
    assert "loss evaluations" in text
    assert "memory per worker" in text


@pytest.mark.parametrize("value", ["0", "-1", "soon", "inf"])
def test_plan_refuses_a_loss_time_that_is_not_a_positive_number(tmp_path: Path, value: str) -> None:
    result = run_cli("plan", str(tmp_path / "missing.yaml"), "--t-loss", value)
    assert result.returncode == 2
    assert "--t-loss" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_slots_of_a_sampled_run_are_proportional_to_the_sample_not_the_model() -> None:
    layout = Layout.from_shapes(["w", "b"], {"w": (10_000, 10_000), "b": (7,)}, {"w": "float32", "b": "float32"})
    slots = slots_for(layout, (100, 3))
    assert slots.size == 107
    assert slots.indices(layout, 0, 107)[-7:].tolist() == list(range(10**8, 10**8 + 7))
    assert slots_for(layout, None).size == 10**8 + 7
    assert slots_for(layout, (0, 0)).size == 0


def test_the_cost_estimate_adds_up_from_its_parts() -> None:
    """The estimate's arithmetic, against figures worked out by hand from its documented constants."""
    from pipeline.numerics import cost

    layout = Layout.from_shapes(["w", "b"], {"w": (1000, 1000), "b": (1000,)}, {"w": "float32", "b": "float32"})
    sampled, full = slots_for(layout, (10, 0)), slots_for(layout, None)
    estimate = functools.partial(
        cost.estimate_cost, shards=4, workers=2, loss_seconds=0.01, noise_evaluations=30, data_bytes=1000
    )
    settings = Settings(layout, None, scheme="central", second_look=False)
    est = estimate(settings, sampled, directions=3, local_cluster=True, in_process=False)
    assert est.loss_evaluations == cost.PROBE_LOSSES + 30 + 2 * 20 + 2 * 3 * 2  # probe, 20 elements, 6 directions
    assert est.output_bytes == (cost.ELEMENT_BYTES + cost.INDEX_BYTES) * 20 + 8 * 4 + cost.METADATA_BYTES
    params = 4 * 1_001_000
    # a direction's two copies of w (the tangent, the moved tensor) outweigh the gradient (the parameters' size)
    assert est.worker_memory_bytes == cost.WORKER_BASELINE_BYTES + params + 1000 + 2 * 4_000_000
    assert est.client_memory_bytes == cost.CLIENT_BASELINE_BYTES + cost.INDEX_BYTES * 20
    promoted = Settings(layout, None, scheme="central", second_look=False, promote=True)
    whole = estimate(promoted, full, directions=0, local_cluster=False, in_process=True)
    assert whole.output_bytes == cost.ELEMENT_BYTES * 1_001_000 + 8 * 4 + cost.METADATA_BYTES  # no index
    # promoted to float64: the parameters and the gradient twice the size; in this process, the client is the worker
    assert whole.worker_memory_bytes == cost.WORKER_BASELINE_BYTES + 2 * params + 1000 + 2 * params
    assert whole.client_memory_bytes == cost.CLIENT_BASELINE_BYTES + 2 * params + 1000 + 2 * params
    assert whole.wall_seconds < est.wall_seconds + 2 * 1_001_000 * 0.01  # in process: no cluster to start


def test_plan_reads_the_gradient_store_and_runs_no_backward_pass(tmp_path: Path) -> None:
    """A config with a `gradient` store is planned as it runs: from the store, even where model.grad cannot run."""
    source = (
        "import numpy as np\n"
        "class Net:\n"
        "    def loss(self, params, data):\n"
        "        return float(np.sum(np.sin(params['w'])))\n"
        "    def grad(self, params, data):\n"
        "        raise NotImplementedError('the backward pass runs elsewhere')\n"
        "net = Net()\n"
    )
    w = np.linspace(-1, 1, 12)
    _, config = file_model_check(tmp_path, source, "net", {"w": w}, "gradient: gradient.zarr\n")
    write_group(str(tmp_path / "gradient.zarr"), {"w": np.cos(w)})
    ran = run_cli("run", str(config), "--inline")
    assert ran.returncode == 0, ran.stderr
    planned = run_cli("plan", str(config), "--inline", "--json")
    assert planned.returncode == 0, planned.stderr
    assert json.loads(planned.stdout)["workers"] == 1


def test_a_tensor_without_elements_has_no_direction_to_fail() -> None:
    """An empty tensor's g·u and its loss's change are both 0: it is left out of the directions, not failed."""

    class Net:
        @staticmethod
        def loss(params: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> float:
            return float(np.sum(np.sin(params["w"])) + np.sum(params["empty"]))

        @staticmethod
        def grad(params: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return {"w": np.cos(params["w"]), "empty": np.ones_like(params["empty"])}

    report = pipeline.check(Net(), {"w": np.linspace(-1, 1, 9), "empty": np.zeros((0, 3))}, {}, directions=2)
    assert report.passed
    assert [d["tensor"] for d in report.directions] == ["w", "w"]


def _rss_bytes() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="Linux measures a run's own peak")
def test_a_runs_peak_memory_is_its_own_not_the_processs_before_it() -> None:
    params, data = seed_mlp.problem()
    before = _rss_bytes()
    big = np.ones(60 * 2**20)  # 480 MB, touched and freed before the check
    del big
    report = pipeline.check(seed_mlp.correct, params, data)
    # the process's high-water mark is at least `before` + 480 MB; the run's own is near `before`
    assert report.cost["actual"]["worker_memory_bytes"] < before + 240 * 2**20


class _MeanOfData:
    """The mean of ``w`` times each float32 datum: a model whose data is its size."""

    def loss(self, params: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> float:
        return float(params["w"][0] * np.mean(data["x"]))

    def grad(self, params: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"w": np.array([np.mean(data["x"])], dtype=params["w"].dtype)}


def test_the_memory_estimate_counts_the_float64_copy_of_float32_data_under_precision_float64() -> None:
    # review 84: `precision: float64` holds float32 data in float64 too, and the estimate counted the data once
    data = {"x": np.ones(10 * 2**20, dtype=np.float32)}  # 40 MB
    params = {"w": np.ones(1, dtype=np.float32)}
    native = pipeline.check(_MeanOfData(), params, data)
    promoted = pipeline.check(_MeanOfData(), params, data, precision="float64")
    grown = promoted.cost["estimated"]["worker_memory_bytes"] - native.cost["estimated"]["worker_memory_bytes"]
    assert grown >= 80 * 2**20


def test_a_large_sample_of_a_large_tensor_takes_memory_for_the_sample_not_the_tensor() -> None:
    """NumPy draws more than a fiftieth of a range by permuting all of it: 800 MB for 10^8 elements."""
    import tracemalloc

    from pipeline.numerics.plan import sampled_positions

    tracemalloc.start()
    try:
        chosen = sampled_positions(10**8, 3 * 10**6, 0, 0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 160 * 2**20  # the sample is 24 MB; the permutation alone would be 800 MB
    assert chosen.size == 3 * 10**6
    assert np.all(np.diff(chosen) > 0)  # sorted and distinct
    assert chosen[0] >= 0
    assert chosen[-1] < 10**8
    # uniform: over 40 seeds, each of 2^21 elements is drawn Binomial(40, 1/4) times
    counts = np.zeros(2**21)
    for seed in range(40):
        counts[sampled_positions(2**21, 2**19, seed, 0)] += 1
    assert counts.mean() == 10
    assert abs(counts.std() - np.sqrt(40 * 0.25 * 0.75)) < 0.05


class _Square:
    """loss = w·w, evaluated without a temporary of w's size (a memory test must see only the pipeline's)."""

    @staticmethod
    def loss(params: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> float:
        w = params["w"]
        return float(np.dot(w, w))

    @staticmethod
    def grad(params: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"w": 2 * params["w"]}


@pytest.mark.parametrize("direction_test", ["difference", "taylor"])
def test_a_gradient_whose_pieces_overflow_both_ways_fails_its_directions(direction_test: str) -> None:
    """g·u is summed piece by piece (2**16 elements each). Finite elements of 1e308 whose sum overflows made one
    piece's part -inf and another's +inf, and math.fsum raised on them."""
    from pipeline.numerics.directions import DIRECTION_SEED

    n = 2**17
    w = np.random.default_rng(0).uniform(-1, 1, n)
    rng = np.random.default_rng([DIRECTION_SEED, 0, 0])  # direction 0 of tensor 0 (see directions._signs)
    minus = np.flatnonzero(~np.unpackbits(np.frombuffer(rng.bytes(n // 8), dtype=np.uint8)).view(bool))
    first, second = minus[minus < 2**16][:2], minus[minus >= 2**16][:2]
    gradient = {"w": 2 * w}
    gradient["w"][first], gradient["w"][second] = 1e308, -1e308
    settings: dict[str, Any] = {"indices": "none", "directions": 1, "direction_test": direction_test}
    report = pipeline.check(_Square(), {"w": w}, {}, gradient=gradient, **settings)
    assert report.verdict == "failed", str(report)
    assert report.failing == ("w",)


@pytest.mark.parametrize(("scale", "copies"), [(0.5, 1.25), (3.0, 2)])
def test_a_direction_holds_one_copy_of_its_tensor_and_its_signs_unless_it_needs_its_tangent(
    scale: float, copies: float
) -> None:
    """A tensor with no element beyond 1 moves along signs held as one byte per element (a quarter of float32);
    one with larger elements holds its tangent (scaled per element) in its own dtype."""
    import dataclasses
    import tracemalloc

    from pipeline.api import settings_for
    from pipeline.config import Config
    from pipeline.numerics.directions import check_direction, direction_dots
    from pipeline.numerics.probe import probe
    from pipeline.numerics.problem import Loaded

    w = (scale * np.random.default_rng(0).uniform(-1, 1, 2**22)).astype(np.float32)
    layout = Layout.from_shapes(["w"], {"w": w.shape}, {"w": "float32"})
    config = Config.from_dict(
        {"model": "m", "params": "p", "data": "d", "output": "o", "indices": "none", "directions": 1}
    )
    loaded = Loaded(settings_for(config, layout), _Square(), {"w": w}, {})
    probed = probe(loaded)
    loaded.settings = dataclasses.replace(loaded.settings, loss0=probed.loss, noise=probed.noise, scales=probed.scales)
    (dot,) = direction_dots(loaded, loaded.analytic_gradient(), [("w", 0)])
    loaded.analytic = None
    tracemalloc.start()
    try:
        result = check_direction(loaded, "w", 0, dot)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # agrees, or inconclusive, or on a kink where the float32 sums' noise (4M terms) bends the line at the finer steps
    # (on an AMD EPYC, whose numpy and BLAS kernels round otherwise): never wrong
    assert result.status in (0, 2, 4)
    assert copies * w.nbytes <= peak < (copies + 0.2) * w.nbytes


def test_the_analytic_gradient_is_computed_once_per_run_on_a_cluster(tmp_path: Path) -> None:
    """Not per worker, not per shard, not per direction: every `grad` call leaves a line in a file."""
    calls = tmp_path / "grad-calls.txt"
    source = (
        "import numpy as np\n"
        "class Net:\n"
        "    def loss(self, params, data):\n"
        "        return float(np.sum(np.sin(params['w'])) + np.sum(params['b'] ** 2))\n"
        "    def grad(self, params, data):\n"
        f"        with open({str(calls)!r}, 'a') as f:\n"
        "            f.write('grad\\n')\n"
        "        return {'w': np.cos(params['w']), 'b': 2 * params['b']}\n"
        "net = Net()\n"
    )
    params = {"w": np.linspace(-1, 1, 40), "b": np.linspace(0, 1, 7)}
    extra = "indices: {sample_per_tensor: 10, seed: 0}\ndirections: 3\nshard_size: 2\n"
    _, config = file_model_check(tmp_path, source, "net", params, extra)
    ran = run_cli("run", str(config), "--workers", "2", "--json")
    assert ran.returncode == 0, ran.stderr
    report = json.loads(ran.stdout)
    assert report["timings"]["workers"] == 2
    assert len(report["directions"]) == 6
    assert calls.read_text().splitlines() == ["grad"]  # 9 shards and 6 directions on 2 workers, one gradient
