"""Nightly suites: named checks run together, recorded, and judged against their history.

A suite is a YAML file::

    name: nightly
    cluster: {workers: 2}          # where every check runs (one cluster for the suite)
    defaults: {threshold: 2.0e-7}  # config keys every check gets unless it says otherwise
    drift: {window: 20, sigmas: 3} # see history.DriftPolicy
    checks:
      - name: seed-mlp-correct
        example: seed-mlp          # a built-in example, written into the work folder
        config: correct.yaml       # ...whose config this is
      - name: mine
        config: models/check.yaml  # a config file (relative to the suite file)
        set: {epsilon: 1.0e-6}     # overrides
        expect: pass               # or fail: a planted bug the checker must keep catching
      - name: inline
        config: {model: "pkg.mod:net", params: p.zarr, data: d.zarr}

Each check's output goes to the work folder, afresh every run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import math
import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import api
from ..config import ClusterConfig, Config, merge_config, read_config_file, read_yaml
from ..errors import ConfigError, GradcheckError
from ..examples import EXAMPLES, write_example
from ..report import Report
from .history import ERROR, DriftPolicy, Record, judge, read_history, write_record

__all__ = ["CheckSpec", "Suite", "SuiteResult", "load_suite", "run_suite"]

_SUITE_KEYS = ("name", "cluster", "defaults", "drift", "checks")
_CHECK_KEYS = ("name", "config", "example", "set", "expect")


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """One named check of a suite, as written (paths not yet resolved to a work folder)."""

    name: str
    config: str | Mapping[str, Any]
    example: str | None = None
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    expect: str = "pass"


@dataclass(frozen=True, slots=True)
class Suite:
    """A validated suite definition."""

    name: str
    folder: Path
    checks: tuple[CheckSpec, ...]
    defaults: Mapping[str, Any]
    cluster: ClusterConfig
    drift: DriftPolicy


@dataclass(frozen=True, slots=True)
class SuiteResult:
    """The records of one suite run, and whether it failed."""

    records: tuple[Record, ...]
    history: Mapping[str, tuple[Record, ...]]  # each check's records before this run
    fail_on_drift: bool

    @property
    def errors(self) -> tuple[Record, ...]:
        """The checks that gave no verdict."""
        return tuple(r for r in self.records if r.outcome == ERROR)

    @property
    def failed(self) -> bool:
        """A check came out against its expectation, or drifted while the suite fails on drift."""
        return any(not r.ok or (self.fail_on_drift and r.flags) for r in self.records)


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a mapping. Got {type(value).__name__} instead.")
    return value


def load_suite(path: str | os.PathLike[str]) -> Suite:
    """Read and validate a suite file (its checks' configs are validated when they run)."""
    file = Path(path)
    raw = _mapping(read_yaml(file), f"Suite file '{file}'")
    unknown = sorted(str(k) for k in raw if k not in _SUITE_KEYS)
    if unknown:
        raise ConfigError(f"{file}: unknown key `{unknown[0]}`. Expected only: {', '.join(_SUITE_KEYS)}.")
    checks_raw = raw.get("checks")
    if not isinstance(checks_raw, list) or not checks_raw:
        raise ConfigError(f"{file}: `checks` must be a non-empty list of checks.")
    checks: list[CheckSpec] = []
    for k, entry in enumerate(checks_raw):
        entry = _mapping(entry, f"{file}: check {k + 1}")
        unknown = sorted(str(key) for key in entry if key not in _CHECK_KEYS)
        if unknown:
            raise ConfigError(
                f"{file}: check {k + 1}: unknown key `{unknown[0]}`. Expected only: {', '.join(_CHECK_KEYS)}."
            )
        name = entry.get("name")
        if not isinstance(name, str) or not name or not name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(
                f"{file}: check {k + 1} needs a `name` of letters, digits, - and _. Got {name!r} instead."
            )
        if name in {c.name for c in checks}:
            raise ConfigError(f"{file}: two checks are named {name!r}.")
        config = entry.get("config")
        if not isinstance(config, (str, Mapping)):
            raise ConfigError(f"{file}: check {name!r} needs `config`: a config file or a mapping of config keys.")
        example = entry.get("example")
        if example is not None and (example not in EXAMPLES or not isinstance(config, str)):
            raise ConfigError(
                f"{file}: check {name!r}: `example` must be one of {', '.join(EXAMPLES)}, with `config` naming one of its configs."
            )
        expect = entry.get("expect", "pass")
        if expect not in ("pass", "fail"):
            raise ConfigError(f"{file}: check {name!r}: `expect` must be pass or fail. Got {expect!r} instead.")
        overrides = _mapping(entry.get("set"), f"{file}: check {name!r}: `set`")
        checks.append(CheckSpec(name, config, example, overrides, expect))
    name = raw.get("name", file.stem)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{file}: `name` must be a non-empty string. Got {name!r} instead.")
    return Suite(
        name=name,
        folder=file.parent.resolve(),
        checks=tuple(checks),
        defaults=_mapping(raw.get("defaults"), f"{file}: `defaults`"),
        cluster=ClusterConfig.from_value(raw.get("cluster")),
        drift=DriftPolicy.from_dict(raw.get("drift"), str(file)),
    )


def _check_config(suite: Suite, check: CheckSpec, workdir: Path) -> Config:
    """The check's config: suite defaults, under the check's own keys, under its overrides; output in ``workdir``."""
    if check.example is not None:
        folder = workdir / "examples" / check.example
        write_example(check.example, str(folder))
        own = read_config_file(folder / str(check.config))
    elif isinstance(check.config, str):
        own = read_config_file(suite.folder / check.config)
    else:
        own = merge_config({}, check.config, suite.folder)
    merged = merge_config(merge_config({}, suite.defaults, suite.folder), own, suite.folder)
    merged = merge_config(merged, {**check.overrides, "output": str(workdir / f"{check.name}.zarr")}, suite.folder)
    try:
        return Config.from_dict(merged, suite.folder)
    except ConfigError as e:
        raise type(e)(f"check {check.name!r}: {e}") from e


def model_commit(model: str) -> str | None:
    """The git commit of the repository the model's code lives in, if any."""
    target = model.rpartition(":")[0]
    if target.endswith(".py"):
        folder = os.path.dirname(os.path.abspath(target))
    else:
        try:
            spec = importlib.util.find_spec(target)
        except (Exception, SystemExit):  # a package's __init__ runs, and may raise anything (review 93): no commit
            return None
        if spec is None or spec.origin is None:
            return None
        folder = os.path.dirname(spec.origin)
    try:
        done = subprocess.run(
            ["git", "-C", folder, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def _config_hash(config: Config) -> str:
    settings = {k: v for k, v in config.to_dict().items() if k not in ("output", "cluster")}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


@contextmanager
def _workdir(path: str | os.PathLike[str] | None) -> Iterator[Path]:
    if path is not None:
        Path(path).mkdir(parents=True, exist_ok=True)
        yield Path(path).resolve()
        return
    with tempfile.TemporaryDirectory(prefix="gradcheck-suite-") as scratch:
        yield Path(scratch)


@contextmanager
def _client(cluster: ClusterConfig, n_checks: int) -> Iterator[Any]:
    """One client for the whole suite; none when it runs in this process (``cluster: inline``)."""
    if cluster.inline:
        yield None
        return
    from ..execution.cluster import connect

    with connect(cluster, n_checks) as client:
        yield client


def _record(suite: Suite, check: CheckSpec, run_id: str, config: Config | None, **outcome: Any) -> Record:
    """A check's record in this run: what it checked (none where its config did not load) and its ``outcome``."""
    return Record(
        suite=suite.name,
        check=check.name,
        run_id=run_id,
        time=datetime.now(UTC).isoformat(timespec="microseconds"),
        commit=model_commit(config.model) if config is not None else None,
        config_hash=_config_hash(config) if config is not None else "",
        expect=check.expect,
        **outcome,
    )


def _verdict(report: Report) -> dict[str, Any]:
    """A record's outcome fields from a check's report."""
    return {
        "passed": report.passed,
        "verdict": report.verdict,
        "difference": report.difference,
        "threshold": report.threshold,
        "tensors": tuple(
            {key: t[key] for key in ("name", "difference", "contribution", "passed")}
            for t in report.to_dict()["tensors"]  # JSON-safe: NaN as null
        ),
        "failing": report.failing,
        "worst": tuple(w.to_dict() for w in report.worst[:5]),
        "n_params": report.n_params,
        "wall_seconds": float(report.timings["total_seconds"]),
        "evaluations_per_second": float(report.timings["evaluations_per_second"]),
    }


def _no_verdict(error: GradcheckError, seconds: float) -> dict[str, Any]:
    """A record's outcome fields for a check that gave no verdict: the error says why."""
    return {
        "passed": False,
        "verdict": ERROR,
        "error": str(error),  # one line, as the CLI prints it
        "difference": math.nan,
        "threshold": None,
        "tensors": (),
        "failing": (),
        "worst": (),
        "n_params": 0,
        "wall_seconds": seconds,
        "evaluations_per_second": 0.0,
    }


def run_suite(
    suite: Suite,
    history_dir: str | os.PathLike[str],
    *,
    workdir: str | os.PathLike[str] | None = None,
    cluster: ClusterConfig | None = None,
    on_record: Callable[[Record], None] | None = None,
) -> SuiteResult:
    """Run every check on one cluster, judge each against its history, and append its record.

    The history is read (and every record in it validated) before anything runs.
    """
    history = read_history(history_dir) if Path(history_dir).exists() else {}
    run_id = uuid.uuid4().hex[:12]
    records = []
    where = cluster or suite.cluster
    with _workdir(workdir) as work, _client(where, len(suite.checks)) as client:
        for check in suite.checks:
            started, config = time.monotonic(), None
            try:
                config = dataclasses.replace(_check_config(suite, check, work), cluster=where)
                report = api.run(config, overwrite=True, client=client)
            except GradcheckError as e:
                # recorded, and the suite goes on (review 92: one check's bad model file stopped the rest, and the
                # history went on showing its night before as its latest run)
                record = _record(suite, check, run_id, config, **_no_verdict(e, time.monotonic() - started))
            else:
                record = _record(suite, check, run_id, config, **_verdict(report))
            record = dataclasses.replace(record, flags=judge(record, history.get(check.name, []), suite.drift))
            write_record(history_dir, record)
            records.append(record)
            if on_record is not None:
                on_record(record)
    return SuiteResult(tuple(records), {k: tuple(v) for k, v in history.items()}, suite.drift.fail)
