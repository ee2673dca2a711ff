"""Tests for atomic file replacement."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cpq_guard import _atomic
from cpq_guard._atomic import atomic_write_bytes, atomic_write_text


def test_write_creates_parents(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "out.json"

    atomic_write_text(path, "héllo\n")

    assert path.read_bytes() == "héllo\n".encode()
    assert [entry.name for entry in path.parent.iterdir()] == ["out.json"]


def test_write_keeps_newlines(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"

    atomic_write_text(path, "a\nb\r\n")

    assert path.read_bytes() == b"a\nb\r\n"


def test_write_replaces_and_keeps_mode(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    path.write_text("old")
    path.chmod(0o640)

    atomic_write_bytes(path, b"new")

    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


@pytest.mark.skipif(os.name != "posix", reason="umask is POSIX")
def test_new_file_follows_umask(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    previous = os.umask(0o027)
    try:
        atomic_write_bytes(path, b"x")
    finally:
        os.umask(previous)

    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_failed_replace_keeps_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "out.txt"
    path.write_text("old")

    def fail(source: object, target: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(_atomic.os, "replace", fail)

    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(path, "new")

    assert path.read_text() == "old"
    assert [entry.name for entry in tmp_path.iterdir()] == ["out.txt"]
