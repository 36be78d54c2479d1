"""`pipeline.testing.assert_gradients` and the pytest plugin's `gradcheck` fixture, in real pytest runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.examples import seed_mlp
from pipeline.testing import assert_gradients

from .conftest import REPO

pytest_plugins = ["pytester"]


def test_assert_gradients_passes_a_right_gradient_and_fails_a_wrong_one_with_the_readable_report() -> None:
    params, data = seed_mlp.problem()
    report = assert_gradients(seed_mlp.correct, params, data, scheme="central")
    assert report.passed
    with pytest.raises(AssertionError) as raised:
        assert_gradients(seed_mlp.planted, params, data)
    message = str(raised.value)
    assert message.startswith("gradcheck FAILED: 8 of 47 elements wrong")
    assert "Wrong tensors, from the last layer back: W2, b1" in message
    assert "W2: analytic is 2x the numeric gradient at the 4 wrong elements (of 15 checked)" in message
    assert "b1: analytic is 4x the numeric gradient at the 4 wrong elements (of 5 checked)" in message
    assert re.search(r"b1\[0, 0\]\s+2\.531631e\+00\s+6\.329079e-01", message)  # the worst element, located


def test_assert_gradients_refuses_to_run_elsewhere() -> None:
    with pytest.raises(TypeError, match=r"runs the check in this process; it takes no client, workers"):
        assert_gradients(seed_mlp.correct, *seed_mlp.problem(), workers=2, client=None)


TEST_FILE = """
import pytest
from pipeline.examples import seed_mlp

PARAMS, DATA = seed_mlp.problem()

@pytest.mark.parametrize("k", range(10))
def test_correct(gradcheck, k):
    report = gradcheck(seed_mlp.correct, PARAMS, DATA, scheme="central")
    assert report.n_checked == 47

def test_planted(gradcheck):
    gradcheck(seed_mlp.planted, PARAMS, DATA)
"""


def test_the_gradcheck_fixture_works_under_xdist(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_layers=TEST_FILE)
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=10, failed=1)
    result.stdout.fnmatch_lines(["*created: 2/2 workers*", "*Wrong tensors, from the last layer back: W2, b1*"])
    # the short summary line carries the verdict, and the traceback shows the test, not the helper's body
    result.stdout.fnmatch_lines(["FAILED *test_planted - AssertionError: gradcheck FAILED: 8 of*"])
    result.stdout.no_fnmatch_line("*def assert_gradients*")


def _python_block(after: str) -> str:
    """The first ```python block of the README after the line ``after``."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(after)
    match = re.search(r"```python\n(.*?)```", text[start:], re.DOTALL)
    assert match is not None, f"no python block after {after!r}"
    return match.group(1)


def test_the_readmes_python_example_runs_as_a_plain_script(tmp_path: Path) -> None:
    (tmp_path / "check_linear.py").write_text(_python_block("## From Python"))
    done = subprocess.run(
        [sys.executable, "check_linear.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.startswith("gradcheck PASSED: 0 of 8 elements wrong")


def test_the_readmes_test_file_passes_under_xdist(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_linear=_python_block("### In your test suite"))
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
