"""Opening Zarr stores by path or URL, with their errors turned into one line naming the store."""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import zarr
import zarr.errors

from ..errors import OutputExistsError, StoreError, StoreNotFoundError
from . import Options, is_url

__all__ = ["REMOVE_ATTEMPTS", "open_group", "opened", "reading", "remove_group"]


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


#: A disk's errors that a run names itself, with what to do (:func:`pipeline.api`): full, read-only, failing.
FULL_DISK = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG})


@contextmanager
def writing(path: str) -> Iterator[None]:
    """As :func:`reading`, for the output's first write (its lock), before anything else is written: a folder that
    cannot hold it, a bucket that does not exist, credentials refused, an endpoint not reached, as one line naming it
    (review 126: exit 3, "internal error"); a full disk is left to the run's own message."""
    try:
        yield
    except (StoreError, OutputExistsError):
        raise
    except OSError as e:
        if e.errno in FULL_DISK:
            raise
        raise StoreError(f"The output '{path}' cannot be written: {type(e).__name__}: {e}") from e
    except Exception as e:
        if not is_url(path):
            raise
        # (a remote filesystem's own errors, botocore's EndpointConnectionError..., derive from none of the above)
        raise StoreError(f"The output '{path}' cannot be written: {type(e).__name__}: {e}") from e


def open_group(role: str, path: str, options: Options = None) -> zarr.Group:
    """The group at ``path``, read-only."""
    with reading(role, path):
        return zarr.open_group(store=path, mode="r", **opened(path, options))


#: How often :func:`remove_group` removes a local group that reappears (every 0.05 s).
REMOVE_ATTEMPTS = 40


def remove_group(path: str, options: Options = None) -> None:
    """Remove a group this process wrote (an output, a store written aside), if it is there."""
    if not is_url(path):
        # After a failed write (a full disk) Zarr may still finish the chunk writes it had started,
        # recreating folders under `path`: remove until it stays gone.
        for _ in range(REMOVE_ATTEMPTS):
            if not os.path.exists(path):
                return
            shutil.rmtree(path, ignore_errors=True)
            time.sleep(0.05)
        return
    import fsspec

    fs, root = fsspec.core.url_to_fs(path, **dict(options or {}))
    with suppress(FileNotFoundError):
        fs.rm(root, recursive=True)
