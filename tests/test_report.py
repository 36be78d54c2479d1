"""The report's terminal form, on reports of real runs of the seed example."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

import pipeline
from pipeline import Report, format_report
from pipeline.examples import write_example

from .conftest import REPO, run_cli


def _run_json(config: Path, output: Path, *settings: str) -> Report:
    """``gradcheck run CONFIG --json --set output=OUTPUT [--set ...]`` in a fresh process, read back as a Report."""
    overrides = [arg for setting in (f"output={output}", *settings) for arg in ("--set", setting)]
    result = run_cli("run", str(config), "--json", "--workers", "1", *overrides)
    assert result.returncode in (0, 1), result.stderr
    return Report.from_dict(json.loads(result.stdout))


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed example's folder, as `gradcheck example seed-mlp` writes it."""
    folder = tmp_path_factory.mktemp("report") / "example"
    write_example("seed-mlp", str(folder))
    return folder


@pytest.fixture(scope="module")
def planted(example: Path) -> Report:
    """The planted network's report with the example's settings: elements judged one by one."""
    return _run_json(example / "planted.yaml", example / "judged.zarr")


def test_printing_a_report_shows_the_readable_report(planted: Report, capsys: pytest.CaptureFixture[str]) -> None:
    text = str(planted)
    assert text == format_report(planted)
    assert text.startswith("gradcheck FAILED: 8 of 47 elements wrong; difference 2.851e-01 > threshold 2e-07\n")
    assert "Wrong tensors, from the last layer back: W2, b1\n" in text
    # W2's inconclusive elements are dead units, not bars too wide (a newcomer read "11" as a weak check)
    assert re.search(r"\n  W2 +\(3, 5\) .* 4/15 +0 +11 \(11 zero\) +- +WRONG\n", text), text
    assert "(N zero): inconclusive elements exactly 0 in both analytic and numeric" in text
    print(planted)
    assert capsys.readouterr().out == text + "\n"
    assert "format_report" in pipeline.__all__
    assert pipeline.format_report is pipeline.report.format_report


def test_the_readmes_excerpt_of_the_planted_example_is_its_output(planted: Report) -> None:
    """Every line the README shows of ``gradcheck run example/planted.yaml`` is a line of its report (a newcomer
    found the excerpt two changes of the table behind)."""
    block = (REPO / "README.md").read_text().split("names the two wrong tensors:\n\n```\n", 1)[1].split("```", 1)[0]
    shown = [line for line in block.splitlines() if line.strip() != "..."]
    assert len(shown) > 10
    lines = format_report(planted).splitlines()
    assert [line for line in shown if line not in lines] == []


def test_without_per_element_verdicts_the_report_states_the_rule_instead_of_nan(example: Path, planted: Report) -> None:
    # Judged, the worst elements have an allowance and a status (the contrast).
    assert planted.tolerance
    assert "  element   a              n              |a-n|      allowed    status\n" in format_report(planted)

    report = _run_json(example / "planted.yaml", example / "unjudged.zarr", "tolerance=none", "threshold=2e-7")
    assert not report.tolerance
    text = format_report(report)
    assert "nan" not in text
    assert "allowed" not in text
    assert "agrees" not in text
    assert text.startswith("gradcheck FAILED: difference 2.851e-01 > threshold 2e-07\n")
    rule = (
        "  Elements are not judged one by one (tolerance: none): the threshold 2e-07 on the normalized difference "
        "alone decides.\n"
    )
    assert text.count(rule) == 1
    assert "Worst elements (analytic a, numeric n):\n  element   a              n              |a-n|\n" in text
    assert "  b1[0, 0]  2.531631e+00   6.329079e-01   1.899e+00\n" in text  # 4x the numeric value

    # No threshold either: the report says that nothing was judged.
    text = format_report(dataclasses.replace(report, threshold=None))
    assert "nothing was judged, and PASSED only means the check ran." in text
    assert "alone decide" not in text


def test_a_tensor_with_no_agreeing_element_shows_no_power_rather_than_nan() -> None:
    """Power is the widest allowance of an agreeing element: a tensor whose every element is wrong has none,
    and its column read "nan" (a held-out user could not tell what that meant)."""
    from .models import Smooth, problem

    class BiasDoubled(Smooth):
        def grad(self, params: dict, data: dict) -> dict:  # type: ignore[type-arg]
            grad = super().grad(params, data)
            return {**grad, "bias": 2 * grad["bias"]}

    params, data = problem()
    report = pipeline.check(BiasDoubled(), params, data)
    assert report.failing == ("bias",)
    bias_row = next(line for line in str(report).splitlines() if line.strip().startswith("bias "))
    assert "nan" not in bias_row
    assert " - " in bias_row
    assert "- where none agreed" in str(report)


def test_a_tensor_checked_by_random_directions_alone_states_their_power() -> None:
    """Power counts the agreeing random directions too: a tensor checked by directions alone read "-", the
    mark of a tensor with no agreement at all."""
    from pipeline.examples import hard

    params, data = hard.model("wide-float32").problem(np.float32)
    report = pipeline.check(hard.model("wide-float32"), params, data, indices="none", directions=8)
    assert report.passed
    assert report.n_checked == 0
    for tensor in report.tensors:
        agreeing = [d for d in report.directions if d["tensor"] == tensor.name and d["status"] == "agrees"]
        assert agreeing
        widest = max(d["allowed"] / max(abs(d["analytic"]), abs(d["numeric"])) for d in agreeing)
        assert tensor.power == pytest.approx(widest, rel=1e-12)
        assert tensor.power < 1e-2  # verified: within the verification limit


class _ComputesIn:
    """``Σ tanh(x·w)²`` computed in ``dtype`` whatever the parameters' dtype (a ``.float()`` inside a model)."""

    def __init__(self, dtype: type) -> None:
        self.dtype = dtype

    def loss(self, params: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> float:
        return float(np.sum(np.tanh(data["x"].astype(self.dtype) @ params["w"].astype(self.dtype)) ** 2))

    def grad(self, params: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        t = np.tanh(data["x"] @ params["w"])
        return {"w": data["x"].T @ (2 * t * (1 - t * t))}


def test_a_float64_check_whose_loss_is_as_noisy_as_float32s_asks_whether_the_model_computes_in_float32() -> None:
    """A held-out review: a torch model with a `.float()` inside, checked in float64, passed a 0.1% error within its
    stated power (4e-3), and nothing said why that power was float32's. The report asks; not where the model computes
    in float64."""
    rng = np.random.default_rng(0)
    params, data = {"w": 0.3 * rng.standard_normal(6)}, {"x": rng.standard_normal((5, 6))}
    inside = pipeline.check(_ComputesIn(np.float32), params, data)
    (w,) = inside.tensors
    assert w.noise > 1e-8 * abs(inside.loss)
    assert "does the model compute in float32 inside (a `.float()`" in str(inside)
    assert "The loss's noise along w is up to 1e-07 of the loss" in str(inside)
    assert "compute in float32 inside" not in str(pipeline.check(_ComputesIn(np.float64), params, data))


class _GradientIn:
    """``Σ tanh(x·W)²`` in float64, its gradient computed in ``dtype`` and returned ``as_is`` (else cast back)."""

    def __init__(self, dtype: type, as_is: bool) -> None:
        self.dtype, self.as_is = dtype, as_is

    def loss(self, params: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> float:
        return float(np.sum(np.tanh(data["x"] @ params["W"]) ** 2))

    def grad(self, params: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x: np.ndarray = data["x"].astype(self.dtype)
        w: np.ndarray = params["W"].astype(self.dtype)
        t = np.tanh(x @ w)
        g = x.T @ (2 * t * (1 - t * t))
        return {"W": g if self.as_is else g.astype(params["W"].dtype)}


def test_a_wrong_tensor_whose_gradient_model_grad_computed_in_float32_says_so() -> None:
    """A held-out review: a correct gradient computed in float32 for float64 parameters failed, and the report told of
    "a solver tolerance or a small term left out"; a float32 `gradient` store is refused at once for that reason. Beside
    a wrong tensor, the report now says that model.grad returned float32 arrays, or float64 arrays of float32 numbers."""
    rng = np.random.default_rng(0)
    params, data = {"W": rng.standard_normal((6, 4))}, {"x": rng.standard_normal((12, 6))}
    for as_is, said in (
        (True, "model.grad returned float32 for it"),
        (False, "model.grad returned float32 values for it"),
    ):
        report = pipeline.check(_GradientIn(np.float32, as_is), params, data)
        assert report.failing == ("W",), str(report)
        assert f"W: {said} (computed in float32?) where the check judges in float64" in str(report)
        assert Report.from_dict(report.to_dict()).tensors[0].coarse_gradient == report.tensors[0].coarse_gradient
    right = pipeline.check(_GradientIn(np.float64, True), params, data)
    assert right.passed, str(right)
    assert right.tensors[0].coarse_gradient == ""


def test_a_float32_check_with_inconclusive_elements_says_that_float64_would_verify_them() -> None:
    """A float32 ReLU network with a correct hand-written gradient: float32's rounding leaves most of its first
    layer inconclusive, and the report (a held-out user's float32 convolution net was "NOT VERIFIED" with no word of
    what to do) names the dtype as the reason and `precision: float64` as the remedy, which verifies it; a float64
    check does not say it."""
    from .models import ReluNet, relu_problem

    params, data = relu_problem(0, sizes=(8, 16, 16, 4), batch=32)
    as32 = {k: v.astype(np.float32) for k, v in params.items()}
    report = pipeline.check(ReluNet(), as32, {**data, "X": data["X"].astype(np.float32)})
    assert report.n_inconclusive > report.n_checked // 4, str(report)
    assert "Checked in float32" in str(report)
    again = pipeline.check(ReluNet(), as32, {**data, "X": data["X"].astype(np.float32)}, precision="float64")
    assert again.verdict == "passed", str(again)
    assert again.n_inconclusive == sum(t.n_zero for t in again.tensors), str(again)  # dead units only
    assert "Checked in float32" not in str(again)
    assert "float32" not in str(pipeline.check(ReluNet(), params, data))
