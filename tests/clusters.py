"""Real Dask clusters started with the ``dask scheduler`` and ``dask worker`` commands, on loopback.

Also the certificates a mutual-TLS cluster needs, made here with ``cryptography``.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from distributed import Client

#: The ``dask`` command of the environment running the tests.
DASK = str(Path(sys.executable).with_name("dask"))


def wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.05)


@dataclass(frozen=True)
class Certificates:
    """PEM files: the CA, and a certificate and key for each side (the scheduler's serves the workers too)."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def tls_options(self, cert: Path, key: Path) -> list[str]:
        return ["--tls-ca-file", str(self.ca), "--tls-cert", str(cert), "--tls-key", str(key)]


def make_certificates(folder: Path) -> Certificates:
    """A fresh CA, and certificates it signs for 127.0.0.1 (server) and for a client."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        path.with_suffix(".pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        path.with_suffix(".key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("gradcheck test CA"))
        .issuer_name(name("gradcheck test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    write(folder / "ca", ca, ca_key)

    def issue(common: str, usage: x509.ObjectIdentifier) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(common))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH, usage]),
                critical=False,
            )
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        return cert, key

    write(folder / "server", *issue("127.0.0.1", ExtendedKeyUsageOID.SERVER_AUTH))
    write(folder / "client", *issue("gradcheck client", ExtendedKeyUsageOID.CLIENT_AUTH))
    return Certificates(
        ca=folder / "ca.pem",
        server_cert=folder / "server.pem",
        server_key=folder / "server.key",
        client_cert=folder / "client.pem",
        client_key=folder / "client.key",
    )


def client_of(address: str, timeout: float = 60) -> Client:
    """A client of the cluster at ``address`` (plain TCP)."""
    return Client(address, timeout=timeout)  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class CLICluster:
    """A running scheduler's address and scheduler file, and its worker processes."""

    address: str
    scheduler_file: Path
    workers: tuple[subprocess.Popen[bytes], ...]
    scheduler: subprocess.Popen[bytes] | None = None


@contextmanager
def dask_cluster(
    folder: Path,
    *,
    workers: int = 2,
    certificates: Certificates | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[CLICluster]:
    """``dask scheduler`` and ``workers`` ``dask worker`` processes (one thread each) on loopback.

    With ``certificates`` everything speaks mutual TLS. Stopped on exit: workers
    first, then the scheduler, each by SIGTERM, and waited for.
    """
    folder.mkdir(parents=True, exist_ok=True)
    scheduler_file = folder / "scheduler.json"
    protocol = ["--protocol", "tls"] if certificates else []
    server_tls = certificates.tls_options(certificates.server_cert, certificates.server_key) if certificates else []
    environment = {**os.environ, **(env or {}), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    log = open(folder / "cluster.log", "wb")  # noqa: SIM115  (closed on exit)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        processes.append(
            subprocess.Popen(
                [
                    DASK,
                    "scheduler",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                    "--no-dashboard",
                    *protocol,
                    *server_tls,
                    "--scheduler-file",
                    str(scheduler_file),
                ],
                stdout=log,
                stderr=log,
                env=environment,
            )
        )
        wait_until(scheduler_file.exists)
        wait_until(lambda: bool(scheduler_file.read_text().strip()))
        address = json.loads(scheduler_file.read_text())["address"]
        for _ in range(workers):
            processes.append(
                subprocess.Popen(
                    [
                        DASK,
                        "worker",
                        address,
                        "--nthreads",
                        "1",
                        "--host",
                        "127.0.0.1",
                        "--no-dashboard",
                        *server_tls,
                        "--local-directory",
                        str(folder / "workers"),
                    ],
                    stdout=log,
                    stderr=log,
                    env=environment,
                )
            )
        yield CLICluster(address, scheduler_file, tuple(processes[1:]), processes[0])
    finally:
        for process in reversed(processes):
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()
