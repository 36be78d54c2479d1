"""Exit codes that cannot lie: 1 is only ever a verdict; an internal error has its own code, 3."""

from __future__ import annotations

import re
from pathlib import Path

from .conftest import run_cli


def test_an_unexpected_error_exits_3_with_one_line_and_the_traceback_in_a_file(seed_example: Path) -> None:
    config = str(seed_example / "correct.yaml")
    first = run_cli("run", config, "--inline", "--set", "shard_size=10")
    assert first.returncode == 0, first.stderr
    # The completion records themselves cut short, as a disk fault or a partial copy leaves them: reading
    # them on the rerun fails inside the compression library (no record verifies the records), no verdict.
    chunk = seed_example / "correct-output.zarr" / "done" / "c" / "1"
    chunk.write_bytes(chunk.read_bytes()[:5])
    for extra, traceback_shown in (((), False), (("--traceback",), True)):
        done = run_cli("run", config, "--inline", "--set", "shard_size=10", *extra)
        assert done.returncode == 3, done.stderr
        assert done.stdout == ""
        last = done.stderr.strip().split("\n")[-1]
        found = re.fullmatch(
            r"gradcheck: internal error \(exit code 3, not a verdict\): (\w+): .*; "
            r"the traceback is in (\S+)\. Please report it with that file\.",
            last,
        )
        assert found is not None, last
        saved = Path(found.group(2)).read_text()
        assert saved.startswith("Traceback (most recent call last)")
        assert found.group(1) in saved
        assert ("Traceback (most recent call last)" in done.stderr) is traceback_shown
        Path(found.group(2)).unlink()
