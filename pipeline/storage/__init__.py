"""Storage: the Zarr stores a check reads (params, data, gradient) and the output group it writes.

Every store is a Zarr v3 group addressed by a path or an fsspec URL (opened with
the run's ``storage_options``; credentials come from the environment, as the
filesystem's own library reads them). :mod:`.inputs` opens the input stores once
per run; :mod:`.output` owns the output group, its lock and its attributes. This
module itself imports no Zarr: the config and in-process checks use it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeAlias

__all__ = ["NAME_RULE", "Options", "is_url", "name_problem"]

#: fsspec options for URL stores (``endpoint_url``...), as the config's ``storage_options`` gives them.
Options: TypeAlias = Mapping[str, Any] | None


def is_url(path: str) -> bool:
    """Whether ``path`` is an fsspec URL (``s3://...``) rather than a local path."""
    return "://" in path


#: What an array's name in a store must be: a path relative to the group's root, its parts the
#: groups that hold it (a JAX parameter's key path, ``layers/0/w``), as Zarr can write and read them back.
NAME_RULE = "non-empty strings whose '/'-separated parts are not empty, '.' or '..' and do not start with '__'"


def name_problem(names: Iterable[object]) -> str | None:
    """What keeps ``names`` from naming arrays in one store (``"must be ... Got 'a//b' instead."``), or None.

    Each name must follow :data:`NAME_RULE` (``__`` is reserved by Zarr; an empty or
    dotted part would be read back under another name), and no name may be the
    group that holds another (``a`` and ``a/b``).
    """
    checked: list[str] = []
    for name in names:
        if not isinstance(name, str) or any(
            part in ("", ".", "..") or part.startswith("__") for part in name.split("/")
        ):
            return f"must be {NAME_RULE}. Got {name!r} instead."
        checked.append(name)
    arrays = set(checked)
    for name in checked:
        parts = name.split("/")
        for end in range(1, len(parts)):
            group = "/".join(parts[:end])
            if group in arrays:
                return f"must not include both '{group}' and '{name}': in a store, '{group}' is the group holding '{name}'."
    return None
