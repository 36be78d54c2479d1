"""History records and the drift judge: pure, on synthetic histories."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from pipeline.errors import ConfigError, HistoryError
from pipeline.nightly.history import (
    RECORD_VERSION,
    DriftPolicy,
    Record,
    flag_kind,
    format_run,
    judge,
    read_history,
    write_record,
)


def _record(difference: float, wall: float = 10.0, k: int = 0, check: str = "net") -> Record:
    shown = difference if math.isfinite(difference) else None  # as a report's JSON has it
    return Record(
        suite="nightly",
        check=check,
        run_id=f"r{k}",
        time=f"2026-11-{k + 1:02d}T03:00:00.000000+00:00",
        commit=None,
        config_hash="h",
        expect="pass",
        passed=difference <= 2e-7,
        difference=difference,
        threshold=2e-7,
        tensors=({"name": "w", "difference": shown, "contribution": shown, "passed": True},),
        failing=(),
        worst=(),
        n_params=47,
        wall_seconds=wall,
        evaluations_per_second=1000.0,
    )


POLICY = DriftPolicy()


def test_a_deterministic_check_is_flagged_for_a_small_rise_and_not_for_none() -> None:
    history = [_record(1.19e-7, k=k) for k in range(6)]
    assert judge(_record(1.19e-7), history, POLICY) == ()
    flags = judge(_record(1.19e-7 * 1.2), history, POLICY)  # +20%, still under the threshold
    assert len(flags) == 1
    assert flags[0].startswith("difference drifted up: 1.428e-07 against a median of 1.190e-07 over 6 runs")
    assert judge(_record(1.19e-7 * 0.5), history, POLICY) == ()  # better is not drift


def test_a_noisy_check_is_judged_by_its_own_spread() -> None:
    # log10 differences spread by about 0.1 decade: a rise of 0.2 decade is within 3 robust sigmas.
    history = [_record(10 ** (-9 + 0.1 * ((k % 3) - 1)), k=k) for k in range(9)]
    assert judge(_record(10 ** (-9 + 0.2)), history, POLICY) == ()
    assert judge(_record(10 ** (-9 + 0.6)), history, POLICY) != ()


def test_a_short_history_uses_the_factor() -> None:
    history = [_record(1e-9, k=k) for k in range(2)]
    assert judge(_record(1.9e-9), history, POLICY) == ()
    (flag,) = judge(_record(2.1e-9), history, POLICY)
    assert flag == "difference rose 2.10x: 2.100e-09 against a median of 1.000e-09 over 2 run(s)"
    assert judge(_record(1e-3), [], POLICY) == ()  # nothing to compare with


def test_wall_time_regressions_need_the_factor_and_the_floor() -> None:
    history = [_record(1e-9, wall=10.0, k=k) for k in range(5)]
    assert judge(_record(1e-9, wall=19.0), history, POLICY) == ()
    (flag,) = judge(_record(1e-9, wall=25.0), history, POLICY)
    assert flag == "wall time regressed 2.5x: 25.00 s against a median of 10.00 s"
    assert flag_kind(flag) == "wall"
    assert flag_kind(judge(_record(1e-3), history, POLICY)[0]) == "difference"
    quick = [_record(1e-9, wall=0.3, k=k) for k in range(5)]
    assert judge(_record(1e-9, wall=0.9), quick, POLICY) == ()  # 3x, but only 0.6 s: jitter


def test_a_non_finite_difference_is_flagged() -> None:
    assert judge(_record(math.nan), [_record(1e-9)], POLICY) == (
        "difference is not finite (a loss was NaN or infinite)",
    )


def test_records_round_trip_and_sort_by_time(tmp_path: Path) -> None:
    later, earlier = _record(2e-9, k=3), dataclasses.replace(_record(math.nan, k=1), flags=("x",))
    write_record(tmp_path, later)
    write_record(tmp_path, earlier)
    history = read_history(tmp_path)
    assert list(history) == ["net"]
    assert [r.to_dict() for r in history["net"]] == [earlier.to_dict(), later.to_dict()]  # NaN != NaN: compare JSON
    raw = json.loads(next((tmp_path / "net").glob("*r1.json")).read_text())
    assert raw["difference"] is None  # valid JSON
    assert raw["format_version"] == RECORD_VERSION


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{ not json", r"History record '.*bad.json' cannot be read"),
        ('{"format": "something-else"}', r"History record '.*bad.json' is not a gradcheck history record."),
        (
            json.dumps({"format": "gradcheck-history", "format_version": RECORD_VERSION + 1}),
            rf"has format version {RECORD_VERSION + 1}; this gradcheck reads up to {RECORD_VERSION}. Upgrade gradcheck.",
        ),
        (json.dumps({"format": "gradcheck-history", "format_version": 1, "suite": "s"}), r"is damaged: KeyError"),
    ],
)
def test_a_bad_record_is_an_error_never_skipped(tmp_path: Path, content: str, message: str) -> None:
    write_record(tmp_path, _record(1e-9))
    (tmp_path / "net" / "bad.json").write_text(content)
    with pytest.raises(HistoryError, match=message):
        read_history(tmp_path)


def test_a_history_folder_that_is_missing_or_a_file_is_one_line_saying_which(tmp_path: Path) -> None:
    with pytest.raises(HistoryError, match=r"History folder '.*nowhere' does not exist\.$"):
        read_history(tmp_path / "nowhere")
    (tmp_path / "records").write_text("not a folder")
    with pytest.raises(HistoryError, match=r"History folder '.*records' is not a folder\.$"):
        read_history(tmp_path / "records")


def test_drift_settings_are_validated() -> None:
    assert DriftPolicy.from_dict({"window": 5, "fail": True}, "s.yaml") == DriftPolicy(window=5, fail=True)
    with pytest.raises(ConfigError, match=r"s.yaml: unknown key `drift.sigma`"):
        DriftPolicy.from_dict({"sigma": 3}, "s.yaml")
    with pytest.raises(ConfigError, match=r"`drift.window` must be a whole number of at least 1. Got 0 instead."):
        DriftPolicy.from_dict({"window": 0}, "s.yaml")
    with pytest.raises(ConfigError, match=r"`drift.factor` must be a positive number. Got -2 instead."):
        DriftPolicy.from_dict({"factor": -2}, "s.yaml")


def test_a_check_without_a_threshold_is_recorded_and_drawn(tmp_path: Path) -> None:
    # The default settings judge elements, not a global threshold: threshold is None.
    from pipeline.nightly.history import format_history
    from pipeline.nightly.page import render_page

    records = [dataclasses.replace(_record(1e-11 * (1 + k / 10), k=k), threshold=None) for k in range(3)]
    for record in records:
        write_record(tmp_path, record)
    history = read_history(tmp_path)
    assert [r.threshold for r in history["net"]] == [None, None, None]
    page = render_page(history)
    assert "threshold none" in page
    assert 'class="threshold"' not in page  # no line to draw
    assert "net" in format_history(history)


def test_a_suite_runs_table_shows_the_expected_verdict_beside_the_actual_one() -> None:
    correct = _record(1.19e-7, check="correct")
    planted = dataclasses.replace(_record(0.285, check="planted"), expect="fail")  # fails, as it should
    missed = dataclasses.replace(_record(0.285, check="missed"), expect="pass")  # fails, and should not
    lines = format_run([correct, planted, missed], {}).splitlines()
    rows = {line.split()[0]: line.split() for line in lines}
    assert rows["check"][:4] == ["check", "expected", "verdict", "difference"]
    assert rows["correct"][1:4] == ["pass", "passed", "1.190e-07"]
    assert rows["planted"][1:4] == ["fail", "failed", "2.850e-01"]
    assert rows["missed"][1:5] == ["pass", "failed", "(UNEXPECTED)", "2.850e-01"]


def test_a_check_that_could_not_verify_a_tensor_is_never_as_expected(tmp_path: Path) -> None:
    # A planted check must fail *because its bug was seen*: "not verified" means it could not have been.
    planted = dataclasses.replace(_record(1.0), expect="fail", passed=False, verdict="not verified")
    assert not planted.ok
    assert not dataclasses.replace(planted, expect="pass").ok
    assert dataclasses.replace(planted, verdict="failed").ok
    assert dataclasses.replace(planted, verdict="").ok  # a record from before: its `passed` decides
    write_record(tmp_path, planted)
    (read,) = read_history(tmp_path)["net"]
    assert read.verdict == "not verified"
    assert "not verified (UNEXPECTED)" in format_run([read], {"net": [read]})


def test_the_page_replaces_only_a_page_it_wrote_and_a_bad_path_is_one_line(tmp_path: Path) -> None:
    from pipeline.nightly.page import GENERATOR

    from .conftest import run_cli

    for k in range(2):
        write_record(tmp_path / "history", _record(1e-11 * (1 + k), k=k))
    history = str(tmp_path / "history")
    page = tmp_path / "index.html"
    assert run_cli("history", history, "--html", str(page)).returncode == 0
    assert run_cli("history", history, "--html", str(page)).returncode == 0  # its own page, written again
    page.write_text(
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>gradcheck history</title>'
        "<style>body {}</style></head><body></body></html>\n"
    )  # as pages began before the generator tag
    assert run_cli("history", history, "--html", str(page)).returncode == 0
    assert GENERATOR in page.read_text()
    # review 92: a user's file was replaced by the page, a folder or a missing folder was exit 3
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    (tmp_path / "folder").mkdir()
    refused = {
        str(notes): f"--html '{notes}' exists and is not a page `gradcheck history` wrote: it is kept. Name another "
        "file, or remove it first.",
        str(tmp_path / "folder"): f"--html '{tmp_path / 'folder'}' is a folder: name a file, such as "
        f"'{tmp_path / 'folder' / 'index.html'}'.",
        str(tmp_path / "no" / "p.html"): f"--html '{tmp_path / 'no' / 'p.html'}': its folder '{tmp_path / 'no'}' "
        "does not exist.",
    }
    for path, message in refused.items():
        result = run_cli("history", history, "--html", path)
        assert (result.returncode, result.stdout, result.stderr) == (2, "", f"gradcheck: error: {message}\n")
    assert notes.read_text() == "my notes\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "history", "index.html", "notes.txt"]
    assert list((tmp_path / "folder").iterdir()) == []


def test_an_error_is_no_run_on_the_page_nor_for_drift() -> None:
    from pipeline.nightly.page import render_page

    error = dataclasses.replace(
        _record(math.nan, wall=0.3, k=2), verdict="error", error="Model module 'm' raised on import", threshold=None
    )
    history = {"net": [_record(1e-11, k=0), _record(1.1e-11, k=1), error]}
    assert judge(error, history["net"][:2], POLICY) == ()
    assert judge(_record(1.2e-11, wall=10.0, k=3), history["net"], POLICY) == ()  # its 0.3 s is no median
    page = render_page(history)
    # review 93: the difference chart lost its threshold line, and the wall chart drew the error as a run
    assert page.count('class="threshold"') == 1
    wall_chart = page.split("<svg")[3]
    assert wall_chart.count("<circle") == 2
    assert "Model module &#x27;m&#x27; raised on import" in page
