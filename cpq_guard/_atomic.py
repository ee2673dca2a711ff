"""Atomic replacement of files, so a reader never sees a half-written file.

The data goes to a temporary file in the target's directory, which is flushed
to disk with ``fsync`` and then renamed over the target with `os.replace`.
A rename within one directory is atomic on POSIX file systems, so after a
crash the target contains either its old content or the new one. Windows
does not document `os.replace` as atomic, though it replaces the file in one
call. The directory is synced too, where the platform allows it, so that the
rename itself survives a power loss.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

__all__ = ["atomic_write_bytes", "atomic_write_text", "fsync_directory"]


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace the file at ``path`` with ``data`` atomically.

    Missing parent directories are created. A new file gets the usual
    permissions for the process umask, and an existing file keeps its mode.
    If anything fails, the temporary file is removed and the target is left
    as it was.

    Args:
        path: Target file.
        data: The complete new content.

    Raises:
        OSError: If the directory cannot be created or the file cannot be written.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")

    # os.open applies the umask to 0o666, unlike tempfile.mkstemp, which always
    # creates files readable by the owner only.
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileNotFoundError):
            os.chmod(temporary, os.stat(target).st_mode & 0o7777)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise

    fsync_directory(target.parent)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8") -> None:
    """Replace the file at ``path`` with ``text`` atomically.

    The text is encoded as given, with no newline translation, so ``"\\n"``
    stays ``"\\n"`` on every platform. See `atomic_write_bytes` for the
    guarantees.
    """
    atomic_write_bytes(path, text.encode(encoding))


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Flush a directory's entries to disk, where the platform supports it.

    On Windows a directory cannot be opened for ``fsync``, and there the call
    does nothing.
    """
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:  # some file systems do not support fsync on directories
        pass
    finally:
        os.close(descriptor)
