"""The progress bar that long commands draw on stderr."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def stderr_progress(label: str = "{task.description}") -> Progress:
    """Build a transient progress bar on stderr, shown only when stderr is a terminal.

    Drawing on stderr keeps stdout clean for output such as ``--json``.
    """
    stderr = Console(stderr=True)
    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr,
        transient=True,
        disable=not stderr.is_terminal,
    )
