"""gradcheck-pipeline: verify analytic gradients against centered finite differences on Dask."""

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
    "StoreNotFoundError",
    "TensorReport",
    "TensorSpec",
    "WorstElement",
    "check",
    "format_report",
    "load_config",
    "run",
]

__version__ = "0.1.0"
