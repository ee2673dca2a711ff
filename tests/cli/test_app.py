"""Tests of the cpq-guard entry point: help, version, logging and error handling."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from cpq_guard import __version__
from cpq_guard.cli import _app, main
from cpq_guard.errors import BankFormatError

from .helpers import CliRunner

POLICY = ("--method", "fixed", "--queries", "10", "--max-queries", "20", "--min-queries", "5")


def test_installed_entry_point_help() -> None:
    script = Path(sys.executable).parent / "cpq-guard"
    if not script.exists():
        pytest.skip(f"console script {script} is not installed")

    completed = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=60, check=False
    )

    assert completed.returncode == 0, completed.stderr
    for command in ("import-paper", "evaluate", "calibrate"):
        assert command in completed.stdout
    assert "Traceback" not in completed.stderr


def test_version(cli: CliRunner) -> None:
    result = cli("--version")

    assert result.code == 0
    assert result.out.strip() == f"cpq-guard {__version__}"


def test_subcommand_help_exits_zero(cli: CliRunner) -> None:
    result = cli("evaluate", "--help")

    assert result.code == 0
    assert "--average-budget" in result.out
    assert "--reference-match" in result.out


def test_missing_command_is_usage_error(cli: CliRunner) -> None:
    result = cli()

    assert result.code == 2
    assert result.err.count("\n") == 1
    assert result.err.startswith("cpq-guard: error: ")
    assert "COMMAND" in result.err


def test_unknown_flag_is_usage_error(cli: CliRunner) -> None:
    result = cli(
        "calibrate",
        "--bank",
        "b.jsonl",
        "--alpha",
        "0.1",
        "--lambda",
        "1",
        "--out",
        "c.json",
        "--bogus",
    )

    assert result.code == 2
    assert result.err.count("\n") == 1
    assert "unrecognized arguments: --bogus" in result.err


@pytest.mark.parametrize("position", ["before", "after"])
def test_debug_reraises(tmp_path: Path, position: str) -> None:
    arguments = ["evaluate", "--bank", str(tmp_path / "missing.jsonl"), "--alpha", "0.1", *POLICY]
    arguments = ["--debug", *arguments] if position == "before" else [*arguments, "--debug"]

    with pytest.raises(BankFormatError, match="not found"):
        main(arguments)


def test_error_without_debug_has_no_traceback(cli: CliRunner, tmp_path: Path) -> None:
    result = cli("evaluate", "--bank", tmp_path / "missing.jsonl", "--alpha", "0.1", *POLICY)

    assert result.code == 1
    assert "Traceback" not in result.err
    assert result.err.count("\n") == 1


@pytest.mark.parametrize(
    ("flags", "info", "debug"),
    [((), False, False), (("-v",), True, False), (("-vv",), True, True)],
)
def test_verbosity_levels(
    cli: CliRunner, small_bank: Path, flags: tuple[str, ...], info: bool, debug: bool
) -> None:
    result = cli(*flags, "evaluate", "--bank", small_bank, "--alpha", "0.2", *POLICY)

    assert result.code == 0
    assert ("cpq-guard: info: read 40 prompts" in result.err) is info
    assert ("cpq-guard: debug:" in result.err) is debug


def test_verbose_after_subcommand(cli: CliRunner, small_bank: Path) -> None:
    result = cli("evaluate", "--bank", small_bank, "--alpha", "0.2", *POLICY, "-v")

    assert result.code == 0
    assert "cpq-guard: info: read 40 prompts" in result.err


def test_logging_restored_after_main(cli: CliRunner, small_bank: Path) -> None:
    logger = logging.getLogger("cpq_guard")
    handlers = list(logger.handlers)
    level = logger.level

    cli("-vv", "evaluate", "--bank", small_bank, "--alpha", "0.2", *POLICY)

    assert logger.handlers == handlers
    assert logger.level == level


def test_commands_follow_module_contract() -> None:
    for command in _app.COMMANDS:
        assert callable(command.register), command.__name__
        assert callable(command.run), command.__name__
