"""Opening Zarr stores by path or URL, with their errors turned into one line naming the store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import zarr
import zarr.errors

from ..errors import OutputExistsError, StoreError, StoreNotFoundError
from . import Options, is_url

__all__ = ["open_group", "opened", "reading"]


def opened(path: str, options: Options) -> dict[str, Any]:
    """Zarr's keyword for a store's fsspec options: only URLs take them."""
    return {"storage_options": dict(options)} if options and is_url(path) else {}


@contextmanager
def reading(role: str, path: str) -> Iterator[None]:
    """Turn Zarr's and the filesystem's exceptions into one line naming the store."""
    try:
        yield
    except (StoreError, OutputExistsError):
        raise
    except (FileNotFoundError, zarr.errors.NodeNotFoundError) as e:
        raise StoreNotFoundError(f"The {role} store '{path}' does not exist (or is not a Zarr group).") from e
    except zarr.errors.ContainsArrayError as e:
        raise StoreError(f"The {role} store '{path}' is a Zarr array; expected a group of arrays.") from e
    except (OSError, ValueError, TypeError, KeyError, json.JSONDecodeError) as e:
        raise StoreError(f"The {role} store '{path}' cannot be read: {type(e).__name__}: {e}") from e
    except Exception as e:
        if not is_url(path):
            raise
        # A remote filesystem's own errors (botocore's NoCredentialsError...) derive from none of the above.
        raise StoreError(f"The {role} store '{path}' cannot be read: {type(e).__name__}: {e}") from e


def open_group(role: str, path: str, options: Options = None) -> zarr.Group:
    """The group at ``path``, read-only."""
    with reading(role, path):
        return zarr.open_group(store=path, mode="r", **opened(path, options))
