"""Tests of ``cpq-guard ask`` with a replayed model and calibrations of its bank."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from cpq_guard.banks import BankRecord
from cpq_guard.calibration import Calibration, calibrate_bank
from cpq_guard.cli.ask import EXIT_ABSTAINED
from cpq_guard.models import ReplayChatModel
from cpq_guard.result import GuardResult
from cpq_guard.stats.policies import DerivativePolicy

from .helpers import CliResult, CliRunner
from .live import INPUT_TOKENS, OUTPUT_TOKENS, write_source_bank

# With these samples, "question 0" (90% correct) stops early with its
# reference in the set, and "question 3" (30% correct) keeps a large
# missing mass, so it abstains once tau is raised to ABSTAINING_TAU.
CONFIDENT = "question 0"
UNSURE = "question 3"
ABSTAINING_TAU = 1.9


@pytest.fixture
def source(tmp_path: Path) -> tuple[Path, list[BankRecord]]:
    """A bank of 40 prompts with 20 samples each, replayed as the model."""
    path = tmp_path / "source.jsonl"
    return path, write_source_bank(path, 40, 20)


@pytest.fixture
def calibration(source: tuple[Path, list[BankRecord]], tmp_path: Path) -> Path:
    """A calibration of the source bank at alpha 0.2."""
    _, records = source
    policy = DerivativePolicy(lambda_=0.01, min_queries=5, max_queries=20, bootstrap=5)
    path = tmp_path / "calibration.json"
    calibrate_bank(records, alpha=0.2, policy=policy).save(path)
    return path


@pytest.fixture
def abstaining(calibration: Path, tmp_path: Path) -> Path:
    """The calibration with a tau so high that a missing mass above 0.1 abstains."""
    path = tmp_path / "abstaining.json"
    Calibration.load(calibration).model_copy(update={"tau": ABSTAINING_TAU}).save(path)
    return path


def _ask(
    cli: CliRunner, source: Path, calibration: Path, question: str, *flags: object
) -> CliResult:
    return cli("ask", question, "--model", f"replay:{source}", "--calibration", calibration, *flags)


def test_prints_answer_set(
    cli: CliRunner, source: tuple[Path, list[BankRecord]], calibration: Path
) -> None:
    result = _ask(cli, source[0], calibration, CONFIDENT, "--seed", "1")

    assert result.code == 0, result.err
    assert result.err == ""
    lines = result.out.splitlines()
    assert lines[0] == "answer set of 1 answer (80% coverage target):"
    assert lines[1].startswith("  0  (probability ")
    assert "ABSTAIN" not in result.out
    assert "estimated missing mass: " in result.out
    assert "queries: " in result.out
    assert "stopped by derivative" in result.out


def test_prints_abstention(
    cli: CliRunner, source: tuple[Path, list[BankRecord]], abstaining: Path
) -> None:
    result = _ask(cli, source[0], abstaining, UNSURE, "--seed", "1")

    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].startswith("ABSTAIN: estimated missing mass ")
    assert f"tau = {ABSTAINING_TAU:.3f}" in lines[0]
    assert f"abstains from {2.0 - ABSTAINING_TAU:.3f}" in lines[0]
    assert lines[1] == "answers seen:"
    assert any(line.startswith("  3  (probability ") for line in lines)
    assert "answer set" not in result.out


def test_fail_on_abstain(
    cli: CliRunner, source: tuple[Path, list[BankRecord]], abstaining: Path
) -> None:
    abstained = _ask(cli, source[0], abstaining, UNSURE, "--seed", "1", "--fail-on-abstain")
    answered = _ask(cli, source[0], abstaining, CONFIDENT, "--seed", "1", "--fail-on-abstain")

    assert abstained.code == EXIT_ABSTAINED
    assert abstained.out.startswith("ABSTAIN")
    assert abstained.err == ""
    assert answered.code == 0, answered.err
    assert answered.out.startswith("answer set")


def test_token_usage_line(
    cli: CliRunner, source: tuple[Path, list[BankRecord]], calibration: Path
) -> None:
    result = _ask(cli, source[0], calibration, CONFIDENT, "--seed", "1", "--json")
    guarded = GuardResult.model_validate_json(result.out)
    queries = guarded.num_queries

    text = _ask(cli, source[0], calibration, CONFIDENT, "--seed", "1")

    assert f"queries: {queries} (stopped by " in text.out
    assert (
        f"tokens: {queries * INPUT_TOKENS} input, {queries * OUTPUT_TOKENS} output, "
        f"{queries * (INPUT_TOKENS + OUTPUT_TOKENS)} total" in text.out
    )


def test_json_is_guard_result(
    cli: CliRunner, source: tuple[Path, list[BankRecord]], abstaining: Path
) -> None:
    result = _ask(cli, source[0], abstaining, UNSURE, "--seed", "1", "--json")

    assert result.code == 0, result.err
    guarded = GuardResult.model_validate_json(result.out)
    assert guarded.abstained
    assert guarded.answers == []
    assert guarded.threshold == ABSTAINING_TAU
    assert guarded.alpha == 0.2
    assert 5 <= guarded.num_queries <= 20
    assert sum(cluster.count for cluster in guarded.clusters) == guarded.num_queries
    assert guarded.usage.input_tokens == INPUT_TOKENS * guarded.num_queries


def test_replays_bank_samples_in_order(
    cli: CliRunner, source: tuple[Path, list[BankRecord]], calibration: Path
) -> None:
    source_path, records = source
    record = next(record for record in records if record.prompt == UNSURE)

    result = _ask(cli, source_path, calibration, UNSURE, "--seed", "1", "--json")

    guarded = GuardResult.model_validate_json(result.out)
    responses = [text for cluster in guarded.clusters for text in cluster.responses]
    expected = [sample.text for sample in record.samples[: guarded.num_queries]]
    assert sorted(responses) == sorted(expected)


def test_seed_makes_result_repeatable(
    cli: CliRunner, source: tuple[Path, list[BankRecord]], calibration: Path
) -> None:
    first = _ask(cli, source[0], calibration, UNSURE, "--seed", "7", "--json")
    second = _ask(cli, source[0], calibration, UNSURE, "--seed", "7", "--json")

    assert first.code == 0, first.err
    assert first.out == second.out


def test_concurrency_keeps_decision(
    cli: CliRunner, source: tuple[Path, list[BankRecord]], calibration: Path
) -> None:
    sequential = _ask(cli, source[0], calibration, UNSURE, "--seed", "2", "--json")
    concurrent = _ask(
        cli, source[0], calibration, UNSURE, "--seed", "2", "--json", "--max-concurrency", "4"
    )

    assert concurrent.code == 0, concurrent.err
    single = GuardResult.model_validate_json(sequential.out)
    parallel = GuardResult.model_validate_json(concurrent.out)
    assert parallel.num_queries == single.num_queries
    assert parallel.answers == single.answers
    assert parallel.discarded_queries + parallel.cancelled_queries <= 3


def test_question_from_stdin(
    cli: CliRunner,
    source: tuple[Path, list[BankRecord]],
    calibration: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(CONFIDENT + "\n"))

    result = _ask(cli, source[0], calibration, "-", "--seed", "1")

    assert result.code == 0, result.err
    assert result.out.startswith("answer set of 1 answer")


def test_model_from_init_chat_model(
    cli: CliRunner,
    source: tuple[Path, list[BankRecord]],
    calibration: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    chat_models = pytest.importorskip("langchain.chat_models")
    source_path, _ = source

    def init_chat_model(model: str, *, model_provider: str | None = None) -> ReplayChatModel:
        assert (model, model_provider) == ("claude-sonnet-4-5", "anthropic")
        return ReplayChatModel.from_bank(source_path)

    monkeypatch.setattr(chat_models, "init_chat_model", init_chat_model)

    result = cli(
        "ask", CONFIDENT, "--model", "anthropic:claude-sonnet-4-5", "--calibration", calibration,
        "--timeout", "10", "--max-attempts", "2",
    )  # fmt: skip

    assert result.code == 0, result.err
    assert result.out.startswith("answer set of 1 answer")


# Each case: arguments after "ask", exit status, expected message part.
ASK_ERRORS = [
    pytest.param(
        ["", "--model", "replay:{source}", "--calibration", "{calibration}"],
        2,
        "the question from QUESTION is empty",
        id="empty question",
    ),
    pytest.param(
        ["  ", "--model", "replay:{source}", "--calibration", "{calibration}"],
        2,
        "the question from QUESTION is empty",
        id="blank question",
    ),
    pytest.param(
        [CONFIDENT, "--model", "replay:{source}"],
        2,
        "the following arguments are required: --calibration",
        id="no calibration",
    ),
    pytest.param(
        [CONFIDENT, "--model", "replay:{source}", "--calibration", "{tmp}/missing.json"],
        1,
        "calibration file {tmp}/missing.json not found",
        id="calibration not found",
    ),
    pytest.param(
        [CONFIDENT, "--model", "replay:{source}", "--calibration", "{source}"],
        1,
        "{source}",
        id="calibration not json",
    ),
    pytest.param(
        [CONFIDENT, "--model", "gpt-4o-mini", "--calibration", "{calibration}"],
        2,
        "argument --model: model spec 'gpt-4o-mini' has no provider",
        id="spec without provider",
    ),
    pytest.param(
        [CONFIDENT, "--model", "replay:{tmp}/missing.jsonl", "--calibration", "{calibration}"],
        1,
        "missing.jsonl not found",
        id="replay bank not found",
    ),
    pytest.param(
        ["not in the bank", "--model", "replay:{source}", "--calibration", "{calibration}"],
        1,
        "is not in the sample bank",
        id="prompt unknown to replay",
    ),
    pytest.param(
        [
            CONFIDENT,
            "--model",
            "replay:{source}",
            "--calibration",
            "{calibration}",
            "--max-concurrency",
            "0",
        ],
        2,
        "argument --max-concurrency: invalid value '0'",
        id="zero concurrency",
    ),
    pytest.param(
        [CONFIDENT, "--model", "replay:{source}", "--calibration", "{calibration}", "--seed=-1"],
        2,
        "argument --seed: invalid value '-1'",
        id="negative seed",
    ),
]


@pytest.mark.parametrize(("arguments", "code", "message"), ASK_ERRORS)
def test_error_is_one_line(
    cli: CliRunner,
    source: tuple[Path, list[BankRecord]],
    calibration: Path,
    tmp_path: Path,
    arguments: list[str],
    code: int,
    message: str,
) -> None:
    names = {"source": source[0], "calibration": calibration, "tmp": tmp_path}
    filled = [argument.format(**names) for argument in arguments]

    result = cli("ask", *filled)

    assert result.code == code, result.err
    assert result.err.startswith("cpq-guard: error: ")
    assert result.err.count("\n") == 1
    assert message.format(**names) in result.err
    assert "Traceback" not in result.err
    assert result.out == ""


def test_unknown_provider(cli: CliRunner, calibration: Path) -> None:
    pytest.importorskip("langchain.chat_models")

    result = cli("ask", CONFIDENT, "--model", "nosuch:model", "--calibration", calibration)

    assert result.code == 1
    assert result.err.count("\n") == 1
    assert "unknown model provider 'nosuch'" in result.err


def test_missing_provider_package(
    cli: CliRunner, calibration: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("langchain.chat_models")
    monkeypatch.setitem(sys.modules, "langchain_openai", None)

    result = cli("ask", CONFIDENT, "--model", "openai:gpt-4o-mini", "--calibration", calibration)

    assert result.code == 1
    assert result.err.count("\n") == 1
    assert "pip install langchain-openai" in result.err
