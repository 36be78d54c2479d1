"""The ``gradcheck`` command: one subcommand per unit of work.

Exit codes: 0 the gradients agree, 1 they disagree, 2 bad input or usage (one
line on stderr naming what is wrong; no traceback), 3 an internal error (a bug of
ours or a library's error: one line, and the traceback written to a file), 4 not
verified (no element is wrong, but some tensor's elements were all inconclusive or
kinks, or some disagree in float32 only: the check could not have seen a bug there;
``unverified: warn`` makes that a pass). 1 is never anything but a verdict.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import dataclasses
import functools
import inspect
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn, TextIO

from . import api
from .config import ClusterConfig, Config, load_config, parse_overrides
from .errors import GradcheckError, StoreError, exited, one_line
from .examples import EXAMPLES, write_example
from .nightly.history import format_history, format_run, read_history
from .nightly.page import write_page
from .nightly.suite import load_suite, run_suite
from .report import Report, format_report, text_table

__all__ = ["main", "progress_line"]

EXIT_PASSED, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_NOT_VERIFIED = 0, 1, 2, 3, 4
#: `status` of a run with no verdict yet (submitted, running, interrupted, cancelled): 0 would read as "they agree".
EXIT_NO_VERDICT = 5


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line and exit code 2, like every other bad input."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _workers(text: str) -> int:
    """``--workers N``: a whole number of at least 1, or a one-line usage error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number. Got {text!r} instead.") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1. Got {value} instead.")
    return value


#: The longest loss ``--t-loss`` takes (a day): beyond it, estimates overflow into meaninglessness.
MAX_LOSS_SECONDS = 86400.0


def _seconds(text: str) -> float:
    """``--t-loss SECONDS``: a positive number, or a one-line usage error."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds. Got {text!r} instead.") from None
    if not 0 < value <= MAX_LOSS_SECONDS:
        raise argparse.ArgumentTypeError(
            f"must be a positive number of seconds, at most {MAX_LOSS_SECONDS:g}. Got {text} instead."
        )
    return value


def _cluster_arguments(where: argparse._MutuallyExclusiveGroup) -> None:
    where.add_argument("--scheduler", metavar="ADDRESS", help="use the existing cluster at this scheduler address")
    where.add_argument("--scheduler-file", metavar="PATH", help="use the existing cluster of this scheduler file")


def _check_arguments(command: argparse.ArgumentParser, *, local: bool) -> None:
    """CONFIG, --set, where to run and --overwrite: what `run` and `submit` share."""
    command.add_argument("config", metavar="CONFIG", help="the run's YAML config")
    command.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key (repeatable)"
    )
    where = command.add_mutually_exclusive_group()
    if local:
        where.add_argument("--workers", type=_workers, metavar="N", help="worker processes of the local cluster")
        where.add_argument(
            "--inline", action="store_true", help="run in this process: no cluster (the same numbers, bit for bit)"
        )
    _cluster_arguments(where)
    command.add_argument(
        "--overwrite", action="store_true", help="replace an output that holds a different check's result"
    )


def _parser() -> argparse.ArgumentParser:
    # Looked up when the parser is built, not at import: the package's __init__ may import this module.
    from . import __version__

    parser = _Parser(
        prog="gradcheck", description="Check a model's analytic gradient against centered finite differences."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--traceback", action="store_true", help="on an error, print the whole traceback (the model's, when it raised)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    run = commands.add_parser("run", help="run one check", description="Run one gradient check as CONFIG describes.")
    _check_arguments(run, local=True)
    run.add_argument("--json", action="store_true", help="print the report as JSON instead of a summary")
    run.add_argument(
        "--no-progress", action="store_true", help="no progress bar (it is drawn only on a terminal anyway)"
    )

    plan = commands.add_parser(
        "plan",
        help="estimate a check's cost without running it",
        description="Print what the check CONFIG describes would cost, without running its shards: loss "
        "evaluations, wall time on the named cluster, peak memory per worker and on the client, and the output's "
        "size. The loss's time is measured by probing the model in this process (which reads the parameters "
        "and data), or given with --t-loss (then nothing is read or evaluated).",
    )
    plan.add_argument("config", metavar="CONFIG", help="the run's YAML config")
    plan.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key (repeatable)"
    )
    plan.add_argument("--t-loss", type=_seconds, metavar="SECONDS", help="seconds one loss evaluation takes")
    plan.add_argument("--json", action="store_true", help="print JSON")
    plan_where = plan.add_mutually_exclusive_group()
    plan_where.add_argument("--workers", type=_workers, metavar="N", help="worker processes of the local cluster")
    plan_where.add_argument("--inline", action="store_true", help="plan a run in this process")
    _cluster_arguments(plan_where)

    submit = commands.add_parser(
        "submit",
        help="start a check on an existing cluster and return",
        description="Start the check CONFIG describes on an existing Dask cluster; print its job id and return at "
        "once. The job goes on after this process exits; follow it with `gradcheck status OUTPUT`.",
    )
    _check_arguments(submit, local=False)

    status = commands.add_parser(
        "status",
        help="follow a run through its output",
        description="Show the shards done, evaluations per second and ETA of the run writing OUTPUT, "
        "and its verdict once it is done (exit code as `run`'s then).",
    )
    status.add_argument("output", metavar="OUTPUT", help="a check's output group")

    cancel = commands.add_parser(
        "cancel",
        help="stop a submitted job",
        description="Stop the submitted job writing OUTPUT. Its finished shards are kept: "
        "`gradcheck run CONFIG` resumes it.",
    )
    cancel.add_argument("output", metavar="OUTPUT", help="the job's output group")
    _cluster_arguments(cancel.add_mutually_exclusive_group())

    report = commands.add_parser(
        "report", help="print a stored report", description="Print the report stored in OUTPUT."
    )
    report.add_argument("output", metavar="OUTPUT", help="a check's output group")
    report.add_argument("--json", action="store_true", help="print JSON")

    verify = commands.add_parser(
        "verify",
        help="check an output's chunks against their records",
        description="Read back every shard OUTPUT records as done and check its chunks against the seal the shard "
        "recorded. Exit 0 when all are intact; 2 when any is corrupt, as for any input that cannot be used "
        "(1 is only ever a verdict on gradients); resuming the run recomputes the corrupt shards.",
    )
    verify.add_argument("output", metavar="OUTPUT", help="a check's output group")

    suite = commands.add_parser(
        "suite",
        help="run a suite against its history",
        description="Run every check of SUITE; judge it against history.",
    )
    suite.add_argument("suite", metavar="SUITE", help="the suite's YAML file")
    suite.add_argument("--history", required=True, metavar="DIR", help="the history folder (created if absent)")
    suite.add_argument("--workdir", metavar="DIR", help="keep the checks' outputs here (default: a temporary folder)")
    suite.add_argument("--workers", type=_workers, metavar="N", help="worker processes of the local cluster")

    history = commands.add_parser("history", help="print a suite's history", description="Print the history in DIR.")
    history.add_argument("history", metavar="DIR", help="the history folder")
    history.add_argument("--html", metavar="PATH", help="also write a self-contained page with plots")

    import_ = commands.add_parser(
        "import",
        help="write a params (or data) store from saved weights",
        description="Write SOURCE's arrays as a new Zarr store at STORE, in SOURCE's order (the store's `order`): "
        "an .npz file; a .safetensors file; a PyTorch .pt/.pth file holding a state_dict (or a checkpoint with one "
        "under `state_dict` or `model_state_dict`), read with torch.load(weights_only=True), so a file that would "
        "have to unpickle other objects is refused; or path/to/file.py:attr naming a mapping of name -> array or "
        "an object with a `.params` mapping (a model adapter). Names with '/' become nested groups. STORE must not "
        "exist.",
    )
    import_.add_argument("source", metavar="SOURCE", help="file.npz, file.safetensors, file.pt, or file.py:attr")
    import_.add_argument("store", metavar="STORE", help="the store to write (a new path)")

    example = commands.add_parser(
        "example", help="write a built-in example", description="Write a ready-to-run example."
    )
    example.add_argument(
        "name", choices=sorted(EXAMPLES), metavar="NAME", help=f"one of: {', '.join(sorted(EXAMPLES))}"
    )
    example.add_argument("folder", metavar="DIR", help="where to write it")
    for command in commands.choices.values():  # also after the subcommand; SUPPRESS keeps the main parser's value
        command.add_argument("--traceback", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def progress_line(done: int, total: int, elapsed_seconds: float, width: int = 30) -> str:
    """The progress bar's text: the bar, the shards done, the time so far and, once a shard is done, the ETA.

    Parameters
    ----------
    done, total : int
        Shards done, and in all (``0 <= done <= total``, ``total >= 1``).
    elapsed_seconds : float
        Seconds since the run started.
    width : int
        Characters of the bar between its brackets.

    Returns
    -------
    str
        ``[####......] 3/10 shards  6.0 s  ETA 14 s``; no ETA before the first shard
        (nothing to extrapolate from) nor after the last (nothing left).

    Notes
    -----
    The ETA assumes the remaining shards go at the average pace so far,
    ``elapsed_seconds / done * (total - done)``: shards are of equal size.
    """
    filled = width * done // total
    line = f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} shards  {elapsed_seconds:.1f} s"
    if 0 < done < total:
        line += f"  ETA {elapsed_seconds / done * (total - done):.0f} s"
    return line


class _ProgressBar:
    """A one-line progress bar on a terminal; nothing elsewhere."""

    def __init__(self, stream: TextIO, width: int = 30) -> None:
        self.stream, self.width, self.started = stream, width, time.perf_counter()
        self.drawn = 0  # characters of the line on screen

    def __call__(self, done: int, total: int) -> None:
        line = progress_line(done, total, time.perf_counter() - self.started, self.width)
        # Padded: a shorter line (the ETA gone at the end) must not leave the longer one's tail behind.
        self.stream.write(f"\r{line.ljust(self.drawn)}")
        self.drawn = len(line)
        if done == total:
            self.stream.write("\n")
        self.stream.flush()


def _where(cluster: ClusterConfig, args: argparse.Namespace) -> ClusterConfig:
    """The config's cluster, with where to run replaced as a whole by the command line's; timeout and TLS kept."""
    workers = getattr(args, "workers", None)
    if getattr(args, "inline", False):
        return ClusterConfig(inline=True)
    if workers is None and not args.scheduler and not args.scheduler_file:
        return cluster
    scheduler_file = os.path.abspath(args.scheduler_file) if args.scheduler_file else None
    return dataclasses.replace(
        cluster,
        workers=workers,
        address=args.scheduler,
        scheduler_file=scheduler_file,
        security=None if workers is not None else cluster.security,
    )


def _config(args: argparse.Namespace) -> Config:
    config = load_config(args.config, parse_overrides(args.set))
    return dataclasses.replace(config, cluster=_where(config.cluster, args))


#: The descriptor standard output had before the first ``--json`` command of this process moved it, and how many
#: such commands (in threads, calling main()) are running: the last to end puts it back (review 123).
_JSON_OUT: dict[str, int] = {"users": 0, "kept": -1}
_JSON_LOCK = threading.Lock()


@contextlib.contextmanager
def _stdout_for_json_only(json_only: bool) -> Iterator[Callable[[str], None]]:
    """Yield how to write the command's result. Where ``json_only``, whatever else is written to standard output
    meanwhile goes to standard error: the model's prints (at import, in its loss), this process's and the worker
    processes' it starts, which inherit the descriptor; the result is written to standard output as it was, and is
    all it holds (review 122: a model's debug print broke the JSON)."""
    if not json_only:
        yield print
        return
    if sys.stdout is None:  # standard output closed (`>&-`): nowhere to write it, as for any command
        yield lambda text: None
        return
    try:
        out, err = sys.stdout.fileno(), sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (a caller's capture): Python's own stream, at least
        real = sys.stdout
        with contextlib.redirect_stdout(sys.stderr):
            yield functools.partial(print, file=real)
        return
    with _JSON_LOCK:
        if _JSON_OUT["users"] == 0:
            sys.stdout.flush()
            _JSON_OUT["kept"] = os.dup(out)
            os.dup2(err, out)
        _JSON_OUT["users"] += 1
        kept = _JSON_OUT["kept"]
    try:
        yield functools.partial(_write_all, kept)
    finally:
        with _JSON_LOCK:
            _JSON_OUT["users"] -= 1
            if _JSON_OUT["users"] == 0:
                sys.stdout.flush()
                os.dup2(kept, out)
                os.close(kept)


def _write_all(fd: int, text: str) -> None:
    data = (text + "\n").encode()
    while data:
        data = data[os.write(fd, data) :]


def _run(args: argparse.Namespace) -> int:
    config = _config(args)
    show_progress = not args.no_progress and not args.json and sys.stderr.isatty()
    with _stdout_for_json_only(args.json) as write:
        report = api.run(config, overwrite=args.overwrite, progress=_ProgressBar(sys.stderr) if show_progress else None)
        _print(report, as_json=args.json, write=write)
    return _exit_code(report)


def _plan(args: argparse.Namespace) -> int:
    with _stdout_for_json_only(args.json) as write:
        planned = api.plan(_config(args), loss_seconds=args.t_loss)
        if args.json:
            write(json.dumps(planned.to_dict(), indent=2))
            return EXIT_PASSED
    cost, gb = planned.cost, 2**30
    print(
        f"gradcheck plan: {planned.n_checked:,} of {planned.n_params:,} elements checked, "
        f"{planned.directions} random direction(s) per tensor; {planned.shards} shard(s) on {planned.workers} worker(s)"
    )
    rows = [
        (
            "loss evaluations",
            f"{cost.loss_evaluations:,}",
            f"one loss takes {planned.loss_seconds * 1e3:.3g} ms, {planned.loss_source}",
        ),
        ("wall time", _duration(cost.wall_seconds), "start-up, loading, probe and gradient included"),
        ("memory per worker", f"{cost.worker_memory_bytes / gb:.2f} GB", "peak, beyond the model's own working set"),
        ("client memory", f"{cost.client_memory_bytes / gb:.2f} GB", "peak, of the process running the check"),
        ("output", f"{cost.output_bytes / 2**20:.2f} MB", "uncompressed"),
    ]
    for row in text_table([list(row) for row in rows]):
        print(f"  {row}")
    return EXIT_PASSED


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _exit_code(report: Report) -> int:
    """0 passed, 1 the gradients disagree, 4 no element is wrong but some tensor could not be verified."""
    return {"passed": EXIT_PASSED, "not verified": EXIT_NOT_VERIFIED}.get(report.verdict, EXIT_FAILED)


def _submit(args: argparse.Namespace) -> int:
    config = _config(args)
    from .execution import jobs  # Dask and Zarr, only for the commands that need them

    job = jobs.submit(config, overwrite=args.overwrite)
    print(job)
    print(f"follow it with: gradcheck status {config.output}", file=sys.stderr)
    return EXIT_PASSED


def _status(args: argparse.Namespace) -> int:
    from .execution import jobs

    current = jobs.status(args.output)
    print(jobs.format_status(current))
    if current.state == "failed":
        return EXIT_BAD_INPUT
    return EXIT_NO_VERDICT if current.report is None else _exit_code(current.report)


def _cancel(args: argparse.Namespace) -> int:
    cluster = _where(ClusterConfig(), args) if args.scheduler or args.scheduler_file else None
    from .execution import jobs

    stopped = jobs.cancel(args.output, cluster)
    print(jobs.format_status(stopped))
    return EXIT_PASSED


def _report(args: argparse.Namespace) -> int:
    from .storage.output import SEALED_SINCE, read_output_attrs, verify  # Zarr: only for commands that read one

    attrs = read_output_attrs(args.output)
    if "report" not in attrs:
        raise StoreError(f"The output '{args.output}' has no report yet: its run did not finish.")
    report = Report.from_dict(attrs["report"])
    sealed = attrs["gradcheck"]["format_version"] >= SEALED_SINCE  # older outputs carry no seals to check
    corrupt = verify(args.output).corrupt if sealed else ()  # first: an output it cannot read prints no report
    _print(report, as_json=args.json)
    if corrupt:  # the report was made from intact chunks; what is on disk now is not what it describes
        print(
            f"gradcheck: warning: {len(corrupt)} shard(s) of '{args.output}' no longer verify (the first: "
            f"{', '.join(map(str, corrupt[:5]))}); the report stands, but the arrays do not: "
            "`gradcheck verify` lists them, and running the check again recomputes them.",
            file=sys.stderr,
        )
    return _exit_code(report)


def _verify(args: argparse.Namespace) -> int:
    from .storage.output import verify

    found = verify(args.output)
    if not found.corrupt:
        print(f"{args.output}: {found.done} of {found.shards} shards done, every one intact")
        return EXIT_PASSED
    listed = ", ".join(map(str, found.corrupt[:20])) + (", ..." if len(found.corrupt) > 20 else "")
    print(
        f"gradcheck: error: '{args.output}': {len(found.corrupt)} of {found.done} shards done are corrupt (a chunk "
        f"cut short, missing or changed): {listed}. Running the same check again recomputes them.",
        file=sys.stderr,
    )
    return EXIT_BAD_INPUT


def _suite(args: argparse.Namespace) -> int:
    suite = load_suite(args.suite)
    cluster = suite.cluster
    if args.workers is not None:
        cluster = dataclasses.replace(cluster, workers=args.workers, address=None, scheduler_file=None)
    result = run_suite(suite, args.history, workdir=args.workdir, cluster=cluster)
    print(format_run(result.records, result.history))
    for record in result.errors:  # each recorded, and the suite went on: one line each, exit 2 (bad input)
        print(f"gradcheck: error: check {record.check!r}: {record.error}", file=sys.stderr)
    if result.errors:
        return EXIT_BAD_INPUT
    return EXIT_FAILED if result.failed else EXIT_PASSED


def _history(args: argparse.Namespace) -> int:
    records = read_history(args.history)
    if args.html:  # first: a path refused is the one line, without the table
        write_page(args.html, records)
    print(format_history(records))
    if args.html:
        print(f"Wrote {args.html}")
    return EXIT_PASSED


def _example(args: argparse.Namespace) -> int:
    configs = write_example(args.name, args.folder)
    print(f"Wrote example {args.name} to {args.folder}. Run it with:")
    for path in configs:
        print(f"  gradcheck run {path}")
    return EXIT_PASSED


def _import(args: argparse.Namespace) -> int:
    from .storage.imports import format_imported, import_store  # Zarr, and a framework for its own files

    print(format_imported(import_store(args.source, args.store)))
    return EXIT_PASSED


def _print(report: Report, *, as_json: bool, write: Callable[[str], None] = print) -> None:
    write(json.dumps(report.to_dict(), indent=2) if as_json else format_report(report))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gradcheck`` command; returns the exit code."""
    args = _parser().parse_args(argv)
    # The scheduler of a local cluster lives in this process: keep its chatter off the terminal. Its
    # errors too (a lost scheduler logs a traceback per reconnection attempt, whatever level Dask's
    # configuration gives its loggers when it is imported): the one line we print says what failed.
    logging.disable(logging.ERROR)
    terminate = _on_sigterm(_terminated)
    try:
        return _main(args)
    finally:
        logging.disable(logging.NOTSET)  # for a caller of main() in its own process
        _on_sigterm(terminate)


@functools.cache  # (once a process)
def _quiet_from_exit_on() -> None:
    atexit.register(_quiet_at_exit)


def _quiet_at_exit() -> None:
    """From the interpreter's exit on (an exit handler registered after the stores' event loops', so run before
    theirs), once a command failed on a store: coroutines left pending complain as those loops close them, a remote
    store's reads gathered with one that failed (review 126: an S3 endpoint not reached printed its one line, then 100
    lines of "Exception ignored in: <coroutine object StorePath.get>"). Their complaints go unsaid; any other object's
    are printed as before, and after any other outcome, a coroutine's too (the model's own)."""
    hook = sys.unraisablehook

    def quiet(unraisable: Any) -> None:
        if not inspect.iscoroutine(unraisable.object):
            hook(unraisable)

    sys.unraisablehook = quiet


class Terminated(KeyboardInterrupt):
    """SIGTERM (what systemd, Kubernetes and `kill` send) as a Ctrl-C: the run stops its workers and is left
    interrupted, to be resumed; the command says so in one line and exits 143 (128 + SIGTERM)."""


def _terminated(signum: int, frame: object) -> NoReturn:
    raise Terminated


def _on_sigterm(handler: Any) -> Any:
    """Install ``handler`` for SIGTERM (None: the default, for a handler not installed from Python) and return the one
    it replaces; nothing off the main thread (a caller of main() in a thread), where signals cannot be handled."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, signal.SIG_DFL if handler is None else handler)


def _main(args: argparse.Namespace) -> int:
    commands = {
        "run": _run,
        "plan": _plan,
        "submit": _submit,
        "status": _status,
        "cancel": _cancel,
        "report": _report,
        "verify": _verify,
        "suite": _suite,
        "history": _history,
        "example": _example,
        "import": _import,
    }
    try:
        return commands[args.command](args)
    except GradcheckError as e:
        if args.traceback:
            print(getattr(e, "detail", None) or "".join(traceback.format_exception(e)), end="", file=sys.stderr)
        print(f"gradcheck: error: {e}", file=sys.stderr)
        if isinstance(e, StoreError):  # (a store's reads that failed: see _quiet_at_exit)
            _quiet_from_exit_on()
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as e:
        terminated = isinstance(e, Terminated)
        print(f"gradcheck: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    except SystemExit as e:  # a model's (or a library's) exit where no guard saw it: its code is no verdict
        print(f"gradcheck: error: the model, or a library it calls, {exited(e)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # the reader stopped reading (`gradcheck run ... | head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return EXIT_BROKEN_PIPE
    except Exception as e:  # a bug of ours, or a library's error: never a verdict, never bad input
        return _internal_error(e, show=args.traceback)


#: The shell's code for a process whose reader went away (128 + SIGPIPE); the output group is complete.
EXIT_BROKEN_PIPE = 141
#: The shell's codes for a process stopped by Ctrl-C (128 + SIGINT) and by SIGTERM (128 + SIGTERM).
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143


def _internal_error(error: Exception, *, show: bool) -> int:
    """Say in one line that something unexpected failed, keep its traceback in a file, and return exit code 3."""
    text = "".join(traceback.format_exception(error))
    try:
        fd, path = tempfile.mkstemp(prefix="gradcheck-crash-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        where = f"the traceback is in {path}"
    except OSError as e:
        where, show = f"the traceback could not be written ({e}), so here it is", True
    if show:
        print(text, end="", file=sys.stderr)
    summary = one_line(error)
    print(
        f"gradcheck: internal error (exit code {EXIT_INTERNAL}, not a verdict): {summary[:400]}; {where}. "
        "Please report it with that file.",
        file=sys.stderr,
    )
    return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
