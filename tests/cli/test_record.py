"""Tests of ``cpq-guard record`` with a replayed model and a fake init_chat_model."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from cpq_guard.banks import BankRecord, read_bank, write_bank
from cpq_guard.models import ReplayChatModel
from cpq_guard.recording import prompt_id

from .helpers import CliRunner
from .live import INPUT_TOKENS, OUTPUT_TOKENS, write_prompts, write_source_bank

PROMPTS = 6
SAMPLES = 10


@pytest.fixture
def source(tmp_path: Path) -> tuple[Path, list[BankRecord]]:
    """The bank that the replayed model returns samples from, and its records."""
    path = tmp_path / "source.jsonl"
    return path, write_source_bank(path, PROMPTS, SAMPLES)


def _record(cli: CliRunner, source: Path, prompts: Path, out: Path, *flags: object) -> Any:
    return cli("record", "--model", f"replay:{source}", "--prompts", prompts, "--out", out, *flags)


def test_records_every_prompt(
    cli: CliRunner, source: tuple[Path, list[BankRecord]], tmp_path: Path
) -> None:
    source_path, records = source
    prompts = write_prompts(tmp_path / "prompts.jsonl", records)
    out = tmp_path / "bank.jsonl"

    result = _record(cli, source_path, prompts, out, "--samples", "4")

    assert result.code == 0, result.err
    assert result.err == ""
    bank = read_bank(out)
    assert sorted(record.id for record in bank) == [record.id for record in records]
    by_id = {record.id: record for record in bank}
    for expected in records:
        recorded = by_id[expected.id]
        assert recorded.prompt == expected.prompt
        assert recorded.references == expected.references
        assert [sample.text for sample in recorded.samples] == [
            sample.text for sample in expected.samples[:4]
        ]
    assert f"wrote sample bank {out}" in result.out
    assert f"{PROMPTS} ({PROMPTS} recorded now, 0 already there)" in result.out
    tokens = PROMPTS * 4
    assert (
        f"{tokens * INPUT_TOKENS} input, {tokens * OUTPUT_TOKENS} output, "
        f"{tokens * (INPUT_TOKENS + OUTPUT_TOKENS)} total" in result.out
    )


def test_ids_derive_from_prompt(
    cli: CliRunner, source: tuple[Path, list[BankRecord]], tmp_path: Path
) -> None:
    source_path, records = source
    prompts = write_prompts(tmp_path / "prompts.jsonl", records, references=False, ids=False)
    out = tmp_path / "bank.jsonl"

    result = _record(cli, source_path, prompts, out, "--samples", "2")

    assert result.code == 0, result.err
    bank = read_bank(out)
    assert {record.id for record in bank} == {prompt_id(record.prompt) for record in records}
    assert all(record.references == [] for record in bank)


def test_single_reference_field(
    cli: CliRunner, source: tuple[Path, list[BankRecord]], tmp_path: Path
) -> None:
    source_path, records = source
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        json.dumps({"prompt": records[0].prompt, "reference": "0", "id": "only"}) + "\n\n"
    )
    out = tmp_path / "bank.jsonl"

    result = _record(cli, source_path, prompts, out, "--samples", "2")

    assert result.code == 0, result.err
    (record,) = read_bank(out)
    assert record.id == "only"
    assert record.references == ["0"]


def test_resume_records_each_prompt_once(
    cli: CliRunner, source: tuple[Path, list[BankRecord]], tmp_path: Path
) -> None:
    source_path, records = source
    prompts = write_prompts(tmp_path / "prompts.jsonl", records)
    out = tmp_path / "bank.jsonl"
    first = _record(cli, source_path, prompts, out, "--samples", "3")
    assert first.code == 0, first.err
    kept_lines = out.read_text(encoding="utf-8").splitlines(keepends=True)[:2]
    out.write_text("".join(kept_lines), encoding="utf-8")

    result = _record(cli, source_path, prompts, out, "--samples", "3")

    assert result.code == 0, result.err
    assert f"sample bank {out} already has 2 of {PROMPTS} prompts; recording the other 4" in (
        result.out
    )
    assert f"{PROMPTS} (4 recorded now, 2 already there)" in result.out
    lines = out.read_text(encoding="utf-8").splitlines(keepends=True)
    assert lines[:2] == kept_lines
    ids = [record.id for record in read_bank(out)]
    assert sorted(ids) == [record.id for record in records]
    assert len(ids) == len(set(ids))


def test_resume_complete_bank(
    cli: CliRunner, source: tuple[Path, list[BankRecord]], tmp_path: Path
) -> None:
    source_path, records = source
    prompts = write_prompts(tmp_path / "prompts.jsonl", records)
    out = tmp_path / "bank.jsonl"
    assert _record(cli, source_path, prompts, out, "--samples", "3").code == 0
    before = out.read_bytes()

    result = _record(cli, source_path, prompts, out, "--samples", "3")

    assert result.code == 0, result.err
    assert f"already has all {PROMPTS} prompts; nothing to record" in result.out
    assert "tokens this run" not in result.out
    assert out.read_bytes() == before


def test_resume_repairs_cut_off_line(
    cli: CliRunner, source: tuple[Path, list[BankRecord]], tmp_path: Path
) -> None:
    source_path, records = source
    prompts = write_prompts(tmp_path / "prompts.jsonl", records)
    out = tmp_path / "bank.jsonl"
    assert _record(cli, source_path, prompts, out, "--samples", "3").code == 0
    lines = out.read_text(encoding="utf-8").splitlines(keepends=True)
    out.write_text("".join(lines[:3]) + lines[3][:25], encoding="utf-8")

    result = _record(cli, source_path, prompts, out, "--samples", "3")

    assert result.code == 0, result.err
    assert "removed an incomplete last line" in result.err
    assert "already has 3 of 6 prompts" in result.out
    assert sorted(record.id for record in read_bank(out)) == [record.id for record in records]


def test_resume_warns_about_fewer_samples(
    cli: CliRunner, source: tuple[Path, list[BankRecord]], tmp_path: Path
) -> None:
    source_path, records = source
    prompts = write_prompts(tmp_path / "prompts.jsonl", records)
    out = tmp_path / "bank.jsonl"
    assert _record(cli, source_path, prompts, out, "--samples", "3").code == 0

    result = _record(cli, source_path, prompts, out, "--samples", "5")

    assert result.code == 0, result.err
    assert "warning: 6 prompt(s)" in result.err
    assert "fewer than --samples 5 samples" in result.err
    assert all(len(record.samples) == 3 for record in read_bank(out))


def test_resume_warns_about_references(
    cli: CliRunner, source: tuple[Path, list[BankRecord]], tmp_path: Path
) -> None:
    source_path, records = source
    unlabelled = write_prompts(tmp_path / "unlabelled.jsonl", records, references=False)
    labelled = write_prompts(tmp_path / "labelled.jsonl", records)
    out = tmp_path / "bank.jsonl"
    assert _record(cli, source_path, unlabelled, out, "--samples", "3").code == 0

    result = _record(cli, source_path, labelled, out, "--samples", "3")

    assert result.code == 0, result.err
    assert "have other references than" in result.err
    assert all(record.references == [] for record in read_bank(out))


def test_bank_with_other_prompt_text(
    cli: CliRunner, source: tuple[Path, list[BankRecord]], tmp_path: Path
) -> None:
    source_path, records = source
    out = tmp_path / "bank.jsonl"
    write_bank(out, [records[0].model_copy(update={"prompt": "another text"})])
    prompts = write_prompts(tmp_path / "prompts.jsonl", records)

    result = _record(cli, source_path, prompts, out)

    assert result.code == 1
    assert "has id 'q000' with another prompt text" in result.err
    assert "line 1" in result.err
    assert len(read_bank(out)) == 1


def test_model_from_init_chat_model(
    cli: CliRunner,
    source: tuple[Path, list[BankRecord]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    chat_models = pytest.importorskip("langchain.chat_models")
    source_path, records = source
    calls: list[tuple[str, str | None]] = []

    def init_chat_model(model: str, *, model_provider: str | None = None) -> ReplayChatModel:
        calls.append((model, model_provider))
        return ReplayChatModel.from_bank(source_path)

    monkeypatch.setattr(chat_models, "init_chat_model", init_chat_model)
    prompts = write_prompts(tmp_path / "prompts.jsonl", records)
    out = tmp_path / "bank.jsonl"

    result = cli(
        "record", "--model", "openai:gpt-4o-mini", "--prompts", prompts, "--out", out,
        "--samples", "2", "--max-concurrency", "3", "--timeout", "5", "--max-attempts", "2",
    )  # fmt: skip

    assert result.code == 0, result.err
    assert calls == [("gpt-4o-mini", "openai")]
    assert len(read_bank(out)) == PROMPTS


def _line(**fields: object) -> str:
    return json.dumps(fields)


# Each case: prompts file text, extra flags, exit status, expected message part.
RECORD_ERRORS = [
    pytest.param("", (), 1, "contains no prompts", id="empty file"),
    pytest.param("\n  \n", (), 1, "contains no prompts", id="blank lines only"),
    pytest.param(
        _line(prompt="question 0") + "\n{oops\n",
        (),
        1,
        "prompts.jsonl, line 2: not valid JSON",
        id="not json",
    ),
    pytest.param('["question 0"]\n', (), 1, "line 1: expected a JSON object, got a JSON array"),
    pytest.param(
        _line(references=["0"]) + "\n", (), 1, "line 1: invalid prompt (prompt: Field required)"
    ),
    pytest.param(_line(prompt=""), (), 1, "prompt: the prompt is empty", id="empty prompt"),
    pytest.param(
        _line(prompt=7) + "\n", (), 1, "prompt: Input should be a valid string", id="prompt type"
    ),
    pytest.param(
        _line(prompt="question 0", references="0") + "\n",
        (),
        1,
        "references: Input should be a valid list",
        id="references not a list",
    ),
    pytest.param(
        _line(prompt="question 0", references=["0", 1]) + "\n",
        (),
        1,
        "references.1: Input should be a valid string",
        id="reference not a string",
    ),
    pytest.param(
        _line(prompt="question 0", reference="0", references=["0"]) + "\n",
        (),
        1,
        "give either 'reference' or 'references', not both",
        id="both reference fields",
    ),
    pytest.param(
        _line(prompt="question 0", refrences=["0"]) + "\n",
        (),
        1,
        "refrences: unknown field (misspelt?)",
        id="misspelt field",
    ),
    pytest.param(
        _line(prompt="question 0", id="a") + "\n" + _line(prompt="question 1", id="a") + "\n",
        (),
        1,
        "line 2: the same id 'a' as line 1",
        id="duplicate ids",
    ),
    pytest.param(
        _line(prompt="question 0") + "\n" + _line(prompt="question 0") + "\n",
        (),
        1,
        "line 2: the same prompt text, without ids, as line 1",
        id="duplicate prompts",
    ),
    pytest.param(
        _line(prompt="not in the bank") + "\n",
        (),
        1,
        "is not in the sample bank",
        id="prompt unknown to replay",
    ),
    pytest.param(_line(prompt="question 0"), ("--samples", "0"), 2, "argument --samples"),
    pytest.param(_line(prompt="question 0"), ("--timeout", "0"), 2, "argument --timeout"),
    pytest.param(
        _line(prompt="question 0"), ("--max-attempts", "101"), 2, "it must be at most 100"
    ),
    pytest.param(
        _line(prompt="question 0"), ("--max-concurrency", "0"), 2, "argument --max-concurrency"
    ),
]


@pytest.mark.parametrize(("text", "flags", "code", "message"), RECORD_ERRORS)
def test_error_is_one_line(
    cli: CliRunner,
    source: tuple[Path, list[BankRecord]],
    tmp_path: Path,
    text: str,
    flags: tuple[str, ...],
    code: int,
    message: str,
) -> None:
    source_path, _ = source
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(text, encoding="utf-8")
    out = tmp_path / "bank.jsonl"

    result = _record(cli, source_path, prompts, out, *flags)

    assert result.code == code, result.err
    assert result.err.startswith("cpq-guard: error: ")
    assert result.err.count("\n") == 1
    assert message in result.err
    assert "Traceback" not in result.err
    assert result.out == ""


# Each case: the --model value, exit status, expected message part.
MODEL_ERRORS = [
    pytest.param("gpt-4o-mini", 2, "argument --model: model spec 'gpt-4o-mini' has no provider"),
    pytest.param("openai:", 2, "has no model after ':'"),
    pytest.param("replay:{tmp}/missing.jsonl", 1, "missing.jsonl not found"),
]


@pytest.mark.parametrize(("spec", "code", "message"), MODEL_ERRORS)
def test_model_error_is_one_line(
    cli: CliRunner,
    source: tuple[Path, list[BankRecord]],
    tmp_path: Path,
    spec: str,
    code: int,
    message: str,
) -> None:
    _, records = source
    prompts = write_prompts(tmp_path / "prompts.jsonl", records)
    out = tmp_path / "bank.jsonl"

    result = cli("record", "--model", spec.format(tmp=tmp_path), "--prompts", prompts, "--out", out)

    assert result.code == code, result.err
    assert result.err.count("\n") == 1
    assert message.format(tmp=tmp_path) in result.err
    assert not out.exists()


def test_unknown_provider(
    cli: CliRunner, source: tuple[Path, list[BankRecord]], tmp_path: Path
) -> None:
    pytest.importorskip("langchain.chat_models")
    _, records = source
    prompts = write_prompts(tmp_path / "prompts.jsonl", records)

    result = cli(
        "record", "--model", "nosuch:model", "--prompts", prompts, "--out", tmp_path / "b.jsonl"
    )

    assert result.code == 1
    assert result.err.count("\n") == 1
    assert "unknown model provider 'nosuch'" in result.err


def test_missing_provider_package(
    cli: CliRunner,
    source: tuple[Path, list[BankRecord]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("langchain.chat_models")
    monkeypatch.setitem(sys.modules, "langchain_openai", None)
    _, records = source
    prompts = write_prompts(tmp_path / "prompts.jsonl", records)

    result = cli(
        "record", "--model", "openai:gpt-4o-mini", "--prompts", prompts,
        "--out", tmp_path / "b.jsonl",
    )  # fmt: skip

    assert result.code == 1
    assert result.err.count("\n") == 1
    assert "pip install langchain-openai" in result.err


def test_missing_prompts_file(
    cli: CliRunner, source: tuple[Path, list[BankRecord]], tmp_path: Path
) -> None:
    source_path, _ = source

    result = _record(cli, source_path, tmp_path / "missing.jsonl", tmp_path / "bank.jsonl")

    assert result.code == 1
    assert f"cannot access {tmp_path}/missing.jsonl" in result.err


def test_out_is_prompts_file(
    cli: CliRunner, source: tuple[Path, list[BankRecord]], tmp_path: Path
) -> None:
    source_path, records = source
    prompts = write_prompts(tmp_path / "prompts.jsonl", records)

    result = _record(cli, source_path, prompts, prompts)

    assert result.code == 2
    assert "is the same file as --prompts" in result.err
