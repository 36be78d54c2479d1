"""Nightly suites end to end: several runs on real stores, an injected drift, the page, the schedules."""

from __future__ import annotations

import re
import shlex
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.cli import _parser
from pipeline.nightly.history import read_history
from pipeline.storage.inputs import write_group

from . import models
from .conftest import MODELS_FILE, REPO, run_cli

DRIFTING = """\
import numpy as np

SCALE = {scale!r}  # 1.0 is right; anything else is a slightly wrong gradient


class Model:
    def loss(self, params, data):
        w = params["w"]
        return float(np.sum(data["c"] * np.sin(w)) + 0.5 * np.sum(w * w))

    def grad(self, params, data):
        w = params["w"]
        return {{"w": (data["c"] * np.cos(w) + w) * SCALE}}


model = Model()
"""

SUITE = f"""\
name: test-suite
cluster: {{workers: 1}}
defaults: {{epsilon: 1.0e-6, threshold: 1.0e-6}}
drift: {{min_history: 3, wall_factor: 100, fail: FAIL}}
checks:
  - name: stable
    config: {{model: "{MODELS_FILE}:smooth", params: smooth-params.zarr, data: smooth-data.zarr}}
  - name: drifting
    config: {{model: "drifting.py:model", params: w-params.zarr, data: w-data.zarr}}
  - name: planted
    example: seed-mlp
    config: planted.yaml
    expect: fail
"""


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    """A suite of three checks over real stores; the `drifting` model's code can be changed."""
    params, data = models.problem()
    write_group(str(tmp_path / "smooth-params.zarr"), params, {"order": list(models.SHAPES)})
    write_group(str(tmp_path / "smooth-data.zarr"), data)
    rng = np.random.default_rng(11)
    write_group(str(tmp_path / "w-params.zarr"), {"w": rng.uniform(-1, 1, 30)})
    write_group(str(tmp_path / "w-data.zarr"), {"c": rng.uniform(0.5, 2, 30)})
    (tmp_path / "drifting.py").write_text(DRIFTING.format(scale=1.0))
    (tmp_path / "suite.yaml").write_text(SUITE.replace("FAIL", "false"))
    (tmp_path / "strict.yaml").write_text(SUITE.replace("FAIL", "true"))
    return tmp_path


def _run(folder: Path, suite_file: str = "suite.yaml") -> tuple[int, str, str]:
    result = run_cli("suite", str(folder / suite_file), "--history", str(folder / "history"))
    return result.returncode, result.stdout, result.stderr


def _row(stdout: str, check: str) -> list[str]:
    return next(line.split() for line in stdout.splitlines() if line.startswith(check + " "))


def test_a_drift_under_the_threshold_is_caught_and_an_unchanged_model_is_not(suite: Path) -> None:
    for _ in range(4):
        code, stdout, stderr = _run(suite)
        assert code == 0, stderr
        assert "FLAGGED" not in stdout
    # A change that makes the gradient slightly wrong: 1e-7 relative, far under the threshold.
    (suite / "drifting.py").write_text(DRIFTING.format(scale=1.0 + 1e-7))
    code, stdout, stderr = _run(suite)
    assert code == 0, stderr  # drift is reported; this suite does not fail on it
    drifting, stable = _row(stdout, "drifting"), _row(stdout, "stable")
    assert drifting[1:3] == ["pass", "passed"]
    assert drifting[-1] == "FLAGGED"
    assert float(drifting[3]) < 1e-6  # under the threshold...
    assert float(drifting[3]) > 100 * float(drifting[4])  # ...but far above its own history
    assert stable[-1] == "-"
    assert re.search(r"^drifting: difference drifted up: .* over 4 runs", stdout, re.MULTILINE)
    assert not re.search(r"^(stable|planted): ", stdout, re.MULTILINE)
    # The same history, with a suite that fails on drift.
    code, stdout, _ = _run(suite, "strict.yaml")
    assert code == 1
    history = read_history(suite / "history")
    assert {check: len(records) for check, records in history.items()} == {"stable": 6, "drifting": 6, "planted": 6}
    assert [bool(r.flags) for r in history["drifting"]] == [False] * 4 + [True, True]
    assert all(r.ok for r in history["planted"])  # failed, as expected
    assert not any(r.passed for r in history["planted"])
    assert history["planted"][-1].failing == ("b1", "W2")
    assert history["stable"][-1].commit is None or re.fullmatch(r"[0-9a-f]{40}", history["stable"][-1].commit)

    # The page: one section per check, three charts each, the drifted run marked.
    page = suite / "page.html"
    result = run_cli("history", str(suite / "history"), "--html", str(page))
    assert result.returncode == 0, result.stderr
    assert "drifting: difference drifted up" in result.stdout
    text = page.read_text()
    _assert_well_formed(text)
    assert text.count("<svg") == 9
    drifting_section = text[text.index("<h2>drifting</h2>") : text.index("</section>", text.index("<h2>drifting</h2>"))]
    assert drifting_section.count('class="dot flagged"') == 2  # two drifted runs, on the difference chart only
    assert drifting_section.count("<circle") == 12  # six runs, on two trend charts
    assert 'class="threshold"' in drifting_section
    assert "<script" not in text  # self-contained: opens offline...
    assert "http" not in text  # ...and fetches nothing


def test_a_check_that_misses_its_expectation_fails_the_suite(suite: Path) -> None:
    text = (suite / "suite.yaml").read_text().replace("expect: fail", "expect: pass")
    (suite / "suite.yaml").write_text(text)
    code, stdout, _ = _run(suite)
    assert code == 1
    assert _row(stdout, "planted")[1:4] == ["pass", "failed", "(UNEXPECTED)"]
    assert "planted: wrong tensors: b1, W2" in stdout.splitlines()


def test_a_corrupt_history_stops_the_suite_before_it_runs(suite: Path) -> None:
    assert _run(suite)[0] == 0
    record = next((suite / "history" / "stable").glob("*.json"))
    record.write_text(record.read_text()[:50])
    before = sorted(p.name for p in (suite / "history").rglob("*.json"))
    code, stdout, stderr = _run(suite)
    assert code == 2
    assert stdout == ""
    assert re.fullmatch(rf"gradcheck: error: History record '{re.escape(str(record))}' cannot be read: .*\n", stderr)
    assert sorted(p.name for p in (suite / "history").rglob("*.json")) == before  # nothing run, nothing added
    result = run_cli("history", str(suite / "history"))
    assert result.returncode == 2
    assert "cannot be read" in result.stderr


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s + "nightly: true\n", r"suite.yaml: unknown key `nightly`"),
        (lambda s: s.replace("name: planted", "name: stable"), r"two checks are named 'stable'"),
        (lambda s: s.replace("expect: fail", "expect: maybe"), r"check 'planted': `expect` must be pass or fail"),
        (lambda s: s.replace("example: seed-mlp", "example: resnet"), r"`example` must be one of seed-mlp"),
        (lambda s: s.replace("drift: {", "drift: {sigma: 2, "), r"unknown key `drift.sigma`"),
    ],
)
def test_bad_suites_are_one_line_errors(suite: Path, edit: object, message: str) -> None:
    (suite / "suite.yaml").write_text(edit((suite / "suite.yaml").read_text()))  # type: ignore[operator]
    code, stdout, stderr = _run(suite)
    assert code == 2
    assert stdout == ""
    assert stderr.count("\n") == 1
    assert re.search(message, stderr), stderr


def test_a_check_that_gives_no_verdict_is_recorded_as_an_error_and_the_suite_goes_on(suite: Path) -> None:
    # review 92: one check's bad input stopped the suite; the checks after it never ran, and the history went
    # on showing that check's night before as its latest run
    assert _run(suite)[0] == 0
    good = (suite / "suite.yaml").read_text()
    (suite / "suite.yaml").write_text(good.replace("smooth-data.zarr", "nowhere.zarr"))
    code, stdout, stderr = _run(suite)
    assert code == 2
    assert re.fullmatch(
        r"gradcheck: error: check 'stable': The data store '.*nowhere.zarr' does not exist[^\n]*\n", stderr
    )
    assert _row(stdout, "stable")[1:4] == ["pass", "error", "(UNEXPECTED)"]
    assert _row(stdout, "drifting")[1:3] == ["pass", "passed"]
    assert _row(stdout, "planted")[1:3] == ["fail", "failed"]  # ran after it
    history = read_history(suite / "history")
    assert [r.outcome for r in history["stable"]] == ["passed", "error"]
    assert history["stable"][-1].error == stderr.removeprefix("gradcheck: error: check 'stable': ").rstrip("\n")
    assert history["stable"][-1].flags == ()
    assert [len(history[c]) for c in ("drifting", "planted")] == [2, 2]
    shown = run_cli("history", str(suite / "history"), "--html", str(suite / "page.html"))
    assert shown.returncode == 0, shown.stderr
    assert _row(shown.stdout, "stable")[4:6] == ["error", "(UNEXPECTED)"]  # after the date and time
    assert f"stable: error: {history['stable'][-1].error}" in shown.stdout
    assert "The data store" in (suite / "page.html").read_text()
    # fixed: judged against the runs that gave a verdict
    (suite / "suite.yaml").write_text(good)
    code, stdout, stderr = _run(suite)
    assert code == 0, stderr
    assert "FLAGGED" not in stdout
    assert [r.outcome for r in read_history(suite / "history")["stable"]] == ["passed", "error", "passed"]


def test_the_repositorys_own_suite_runs(tmp_path: Path) -> None:
    result = run_cli("suite", str(REPO / "workflows" / "nightly.yaml"), "--history", str(tmp_path / "h"))
    assert result.returncode == 0, result.stderr
    header = result.stdout.splitlines()[0].split()
    assert header[:4] == ["check", "expected", "verdict", "difference"]
    # The expectation beside the verdict: the planted check's failure is the expected outcome.
    assert _row(result.stdout, "seed-mlp-correct")[1:4] == ["pass", "passed", "1.189e-07"]
    assert _row(result.stdout, "seed-mlp-planted")[1:4] == ["fail", "failed", "2.851e-01"]


def _scheduled_commands() -> list[str]:
    """Every gradcheck command the schedules run: GitHub Actions, the CronJob, the systemd unit."""
    commands = []
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "nightly.yml").read_text())
    commands += [step["run"] for step in workflow["jobs"]["suite"]["steps"] if "gradcheck" in step.get("run", "")]
    cronjob = yaml.safe_load((REPO / "deploy" / "kubernetes" / "nightly-cronjob.yaml").read_text())
    container = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    argv = container["command"] + container.get("args", [])
    if argv[:2] == ["sh", "-c"]:  # (the suite, then the page whatever the suite exited with)
        commands += [part.strip() for part in argv[2].split(";") if part.strip().startswith("gradcheck ")]
    else:
        commands.append(shlex.join(argv))
    for line in (REPO / "deploy" / "systemd" / "gradcheck-nightly.service").read_text().splitlines():
        if line.startswith(("ExecStart=", "ExecStopPost=")):
            commands.append(line.split("=", 1)[1])
    return commands


def test_every_schedule_runs_the_suite_with_options_the_cli_has() -> None:
    commands = _scheduled_commands()
    assert len(commands) == 6  # the suite and the page, three times
    parsed = []
    for command in commands:
        words = shlex.split(command)
        assert Path(words[0]).name == "gradcheck"
        parsed.append(_parser().parse_args(words[1:]))  # exits (fails the test) on an unknown option
    suites = [args for args in parsed if args.command == "suite"]
    assert len(suites) == 3
    assert {args.suite for args in suites} == {"workflows/nightly.yaml"}
    assert (REPO / "workflows" / "nightly.yaml").is_file()
    assert {args.command for args in parsed} == {"suite", "history"}


class _Balance(HTMLParser):
    """Checks that every element is closed, in order (what a browser would otherwise guess at)."""

    VOID = frozenset({"meta", "br", "hr", "img", "input", "link"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: object) -> None:
        pass  # <line .../> opens and closes itself

    def handle_endtag(self, tag: str) -> None:
        assert self.stack, f"</{tag}> closes nothing"
        assert self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1]}>"
        self.stack.pop()


def _assert_well_formed(text: str) -> None:
    parser = _Balance()
    parser.feed(text)
    assert parser.stack == []


def test_the_commit_of_a_model_package_that_raises_on_import_is_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # review 93: find_spec runs the package's __init__; its RuntimeError made a suite's error record exit 3
    from pipeline.nightly.suite import model_commit

    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "__init__.py").write_text("raise RuntimeError('broken at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert model_commit("broken.mod:model") is None
