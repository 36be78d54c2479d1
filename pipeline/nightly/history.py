"""History of a nightly suite: one versioned record per check per run, and the drift judge.

Records are JSON files, ``DIR/<check>/<time>-<run id>.json``. A record that
cannot be read, or that a newer gradcheck wrote, is an error, never skipped.
Judging is pure: a record against the records before it.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, HistoryError
from ..report import text_table

__all__ = [
    "ERROR",
    "RECORD_VERSION",
    "DriftPolicy",
    "Record",
    "format_history",
    "format_run",
    "judge",
    "read_history",
    "write_record",
]

RECORD_FORMAT = "gradcheck-history"
RECORD_VERSION = 1
#: The verdict of a check that gave none (bad input, a model that raised or crashed): it is never as expected.
ERROR = "error"


@dataclass(frozen=True, slots=True)
class Record:
    """One check in one suite run."""

    suite: str
    check: str
    run_id: str
    time: str  # UTC, ISO 8601; records sort by it
    commit: str | None  # the model code's git commit, when it lives in a git repository
    config_hash: str
    expect: str  # "pass" or "fail"
    passed: bool
    difference: float  # NaN when undefined (non-finite losses)
    threshold: float | None  # None: elements are judged by error bars alone
    tensors: tuple[Mapping[str, Any], ...]  # name, difference, contribution, passed
    failing: tuple[str, ...]
    worst: tuple[Mapping[str, Any], ...]
    n_params: int
    wall_seconds: float
    evaluations_per_second: float
    flags: tuple[str, ...] = ()  # drift found when the record was made
    # "passed", "failed", "not verified", or "error": the check gave no verdict ("" in records made before
    # verdicts had three values)
    verdict: str = ""
    error: str = ""  # why the check gave no verdict: its one-line error

    @property
    def outcome(self) -> str:
        """The verdict: ``passed``, ``failed``, ``not verified`` or ``error``."""
        return self.verdict or ("passed" if self.passed else "failed")

    @property
    def ok(self) -> bool:
        """Whether the check came out as expected (a planted bug that is still caught is ok). A check that
        could not verify some tensor is never as expected: a planted bug it could not have seen is not caught."""
        return self.outcome == ("passed" if self.expect == "pass" else "failed")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with the format and its version."""
        raw = asdict(self)
        raw["difference"] = self.difference if math.isfinite(self.difference) else None
        return {"format": RECORD_FORMAT, "format_version": RECORD_VERSION, **raw}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], where: str) -> Record:
        """Read back :meth:`to_dict`; ``where`` names the file for errors."""
        if not isinstance(raw, Mapping) or raw.get("format") != RECORD_FORMAT:
            raise HistoryError(f"History record '{where}' is not a gradcheck history record.")
        version = raw.get("format_version")
        if not isinstance(version, int) or version > RECORD_VERSION:
            raise HistoryError(
                f"History record '{where}' has format version {version!r}; this gradcheck reads up to "
                f"{RECORD_VERSION}. Upgrade gradcheck."
            )
        try:
            values = {name: raw[name] for name in cls.__dataclass_fields__ if name not in ("verdict", "error")}
            values["verdict"], values["error"] = str(raw.get("verdict", "")), str(raw.get("error", ""))
            values["difference"] = math.nan if values["difference"] is None else float(values["difference"])
            for name in ("tensors", "failing", "worst", "flags"):
                values[name] = tuple(values[name])
            return cls(**values)
        except (KeyError, TypeError, ValueError) as e:
            raise HistoryError(f"History record '{where}' is damaged: {type(e).__name__}: {e}.") from e


def write_record(folder: str | os.PathLike[str], record: Record) -> Path:
    """Add ``record`` to the history in ``folder`` (written whole, then renamed into place)."""
    directory = Path(folder) / record.check
    directory.mkdir(parents=True, exist_ok=True)
    stamp = record.time.replace("+00:00", "Z").replace("-", "").replace(":", "")
    path = directory / f"{stamp}-{record.run_id}.json"
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(record.to_dict(), indent=1), encoding="utf-8")
    partial.replace(path)  # a reader never sees half a record
    return path


def read_history(folder: str | os.PathLike[str]) -> dict[str, list[Record]]:
    """Every record in ``folder``, by check, oldest first. Raises on any record it cannot use."""
    root = Path(folder)
    if not root.is_dir():
        raise HistoryError(f"History folder '{root}' {'is not a folder' if root.exists() else 'does not exist'}.")
    history: dict[str, list[Record]] = {}
    for path in sorted(root.glob("*/*.json")):
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise HistoryError(f"History record '{path}' cannot be read: {e}.") from e
        record = Record.from_dict(raw, str(path))
        history.setdefault(record.check, []).append(record)
    for records in history.values():
        records.sort(key=lambda r: r.time)
    return history


@dataclass(frozen=True, slots=True)
class DriftPolicy:
    """When a record is flagged against its history.

    A check's log10 difference drifts when it rises above the median of its
    last ``window`` runs by more than ``sigmas`` robust standard deviations
    (1.4826 × the median absolute deviation, but at least
    ``min_sigma_decades``: a deterministic check has no spread at all). With
    fewer than ``min_history`` earlier runs, a rise by more than ``factor``
    is flagged instead. Wall time regresses when it exceeds ``wall_factor``
    times the median of the window and the median by ``wall_min_seconds``
    (scheduling jitter alone can double a sub-second check). Drift fails the
    suite only if ``fail``.
    """

    window: int = 20
    sigmas: float = 3.0
    min_sigma_decades: float = 0.01
    min_history: int = 5
    factor: float = 2.0
    wall_factor: float = 2.0
    wall_min_seconds: float = 1.0
    fail: bool = False

    KEYS = ("window", "sigmas", "min_sigma_decades", "min_history", "factor", "wall_factor", "wall_min_seconds", "fail")

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> DriftPolicy:
        """Validate the suite's ``drift:`` mapping."""
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where}: `drift` must be a mapping. Got {type(raw).__name__} instead.")
        unknown = sorted(str(k) for k in raw if k not in cls.KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown key `drift.{unknown[0]}`. Expected only: {', '.join(cls.KEYS)}.")
        values = {**asdict(cls()), **raw}
        for key in ("window", "min_history"):
            if isinstance(values[key], bool) or not isinstance(values[key], int) or values[key] < 1:
                raise ConfigError(
                    f"{where}: `drift.{key}` must be a whole number of at least 1. Got {values[key]!r} instead."
                )
        for key in ("sigmas", "min_sigma_decades", "factor", "wall_factor", "wall_min_seconds"):
            value = values[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{where}: `drift.{key}` must be a positive number. Got {value!r} instead.")
        if not isinstance(values["fail"], bool):
            raise ConfigError(f"{where}: `drift.fail` must be true or false. Got {values['fail']!r} instead.")
        return cls(**values)


_WALL_FLAG = "wall time regressed"


def flag_kind(flag: str) -> str:
    """What a flag is about: ``"wall"`` time or the ``"difference"``."""
    return "wall" if flag.startswith(_WALL_FLAG) else "difference"


def _decades(difference: float) -> float:
    return math.log10(max(difference, 1e-300))


def judge(record: Record, earlier: Sequence[Record], policy: DriftPolicy) -> tuple[str, ...]:
    """The drift flags of ``record`` against the check's ``earlier`` records (oldest first); none for an
    error, and errors are not among the runs it is judged against."""
    if record.outcome == ERROR:
        return ()
    earlier = [r for r in earlier if r.outcome != ERROR]
    window = [r for r in earlier if math.isfinite(r.difference)][-policy.window :]
    flags = []
    if not math.isfinite(record.difference):
        flags.append("difference is not finite (a loss was NaN or infinite)")
    elif window:
        history = [_decades(r.difference) for r in window]
        median = statistics.median(history)
        now = _decades(record.difference)
        if len(window) >= policy.min_history:
            sigma = max(1.4826 * statistics.median(abs(x - median) for x in history), policy.min_sigma_decades)
            if now > median + policy.sigmas * sigma:
                flags.append(
                    f"difference drifted up: {record.difference:.3e} against a median of {10**median:.3e} "
                    f"over {len(window)} runs ({(now - median) / sigma:.1f} robust sigmas)"
                )
        elif now > median + math.log10(policy.factor):
            flags.append(
                f"difference rose {10 ** (now - median):.2f}x: {record.difference:.3e} against a median of "
                f"{10**median:.3e} over {len(window)} run(s)"
            )
    walls = [r.wall_seconds for r in earlier[-policy.window :]]
    if walls:
        typical = statistics.median(walls)
        if record.wall_seconds > max(policy.wall_factor * typical, typical + policy.wall_min_seconds):
            flags.append(
                f"{_WALL_FLAG} {record.wall_seconds / typical:.1f}x: {record.wall_seconds:.2f} s against "
                f"a median of {typical:.2f} s"
            )
    return tuple(flags)


def _verdict(record: Record) -> str:
    return f"{record.outcome}{'' if record.ok else ' (UNEXPECTED)'}"


def format_run(records: Sequence[Record], history: Mapping[str, Sequence[Record]]) -> str:
    """One suite run against its history: a row per check, then the flags in words."""
    # The expectation beside the verdict: a planted check's "failed" is then read as the success it is.
    rows = [
        [
            "check",
            "expected",
            "verdict",
            "difference",
            "median before",
            "runs before",
            "wall s",
            "median wall s",
            "drift",
        ]
    ]
    for r in records:
        earlier = [e for e in history.get(r.check, []) if math.isfinite(e.difference)]
        median = f"{statistics.median(e.difference for e in earlier):.3e}" if earlier else "-"
        walls = [e.wall_seconds for e in history.get(r.check, []) if e.outcome != ERROR]
        median_wall = f"{statistics.median(walls):.2f}" if walls else "-"
        rows.append(
            [
                r.check,
                r.expect,
                _verdict(r),
                f"{r.difference:.3e}",
                median,
                str(len(history.get(r.check, []))),
                f"{r.wall_seconds:.2f}",
                median_wall,
                "FLAGGED" if r.flags else "-",
            ]
        )
    lines = text_table(rows)
    for r in records:
        # an unexpected failure's tensors, without opening the record (review 92: only its JSON named them)
        lines += [f"{r.check}: wrong tensors: {', '.join(r.failing)}"] if r.failing and not r.ok else []
        lines += [f"{r.check}: {flag}" for flag in r.flags]
    return "\n".join(lines)


def format_history(history: Mapping[str, Sequence[Record]]) -> str:
    """The whole history: a row per check, its latest run against the runs before it."""
    rows = [["check", "runs", "latest", "verdict", "difference", "median", "wall s", "commit", "drift"]]
    for check, records in sorted(history.items()):
        latest = records[-1]
        finite = [r.difference for r in records if math.isfinite(r.difference)]
        rows.append(
            [
                check,
                str(len(records)),
                latest.time[:19].replace("T", " "),
                _verdict(latest),
                f"{latest.difference:.3e}",
                f"{statistics.median(finite):.3e}" if finite else "-",
                f"{latest.wall_seconds:.2f}",
                (latest.commit or "-")[:10],
                "FLAGGED" if latest.flags else "-",
            ]
        )
    lines = text_table(rows)
    for check, records in sorted(history.items()):
        lines += [f"{check}: {flag}" for flag in records[-1].flags]
        lines += [f"{check}: error: {records[-1].error}"] if records[-1].error else []
    return "\n".join(lines)
