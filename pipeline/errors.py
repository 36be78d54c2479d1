"""The project's exceptions.

Every error a user can cause by what they give us (a config, a store, a model,
a command line) is a :class:`GradcheckError`: the CLI prints its message as one
line and exits with code 2. Anything else is a bug and keeps its traceback.
Each class also inherits the builtin a Python caller would naturally catch.
"""

from __future__ import annotations

__all__ = [
    "OVERWRITE",
    "UNGUARDED_SCRIPT",
    "ClusterError",
    "ConfigError",
    "ConfigTypeError",
    "GradcheckError",
    "HistoryError",
    "ModelError",
    "ModelImportError",
    "OutputExistsError",
    "StoreError",
    "StoreExistsError",
    "StoreNotFoundError",
    "exited",
    "one_line",
]


class GradcheckError(Exception):
    """Bad input: a config, store, model or command line that cannot be used."""


class ConfigError(GradcheckError, ValueError):
    """A config key is unknown, missing or has a value out of range.

    Parameters
    ----------
    *args : object
        The message, as for any exception.
    key : str or None, optional
        The dotted key at fault (``epsilon``, ``cluster.workers``) when the error
        is about one key, so that a caller can tell whether the config file or a
        command-line override gave it; None when no single key is to blame.
    """

    def __init__(self, *args: object, key: str | None = None) -> None:
        super().__init__(*args)
        # An attribute, not an argument: BaseException pickles args and __dict__, so the key
        # survives the trip from a worker (cls(*args), then __dict__ restored).
        self.key = key


class ConfigTypeError(ConfigError, TypeError):
    """A config key has a value of the wrong kind."""


class StoreError(GradcheckError, ValueError):
    """A Zarr store does not have the layout the pipeline needs."""


class StoreNotFoundError(StoreError, FileNotFoundError):
    """A Zarr store, or an array inside one, does not exist."""


class StoreExistsError(StoreError, FileExistsError):
    """Something is already where a store would be written; it is left as it is."""


class OutputExistsError(GradcheckError, FileExistsError):
    """The output location holds something this run must not overwrite."""


class ClusterError(GradcheckError, ConnectionError):
    """The cluster cannot be reached, has no workers, or lost a shard for good."""


class HistoryError(GradcheckError, ValueError):
    """A suite's history record cannot be read, or a newer gradcheck wrote it."""


class ModelError(GradcheckError):
    """A model does not follow the protocol, or misbehaves when called.

    ``detail`` holds the model's own traceback as text, when it raised (``gradcheck
    --traceback`` prints it); an attribute, so it survives pickling from a worker.
    """

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail


class ModelImportError(ModelError, ImportError):
    """A model reference cannot be resolved to an object."""


def one_line(error: BaseException) -> str:
    """An exception as one line: its type and its message, whitespace collapsed."""
    return " ".join(f"{type(error).__name__}: {error}".split())


#: How a refused output is replaced, as the command line and Python spell it.
OVERWRITE = "--overwrite (overwrite=True from Python)"

#: What a model module that exits on import is told to do (:func:`exited`).
UNGUARDED_SCRIPT = (
    ': a module the check imports must not run a script; put that code under `if __name__ == "__main__":`'
)


def exited(error: SystemExit) -> str:
    """What a model's ``sys.exit`` (or a script's argument parsing) did, for a one-line error: its exit code is the
    model's, never a verdict (0 would read as "the gradients agree", 1 as "they disagree")."""
    return f"called sys.exit({error.code!r}) (a SystemExit: a script's exit or its argument parsing)"
