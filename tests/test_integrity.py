"""Integrity of what is on disk: each shard's completion record seals its chunks; resume and `verify` check it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

import pipeline
from pipeline.errors import OutputExistsError
from pipeline.numerics.plan import make_plan
from pipeline.numerics.shards import shard_seal
from pipeline.numerics.tolerance import NONDIFFERENTIABLE, TOGETHER
from pipeline.storage.inputs import read_arrays
from pipeline.storage.output import PER_INDEX, OutputArrays, read_output_attrs, update_attrs

from .conftest import file_model_check, run_cli

#: A sampled run of the seed example: 3 elements a tensor, shards of 4.
SAMPLED = ["--inline", "--set", "indices={sample_per_tensor: 3, seed: 0}", "--set", "shard_size=4"]


def _arrays(output: Path) -> dict[str, np.ndarray]:
    return read_arrays("output", str(output), PER_INDEX)


def _damage(output: Path) -> None:
    """Three kinds of damage to three shards (of 10 indices each): cut short, missing, and another shard's chunk."""
    cut = output / "numeric" / "c" / "1"
    cut.write_bytes(cut.read_bytes()[:7])
    (output / "step" / "c" / "3").unlink()  # read back as fill values: NaN steps
    shutil.copyfile(output / "numeric" / "c" / "2", output / "numeric" / "c" / "0")  # decodes, wrong values


@pytest.mark.parametrize("where", ["--inline", "--workers=1"])
def test_corrupt_chunks_are_found_by_verify_and_recomputed_on_resume(seed_example: Path, where: str) -> None:
    config, output = str(seed_example / "correct.yaml"), seed_example / "correct-output.zarr"
    first = run_cli("run", config, where, "--set", "shard_size=10")
    assert first.returncode == 0, first.stderr
    reference = _arrays(output)
    intact = run_cli("verify", str(output))
    assert (intact.returncode, intact.stdout) == (0, f"{output}: 5 of 5 shards done, every one intact\n")

    _damage(output)
    found = run_cli("verify", str(output))
    assert found.returncode == 2
    assert found.stderr == (
        f"gradcheck: error: '{output}': 3 of 5 shards done are corrupt (a chunk cut short, missing or changed): "
        "0, 1, 3. Running the same check again recomputes them.\n"
    )
    reported = run_cli("report", str(output))
    assert reported.returncode == 0  # the stored verdict was made from intact chunks
    assert reported.stderr.startswith("gradcheck: warning: 3 shard(s) of")

    resumed = run_cli("run", config, where, "--set", "shard_size=10")
    assert resumed.returncode == 0, resumed.stderr
    assert "3 shard(s) of the earlier run failed verification (a chunk cut short, missing or changed)" in resumed.stdout
    assert "and were computed again." in resumed.stdout
    for name, values in _arrays(output).items():
        np.testing.assert_array_equal(values, reference[name], err_msg=name)  # bit for bit
    assert run_cli("verify", str(output)).returncode == 0
    again = run_cli("run", config, where, "--set", "shard_size=10")  # all intact now: read back, none recomputed
    assert again.returncode == 0
    assert "computed again" not in again.stdout


def test_an_output_made_before_shards_were_sealed_is_not_resumed(seed_example: Path) -> None:
    config, output = str(seed_example / "correct.yaml"), seed_example / "correct-output.zarr"
    assert run_cli("run", config, "--inline").returncode == 0
    group = zarr.open_group(str(output), mode="r+")
    meta = dict(group.attrs["gradcheck"])  # type: ignore[arg-type]
    group.attrs["gradcheck"] = {**meta, "format_version": 2}
    before = (output / "numeric" / "c" / "0").read_bytes()
    done = run_cli("run", config, "--inline")
    assert done.returncode == 2
    assert done.stderr == (
        f"gradcheck: error: The output '{output}' was made by an older gradcheck (format 2), whose shards carry "
        "no record to verify them by; pass --overwrite (overwrite=True from Python) to start it again.\n"
    )
    assert (output / "numeric" / "c" / "0").read_bytes() == before
    assert run_cli("run", config, "--inline", "--overwrite").returncode == 0


@pytest.mark.parametrize("array", ["done", "status"])
def test_an_output_missing_one_of_its_arrays_is_named_by_every_command_and_replaced_on_overwrite(
    seed_example: Path, array: str
) -> None:
    # an output copied or synced in part: one array gone. No command prints a report it cannot stand by, and each
    # names the array (not "the store does not exist") and what to do
    config, output = str(seed_example / "correct.yaml"), seed_example / "correct-output.zarr"
    assert run_cli("run", config, "--inline").returncode == 0
    shutil.rmtree(output / array)
    said = (
        f"The output '{{}}' lacks its array '{array}' (copied or synced in part?): run the check again and pass "
        "--overwrite (overwrite=True from Python) to compute it afresh.\n"
    )
    for command in (["report", str(output)], ["verify", str(output)], ["run", config, "--inline"]):
        refused = run_cli(*command)
        assert refused.returncode == 2, command
        assert refused.stdout == ""
        assert refused.stderr == "gradcheck: error: " + said.format(output)
    again = run_cli("run", config, "--inline", "--overwrite")
    assert again.returncode == 0, again.stderr
    assert "difference 1.189e-07" in again.stdout  # the seed's figure, computed afresh
    assert run_cli("verify", str(output)).returncode == 0


def test_an_old_runs_late_writes_never_count_for_the_run_that_replaced_it(seed_example: Path) -> None:
    """The race of an overwrite: the replaced run's last shard lands after the new run wrote its own.

    A task of a cancelled job cannot be interrupted: it writes its chunks and its record into whatever is at
    the output's path when it finishes. Here those exact bytes (the old run's shard 2, as it wrote them) land
    after the replacing run (another epsilon: another identity) finished; its seal does not match, so the
    shard is corrupt for `verify` and is recomputed on resume, bit for bit.
    """
    config, output = str(seed_example / "correct.yaml"), seed_example / "correct-output.zarr"
    chunks = [output / name / "c" / "2" for name in (*PER_INDEX, "done")]
    assert run_cli("run", config, "--inline", "--set", "shard_size=10").returncode == 0
    late = {chunk: chunk.read_bytes() if chunk.exists() else None for chunk in chunks}  # none: all fill values
    replacing = ("--inline", "--set", "shard_size=10", "--set", "epsilon=1.0e-6")
    assert run_cli("run", config, *replacing, "--overwrite").returncode == 0
    reference = _arrays(output)
    for chunk, written in late.items():
        if written is None:
            chunk.unlink(missing_ok=True)
        else:
            chunk.write_bytes(written)
    assert not np.array_equal(_arrays(output)["numeric"], reference["numeric"])  # the late write landed

    found = run_cli("verify", str(output))
    assert found.returncode == 2
    assert "1 of 5 shards done are corrupt (a chunk cut short, missing or changed): 2." in found.stderr
    resumed = run_cli("run", config, *replacing)
    assert resumed.returncode == 0, resumed.stderr
    assert "1 shard(s) of the earlier run failed verification" in resumed.stdout
    for name, values in _arrays(output).items():
        np.testing.assert_array_equal(values, reference[name], err_msg=name)


@pytest.mark.parametrize("damage", ["missing", "cut short"])
def test_a_damaged_analytic_chunk_is_written_again_on_resume(seed_example: Path, damage: str) -> None:
    """The analytic gradient is the model's: a resume writes it again (after comparing it where shards verify),
    which repairs the chunk; the shard's seal then holds again, and nothing else needs computing."""
    config, output = str(seed_example / "correct.yaml"), seed_example / "correct-output.zarr"
    assert run_cli("run", config, "--inline", "--set", "shard_size=10").returncode == 0
    reference = _arrays(output)
    chunk = output / "analytic" / "c" / "1"
    if damage == "missing":
        chunk.unlink()
    else:
        chunk.write_bytes(chunk.read_bytes()[:6])
    resumed = run_cli("run", config, "--inline", "--set", "shard_size=10")
    assert resumed.returncode == 0, resumed.stderr  # not "the model changed", not a crash
    for name, values in _arrays(output).items():
        np.testing.assert_array_equal(values, reference[name], err_msg=name)
    assert run_cli("verify", str(output)).returncode == 0


def test_a_shard_of_non_finite_losses_verifies(tmp_path: Path) -> None:
    """Losses infinite on both sides give NaN estimates whose sign bit numpy sets; a chunk of nothing but NaN is
    never written (it is the fill value) and reads back as the canonical NaN: the seal sees them as one."""
    import pipeline
    from pipeline.storage.output import verify

    from . import models

    params = {"w": np.linspace(-1, 1, 8)}
    data = {"w_at_theta": params["w"].copy()}
    output = str(tmp_path / "out.zarr")
    settings: dict[str, Any] = {"epsilon": 1e-6, "shard_size": 1, "output": output, "scheme": "central"}
    first = pipeline.check(models.nonfinite_near, params, data, **settings)
    assert first.nonfinite.count == 2
    assert verify(output).corrupt == ()
    again = pipeline.check(models.nonfinite_near, params, data, **settings)
    assert again.timings["recomputed_shards"] == 0
    assert again.timings["resumed_shards"] == 8


def test_a_resume_whose_model_now_gives_another_gradient_is_refused(tmp_path: Path) -> None:
    """The model's code is not part of a run's identity (a crashing model is fixed, then resumed), so a model
    edited between an interrupted run and its resume is caught by its analytic gradient: never mixed."""
    source = (
        "import numpy as np\n\nclass Net:\n    def loss(self, params, data):\n"
        "        return float(0.5 * np.sum(params['w'] ** 2))\n\n"
        "    def grad(self, params, data):\n        return {'w': SCALE * params['w']}\n\nnet = Net()\n"
    )
    params = {"w": np.linspace(-1, 1, 20)}
    model, config = file_model_check(tmp_path, "SCALE = 1.0\n" + source, "net", params, "shard_size: 5\n")
    assert run_cli("run", str(config), "--inline").returncode == 0
    before = _arrays(tmp_path / "out.zarr")
    model.write_text("SCALE = 1.5\n" + source)  # the backward pass edited; the identity does not see it
    again = run_cli("run", str(config), "--inline")
    assert again.returncode == 2
    assert again.stderr == (
        f"gradcheck: error: The output '{tmp_path / 'out.zarr'}' holds a finished run whose analytic gradient "
        "differs from what the model gives now: the model changed. Pass --overwrite (overwrite=True from Python) to start again.\n"
    )
    for name, values in _arrays(tmp_path / "out.zarr").items():
        np.testing.assert_array_equal(values, before[name], err_msg=name)  # nothing of the old run lost


@pytest.mark.parametrize(
    ("term", "where"),
    [
        ("np.sum(params['w'] ** 2)", "at θ"),  # an L2 term: the loss at θ changes
        ("np.sum(params['w'])", "near θ"),  # a term that vanishes at θ (the w sum to 0): only near it
    ],
)
def test_a_resume_whose_loss_now_differs_is_refused(tmp_path: Path, term: str, where: str) -> None:
    """A term added to the loss, the gradient code not updated: the analytic gradient is the same, the loss
    is not. The resumed output must not mix shards of two functions."""
    source = (
        "import numpy as np\n\nclass Net:\n    def loss(self, params, data):\n"
        f"        return float(0.5 * np.sum(params['w'] ** 2) + EXTRA * {term})\n\n"
        "    def grad(self, params, data):\n        return {'w': params['w']}\n\nnet = Net()\n"
    )
    params = {"w": np.linspace(-1, 1, 20)}
    model, config = file_model_check(tmp_path, "EXTRA = 0.0\n" + source, "net", params, "shard_size: 5\n")
    assert run_cli("run", str(config), "--inline").returncode == 0
    before = _arrays(tmp_path / "out.zarr")
    model.write_text("EXTRA = 0.01\n" + source)
    again = run_cli("run", str(config), "--inline")
    assert again.returncode == 2
    assert again.stderr.startswith(
        f"gradcheck: error: The output '{tmp_path / 'out.zarr'}' holds a finished run whose loss {where} was "
    )
    assert again.stderr.endswith("the loss changed. Pass --overwrite (overwrite=True from Python) to start again.\n")
    assert again.stderr.count("\n") == 1
    for name, values in _arrays(tmp_path / "out.zarr").items():
        np.testing.assert_array_equal(values, before[name], err_msg=name)  # nothing of the old run lost


def _as_format_3(output: Path) -> None:
    """The output as format 3 wrote it: no `sample` attribute (every layout spanned the whole index space), and no
    `kink` array (format 5)."""
    shutil.rmtree(output / "kink")
    group = zarr.open_group(str(output), mode="r+")
    meta = {k: v for k, v in dict(group.attrs["gradcheck"]).items() if k != "sample"}  # type: ignore[arg-type]
    group.attrs["gradcheck"] = {**meta, "format_version": 3}


def test_an_interrupted_full_run_of_format_3_is_resumed_and_a_sampled_one_is_not(seed_example: Path) -> None:
    """Format 4 changed only sampled runs' layout: a full run's format-3 output resumes as it did."""
    config, output = str(seed_example / "correct.yaml"), seed_example / "correct-output.zarr"
    assert run_cli("run", config, "--inline", "--set", "shard_size=10").returncode == 0
    _as_format_3(output)
    zarr.open_array(str(output), path="done", mode="r+")[2] = 0  # interrupted before its shard 2 was done
    resumed = run_cli("run", config, "--inline", "--set", "shard_size=10", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["timings"]["resumed_shards"] == 4

    assert run_cli("run", config, *SAMPLED, "--overwrite").returncode == 0
    _as_format_3(output)
    refused = run_cli("run", config, *SAMPLED)
    assert refused.returncode == 2
    assert refused.stderr == (
        f"gradcheck: error: The output '{output}' holds an interrupted sampled run made by an older gradcheck "
        "(format 3), whose arrays span every parameter; this one keeps only the elements it checks. Pass "
        "--overwrite (overwrite=True from Python) to start it again.\n"
    )


def test_a_sampled_run_whose_index_names_other_elements_is_found_and_not_resumed(seed_example: Path) -> None:
    """Its shards would be mislabelled: another NumPy may draw another sample from the seed, or the index was
    damaged (the two cannot be told apart)."""
    config, output = str(seed_example / "correct.yaml"), seed_example / "correct-output.zarr"
    assert run_cli("run", config, *SAMPLED).returncode == 0
    index = zarr.open_array(str(output), path="index", mode="r+")
    right = np.asarray(index[:])
    index[5] = 46  # slot 5 (shard 1) now names another element
    found = run_cli("verify", str(output))
    assert found.returncode == 2
    assert "1 of 4 shards done are corrupt" in found.stderr
    refused = run_cli("run", config, *SAMPLED)
    assert refused.returncode == 2
    assert refused.stderr == (
        f"gradcheck: error: The output '{output}' holds an interrupted sampled run whose `index` names other "
        "elements than this run's sample (drawn by another NumPy, or damaged): its shards cannot be resumed. Pass "
        "--overwrite (overwrite=True from Python) to start it again.\n"
    )
    assert run_cli("run", config, *SAMPLED, "--overwrite").returncode == 0
    np.testing.assert_array_equal(zarr.open_array(str(output), path="index", mode="r")[:], right)
    assert run_cli("verify", str(output)).returncode == 0


class _Maximum:
    """``Σ V·max(A, B)`` on integers, ties in both tensors; ``to_both`` gives both of a tie the whole gradient."""

    def __init__(self, to_both: bool = False, shift: float = 0.0) -> None:
        self.to_both, self.shift = to_both, shift

    def loss(self, params: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> float:
        return float(np.sum(data["V"] * np.maximum(params["A"], params["B"]))) + self.shift

    def grad(self, params: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        a, b, v = params["A"], params["B"], data["V"]
        return {"A": v * (a >= b), "B": v * ((b >= a) if self.to_both else (b > a))}


def _as_format_4(output: Path, together: bool) -> int:
    """The output as format 4 wrote it: no `kink`, seals over the six other arrays, and its kinks marked 7 by the
    rule of then (within a shard) where ``together``; the number of shards done."""
    meta = read_output_attrs(str(output))["gradcheck"]
    arrays = OutputArrays(str(output))
    status = np.asarray(arrays.status[:])
    if together:
        arrays.status[:] = np.where(status == NONDIFFERENTIABLE, TOGETHER, status).astype(np.int8)
    for shard in make_plan(status.size, int(meta["shard_size"])):
        stored = [np.asarray(array[shard.start : shard.stop]) for array in arrays.per_index[:6]]
        arrays.done[shard.index] = shard_seal(meta["identity"], shard, stored)
    shutil.rmtree(output / "kink")
    update_attrs(str(output), {"gradcheck": {**meta, "format_version": 4}})
    return int(np.count_nonzero(np.asarray(zarr.open_array(str(output), path="done", mode="r")[:])))


def test_a_run_of_format_4_is_resumed_with_its_shards_on_kinks_computed_again(tmp_path: Path) -> None:
    """Format 5 keeps each kink's slopes, which moving the run's kinks together reads. A format-4 output's shards
    holding a kink (non-differentiable, or marked together by the older rule within a shard) are computed again
    when it is resumed, the others read back; a resume refused (the loss changed) leaves the output as it was."""
    rng = np.random.default_rng(1)
    params = {name: rng.integers(0, 3, (4, 5)).astype(np.float64) for name in ("A", "B")}
    data = {"V": 1 + rng.random((4, 5))}
    output = tmp_path / "out.zarr"
    pipeline.check(_Maximum(), params, data, shard_size=3, output=str(output))
    with_kinks = {k // 3 for k in np.flatnonzero(np.asarray(zarr.open_array(str(output), path="kink")[:]))}
    assert 0 < len(with_kinks) < 14
    done = _as_format_4(output, together=True)
    with pytest.raises(OutputExistsError, match="the loss changed"):
        pipeline.check(_Maximum(shift=1.0), params, data, shard_size=3, output=str(output))
    assert read_output_attrs(str(output))["gradcheck"]["format_version"] == 4
    assert np.count_nonzero(np.asarray(zarr.open_array(str(output), path="done", mode="r")[:])) == done
    resumed = pipeline.check(_Maximum(), params, data, shard_size=3, output=str(output))
    assert resumed.passed, str(resumed)  # the older rule's marks are gone with their shards
    assert resumed.timings["resumed_shards"] == 14 - len(with_kinks)
    assert read_output_attrs(str(output))["gradcheck"]["format_version"] == 5
    # the bug, resumed from format 4 likewise, is not verified on its kinks moved together across shards
    buggy = tmp_path / "bug.zarr"
    pipeline.check(_Maximum(to_both=True), params, data, shard_size=3, output=str(buggy))
    _as_format_4(buggy, together=False)
    bug = pipeline.check(_Maximum(to_both=True), params, data, shard_size=3, output=str(buggy))
    assert (bug.verdict, bug.not_verified) == ("not verified", ("A", "B")), str(bug)
