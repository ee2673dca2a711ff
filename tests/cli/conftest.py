"""Fixtures for the command-line tests: an in-process runner and a small sample bank."""

from __future__ import annotations

from pathlib import Path

import pytest

from cpq_guard.banks import write_bank
from cpq_guard.cli import main

from .helpers import SMALL_BANK_PROMPTS, SMALL_BANK_SAMPLES, CliResult, CliRunner, make_records


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> CliRunner:
    """Return a function that runs ``cpq-guard`` in-process with the given arguments."""

    def run(*args: object) -> CliResult:
        code = main([str(arg) for arg in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture
def small_bank(tmp_path: Path) -> Path:
    """A bank of 40 prompts with 20 samples each."""
    path = tmp_path / "small.jsonl"
    write_bank(path, make_records(SMALL_BANK_PROMPTS, SMALL_BANK_SAMPLES))
    return path
