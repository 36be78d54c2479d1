"""gradcheck-pipeline: verify analytic gradients against centered finite differences on Dask."""

from typing import TYPE_CHECKING, Any

from .api import check, run
from .config import ClusterConfig, Config, load_config
from .errors import (
    ConfigError,
    ConfigTypeError,
    GradcheckError,
    ModelError,
    ModelImportError,
    OutputExistsError,
    StoreError,
    StoreExistsError,
    StoreNotFoundError,
)
from .numerics.layout import Layout, TensorSpec
from .report import Report, TensorReport, WorstElement, format_report

__all__ = [
    "ClusterConfig",
    "Config",
    "ConfigError",
    "ConfigTypeError",
    "GradcheckError",
    "Layout",
    "ModelError",
    "ModelImportError",
    "OutputExistsError",
    "Report",
    "StoreError",
    "StoreExistsError",
    "StoreNotFoundError",
    "TensorReport",
    "TensorSpec",
    "WorstElement",
    "check",
    "format_report",
    "load_config",
    "run",
    "write_store",
]

if TYPE_CHECKING:
    from .storage.inputs import write_store


def __getattr__(name: str) -> Any:
    # write_store needs Zarr: imported when first asked for, so that `import pipeline` and an
    # in-memory check load neither Zarr nor Dask.
    if name == "write_store":
        from .storage.inputs import write_store

        return write_store
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__version__ = "0.1.0"
