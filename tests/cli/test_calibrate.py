"""Tests of ``cpq-guard calibrate`` on a small hand-built sample bank."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cpq_guard.banks import bank_content_hash, read_bank
from cpq_guard.calibration import Calibration
from cpq_guard.stats.policies import DerivativePolicy, FixedPolicy, MissingMassPolicy

from .helpers import SMALL_BANK_PROMPTS, CliRunner

LIMITS = ("--min-queries", "5", "--max-queries", "20", "--bootstrap", "5")


def test_writes_loadable_calibration(cli: CliRunner, small_bank: Path, tmp_path: Path) -> None:
    out = tmp_path / "calibration.json"

    result = cli(
        "calibrate", "--bank", small_bank, "--alpha", "0.2", "--lambda", "0.01", *LIMITS,
        "--out", out,
    )  # fmt: skip

    assert result.code == 0, result.err
    calibration = Calibration.load(out)
    assert calibration.alpha == 0.2
    assert calibration.num_calibration == SMALL_BANK_PROMPTS
    assert calibration.num_tuning == 0
    assert isinstance(calibration.policy, DerivativePolicy)
    assert calibration.policy.lambda_ == 0.01
    assert calibration.policy.bootstrap == 5
    assert calibration.equivalence == "normalized"
    assert calibration.extractor == "text"
    assert calibration.bank_hash == bank_content_hash(read_bank(small_bank))
    assert f"tau                      {calibration.tau:.6g}" in result.out
    assert f"calibration prompts (n)  {SMALL_BANK_PROMPTS}" in result.out
    assert "cpq: lambda = 0.01" in result.out
    assert str(out) in result.out


def test_average_budget_tunes_policy(cli: CliRunner, small_bank: Path, tmp_path: Path) -> None:
    out = tmp_path / "calibration.json"

    result = cli(
        "calibrate", "--bank", small_bank, "--alpha", "0.2", "--average-budget", "12", *LIMITS,
        "--tuning-fraction", "0.25", "--out", out,
    )  # fmt: skip

    assert result.code == 0, result.err
    calibration = Calibration.load(out)
    assert calibration.num_tuning == 10
    assert calibration.num_calibration == 30
    assert calibration.target_budget == 12.0
    assert calibration.tuning_mean_queries is not None
    assert calibration.tuning_mean_queries <= 12.0
    assert isinstance(calibration.policy, DerivativePolicy)
    assert "tuned for an average budget of 12 queries" in result.out
    assert "tuning prompts" in result.out


@pytest.mark.parametrize(
    ("flags", "policy_type"),
    [
        (("--queries", "10"), FixedPolicy),
        (("--epsilon", "0.2"), MissingMassPolicy),
        (("--method", "fixed", "--average-budget", "10"), FixedPolicy),
    ],
)
def test_method_from_parameter(
    cli: CliRunner,
    small_bank: Path,
    tmp_path: Path,
    flags: tuple[str, ...],
    policy_type: type,
) -> None:
    out = tmp_path / "calibration.json"

    result = cli("calibrate", "--bank", small_bank, "--alpha", "0.2", *flags, *LIMITS, "--out", out)

    assert result.code == 0, result.err
    assert isinstance(Calibration.load(out).policy, policy_type)


def test_cumulative_mapping_and_settings(cli: CliRunner, small_bank: Path, tmp_path: Path) -> None:
    out = tmp_path / "calibration.json"

    result = cli(
        "calibrate", "--bank", small_bank, "--alpha", "0.25", "--queries", "15",
        "--mapping", "cumulative", "--equivalence", "numeric", "--extractor", "final-answer",
        "--estimator", "good-turing", "--seed", "3", "--out", out,
    )  # fmt: skip

    assert result.code == 0, result.err
    calibration = Calibration.load(out)
    assert calibration.mapping == "cumulative"
    assert calibration.equivalence == "numeric"
    assert calibration.extractor == "final-answer"
    assert calibration.estimator == "good-turing"
    assert calibration.tau <= 1.0


CALIBRATE_ERRORS = [
    pytest.param(
        ["--bank", "{bank}", "--alpha", "0.2", "--out", "{tmp}/c.json"],
        2,
        "one of the arguments --lambda --queries --epsilon --average-budget is required",
        id="no method parameter",
    ),
    pytest.param(
        [
            "--bank",
            "{bank}",
            "--alpha",
            "0.2",
            "--lambda",
            "1",
            "--queries",
            "3",
            "--out",
            "{tmp}/c.json",
        ],
        2,
        "argument --queries: not allowed with argument --lambda",
        id="two method parameters",
    ),
    pytest.param(
        [
            "--bank",
            "{bank}",
            "--alpha",
            "0.2",
            "--method",
            "fixed",
            "--lambda",
            "1",
            "--out",
            "{tmp}/c.json",
        ],
        2,
        "--lambda applies only to --method cpq, but the chosen method is fixed",
        id="parameter of another method",
    ),
    pytest.param(
        ["--alpha", "0.2", "--lambda", "1", "--out", "{tmp}/c.json"],
        2,
        "one of the arguments --bank is required",
        id="no bank",
    ),
    pytest.param(
        ["--bank", "{bank}", "--alpha", "0", "--lambda", "1", "--out", "{tmp}/c.json"],
        2,
        "argument --alpha: invalid value '0'",
        id="alpha zero",
    ),
    pytest.param(
        ["--bank", "{bank}", "--alpha", "0.2", "--lambda", "-1", "--out", "{tmp}/c.json"],
        2,
        "argument --lambda: invalid value '-1'",
        id="negative lambda",
    ),
    pytest.param(
        ["--bank", "{bank}", "--alpha", "0.2", "--epsilon", "2", "--out", "{tmp}/c.json"],
        2,
        "argument --epsilon: invalid value '2'",
        id="epsilon above one",
    ),
    pytest.param(
        [
            "--bank",
            "{bank}",
            "--alpha",
            "0.2",
            "--lambda",
            "1",
            "--tie-jitter",
            "0.5",
            "--out",
            "{tmp}/c.json",
        ],
        2,
        "argument --tie-jitter: invalid value '0.5': it must be at most 0.1",
        id="tie jitter too wide",
    ),
    pytest.param(
        ["--bank", "{bank}", "--alpha", "0.2", "--lambda", "1", "--out", "{tmp}/no/c.json"],
        1,
        "directory {tmp}/no does not exist",
        id="output directory missing",
    ),
    pytest.param(
        ["--bank", "{bank}", "--alpha", "0.2", "--lambda", "1", "--out", "{file}/c.json"],
        1,
        "{file} is not a directory",
        id="output parent is a file",
    ),
    pytest.param(
        ["--bank", "{bank}", "--alpha", "0.2", "--lambda", "1", "--out", "{bank}"],
        2,
        "is the same file as --bank",
        id="output is the bank",
    ),
    pytest.param(
        [
            "--bank",
            "{tmp}/missing.jsonl",
            "--alpha",
            "0.2",
            "--lambda",
            "1",
            "--out",
            "{tmp}/c.json",
        ],
        1,
        "missing.jsonl not found",
        id="bank not found",
    ),
    pytest.param(
        [
            "--bank",
            "{bank}",
            "--alpha",
            "0.2",
            "--lambda",
            "1",
            "--max-queries",
            "50",
            "--out",
            "{tmp}/c.json",
        ],
        1,
        "fewer than max_queries=50",
        id="max queries above bank length",
    ),
    pytest.param(
        ["--bank", "{bank}", "--alpha", "0.01", "--lambda", "1", "--out", "{tmp}/c.json"],
        1,
        "needs at least 99 calibration prompts",
        id="alpha too small for bank",
    ),
]


@pytest.mark.parametrize(("arguments", "code", "message"), CALIBRATE_ERRORS)
def test_error_is_one_line(
    cli: CliRunner,
    small_bank: Path,
    tmp_path: Path,
    arguments: list[str],
    code: int,
    message: str,
) -> None:
    regular_file = tmp_path / "regular-file"
    regular_file.write_text("")
    names = {"bank": small_bank, "tmp": tmp_path, "file": regular_file}
    filled = [argument.format(**names) for argument in arguments]

    result = cli("calibrate", "--min-queries", "5", "--max-queries", "20", *filled)

    assert result.code == code, result.err
    assert result.err.startswith("cpq-guard: error: ")
    assert result.err.count("\n") == 1
    assert message.format(**names) in result.err
    assert "Traceback" not in result.err
    assert result.out == ""
    assert not (tmp_path / "c.json").exists()


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="needs a non-root POSIX user, since root writes to read-only directories",
)
def test_read_only_output_directory(cli: CliRunner, small_bank: Path, tmp_path: Path) -> None:
    directory = tmp_path / "read-only"
    directory.mkdir()
    directory.chmod(0o500)
    try:
        result = cli(
            "calibrate", "--bank", small_bank, "--alpha", "0.2", "--lambda", "0.01", *LIMITS,
            "--out", directory / "c.json",
        )  # fmt: skip
    finally:
        directory.chmod(0o700)

    assert result.code == 1
    assert result.err.count("\n") == 1
    assert "is not writable" in result.err
