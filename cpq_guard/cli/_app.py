"""The ``cpq-guard`` argument parser, its subcommands and the shared error handling.

Each subcommand is a module with two functions:

- ``register(subparsers) -> argparse.ArgumentParser`` adds the command's
  parser with ``subparsers.add_parser(...)``, its flags, and
  ``set_defaults(run=run)``, and returns the parser.
- ``run(args) -> int`` does the work and returns the exit status.

Adding a command means writing such a module and listing it in `COMMANDS`.

`main` reports every `CPQGuardError`, `OSError`, `CommandError` and argparse
error as one line ``cpq-guard: error: ...`` on stderr, without a traceback.
Any other exception is reported the same way, with its type and a request
to rerun with ``--debug``. With ``--debug``, the errors raised after parsing
are re-raised instead.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from typing import NoReturn, TextIO

from cpq_guard._version import __version__
from cpq_guard.cli import ask, calibrate, demo, evaluate, import_paper, record
from cpq_guard.cli._errors import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    CommandError,
    UsageError,
)
from cpq_guard.errors import CPQGuardError

PROG = "cpq-guard"

COMMANDS = (demo, import_paper, record, evaluate, calibrate, ask)
"""Subcommand modules, in the order that ``cpq-guard --help`` lists them."""

logger = logging.getLogger("cpq_guard")


class _ArgumentParser(argparse.ArgumentParser):
    """An argument parser that raises `UsageError` instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _add_global_arguments(parser: argparse.ArgumentParser, *, subcommand: bool) -> None:
    """Add ``-v`` and ``--debug`` to the main parser or to a subcommand's parser.

    A subcommand's copies default to `argparse.SUPPRESS`, so that they leave
    the main parser's value alone when they are not given after the command.
    """
    verbose_default = argparse.SUPPRESS if subcommand else 0
    debug_default = argparse.SUPPRESS if subcommand else False
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=verbose_default,
        help="log progress on stderr: -v for info, -vv for debug messages",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        default=debug_default,
        help="show the full traceback of an error instead of a one-line message",
    )


def build_parser() -> argparse.ArgumentParser:
    """Build the ``cpq-guard`` parser with every subcommand in `COMMANDS`."""
    parser = _ArgumentParser(
        prog=PROG,
        description="Calibrated abstention for LLM answers with conformal prediction and "
        "a query oracle (CPQ): record or import a model's samples, evaluate policies, "
        "calibrate a guard and ask guarded questions.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    _add_global_arguments(parser, subcommand=False)

    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        subparser = command.register(subparsers)
        _add_global_arguments(subparser, subcommand=True)
    return parser


class _Formatter(logging.Formatter):
    """Format records as ``cpq-guard: <level>: <message>``, like the error line."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"{PROG}: {record.levelname.lower()}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class _StderrHandler(logging.StreamHandler):
    """A stream handler that writes to whatever ``sys.stderr`` is at the time of the record.

    rich's progress display replaces ``sys.stderr`` while it runs, so that
    log lines appear above the progress bar instead of through it.
    """

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        del value  # the stream is always the current sys.stderr


@contextlib.contextmanager
def _logging_to_stderr(verbosity: int) -> Iterator[None]:
    """Send the ``cpq_guard`` logger to stderr while a command runs.

    Level WARNING by default, INFO with ``-v`` and DEBUG with ``-vv``. The
    handler and level are removed afterwards, so repeated in-process calls
    of `main` do not stack handlers.
    """
    level = logging.WARNING
    if verbosity == 1:
        level = logging.INFO
    elif verbosity >= 2:
        level = logging.DEBUG

    handler = _StderrHandler()
    handler.setFormatter(_Formatter())
    previous_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)


def _print_error(message: object) -> None:
    text = " ".join(str(message).splitlines())
    print(f"{PROG}: error: {text}", file=sys.stderr)


def _describe_os_error(error: OSError) -> str:
    reason = error.strerror or str(error)
    if error.filename is not None:
        return f"cannot access {os.fsdecode(error.filename)}: {reason}"
    return reason


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``cpq-guard`` with ``argv`` (default: ``sys.argv[1:]``) and return the exit status.

    Returns:
        0 on success, 1 for a runtime or data error, 2 for a usage error,
        3 when ``ask --fail-on-abstain`` abstains and 130 when interrupted.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as error:
        _print_error(error)
        return error.exit_code
    except SystemExit as stop:  # --help and --version print, then exit
        return stop.code if isinstance(stop.code, int) else EXIT_OK

    with _logging_to_stderr(args.verbose):
        options = {name: value for name, value in vars(args).items() if name != "run"}
        logger.debug("running command %s with options %s", args.command, options)
        try:
            return args.run(args)
        except CommandError as error:
            if args.debug:
                raise
            _print_error(error)
            return error.exit_code
        except CPQGuardError as error:
            if args.debug:
                raise
            _print_error(error)
            return EXIT_FAILURE
        except BrokenPipeError:
            # The reader of stdout went away (``| head``). Point stdout at
            # devnull, so that the interpreter's final flush does not fail too.
            with contextlib.suppress(OSError, ValueError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
            return EXIT_FAILURE
        except OSError as error:
            if args.debug:
                raise
            _print_error(_describe_os_error(error))
            return EXIT_FAILURE
        except KeyboardInterrupt:
            if args.debug:
                raise
            _print_error("interrupted")
            return EXIT_INTERRUPTED
        except Exception as error:
            # An error that no check foresaw is a bug, but still one line;
            # --debug shows the traceback to report.
            if args.debug:
                raise
            _print_error(
                f"unexpected {type(error).__name__}: {error}; rerun with --debug for the "
                "traceback and report it"
            )
            return EXIT_FAILURE
