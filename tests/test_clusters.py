"""Checks on existing clusters started with the ``dask scheduler`` / ``dask worker`` commands:
by address, by scheduler file, by Dask's own configuration, and over mutual TLS."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from distributed.comm.core import CommClosedError
from distributed.comm.core import connect as comm_connect

import pipeline
import pipeline.storage.inputs
from pipeline.examples import seed_mlp
from pipeline.execution.cluster import worker_addresses
from pipeline.model import ModelSource

from .clusters import Certificates, CLICluster, client_of, dask_cluster, make_certificates
from .conftest import run_cli
from .reference import seed_loop


@pytest.fixture(scope="module")
def cli_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CLICluster]:
    """A scheduler and two single-threaded workers, started as a user would, shared by this module's tests."""
    with dask_cluster(tmp_path_factory.mktemp("cluster"), workers=2) as cluster:
        with client_of(cluster.address) as client:
            client.wait_for_workers(2, timeout=60)
        yield cluster


def _seed_numeric_is_the_seed_loops(output: Path) -> None:
    params, data = seed_mlp.problem()
    numeric = pipeline.storage.inputs.read_arrays("output", str(output), ("numeric",))["numeric"]
    np.testing.assert_array_equal(numeric, seed_loop(seed_mlp.correct, params, data, seed_mlp.ORDER, 1e-7))


def _ran_on(cluster: CLICluster) -> set[str]:
    """The task prefixes the cluster's scheduler has seen."""
    with client_of(cluster.address) as client:
        return set(client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.task_prefixes)))


def test_plan_counts_the_workers_of_the_cluster_it_names(cli_cluster: CLICluster, seed_example: Path) -> None:
    config = str(seed_example / "correct.yaml")
    planned = run_cli("plan", config, "--scheduler", cli_cluster.address, "--t-loss", "0.5", "--json")
    assert planned.returncode == 0, planned.stderr
    plan = json.loads(planned.stdout)
    assert plan["workers"] == 2
    # connecting, not starting a cluster: no start-up counted; the losses shared by the two workers
    losses = plan["loss_evaluations"] * 0.5
    assert losses / 2 < plan["wall_seconds"] < losses


def test_the_workers_are_counted_while_the_clients_cache_is_refreshed_without_them(cli_cluster: CLICluster) -> None:
    # The client refreshes its scheduler_info() cache every few seconds with the workers left out (as
    # scheduler_info(n_workers=0) does, which jobs.py calls): a run once counted 0 workers in CI. Here the
    # refreshes come as fast as a thread can send them; counting from scheduler_info() went wrong 217 in 500.
    with client_of(cli_cluster.address) as client:
        stop = threading.Event()

        def refresh() -> None:
            while not stop.is_set():
                client.scheduler_info(n_workers=0)

        refresher = threading.Thread(target=refresh)
        refresher.start()
        try:
            counts = [len(worker_addresses(client)) for _ in range(300)]
        finally:
            stop.set()
            refresher.join()
    assert counts == [2] * 300


def test_a_check_runs_on_a_cli_cluster_by_address_and_by_scheduler_file(
    cli_cluster: CLICluster, seed_example: Path
) -> None:
    config = str(seed_example / "correct.yaml")
    by_address = run_cli("run", config, "--scheduler", cli_cluster.address, "--json")
    assert by_address.returncode == 0, by_address.stderr
    report = pipeline.Report.from_dict(json.loads(by_address.stdout))
    assert report.timings["workers"] == 2
    assert report.difference == pytest.approx(1.1890913024229996e-07, rel=1e-12)
    _seed_numeric_is_the_seed_loops(seed_example / "correct-output.zarr")

    by_file = run_cli("run", config, "--scheduler-file", str(cli_cluster.scheduler_file), "--overwrite")
    assert by_file.returncode == 0, by_file.stderr
    _seed_numeric_is_the_seed_loops(seed_example / "correct-output.zarr")
    assert {"probe_task", "shard_task", "analytic_task"} <= _ran_on(cli_cluster)


def test_dasks_own_scheduler_address_is_honoured(cli_cluster: CLICluster, smooth_problem: Path) -> None:
    """With no cluster named, DASK_SCHEDULER_ADDRESS picks the cluster, as it does for `Client()`."""
    with client_of(cli_cluster.address) as client:
        client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.task_prefixes.clear())
    env = {**os.environ, "DASK_SCHEDULER_ADDRESS": cli_cluster.address}
    result = run_cli("run", str(smooth_problem / "check.yaml"), "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert "shard_task" in _ran_on(cli_cluster)


def test_a_model_file_reaches_workers_that_cannot_read_it(cli_cluster: CLICluster, tmp_path: Path) -> None:
    """The file's text travels with the tasks: here the path exists nowhere, so no worker could read it."""
    params, data = seed_mlp.problem()
    source = Path(seed_mlp.__file__).read_text().replace("from .. import", "from pipeline import")
    source += "\nshipped_model = SeedMLP(planted=True)\n"
    ref = ModelSource("/nowhere/on/any/disk/seed_model.py:shipped_model", source)
    config = pipeline.Config.from_dict(
        {
            "model": ref.ref,
            "params": str(tmp_path / "params.zarr"),
            "data": str(tmp_path / "data.zarr"),
            "output": str(tmp_path / "out.zarr"),
            "scheme": "central",
            "epsilon": 1e-7,
            "cluster": {"address": cli_cluster.address},
        }
    )
    pipeline.storage.inputs.write_group(config.params, params, {"order": list(seed_mlp.ORDER)})
    pipeline.storage.inputs.write_group(config.data, data)
    report = pipeline.run(config, model=ref)
    assert not report.passed
    assert report.failing == ("b1", "W2")
    numeric = pipeline.storage.inputs.read_arrays("output", config.output, ("numeric",))["numeric"]
    np.testing.assert_array_equal(numeric, seed_loop(seed_mlp.planted, params, data, seed_mlp.ORDER, 1e-7))


def test_a_module_the_workers_cannot_import_is_named_on_the_client(
    cli_cluster: CLICluster, seed_example: Path, tmp_path: Path
) -> None:
    (tmp_path / "client_only_model.py").write_text("from pipeline.examples.seed_mlp import correct\n")
    config = seed_example / "correct.yaml"
    config.write_text(config.read_text().replace("pipeline.examples.seed_mlp:correct", "client_only_model:correct"))
    # `python -m` puts its working folder on the path: the module is importable here, not on the workers.
    result = run_cli("run", str(config), "--scheduler", cli_cluster.address, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(
        "gradcheck: error: Model module 'client_only_model' cannot be found on 2 of the cluster's 2 workers (tcp://"
    )
    assert result.stderr.endswith("install it there, put it on their PYTHONPATH, or name the model by file path.\n")
    assert result.stderr.count("\n") == 1
    assert not (seed_example / "correct-output.zarr").exists()


async def _identity(address: str, certificates: Certificates, *, with_certificate: bool) -> dict[str, Any]:
    """The scheduler's answer to `identity` over distributed's own comm, with or without a client certificate."""
    context = ssl.create_default_context(cafile=str(certificates.ca))
    context.check_hostname = False
    if with_certificate:
        context.load_cert_chain(str(certificates.client_cert), str(certificates.client_key))
    comm = await comm_connect(address, timeout=10, ssl_context=context)  # type: ignore[no-untyped-call]
    try:
        await comm.write({"op": "identity", "reply": True})
        answer: dict[str, Any] = await comm.read()
    finally:
        await comm.close()
    return answer


def test_a_check_runs_over_mutual_tls_and_a_client_without_a_certificate_is_refused(
    tmp_path: Path, seed_example: Path
) -> None:
    certificates = make_certificates(tmp_path / "certs")
    with dask_cluster(tmp_path / "cluster", workers=1, certificates=certificates) as cluster:
        assert cluster.address.startswith("tls://127.0.0.1:")
        config = seed_example / "correct.yaml"
        config.write_text(
            config.read_text()
            + f"cluster:\n  address: {cluster.address}\n  timeout: 5\n  security:\n"
            + f"    ca: {certificates.ca}\n    cert: {certificates.client_cert}\n    key: {certificates.client_key}\n"
        )
        result = run_cli("run", str(config))
        assert result.returncode == 0, result.stderr
        _seed_numeric_is_the_seed_loops(seed_example / "correct-output.zarr")

        # The same config without its certificates: one line naming what is missing.
        plain = seed_example / "plain.yaml"
        plain.write_text(config.read_text().split("cluster:")[0] + f"cluster:\n  address: {cluster.address}\n")
        refused = run_cli("run", str(plain), "--overwrite", "--set", "cluster.timeout=3")
        assert refused.returncode == 2
        assert refused.stderr.startswith(  # at once: it did not wait the 3 s, and does not say it did
            f"gradcheck: error: Cannot reach the scheduler at {cluster.address} "
            "(a tls:// scheduler needs `cluster.security`: ca, cert and key files)"
        )
        assert refused.stderr.count("\n") == 1

        # Dask's own TLS configuration serves as well as `cluster.security` does.
        dask_tls = {
            "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": str(certificates.ca),
            "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT": str(certificates.client_cert),
            "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY": str(certificates.client_key),
        }
        configured = run_cli("run", str(plain), "--overwrite", env={**os.environ, **dask_tls})
        assert configured.returncode == 0, configured.stderr
        _seed_numeric_is_the_seed_loops(seed_example / "correct-output.zarr")

        # A client that trusts the CA but shows no certificate of its own is refused by the
        # scheduler; with the client certificate, the same request is answered.
        served = asyncio.run(_identity(cluster.address, certificates, with_certificate=True))
        assert served["type"] == "Scheduler"
        with pytest.raises((ssl.SSLError, CommClosedError, OSError)):
            asyncio.run(_identity(cluster.address, certificates, with_certificate=False))
