"""Storage: the Zarr stores a check reads (params, data, gradient) and the output group it writes.

Every store is a Zarr v3 group addressed by a path or an fsspec URL (opened with
the run's ``storage_options``; credentials come from the environment, as the
filesystem's own library reads them). :mod:`.inputs` opens the input stores once
per run; :mod:`.output` owns the output group, its lock and its attributes. This
module itself imports no Zarr: the config and in-process checks use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

__all__ = ["Options", "is_url"]

#: fsspec options for URL stores (``endpoint_url``...), as the config's ``storage_options`` gives them.
Options: TypeAlias = Mapping[str, Any] | None


def is_url(path: str) -> bool:
    """Whether ``path`` is an fsspec URL (``s3://...``) rather than a local path."""
    return "://" in path
