"""Checks on the files a command writes, made before any long computation."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from cpq_guard.cli._errors import CommandError, UsageError


def check_output_path(path: str | os.PathLike[str], flag: str) -> Path:
    """Check that a file can be written at ``path`` and return it as a `Path`.

    The parent directory must exist, and a probe file is created and removed
    there, which catches read-only file systems and permissions that
    ``os.access`` misreports. An existing file at ``path`` is fine, because
    the commands replace it.

    Raises:
        CommandError: If ``path`` is a directory, its parent does not exist
            or is not a directory, or the parent is not writable.
    """
    target = Path(path)
    if target.is_dir():
        raise CommandError(f"{flag} {target} is a directory; give a file path such as {target}/out")

    parent = target.parent
    if not parent.exists():
        raise CommandError(
            f"cannot write {flag} {target}: directory {parent} does not exist; create it first"
        )
    if not parent.is_dir():
        raise CommandError(f"cannot write {flag} {target}: {parent} is not a directory")

    try:
        with tempfile.TemporaryFile(dir=parent, prefix=".cpq-guard-probe-"):
            pass
    except OSError as error:
        raise CommandError(
            f"cannot write {flag} {target}: directory {parent} is not writable "
            f"({error.strerror or error}); choose another path"
        ) from None
    return target


def check_distinct_paths(
    source: str | os.PathLike[str], source_flag: str, output: Path, output_flag: str
) -> None:
    """Reject an output path that names the input file, which writing would destroy.

    Raises:
        UsageError: If both paths name the same file.
    """
    source_path = Path(source)
    same = source_path.resolve() == output.resolve()
    if not same and source_path.exists() and output.exists():
        same = os.path.samefile(source_path, output)
    if same:
        raise UsageError(
            f"{output_flag} {output} is the same file as {source_flag} {source_path}, "
            "which it would overwrite; choose another output path"
        )
