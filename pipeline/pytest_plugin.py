"""The pytest plugin: a ``gradcheck`` fixture, registered by the package's ``pytest11`` entry point.

::

    def test_my_layer(gradcheck):
        gradcheck(MyLayer(), params, data, scheme="central")

The fixture is :func:`pipeline.testing.assert_gradients`: the check runs in the
test's process, and a wrong gradient fails the test with the readable report.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

__all__ = ["gradcheck"]


@pytest.fixture
def gradcheck() -> Callable[..., Any]:
    """``gradcheck(model, params, data, **settings)``: assert that the model's gradient is right."""
    from .testing import assert_gradients

    return assert_gradients
