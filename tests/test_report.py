"""The report's terminal form, on reports of real runs of the seed example."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import pipeline
from pipeline import Report, format_report
from pipeline.examples import write_example

from .conftest import run_cli


def _run_json(config: Path, *settings: str) -> Report:
    """``gradcheck run CONFIG --json [--set ...]`` in a fresh process, read back as a Report."""
    overrides = [arg for setting in settings for arg in ("--set", setting)]
    result = run_cli("run", str(config), "--json", "--workers", "1", *overrides)
    assert result.returncode in (0, 1), result.stderr
    return Report.from_dict(json.loads(result.stdout))


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed example's folder, as `gradcheck example seed-mlp` writes it."""
    folder = tmp_path_factory.mktemp("report") / "example"
    write_example("seed-mlp", str(folder))
    return folder


def test_printing_a_report_shows_the_readable_report(example: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = _run_json(example / "planted.yaml")
    text = str(report)
    assert text == format_report(report)
    assert text.startswith("gradcheck FAILED: 8 of 47 elements wrong; difference 2.851e-01 > threshold 2e-07\n")
    assert "Wrong tensors, from the last layer back: W2, b1\n" in text
    print(report)
    assert capsys.readouterr().out == text + "\n"
    assert "format_report" in pipeline.__all__
    assert pipeline.format_report is pipeline.report.format_report
