"""Tests of ``cpq-guard calibrate`` on a small hand-built sample bank."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from cpq_guard.banks import BankRecord, bank_content_hash, read_bank, write_bank
from cpq_guard.calibration import Calibration
from cpq_guard.models import ReplayChatModel
from cpq_guard.stats.policies import DerivativePolicy, FixedPolicy, MissingMassPolicy

from .helpers import SMALL_BANK_PROMPTS, CliRunner
from .live import write_prompts

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
        "one of the arguments --bank --model is required",
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


def _settings(path: Path) -> dict[str, Any]:
    """Return a calibration file's fields without its creation time."""
    return Calibration.load(path).model_dump(exclude={"created_at"})


def _calibrate_model(cli: CliRunner, source: Path, prompts: Path, out: Path, *flags: object) -> Any:
    return cli(
        "calibrate", "--model", f"replay:{source}", "--prompts", prompts, "--alpha", "0.2",
        "--lambda", "0.01", *LIMITS, "--out", out, *flags,
    )  # fmt: skip


def test_model_matches_bank(cli: CliRunner, small_bank: Path, tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", read_bank(small_bank))
    from_model = tmp_path / "from-model.json"
    from_bank = tmp_path / "from-bank.json"

    result = _calibrate_model(cli, small_bank, prompts, from_model)
    reference = cli(
        "calibrate", "--bank", tmp_path / "from-model.bank.jsonl", "--alpha", "0.2",
        "--lambda", "0.01", *LIMITS, "--out", from_bank,
    )  # fmt: skip

    assert result.code == 0, result.err
    assert reference.code == 0, reference.err
    recorded = read_bank(tmp_path / "from-model.bank.jsonl")
    assert len(recorded) == SMALL_BANK_PROMPTS
    assert all(len(record.samples) == 20 for record in recorded)
    assert _settings(from_model) == _settings(from_bank)
    assert f"recorded {SMALL_BANK_PROMPTS} prompts into sample bank" in result.out
    assert f"wrote calibration {from_model}" in result.out


def test_model_rerun_resumes(cli: CliRunner, small_bank: Path, tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", read_bank(small_bank))
    out = tmp_path / "calibration.json"
    bank = tmp_path / "calibration.bank.jsonl"
    first = _calibrate_model(cli, small_bank, prompts, out)
    assert first.code == 0, first.err
    bank_before = bank.read_bytes()
    calibration_before = _settings(out)

    # A replay of an empty bank fails on any query, so the rerun must not query.
    empty = tmp_path / "empty.jsonl"
    write_bank(empty, [BankRecord(id="unused", prompt="unused", samples=[])])
    result = _calibrate_model(cli, empty, prompts, out)

    assert result.code == 0, result.err
    assert f"already has all {SMALL_BANK_PROMPTS} prompts; nothing to record" in result.out
    assert "recorded" not in result.out
    assert bank.read_bytes() == bank_before
    assert _settings(out) == calibration_before


def test_model_record_to(cli: CliRunner, small_bank: Path, tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", read_bank(small_bank))
    bank = tmp_path / "samples.jsonl"
    out = tmp_path / "calibration.json"

    result = _calibrate_model(cli, small_bank, prompts, out, "--record-to", bank)

    assert result.code == 0, result.err
    assert len(read_bank(bank)) == SMALL_BANK_PROMPTS
    assert not (tmp_path / "calibration.bank.jsonl").exists()
    assert Calibration.load(out).bank_hash == bank_content_hash(read_bank(bank))


def test_model_query_flags(cli: CliRunner, small_bank: Path, tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", read_bank(small_bank))
    out = tmp_path / "calibration.json"

    result = _calibrate_model(
        cli, small_bank, prompts, out, "--max-concurrency", "2", "--timeout", "30",
        "--max-attempts", "1",
    )  # fmt: skip

    assert result.code == 0, result.err
    assert Calibration.load(out).num_calibration == SMALL_BANK_PROMPTS


def test_model_uses_prompt_references(cli: CliRunner, small_bank: Path, tmp_path: Path) -> None:
    records = read_bank(small_bank)
    unlabelled = write_prompts(tmp_path / "unlabelled.jsonl", records, references=False)
    labelled = write_prompts(tmp_path / "labelled.jsonl", records)
    bank = tmp_path / "samples.jsonl"
    recorded = cli(
        "record", "--model", f"replay:{small_bank}", "--prompts", unlabelled, "--out", bank,
        "--samples", "20",
    )  # fmt: skip
    assert recorded.code == 0, recorded.err
    out = tmp_path / "calibration.json"
    reference = tmp_path / "reference.json"

    result = _calibrate_model(cli, small_bank, labelled, out, "--record-to", bank)
    expected = cli(
        "calibrate", "--bank", small_bank, "--alpha", "0.2", "--lambda", "0.01", *LIMITS,
        "--out", reference,
    )  # fmt: skip

    assert result.code == 0, result.err
    assert expected.code == 0, expected.err
    assert "have other references than" in result.err
    assert all(record.references == [] for record in read_bank(bank))
    assert Calibration.load(out).tau == Calibration.load(reference).tau


def test_model_bank_with_fewer_samples(cli: CliRunner, small_bank: Path, tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", read_bank(small_bank))
    bank = tmp_path / "samples.jsonl"
    recorded = cli(
        "record", "--model", f"replay:{small_bank}", "--prompts", prompts, "--out", bank,
        "--samples", "10",
    )  # fmt: skip
    assert recorded.code == 0, recorded.err
    before = bank.read_bytes()

    result = _calibrate_model(cli, small_bank, prompts, tmp_path / "c.json", "--record-to", bank)

    assert result.code == 1
    assert result.err.count("\n") == 1
    assert f"has {SMALL_BANK_PROMPTS} of the prompts with fewer than 20 samples" in result.err
    assert bank.read_bytes() == before
    assert not (tmp_path / "c.json").exists()


def test_model_needs_references(cli: CliRunner, small_bank: Path, tmp_path: Path) -> None:
    records = read_bank(small_bank)
    prompts = write_prompts(tmp_path / "prompts.jsonl", records[:3], references=False)
    with prompts.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"prompt": records[3].prompt, "reference": "3"}) + "\n")

    result = _calibrate_model(cli, small_bank, prompts, tmp_path / "c.json")

    assert result.code == 1
    assert result.err.count("\n") == 1
    assert "3 of 4 prompts in" in result.err
    assert "have no reference answer (lines 1, 2, 3)" in result.err
    assert not (tmp_path / "c.bank.jsonl").exists()


def test_model_too_few_prompts(cli: CliRunner, small_bank: Path, tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", read_bank(small_bank)[:3])

    result = _calibrate_model(cli, small_bank, prompts, tmp_path / "c.json")

    assert result.code == 1
    assert "alpha=0.2 needs at least 4 calibration prompts" in result.err
    assert not (tmp_path / "c.bank.jsonl").exists()


def test_model_budget_counts_tuning(cli: CliRunner, small_bank: Path, tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", read_bank(small_bank)[:6])

    result = cli(
        "calibrate", "--model", f"replay:{small_bank}", "--prompts", prompts, "--alpha", "0.2",
        "--average-budget", "10", *LIMITS, "--out", tmp_path / "c.json",
    )  # fmt: skip

    assert result.code == 1
    assert "needs at least 4 calibration prompts for a finite conformal threshold, but 3" in (
        result.err
    )
    assert not (tmp_path / "c.bank.jsonl").exists()


def test_model_no_tuning_prompt(cli: CliRunner, small_bank: Path, tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", read_bank(small_bank)[:5])

    result = cli(
        "calibrate", "--model", f"replay:{small_bank}", "--prompts", prompts, "--alpha", "0.25",
        "--average-budget", "10", "--tuning-fraction", "0.1", *LIMITS,
        "--out", tmp_path / "c.json",
    )  # fmt: skip

    assert result.code == 1
    assert "--tuning-fraction 0.1 of 5 prompts leaves none to tune the policy" in result.err
    assert not (tmp_path / "c.bank.jsonl").exists()


def test_model_from_init_chat_model(
    cli: CliRunner, small_bank: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chat_models = pytest.importorskip("langchain.chat_models")

    def init_chat_model(model: str, *, model_provider: str | None = None) -> ReplayChatModel:
        assert (model, model_provider) == ("gpt-4o-mini", "openai")
        return ReplayChatModel.from_bank(small_bank)

    monkeypatch.setattr(chat_models, "init_chat_model", init_chat_model)
    prompts = write_prompts(tmp_path / "prompts.jsonl", read_bank(small_bank))
    out = tmp_path / "calibration.json"

    result = cli(
        "calibrate", "--model", "openai:gpt-4o-mini", "--prompts", prompts, "--alpha", "0.2",
        "--lambda", "0.01", *LIMITS, "--out", out,
    )  # fmt: skip

    assert result.code == 0, result.err
    assert Calibration.load(out).num_calibration == SMALL_BANK_PROMPTS


# Each case: arguments after "calibrate" and the policy flags, exit status, message part.
MODEL_SOURCE_ERRORS = [
    pytest.param(
        ["--bank", "{bank}", "--prompts", "{prompts}"],
        2,
        "--prompts applies only with --model",
        id="prompts with bank",
    ),
    pytest.param(
        ["--bank", "{bank}", "--record-to", "{tmp}/r.jsonl"],
        2,
        "--record-to applies only with --model",
        id="record-to with bank",
    ),
    pytest.param(
        ["--bank", "{bank}", "--timeout", "5"],
        2,
        "--timeout applies only with --model",
        id="timeout with bank",
    ),
    pytest.param(
        ["--bank", "{bank}", "--model", "replay:{bank}", "--prompts", "{prompts}"],
        2,
        "argument --model: not allowed with argument --bank",
        id="bank and model",
    ),
    pytest.param(
        ["--model", "replay:{bank}"],
        2,
        "--model needs --prompts PROMPTS.jsonl",
        id="model without prompts",
    ),
    pytest.param(
        ["--model", "gpt-4o-mini", "--prompts", "{prompts}"],
        2,
        "argument --model: model spec 'gpt-4o-mini' has no provider",
        id="spec without provider",
    ),
    pytest.param(
        ["--model", "replay:{bank}", "--prompts", "{tmp}/missing.jsonl"],
        1,
        "cannot access {tmp}/missing.jsonl",
        id="prompts not found",
    ),
    pytest.param(
        ["--model", "replay:{bank}", "--prompts", "{prompts}", "--record-to", "{prompts}"],
        2,
        "--record-to {prompts} is the same file as --prompts",
        id="record-to is prompts",
    ),
    pytest.param(
        ["--model", "replay:{bank}", "--prompts", "{prompts}", "--record-to", "{tmp}/c.json"],
        2,
        "--out {tmp}/c.json is the same file as --record-to",
        id="record-to is out",
    ),
    pytest.param(
        ["--model", "replay:{bank}", "--prompts", "{prompts}", "--record-to", "{tmp}/no/r.jsonl"],
        1,
        "cannot write --record-to {tmp}/no/r.jsonl",
        id="record-to directory missing",
    ),
    pytest.param(
        ["--model", "replay:{tmp}/missing.jsonl", "--prompts", "{prompts}"],
        1,
        "missing.jsonl not found",
        id="replay bank not found",
    ),
]


@pytest.mark.parametrize(("arguments", "code", "message"), MODEL_SOURCE_ERRORS)
def test_model_source_error_is_one_line(
    cli: CliRunner,
    small_bank: Path,
    tmp_path: Path,
    arguments: list[str],
    code: int,
    message: str,
) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", read_bank(small_bank))
    names = {"bank": small_bank, "prompts": prompts, "tmp": tmp_path}
    filled = [argument.format(**names) for argument in arguments]

    result = cli(
        "calibrate", *filled, "--alpha", "0.2", "--lambda", "0.01", *LIMITS,
        "--out", tmp_path / "c.json",
    )  # fmt: skip

    assert result.code == code, result.err
    assert result.err.startswith("cpq-guard: error: ")
    assert result.err.count("\n") == 1
    assert message.format(**names) in result.err
    assert "Traceback" not in result.err
    assert result.out == ""
    assert not (tmp_path / "c.json").exists()
    assert not (tmp_path / "c.bank.jsonl").exists()
