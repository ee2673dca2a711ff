"""Tests of ``cpq-guard import-paper`` on the small fixture and the released GSM8K file."""

from __future__ import annotations

import json
from pathlib import Path

from cpq_guard.banks import read_bank

from .helpers import CliRunner

SMALL = Path(__file__).resolve().parent.parent / "data" / "paper_small.json"


def test_small_file(cli: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "bank.jsonl"

    result = cli("import-paper", SMALL, "--out", out)

    assert result.code == 0, result.err
    assert result.out == f"wrote 2 prompts to {out}\n"
    records = read_bank(out)
    assert [record.id for record in records] == ["paper_small-0000", "paper_small-0001"]
    assert records[0].references == ["7"]
    assert [sample.text for sample in records[0].samples] == ["7", "7.", "12"]


def test_id_prefix(cli: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "bank.jsonl"

    result = cli("import-paper", SMALL, "--out", out, "--id-prefix", "toy")

    assert result.code == 0, result.err
    assert [record.id for record in read_bank(out)] == ["toy-0000", "toy-0001"]


def test_replaces_existing_bank(cli: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "bank.jsonl"
    out.write_text("old content\n")

    result = cli("import-paper", SMALL, "--out", out)

    assert result.code == 0, result.err
    assert len(read_bank(out)) == 2


def test_released_gsm8k_file(cli: CliRunner, tmp_path: Path, paper_gsm8k: Path) -> None:
    out = tmp_path / "gsm8k.jsonl"

    result = cli("import-paper", paper_gsm8k, "--out", out, "--id-prefix", "gsm8k")

    assert result.code == 0, result.err
    assert result.out == f"wrote 300 prompts to {out}\n"
    records = read_bank(out)
    assert len(records) == 300
    assert records[0].id == "gsm8k-0000"
    assert {len(record.samples) for record in records} == {50}
    assert all(len(record.references) == 1 for record in records)


def test_missing_file(cli: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "bank.jsonl"

    result = cli("import-paper", tmp_path / "missing.json", "--out", out)

    assert result.code == 1
    assert result.err.count("\n") == 1
    assert "missing.json not found" in result.err
    assert not out.exists()


def test_invalid_file(cli: CliRunner, tmp_path: Path) -> None:
    source = tmp_path / "paper.json"
    source.write_text(json.dumps({"question": "not a list"}))

    result = cli("import-paper", source, "--out", tmp_path / "bank.jsonl")

    assert result.code == 1
    assert result.err.count("\n") == 1
    assert "JSON list" in result.err


def test_output_is_source(cli: CliRunner, tmp_path: Path) -> None:
    source = tmp_path / "paper.json"
    source.write_bytes(SMALL.read_bytes())

    result = cli("import-paper", source, "--out", source)

    assert result.code == 2
    assert "is the same file as FILE" in result.err
    assert source.read_bytes() == SMALL.read_bytes()


def test_output_directory_missing(cli: CliRunner, tmp_path: Path) -> None:
    result = cli("import-paper", SMALL, "--out", tmp_path / "missing" / "bank.jsonl")

    assert result.code == 1
    assert result.err.count("\n") == 1
    assert "does not exist" in result.err


def test_missing_out_flag(cli: CliRunner) -> None:
    result = cli("import-paper", SMALL)

    assert result.code == 2
    assert "required: --out" in result.err
