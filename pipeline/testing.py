"""Gradient checks inside a test suite: an assertion that fails with the readable report.

::

    from pipeline.testing import assert_gradients

    def test_my_layer():
        assert_gradients(MyLayer(), params, data)

The same is the ``gradcheck`` fixture of the pytest plugin that installing the
package registers (:mod:`pipeline.pytest_plugin`). Checks run in the test's own
process (no cluster, nothing written), so they are as fast as the arithmetic and
work under pytest-xdist.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .api import check
from .model import ModelRef
from .report import Report, format_report

__all__ = ["assert_gradients"]

#: ``pipeline.check`` arguments that would take a check out of the test's process.
_ELSEWHERE = ("client", "cluster", "workers")


def assert_gradients(
    model: ModelRef, params: Mapping[str, np.ndarray], data: Mapping[str, np.ndarray], **settings: Any
) -> Report:
    """Check a model's gradient in this process; raise ``AssertionError`` if it is wrong.

    Parameters
    ----------
    model, params, data
        As :func:`pipeline.check` takes them.
    **settings
        Any setting :func:`pipeline.check` takes (``scheme``, ``epsilon``, ``threshold``,
        ``tolerance``, ``indices``, ``directions``, ``precision``, ``gradient``...), except
        those that would run it elsewhere (``client``, ``cluster``, ``workers``).

    Returns
    -------
    Report
        The report of a check that passed.

    Raises
    ------
    AssertionError
        The gradients disagree, or some tensor could not be verified (``unverified="warn"`` lets
        that pass). Its message is the readable report: the wrong (or unverified) tensors from the
        last layer back, what is wrong with each, and the worst elements.
    """
    __tracebackhide__ = True  # pytest shows the test's line and this message, not this function's body and arguments
    elsewhere = sorted(set(settings) & set(_ELSEWHERE))
    if elsewhere:
        raise TypeError(
            f"assert_gradients runs the check in this process; it takes no {', '.join(elsewhere)}. "
            "Call pipeline.check for a check on a cluster."
        )
    report = check(model, params, data, **settings)
    if not report.passed:
        raise AssertionError(format_report(report))  # its first line, the verdict, is pytest's summary line
    return report
