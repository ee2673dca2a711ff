"""Errors that a command raises to end with a one-line message and an exit code.

Library errors (`cpq_guard.errors.CPQGuardError`) and `OSError` are reported
by `cpq_guard.cli._app.main` as they are. These two classes cover what only
the command line knows about: flag combinations, output paths and optional
dependencies.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CommandError(Exception):
    """A command cannot run or finish; it exits with status 1.

    Attributes:
        exit_code: Process exit status reported by `main`.
    """

    exit_code = EXIT_FAILURE


class UsageError(CommandError):
    """The command line itself is invalid; it exits with status 2, as argparse does."""

    exit_code = EXIT_USAGE
