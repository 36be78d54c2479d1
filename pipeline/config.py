"""Run configuration: loaded from YAML, validated at the door, frozen.

A :class:`Config` is plain data. Relative paths in a config file are resolved
against the file's folder, so an example folder can be moved as a whole;
relative paths given on the command line (``--set``) are resolved against the
current directory, like any other command-line path. URLs (``scheme://...``)
and module references (``package.module:attr``) are left as they are.
"""

from __future__ import annotations

import contextlib
import difflib
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, ConfigTypeError
from .numerics.fd import SCHEMES
from .storage import is_url

__all__ = [
    "ClusterConfig",
    "Config",
    "TLSFiles",
    "load_config",
    "merge_config",
    "parse_overrides",
    "read_config_file",
    "read_yaml",
]

#: The seed's step and threshold (``gradient_check_n``): available by naming them.
SEED_EPSILON = 1e-7
SEED_THRESHOLD = 2e-7
#: The settings a config gets when it names none: the most accurate this tool has.
DEFAULT_SCHEME = "richardson"
#: How random directions are judged: a directional difference with an error bar, or the Taylor test.
DIRECTION_TESTS = ("difference", "taylor")
TOLERANCE_KEYS = ("atol", "rtol", "safety")
#: Seconds to wait for a cluster to answer and to have a worker.
CLUSTER_TIMEOUT_SECONDS = 30.0


def _resolve_path(path: str, base: Path) -> str:
    if is_url(path) or os.path.isabs(path):
        return path
    return os.path.normpath(base / path)


def _resolve_model(ref: str, base: Path) -> str:
    target, sep, attr = ref.rpartition(":")
    if sep and target.endswith(".py"):
        return f"{_resolve_path(target, base)}:{attr}"
    return ref


_PATH_KEYS = ("params", "data", "output", "gradient")


def _resolve_paths(raw: Mapping[str, Any], base: Path) -> dict[str, Any]:
    """A copy of ``raw`` whose relative local paths are made absolute against ``base``.

    Values of the wrong kind are left alone for validation to name.
    """
    resolved = dict(raw)
    for key in _PATH_KEYS:
        if isinstance(resolved.get(key), str):
            resolved[key] = _resolve_path(resolved[key], base)
    if isinstance(resolved.get("model"), str):
        resolved["model"] = _resolve_model(resolved["model"], base)
    cluster = resolved.get("cluster")
    if isinstance(cluster, Mapping):
        cluster = dict(cluster)
        if isinstance(cluster.get("scheduler_file"), str):
            cluster["scheduler_file"] = _resolve_path(cluster["scheduler_file"], base)
        security = cluster.get("security")
        if isinstance(security, Mapping):
            cluster["security"] = {
                key: _resolve_path(value, base) if isinstance(value, str) else value for key, value in security.items()
            }
        resolved["cluster"] = cluster
    return resolved


def _number(key: str, value: Any) -> float:
    # PyYAML reads `1e-7` (no dot) as a string; a user means a number.
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigTypeError(f"`{key}` must be a number. Got {value!r} instead.", key=key)
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise ConfigError(f"`{key}` must be positive and finite. Got {value!r} instead.", key=key)
    return number


def _count(key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigTypeError(f"`{key}` must be a whole number. Got {value!r} instead.", key=key)
    if value < minimum:
        raise ConfigError(f"`{key}` must be at least {minimum}. Got {value!r} instead.", key=key)
    return value


def _flag(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigTypeError(f"`{key}` must be true or false. Got {value!r} instead.", key=key)
    return value


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigTypeError(f"`{key}` must be a non-empty string. Got {value!r} instead.", key=key)
    return value


def _key_text(key: Any) -> str:
    # A key is echoed in a one-line message: anything unprintable is shown escaped.
    return key if isinstance(key, str) and key.isprintable() else repr(key)


def _reject_unknown(where: str, given: Mapping[str, Any], known: Sequence[str]) -> None:
    unknown = sorted(set(given) - set(known), key=_key_text)
    if unknown:
        shown = [_key_text(k) for k in unknown]
        # a misspelt key: the known one it is closest to
        near = [close[0] for k in shown if (close := difflib.get_close_matches(k, known, n=1, cutoff=0.75))]
        hint = f" (did you mean {', '.join(f'`{where}{k}`' for k in near)}?)" if near else ""
        # With several unknown keys, the first in the message is the one the error is keyed on.
        raise ConfigError(
            f"Unknown key{'s' if len(unknown) > 1 else ''} {', '.join(f'`{where}{k}`' for k in shown)}{hint}. "
            f"Expected only: {', '.join(known)}.",
            key=f"{where}{unknown[0]}",
        )


@dataclass(frozen=True, slots=True)
class TLSFiles:
    """Mutual TLS with an existing cluster: the CA's certificate, and this client's certificate and key (PEM files)."""

    ca: str
    cert: str
    key: str

    KEYS = ("ca", "cert", "key")

    @classmethod
    def from_value(cls, value: Any) -> TLSFiles:
        """Validate ``cluster.security``: a mapping of the three files, each of which must exist."""
        if not isinstance(value, Mapping):
            raise ConfigTypeError(
                f"`cluster.security` must be a mapping of ca, cert and key files. Got {value!r} instead.",
                key="cluster.security",
            )
        _reject_unknown("cluster.security.", value, cls.KEYS)
        missing = [key for key in cls.KEYS if value.get(key) is None]
        if missing:
            raise ConfigError(
                f"`cluster.security` needs {', '.join(missing)} (mutual TLS takes all three files).",
                key="cluster.security",
            )
        files = {key: _text(f"cluster.security.{key}", value[key]) for key in cls.KEYS}
        for key, path in files.items():
            if not os.path.isfile(path):
                raise ConfigError(
                    f"`cluster.security.{key}`: the file '{path}' does not exist.", key=f"cluster.security.{key}"
                )
        return cls(**files)


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """Where the shard tasks run.

    Parameters
    ----------
    inline : bool
        Run in this process (``cluster: inline``): no cluster, no task, the same numbers.
    workers : int or None
        Worker processes of the embedded ``LocalCluster`` (one thread each).
        ``None`` picks one per core, at most one per shard.
    address : str or None
        Scheduler address of an existing cluster (``tcp://host:port``).
    scheduler_file : str or None
        Scheduler file of an existing cluster.
    timeout : float
        Seconds to wait for the cluster to answer and to have a worker.
    security : TLSFiles or None
        Mutual TLS files; None takes Dask's own configuration (``distributed.comm.tls``).
    """

    workers: int | None = None
    address: str | None = None
    scheduler_file: str | None = None
    timeout: float = CLUSTER_TIMEOUT_SECONDS
    security: TLSFiles | None = None
    inline: bool = False

    @property
    def is_local(self) -> bool:
        """Whether the run starts its own ``LocalCluster``."""
        return not self.inline and self.address is None and self.scheduler_file is None

    @classmethod
    def from_value(cls, value: Any) -> ClusterConfig:
        """Validate ``cluster:`` (null or ``local``, ``inline``, an address string, or a mapping)."""
        if value is None or value == "local":
            return cls()
        if value == "inline":
            return cls(inline=True)
        if isinstance(value, str):
            value = {"address": value}
        if not isinstance(value, Mapping):
            raise ConfigTypeError(
                f"`cluster` must be 'local', 'inline', a scheduler address or a mapping. Got {value!r} instead.",
                key="cluster",
            )
        _reject_unknown("cluster.", value, ("inline", "workers", "address", "scheduler_file", "timeout", "security"))
        inline = value.get("inline", False)
        if not isinstance(inline, bool):
            raise ConfigTypeError(
                f"`cluster.inline` must be true or false. Got {inline!r} instead.", key="cluster.inline"
            )
        if inline:
            if set(value) - {"inline", "timeout"}:
                raise ConfigError(
                    "`cluster.inline` runs the check in this process; it takes no other cluster key.", key="cluster"
                )
            return cls(inline=True)
        workers = value.get("workers")
        address = value.get("address")
        scheduler_file = value.get("scheduler_file")
        if workers is not None:
            workers = _count("cluster.workers", workers, 1)
        if address is not None:
            address = _text("cluster.address", address)
        if scheduler_file is not None:
            scheduler_file = _text("cluster.scheduler_file", scheduler_file)
        timeout = _number("cluster.timeout", value.get("timeout", CLUSTER_TIMEOUT_SECONDS))
        if address is not None and scheduler_file is not None:
            raise ConfigError("`cluster.address` and `cluster.scheduler_file` exclude each other. Give one.")
        if workers is not None and (address is not None or scheduler_file is not None):
            raise ConfigError(
                "`cluster.workers` sizes a local cluster; it cannot be combined with an existing "
                "cluster's address or scheduler file.",
                key="cluster.workers",
            )
        security = value.get("security")
        if security is not None:
            if workers is not None:
                raise ConfigError(
                    "`cluster.security` is for an existing cluster; a local cluster needs none.", key="cluster.security"
                )
            security = TLSFiles.from_value(security)
        return cls(workers=workers, address=address, scheduler_file=scheduler_file, timeout=timeout, security=security)


def _epsilon(value: Any) -> float | None:
    if value is None or value == "auto":
        return None
    if isinstance(value, str) and value.strip().lower() == "auto":
        return None
    try:
        return _number("epsilon", value)
    except ConfigTypeError:
        raise ConfigTypeError(f"`epsilon` must be a number or 'auto'. Got {value!r} instead.", key="epsilon") from None


def _choice(key: str, value: Any, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ConfigError(f"`{key}` must be one of {', '.join(choices)}. Got {value!r} instead.", key=key)
    return str(value)


def _tolerance(value: Any) -> str | dict[str, float]:
    """``auto`` (per dtype and scheme), ``none`` (no per-element verdicts) or overrides of atol/rtol/safety."""
    if value is None or value in ("auto", "none"):
        return value or "auto"
    if not isinstance(value, Mapping):
        raise ConfigTypeError(
            f"`tolerance` must be 'auto', 'none' or a mapping of {', '.join(TOLERANCE_KEYS)}. Got {value!r} instead.",
            key="tolerance",
        )
    _reject_unknown("tolerance.", value, TOLERANCE_KEYS)
    checked = {}
    for key, number in value.items():
        checked[key] = 0.0 if key == "atol" and number in (0, "0") else _number(f"tolerance.{key}", number)
    return checked


#: Keys that carry credentials, refused in ``storage_options``: a config file is no place for them.
CREDENTIAL_KEYS = frozenset(
    {
        "key",
        "secret",
        "token",
        "password",
        "session_token",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "account_key",
        "sas_token",
        "client_secret",
        "connection_string",
    }
)


def _storage_options(value: Any, where: str = "storage_options") -> dict[str, Any]:
    """fsspec options for every URL store (``endpoint_url``, ``client_kwargs``...); never credentials."""
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ConfigTypeError(f"`{where}` must be a mapping of fsspec options. Got {value!r} instead.", key=where)
    for key, item in value.items():
        if key.lower() in CREDENTIAL_KEYS:
            raise ConfigError(
                f"`{where}.{_key_text(key)}` is a credential, which a config file must not hold in clear: set it in "
                "the environment of the client and the workers (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...) instead.",
                key=f"{where}.{key}",
            )
        if isinstance(item, Mapping):
            _storage_options(item, f"{where}.{key}")
    return dict(value)


def _indices(value: Any) -> str | dict[str, int]:
    """``all``, ``none`` (random directions only), or ``{sample_per_tensor: k, seed: s}``."""
    if value is None or value in ("all", "none"):
        return value or "all"
    if not isinstance(value, Mapping):
        raise ConfigTypeError(
            f"`indices` must be 'all', 'none' or {{sample_per_tensor: k, seed: s}}. Got {value!r} instead.",
            key="indices",
        )
    _reject_unknown("indices.", value, ("sample_per_tensor", "seed"))
    if "sample_per_tensor" not in value:
        raise ConfigError("`indices` needs `sample_per_tensor` (elements checked per tensor).", key="indices")
    return {
        "sample_per_tensor": _count("indices.sample_per_tensor", value["sample_per_tensor"], 1),
        "seed": _count("indices.seed", value.get("seed", 0), 0),
    }


@dataclass(frozen=True, slots=True)
class Config:
    """One gradient check, fully resolved.

    Parameters
    ----------
    model : str
        ``package.module:attr`` or ``path/to/file.py:attr``.
    params, data, output : str
        Zarr group paths or URLs (see DESIGN.md for their layout).
    gradient : str or None
        Optional Zarr group holding a precomputed analytic gradient.
    epsilon : float or None
        A fixed step (the seed's ``1e-7``), or None (``auto``): ``EPS**(1/(order+1))·max(1, |θ_i|)``
        per element for the parameter dtype.
    threshold : float or None
        If set, the check also needs the seed's normalized difference to be at most this.
    scheme : str
        ``central``, ``richardson`` (the default) or ``complex-step``.
    tolerance : str or dict
        ``auto`` (per dtype and scheme, see :mod:`pipeline.tolerance`), ``none`` (no
        per-element verdicts: the threshold alone decides), or a mapping overriding
        ``atol``, ``rtol``, ``safety``.
    indices : str or dict
        ``all``, ``none``, or ``{sample_per_tensor: k, seed: s}``: k seeded random elements per tensor.
    directions : int
        Seeded random unit directions per tensor along which ``g·v`` is compared with the
        directional difference (2 losses each with central, whatever the tensor's size).
    direction_test : str
        How each random direction is judged: ``difference`` (its directional difference against
        ``g·u``, with an error bar) or ``taylor`` (the Taylor test: the remainder's observed order
        of convergence, 2 for a correct gradient and 1 for a wrong one).
    second_look : bool
        Evaluate every suspect element again over a sequence of steps before its verdict (the default).
    unverified : str
        ``fail`` (the default): a tensor none of whose checked elements could be verified fails the
        check (exit 4); ``warn``: the report names it and the check may still pass.
    precision : str
        ``native`` (the parameters' dtype) or ``float64`` (re-check a float32 model in float64).
    shard_size : int or None
        Parameter indices per task (and per output chunk); ``None`` is automatic.
    worst : int
        How many of the worst elements the report lists.
    cluster : ClusterConfig
        Where to run.
    storage_options : dict
        fsspec options for the stores given as URLs (credentials come from the environment).
    """

    model: str
    params: str
    data: str
    output: str
    gradient: str | None = None
    epsilon: float | None = None
    threshold: float | None = None
    shard_size: int | None = None
    worst: int = 10
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    scheme: str = DEFAULT_SCHEME
    tolerance: str | dict[str, float] = "auto"
    indices: str | dict[str, int] = "all"
    precision: str = "native"
    directions: int = 0
    direction_test: str = "difference"
    second_look: bool = True
    unverified: str = "fail"
    storage_options: dict[str, Any] = field(default_factory=dict)

    KEYS = (
        "model",
        "params",
        "data",
        "gradient",
        "output",
        "epsilon",
        "scheme",
        "threshold",
        "tolerance",
        "indices",
        "directions",
        "direction_test",
        "second_look",
        "unverified",
        "precision",
        "shard_size",
        "worst",
        "cluster",
        "storage_options",
    )
    REQUIRED = ("model", "params", "data", "output")

    @classmethod
    def from_dict(cls, raw: Any, base: str | os.PathLike[str] = ".") -> Config:
        """Validate a mapping of config keys; relative paths resolve against ``base``."""
        if not isinstance(raw, Mapping):
            raise ConfigTypeError(f"A config must be a mapping of keys. Got {type(raw).__name__} instead.")
        _reject_unknown("", raw, cls.KEYS)
        missing = [key for key in cls.REQUIRED if raw.get(key) is None]
        if missing:
            raise ConfigError(f"Missing required key{'s' if len(missing) > 1 else ''}: {', '.join(missing)}.")
        raw = _resolve_paths(raw, Path(base).resolve())
        gradient = raw.get("gradient")
        shard_size = raw.get("shard_size")
        if raw.get("indices") == "none" and not raw.get("directions"):
            raise ConfigError("`indices: none` checks nothing unless `directions` is at least 1.", key="indices")
        if raw.get("tolerance") == "none" and raw.get("threshold") in (None, "none") and not raw.get("directions"):
            raise ConfigError(
                "`tolerance: none` with no `threshold` (and no `directions`) judges nothing: any gradient would "
                "pass. Set a `threshold` (the seed's is 2e-7), or leave `tolerance` at auto.",
                key="tolerance",
            )
        if raw.get("direction_test") == "taylor" and not raw.get("directions"):
            raise ConfigError(
                "`direction_test: taylor` judges random directions, and `directions` is 0: there would be none. "
                "Set `directions: N` (8 is a common choice), or leave `direction_test` at difference.",
                key="direction_test",
            )
        return cls(
            model=_text("model", raw["model"]),
            params=_text("params", raw["params"]),
            data=_text("data", raw["data"]),
            output=_text("output", raw["output"]),
            gradient=None if gradient is None else _text("gradient", gradient),
            epsilon=_epsilon(raw.get("epsilon")),
            threshold=None if raw.get("threshold") in (None, "none") else _number("threshold", raw["threshold"]),
            scheme=_choice("scheme", raw.get("scheme", DEFAULT_SCHEME), SCHEMES),
            tolerance=_tolerance(raw.get("tolerance")),
            indices=_indices(raw.get("indices")),
            precision=_choice("precision", raw.get("precision", "native"), ("native", "float64")),
            directions=_count("directions", raw.get("directions", 0), 0),
            direction_test=_choice("direction_test", raw.get("direction_test", "difference"), DIRECTION_TESTS),
            second_look=_flag("second_look", raw.get("second_look", True)),
            unverified=_choice("unverified", raw.get("unverified", "fail"), ("fail", "warn")),
            shard_size=None if shard_size in (None, "auto") else _count("shard_size", shard_size, 1),
            worst=_count("worst", raw.get("worst", 10), 0),
            cluster=ClusterConfig.from_value(raw.get("cluster")),
            storage_options=_storage_options(raw.get("storage_options")),
        )

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain JSON-ready data (``from_dict`` reads it back)."""
        return asdict(self)

    @property
    def sample(self) -> tuple[int, int] | None:
        """``(k, seed)`` when the config samples k elements per tensor; None when it checks all."""
        if isinstance(self.indices, Mapping):
            return self.indices["sample_per_tensor"], self.indices["seed"]
        if self.indices == "none":
            return 0, 0
        return None


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """Parse ``key=value`` pairs (values as YAML scalars; dotted keys nest: ``cluster.security.ca=ca.pem``)."""
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"`--set` takes key=value. Got {pair!r} instead.")
        try:
            value = yaml.safe_load(text) if text else None
        except yaml.YAMLError:
            value = text
        *heads, last = key.split(".")
        nested = overrides
        for depth, head in enumerate(heads):
            nested = nested.setdefault(head, {})
            if not isinstance(nested, dict):
                raise ConfigError(f"`--set {key}` conflicts with `--set {'.'.join(heads[: depth + 1])}`.")
        nested[last] = value
    return overrides


def read_yaml(path: Path) -> Any:
    """Parse a YAML file; a missing file or bad YAML is a one-line ConfigError naming the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"Config file '{path}' does not exist.") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"Config file '{path}' cannot be read: {e}.") from e
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise ConfigError(f"Config file '{path}' is not valid YAML{where}: {problem}.") from e


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A config file's keys, unvalidated, with its relative paths resolved against its folder."""
    file = Path(path)
    raw = read_yaml(file)
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigTypeError(f"Config file '{file}' must hold a mapping of keys. Got {type(raw).__name__} instead.")
    return _resolve_paths(raw, file.parent.resolve())


def merge_config(base: Mapping[str, Any], overrides: Mapping[str, Any], where: Path) -> dict[str, Any]:
    """``base`` with ``overrides`` laid over it; nested mappings (``cluster``) merge; relative paths in overrides resolve against ``where``."""
    return _merge(base, _resolve_paths(overrides, where))


def _merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        current = merged.get(key)
        merged[key] = _merge(current, value) if isinstance(value, Mapping) and isinstance(current, Mapping) else value
    return merged


def load_config(path: str | os.PathLike[str], overrides: Mapping[str, Any] | None = None) -> Config:
    """Load, merge and validate a YAML config.

    Parameters
    ----------
    path : path-like
        The YAML file. Relative paths inside it resolve against its folder.
    overrides : mapping, optional
        Keys from the command line (``--set``); relative paths in them resolve
        against the current directory.

    Raises
    ------
    ConfigError
        The file is missing or not YAML, or a key is unknown, missing or invalid.
        The message names where the faulty key came from: ``--set KEY`` when the
        command line gave it, the file otherwise.
    """
    overrides = overrides or {}
    emptied = [key for key in Config.REQUIRED if key in overrides and overrides[key] is None]
    if emptied:  # `--set output=`: the override is at fault, not the file (review 122)
        raise ConfigError(f"--set {emptied[0]}: `{emptied[0]}` is required; it cannot be empty.", key=emptied[0])
    merged = merge_config(read_config_file(path), overrides, Path.cwd())
    try:
        return Config.from_dict(merged, Path.cwd())
    except ConfigError as e:
        given = _override_given(e.key, overrides)
        where = f"--set {given}" if given is not None else str(path)
        raise type(e)(f"{where}: {e}", key=e.key) from e


def _override_given(key: str | None, overrides: Mapping[str, Any]) -> str | None:
    """The dotted key that ``overrides`` gave and that holds ``key`` (itself or an enclosing key), or None.

    ``cluster.workers`` is the command line's when ``--set cluster.workers=0`` gave it, or when
    ``--set cluster=...`` replaced the whole mapping; not when the file gave it and the command
    line only set ``cluster.timeout`` beside it.
    """
    if key is None:
        return None
    parts = key.split(".")
    level: Any = overrides
    for depth, part in enumerate(parts):
        if not isinstance(level, Mapping):
            # A scalar override (`--set cluster=tcp://...`) stands for everything under it.
            return ".".join(parts[:depth])
        if part not in level:
            return None
        level = level[part]
    return key
