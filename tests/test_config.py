"""Config loading: paths, overrides, and one clear message per mistake."""

from __future__ import annotations

import os
import pickle
import re
import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.config import ClusterConfig, Config, load_config, parse_overrides
from pipeline.errors import ConfigError, ConfigTypeError
from pipeline.examples import write_example

from .conftest import REPO, run_cli

MINIMAL = "model: pkg.mod:model\nparams: p.zarr\ndata: d.zarr\noutput: o.zarr\n"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sub" / "run.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_are_the_seeds_and_paths_resolve_against_the_file(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, MINIMAL + "gradient: g.zarr\n"))
    sub = tmp_path.resolve() / "sub"
    assert (config.params, config.data, config.output, config.gradient) == (
        str(sub / "p.zarr"),
        str(sub / "d.zarr"),
        str(sub / "o.zarr"),
        str(sub / "g.zarr"),
    )
    # Naming no step, scheme or tolerance gets the most accurate settings, not the seed's.
    assert (config.epsilon, config.threshold, config.shard_size, config.worst) == (None, None, None, 10)
    assert (config.scheme, config.tolerance, config.indices, config.precision) == (
        "richardson",
        "auto",
        "all",
        "native",
    )
    assert config.sample is None
    assert config.cluster == ClusterConfig()
    assert config.cluster.is_local
    assert config.model == "pkg.mod:model"  # a module reference is not a path


def test_model_file_paths_resolve_but_urls_do_not(tmp_path: Path) -> None:
    text = "model: models/net.py:Net\nparams: s3://bucket/p.zarr\ndata: /abs/d.zarr\noutput: o.zarr\n"
    config = load_config(_write(tmp_path, text))
    assert config.model == f"{tmp_path.resolve() / 'sub' / 'models' / 'net.py'}:Net"
    assert config.params == "s3://bucket/p.zarr"
    assert config.data == "/abs/d.zarr"


def test_overrides_win_and_their_paths_resolve_against_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    overrides = parse_overrides(["epsilon=1e-6", "output=elsewhere.zarr", "cluster.workers=3", "shard_size=auto"])
    config = load_config(_write(tmp_path, MINIMAL + "shard_size: 5\n"), overrides)
    assert config.epsilon == 1e-6  # "1e-6" is a string to YAML 1.1; it means a number
    assert config.output == str(tmp_path.resolve() / "elsewhere.zarr")
    assert config.cluster.workers == 3
    assert config.shard_size is None


def test_to_dict_round_trips() -> None:
    config = Config.from_dict(
        {"model": "m:x", "params": "/p", "data": "/d", "output": "/o", "cluster": "tcp://127.0.0.1:8786"}
    )
    assert Config.from_dict(config.to_dict()) == config
    tuned = Config.from_dict(
        {
            **{"model": "m:x", "params": "/p", "data": "/d", "output": "/o", "epsilon": "1e-6"},
            **{"scheme": "central", "tolerance": {"rtol": 1e-6, "atol": 0}, "indices": {"sample_per_tensor": 5}},
        }
    )
    assert Config.from_dict(tuned.to_dict()) == tuned
    assert (tuned.epsilon, tuned.tolerance, tuned.sample) == (1e-6, {"rtol": 1e-6, "atol": 0.0}, (5, 0))
    assert config.cluster.address == "tcp://127.0.0.1:8786"


@pytest.mark.parametrize(
    ("extra", "error", "message"),
    [
        ("epsilon: -1.0e-7\n", ConfigError, r"`epsilon` must be positive and finite. Got -1e-07 instead."),
        ("epsilon: 0\n", ConfigError, r"`epsilon` must be positive and finite. Got 0 instead."),
        ("epsilon: tiny\n", ConfigTypeError, r"`epsilon` must be a number or 'auto'. Got 'tiny' instead."),
        ("scheme: forward\n", ConfigError, r"`scheme` must be one of central, richardson, complex-step. Got 'forward'"),
        ("tolerance: {rtol: -1}\n", ConfigError, r"`tolerance.rtol` must be positive and finite. Got -1 instead."),
        (
            "tolerance: {tol: 1}\n",
            ConfigError,
            r"Unknown key `tolerance.tol` \(did you mean `tolerance.rtol`\?\). Expected only: atol, rtol, safety.",
        ),
        ("tolerance: strict\n", ConfigTypeError, r"`tolerance` must be 'auto', 'none' or a mapping"),
        ("indices: some\n", ConfigTypeError, r"`indices` must be 'all', 'none' or \{sample_per_tensor: k, seed: s\}"),
        ("indices: {seed: 1}\n", ConfigError, r"`indices` needs `sample_per_tensor`"),
        ("indices: none\n", ConfigError, r"`indices: none` checks nothing unless `directions` is at least 1."),
        ("directions: -1\n", ConfigError, r"`directions` must be at least 0. Got -1 instead."),
        ("indices: {sample_per_tensor: 0}\n", ConfigError, r"`indices.sample_per_tensor` must be at least 1"),
        ("precision: float16\n", ConfigError, r"`precision` must be one of native, float64. Got 'float16'"),
        ("threshold: .nan\n", ConfigError, r"`threshold` must be positive and finite"),
        ("shard_size: 0\n", ConfigError, r"`shard_size` must be at least 1. Got 0 instead."),
        ("shard_size: 2.5\n", ConfigTypeError, r"`shard_size` must be a whole number. Got 2.5 instead."),
        ("worst: true\n", ConfigTypeError, r"`worst` must be a whole number. Got True instead."),
        (
            "epsilom: 1.0e-7\n",
            ConfigError,
            r"Unknown key `epsilom` \(did you mean `epsilon`\?\). Expected only: model, params",
        ),
        ("cluster: {workers: 0}\n", ConfigError, r"`cluster.workers` must be at least 1. Got 0 instead."),
        ("cluster: {nodes: 2}\n", ConfigError, r"Unknown key `cluster.nodes`"),
        ("cluster: [1]\n", ConfigTypeError, r"`cluster` must be 'local', 'inline', a scheduler address or a mapping"),
        (
            "cluster: {address: 'tcp://127.0.0.1:1', workers: 2}\n",
            ConfigError,
            r"`cluster.workers` sizes a local cluster; it cannot be combined",
        ),
        ("params: 3\n", ConfigTypeError, r"`params` must be a non-empty string. Got 3 instead."),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, extra: str, error: type[Exception], message: str) -> None:
    lines = [line for line in MINIMAL.splitlines(keepends=True) if not line.startswith(extra.split(":")[0] + ":")]
    path = _write(tmp_path, "".join(lines) + extra)
    with pytest.raises(error, match=message) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: ")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model: [unclosed\n", r"is not valid YAML at line 2, column 1"),
        ("- a\n- b\n", r"must hold a mapping of keys. Got list instead."),
        ("params: p.zarr\ndata: d.zarr\n", r"Missing required keys: model, output."),
    ],
)
def test_bad_files_name_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"Config file '.*nope.yaml' does not exist."):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("fault", "key", "message"),
    [
        ("foo=1", "foo", r"Unknown key `foo`. Expected only: model, params"),
        ("epsilon=-1", "epsilon", r"`epsilon` must be positive and finite. Got -1 instead."),
        ("cluster.nodes=3", "cluster.nodes", r"Unknown key `cluster.nodes`. Expected only: inline, workers"),
        ("cluster.workers=0", "cluster.workers", r"`cluster.workers` must be at least 1. Got 0 instead."),
    ],
)
def test_a_bad_key_is_blamed_on_the_command_line_or_the_file_whichever_gave_it(
    tmp_path: Path, fault: str, key: str, message: str
) -> None:
    path = _write(tmp_path, MINIMAL)
    # Given with --set: the command line is named, not the file (which is valid on its own).
    result = run_cli("run", str(path), "--set", fault, "--set", "threshold=1e-3")
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert re.fullmatch(rf"gradcheck: error: --set {re.escape(key)}: {message}[^\n]*\n", result.stderr), result.stderr
    # The same fault in the file, with another key on the command line: the file is named.
    name, _, value = fault.partition("=")
    head, _, nested = name.partition(".")
    path.write_text(MINIMAL + (f"{head}: {{{nested}: {value}}}\n" if nested else f"{name}: {value}\n"))
    result = run_cli("run", str(path), "--set", "threshold=1e-3", "--set", "cluster.timeout=5")
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert re.fullmatch(rf"gradcheck: error: {re.escape(str(path))}: {message}[^\n]*\n", result.stderr), result.stderr


@pytest.mark.parametrize(
    ("text", "overrides", "key", "where"),
    [
        (MINIMAL + "tolerance: {rtol: -1}\n", {}, "tolerance.rtol", "FILE"),
        (MINIMAL, {"tolerance": {"rtol": -1}}, "tolerance.rtol", "--set tolerance.rtol"),
        (
            MINIMAL,
            {"cluster": {"security": {"ca": "absent.pem", "cert": "c", "key": "k"}}},
            "cluster.security.ca",
            "--set cluster.security.ca",
        ),
        (MINIMAL + "cluster: {workers: 0}\n", {"cluster": {"timeout": 5}}, "cluster.workers", "FILE"),
        (MINIMAL, {"cluster": [1]}, "cluster", "--set cluster"),
        (MINIMAL, {"storage_options": {"secret": "x"}}, "storage_options.secret", "--set storage_options.secret"),
        (MINIMAL, {"indices": "none"}, "indices", "--set indices"),
        (MINIMAL, {"scheme": "forward"}, "scheme", "--set scheme"),
        (MINIMAL, {"params": 3}, "params", "--set params"),
        ("params: p.zarr\ndata: d.zarr\noutput: o.zarr\n", {}, None, "FILE"),  # missing: no one key
        ("params: p.zarr\ndata: d.zarr\n", {"model": None}, "model", "--set model"),  # the file lacks output too
        (MINIMAL, {"output": None}, "output", "--set output"),  # `--set output=` emptied it: not the file's fault
    ],
    ids=[
        "file nested",
        "set nested",
        "set deep",
        "file beside a set",
        "set whole mapping",
        "set credential",
        "set indices",
        "set choice",
        "set text",
        "missing keys",
        "set emptied beside a key missing",
        "set emptied",
    ],
)
def test_config_errors_carry_the_key_at_fault_and_keep_it_through_pickle(
    tmp_path: Path, text: str, overrides: dict[str, object], key: str | None, where: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, overrides)
    error = caught.value
    assert error.key == key
    assert str(error).startswith(f"{path if where == 'FILE' else where}: ")
    # An exception that crosses processes is pickled: the key must go with it.
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), str(copy), copy.key) == (type(error), str(error), key)


def test_overrides_must_be_key_value_pairs() -> None:
    with pytest.raises(ConfigError, match=r"`--set` takes key=value. Got 'epsilon' instead."):
        parse_overrides(["epsilon"])


_yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
_config_like = st.dictionaries(
    st.sampled_from([*Config.KEYS, "cluster.workers", "surprise"]).map(lambda k: k.split(".")[0]),
    _yaml_values
    | st.dictionaries(st.sampled_from(["workers", "address", "scheduler_file", "timeout", "x"]), _yaml_values),
    max_size=8,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=st.one_of(st.text(max_size=200), _yaml_values.map(yaml.safe_dump), _config_like.map(yaml.safe_dump)))
def test_random_yaml_raises_only_the_projects_error(tmp_path: Path, document: str) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(document, encoding="utf-8")
    try:
        config = load_config(path)
    except ConfigError as e:
        message = str(e)
    else:
        assert Config.from_dict(config.to_dict()) == config
        return
    assert message.strip()  # it says something...
    assert "\n" not in message  # ...on one line


#: Every file in config/: each is named for the network it checks and the exit code that follows.
CONFIGS = sorted(path for path in (REPO / "config").iterdir() if path.is_file())
#: Settings per family, as (scheme, epsilon, tolerance, threshold).
FAMILIES = {
    "defaults": ("richardson", None, "auto", None),
    "seed": ("central", 1e-7, "auto", 2e-7),
    "large-model": ("central", None, "auto", None),
}


def _family_and_network(path: Path) -> tuple[str, str]:
    family, _, network = path.stem.rpartition("-")
    return family, network


def test_every_config_is_a_correct_and_planted_pair_of_a_known_family() -> None:
    names = [path.name for path in CONFIGS]
    assert all(name.endswith(("-correct.yaml", "-planted.yaml")) for name in names), names
    families = {family for family, _ in map(_family_and_network, CONFIGS)}
    assert set(FAMILIES) <= families
    for family in families:  # every config has its twin
        assert [n for f, n in map(_family_and_network, CONFIGS) if f == family] == ["correct", "planted"], names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.name)
def test_the_repositorys_configs_are_valid_and_say_what_they_check(path: Path, tmp_path: Path) -> None:
    config = load_config(path)
    family, network = _family_and_network(path)
    assert config.model == f"pipeline.examples.seed_mlp:{network}"
    assert config.params.endswith(os.path.join("example", "params.zarr"))
    if family in FAMILIES:
        assert (config.scheme, config.epsilon, config.tolerance, config.threshold) == FAMILIES[family]
    first = path.read_text().splitlines()[0]
    assert first.startswith("# ")
    assert ("exits 1 by design" if network == "planted" else "passes (exit 0)") in first, first
    if family == "seed":  # the seed's settings are the ones `gradcheck example seed-mlp` writes, to the letter
        write_example("seed-mlp", str(tmp_path))
        written = load_config(tmp_path / f"{network}.yaml")
        assert (written.scheme, written.epsilon, written.tolerance, written.threshold) == FAMILIES["seed"]
    outputs = [load_config(other).output for other in CONFIGS]
    assert outputs.count(config.output) == 1  # no two configs write the same output


@pytest.fixture(scope="module")
def repository_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder laid out like the repository: config/ (filled by each test) beside a written example/."""
    root = tmp_path_factory.mktemp("repository")
    write_example("seed-mlp", str(root / "example"))
    (root / "config").mkdir()
    return root


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.name)
def test_every_config_exits_as_its_name_says(repository_copy: Path, path: Path) -> None:
    copy = Path(shutil.copy(path, repository_copy / "config" / path.name))
    result = run_cli("run", str(copy), "--workers", "1")
    _, network = _family_and_network(path)
    assert result.returncode == {"correct": 0, "planted": 1}[network], result.stderr
    assert result.stdout.startswith("gradcheck PASSED" if network == "correct" else "gradcheck FAILED")
