"""Faults injected in a loop (short: one round of each; ``benchmarks/faults.py`` runs many)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from . import faults


@pytest.fixture(scope="module")
def expected(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    return faults.reference(tmp_path_factory.mktemp("reference"))


def test_client_kills_in_a_row_with_chunks_cut_short_resume_bit_for_bit(tmp_path: Path, expected: np.ndarray) -> None:
    identical, interrupted = faults.client_kills(tmp_path, expected, 4, random.Random(1), "--inline")
    assert identical
    assert interrupted >= 1


def test_a_worker_killed_during_the_probe_or_the_shards_changes_nothing(tmp_path: Path, expected: np.ndarray) -> None:
    assert faults.worker_kill(tmp_path / "probe", expected, random.Random(2), during_probe=True)
    assert faults.worker_kill(tmp_path / "shards", expected, random.Random(3), during_probe=False)


def test_a_killed_scheduler_is_one_line_and_the_run_resumes_on_a_new_cluster(
    tmp_path: Path, expected: np.ndarray
) -> None:
    ok, said = faults.scheduler_kill(tmp_path, expected, random.Random(4))
    assert said.startswith("gradcheck: error: Lost the cluster's scheduler while the check ran"), said
    assert ok


def test_a_full_disk_is_one_line_and_nothing_is_corrupt(tmp_path: Path, expected: np.ndarray) -> None:
    outcome = faults.disk_full(tmp_path, expected)
    if outcome is None:
        pytest.skip("no tmpfs here (mounting one needs root): a full disk cannot be made")
    ok, said = outcome
    assert said.startswith("gradcheck: error: The output '"), said
    assert "cannot be written: No space left on device." in said
    assert ok
