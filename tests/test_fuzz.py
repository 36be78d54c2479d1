"""Fuzzed input: generated configs and stores never give a traceback, and exit codes keep their meaning.

Every generated input goes through the real command (``gradcheck run --inline``, in this process)
against real Zarr stores: exit 0 or 1 only for a check that ran, 2 with exactly one line for
anything else, never 3 (an internal error) and never a traceback; and an existing output is
byte-identical after an exit 2.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import cli
from pipeline.config import Config
from pipeline.examples import write_example
from pipeline.storage.inputs import write_group

KEYS = tuple(Config.KEYS)
MODELS = ("pipeline.examples.seed_mlp:correct", "pipeline.examples.seed_mlp:planted", "no.such:model", "x.py:y", "")

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["auto", "none", "all", "inline", "local", "central", "richardson", "complex-step", "float64"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.text(max_size=8), st.sampled_from(KEYS)), inner, max_size=3),
    ),
    max_leaves=6,
)
DTYPES = ("float64", "float32", "int32", "bool", "complex128", "float16")


def _digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for root, dirs, files in sorted(os.walk(folder)):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            digest.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return digest.hexdigest()


_EXAMPLE: list[Path] = []


def _example(tmp_path_factory: Any) -> tuple[Path, Path]:
    """The seed example with a finished output, made once; the output put back as it was for each input."""
    if not _EXAMPLE:
        folder = tmp_path_factory.mktemp("fuzz")
        write_example("seed-mlp", str(folder))
        assert (
            cli.main(["run", str(folder / "correct.yaml"), "--inline", "--set", f"output={folder / 'pristine.zarr'}"])
            == 0
        )
        _EXAMPLE.append(folder)
    folder = _EXAMPLE[0]
    shutil.rmtree(folder / "existing.zarr", ignore_errors=True)
    shutil.copytree(folder / "pristine.zarr", folder / "existing.zarr")
    return folder, folder / "existing.zarr"


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


def _judge(code: int, out: str, err: str) -> None:
    assert "Traceback" not in err + out, err
    assert code in (0, 1, 2), f"exit {code}: {err}"
    if code == 2:
        assert err.count("\n") == 1, err
        assert err.startswith("gradcheck: error: "), err
        assert out == ""


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    document=st.dictionaries(st.sampled_from(KEYS), values, max_size=8),
    unknown=st.dictionaries(st.text(min_size=1, max_size=6), values, max_size=1),
    use_real_stores=st.booleans(),
    model=st.sampled_from(MODELS),
)
def test_generated_configs(
    tmp_path_factory: Any, document: dict[str, Any], unknown: dict[str, Any], use_real_stores: bool, model: str
) -> None:
    folder, existing = _example(tmp_path_factory)
    before = _digest(existing)
    if use_real_stores:  # a document that can get past the stores, to reach every later check
        document = {"model": model, "params": "params.zarr", "data": "data.zarr", "output": "existing.zarr", **document}
    config = folder / "fuzz.yaml"
    try:
        config.write_text(yaml.safe_dump({**document, **unknown}, allow_unicode=True))
    except (yaml.YAMLError, ValueError):
        return  # not representable as YAML: nothing a user could write
    code, out, err = _run(["run", str(config), "--inline"])
    _judge(code, out, err)
    if code == 2:
        assert _digest(existing) == before


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    text=st.one_of(
        st.text(max_size=80),
        st.sampled_from(["a: [1\n", "- 1\n- 2\n", "model: {\n", "\t: x", "{}", "model: !!python/none"]),
    )
)
def test_generated_yaml_text(tmp_path_factory: Any, text: str) -> None:
    config = tmp_path_factory.mktemp("text") / "fuzz.yaml"
    config.write_text(text)
    _judge(*_run(["run", str(config), "--inline"]))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    tensors=st.dictionaries(
        st.sampled_from(["W1", "b1", "W2", "b2", "W3", "b3", "extra"]),
        st.tuples(st.sampled_from(DTYPES), st.lists(st.integers(min_value=0, max_value=4), max_size=3)),
        max_size=7,
    ),
    order=st.one_of(st.none(), st.lists(st.sampled_from(["W1", "b1", "W2", "b2", "W3", "b3", "x"]), max_size=7)),
)
def test_generated_stores(
    tmp_path_factory: Any, tensors: dict[str, tuple[str, list[int]]], order: list[str] | None
) -> None:
    folder, _ = _example(tmp_path_factory)
    shutil.rmtree(folder / "fuzzed.zarr", ignore_errors=True)
    arrays = {name: np.ones(shape, dtype=dtype) for name, (dtype, shape) in tensors.items()}
    with contextlib.suppress(Exception):  # a store zarr itself will not write is not an input anyone has
        write_group(str(folder / "fuzzed.zarr"), arrays, None if order is None else {"order": order})
    for role in ("params", "data", "gradient"):
        argv = ["run", str(folder / "correct.yaml"), "--inline", "--set", f"{role}={folder / 'fuzzed.zarr'}"]
        _judge(*_run([*argv, "--set", f"output={folder / 'out.zarr'}", "--overwrite"]))
