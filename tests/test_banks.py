"""Tests for the sample bank format, reader and writers."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from pydantic import ValidationError

from cpq_guard.banks import (
    BANK_FORMAT,
    BankRecord,
    BankWriter,
    Sample,
    bank_content_hash,
    read_bank,
    record_to_line,
    write_bank,
)
from cpq_guard.errors import (
    BankFormatError,
    InvalidParameterError,
    InvalidTypeError,
    SchemaVersionError,
)


def _record(record_id: str, *texts: str, references: tuple[str, ...] = ("35",)) -> BankRecord:
    return BankRecord(
        id=record_id,
        prompt=f"prompt of {record_id}",
        references=list(references),
        samples=[Sample(text=text) for text in texts],
    )


def _line(**fields: object) -> bytes:
    document = {"id": "q1", "prompt": "p", "samples": [{"text": "1"}], **fields}
    return json.dumps(document).encode() + b"\n"


GOOD = _line()


def test_round_trip(tmp_path: Path) -> None:
    records = [
        BankRecord(
            id="q1",
            prompt="What is 6 × 7? «é»",
            references=["42", "forty-two"],
            samples=[
                Sample(text="42", metadata={"log_prob": -1.5, "usage": {"input_tokens": 3}}),
                Sample(text="line one\nline two"),
            ],
            metadata={"split": "test"},
        ),
        _record("q2", "7", references=()),
    ]
    path = tmp_path / "bank.jsonl"

    write_bank(path, records)

    assert read_bank(path) == records
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    assert json.loads(lines[0])["format"] == BANK_FORMAT
    assert "×" in lines[0]


def test_line_separators_escaped() -> None:
    record = _record("q1", "a\u2028b\u2029c\x85d\ne")

    line = record_to_line(record)

    assert line.endswith("\n")
    assert len(line.splitlines()) == 1
    assert json.loads(line)["samples"][0]["text"] == "a\u2028b\u2029c\x85d\ne"


def test_record_to_line_rejects_dict() -> None:
    with pytest.raises(InvalidTypeError, match="BankRecord"):
        record_to_line({"id": "q1"})  # type: ignore[arg-type]


def test_models_are_strict() -> None:
    with pytest.raises(ValidationError):
        Sample(text=35)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Sample(text="35", extra=1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        BankRecord(id="", prompt="p", samples=[])
    with pytest.raises(ValidationError):
        BankRecord(id="q1", prompt="p", samples=[], references="35")  # type: ignore[arg-type]


def test_records_are_frozen() -> None:
    record = _record("q1", "35")

    with pytest.raises(ValidationError):
        record.id = "q2"  # type: ignore[misc]


def test_read_skips_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "bank.jsonl"
    path.write_bytes(b"\n" + GOOD + b"   \n\n" + _line(id="q2"))

    records = read_bank(path)

    assert [record.id for record in records] == ["q1", "q2"]


def test_read_accepts_missing_format(tmp_path: Path) -> None:
    path = tmp_path / "bank.jsonl"
    path.write_bytes(GOOD)

    assert read_bank(path)[0].references == []


def test_read_accepts_final_line_without_newline(tmp_path: Path) -> None:
    path = tmp_path / "bank.jsonl"
    path.write_bytes(GOOD + GOOD.replace(b"q1", b"q2").rstrip(b"\n"))

    assert len(read_bank(path)) == 2


def test_read_accepts_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "bank.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD)

    assert read_bank(path)[0].id == "q1"


def test_read_empty_allowed(tmp_path: Path) -> None:
    path = tmp_path / "bank.jsonl"
    path.write_bytes(b"\n\n")

    assert read_bank(path, allow_empty=True) == []


@pytest.mark.parametrize(
    ("content", "line", "fragment"),
    [
        (GOOD + b'{"id": "q2", "prompt": "\xff"}\n', 2, "invalid UTF-8 (byte 0xff at column 25)"),
        (GOOD + b"{id: q2}\n", 2, "invalid JSON (Expecting property name"),
        (GOOD + b'{"id": "q2", "prom', 2, "cut off by a crash"),
        (GOOD + _line(id="q2", prompt="\u00e9")[:-3], 2, "re-run the recording"),
        (GOOD + '{"id": "é'.encode()[:-1], 2, "incomplete"),
        (b'["q1"]\n', 1, "expected a JSON object, got a JSON array"),
        (b"42\n", 1, "got a JSON number"),
        (b"null\n", 1, "got a JSON null"),
        (GOOD + b'{"id": "q2", "prompt": "p"}', 2, "samples: Field required"),
        (b'{"id": "q1", "prompt": "p"}\n', 1, "samples: Field required"),
        (_line(samples=[{"text": 35}]), 1, "samples.0.text: Input should be a valid string"),
        (_line(samples=[{"txt": "1"}]), 1, "samples.0.txt: unknown field (misspelt?)"),
        (_line(refs=["35"]), 1, "refs: unknown field"),
        (_line(references="35"), 1, "references: Input should be a valid list"),
        (_line(id=""), 1, "id: String should have at least 1 character"),
        (_line(metadata=[]), 1, "metadata: Input should be a valid dictionary"),
        (GOOD + b"\n" + GOOD, 3, "duplicate id 'q1', first used on line 1"),
        (b"\n  \n", None, "contains no records"),
    ],
)
def test_read_errors(tmp_path: Path, content: bytes, line: int | None, fragment: str) -> None:
    path = tmp_path / "bank.jsonl"
    path.write_bytes(content)

    with pytest.raises(BankFormatError) as info:
        read_bank(path)

    assert info.value.line == line
    assert info.value.path == str(path)
    assert fragment in str(info.value)
    assert str(path) in str(info.value)
    if line is not None:
        assert f"line {line}" in str(info.value)


def test_read_error_counts_extra_errors(tmp_path: Path) -> None:
    path = tmp_path / "bank.jsonl"
    path.write_bytes(b'{"a": 1, "b": 2, "c": 3, "d": 4}\n')

    with pytest.raises(BankFormatError, match=r"and [0-9]+ more"):
        read_bank(path)


def test_read_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.jsonl"

    with pytest.raises(BankFormatError, match="not found") as info:
        read_bank(path)

    assert info.value.line is None
    assert info.value.path == str(path)


def test_read_directory(tmp_path: Path) -> None:
    with pytest.raises(BankFormatError, match="cannot read sample bank"):
        read_bank(tmp_path)


@pytest.mark.parametrize("tag", ["cpq-guard.bank/2", "other", 1, None])
def test_read_unknown_format(tmp_path: Path, tag: object) -> None:
    path = tmp_path / "bank.jsonl"
    path.write_bytes(_line(format=tag))

    with pytest.raises(SchemaVersionError) as info:
        read_bank(path)

    assert info.value.found == tag
    assert info.value.path == str(path)


def test_writer_creates_and_appends(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "bank.jsonl"

    with BankWriter(path) as writer:
        assert len(writer) == 0
        writer.append(_record("q1", "35"))
        writer.append(_record("q2", "36"))
        assert "q1" in writer
        assert writer.written_ids == {"q1", "q2"}

    assert writer.closed
    assert [record.id for record in read_bank(path)] == ["q1", "q2"]


def test_writer_resumes(tmp_path: Path) -> None:
    path = tmp_path / "bank.jsonl"
    with BankWriter(path) as writer:
        writer.append(_record("q1", "35"))

    with BankWriter(path) as writer:
        assert writer.written_ids == {"q1"}
        assert "q1" in writer
        assert "q2" not in writer
        writer.append(_record("q2", "36"))

    assert [record.id for record in read_bank(path)] == ["q1", "q2"]


def test_writer_repairs_truncated_tail(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "bank.jsonl"
    write_bank(path, [_record("q1", "35")])
    complete = path.read_bytes()
    partial = record_to_line(_record("q2", "secret sample")).encode()[:40]
    path.write_bytes(complete + partial)

    with caplog.at_level(logging.WARNING, logger="cpq_guard"), BankWriter(path) as writer:
        assert writer.written_ids == {"q1"}
        assert path.read_bytes() == complete
        writer.append(_record("q2", "36"))

    assert [record.id for record in read_bank(path)] == ["q1", "q2"]
    warnings = [entry for entry in caplog.records if entry.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "line 2" in warnings[0].getMessage()
    assert "prompt of q2" not in warnings[0].getMessage()


def test_writer_truncates_lone_partial_line(tmp_path: Path) -> None:
    path = tmp_path / "bank.jsonl"
    path.write_bytes(b'{"format": "cpq-guard.ba')

    with BankWriter(path) as writer:
        assert len(writer) == 0
        writer.append(_record("q1", "35"))

    assert [record.id for record in read_bank(path)] == ["q1"]


def test_writer_keeps_invalid_complete_tail(tmp_path: Path) -> None:
    path = tmp_path / "bank.jsonl"
    content = GOOD + b'{"id": "q2", "prompt": "p"}'
    path.write_bytes(content)

    with pytest.raises(BankFormatError, match="samples: Field required"):
        BankWriter(path)

    assert path.read_bytes() == content


def test_writer_completes_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "bank.jsonl"
    path.write_bytes(GOOD.rstrip(b"\n"))

    with BankWriter(path) as writer:
        writer.append(_record("q2", "36"))

    assert [record.id for record in read_bank(path)] == ["q1", "q2"]


def test_writer_rejects_duplicate_id(tmp_path: Path) -> None:
    path = tmp_path / "bank.jsonl"
    with BankWriter(path) as writer:
        writer.append(_record("q1", "35"))
        before = path.read_bytes()

        with pytest.raises(InvalidParameterError, match="already has a record with id 'q1'"):
            writer.append(_record("q1", "36"))

    assert path.read_bytes() == before


def test_writer_rejects_invalid_middle_line(tmp_path: Path) -> None:
    path = tmp_path / "bank.jsonl"
    path.write_bytes(GOOD + b"not json\n" + _line(id="q3"))

    with pytest.raises(BankFormatError) as info:
        BankWriter(path)

    assert info.value.line == 2


def test_writer_closed_append(tmp_path: Path) -> None:
    writer = BankWriter(tmp_path / "bank.jsonl")
    writer.close()
    writer.close()

    with pytest.raises(ValueError, match="is closed"):
        writer.append(_record("q1", "35"))


def test_writer_rejects_non_record(tmp_path: Path) -> None:
    with BankWriter(tmp_path / "bank.jsonl") as writer, pytest.raises(InvalidTypeError):
        writer.append({"id": "q1"})  # type: ignore[arg-type]


def test_write_bank_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "bank.jsonl"

    write_bank(path, [_record("q1", "35")])
    write_bank(path, [_record("q2", "36")])

    assert [entry.name for entry in tmp_path.iterdir()] == ["bank.jsonl"]
    assert [record.id for record in read_bank(path)] == ["q2"]


def test_write_bank_duplicate_keeps_file(tmp_path: Path) -> None:
    path = tmp_path / "bank.jsonl"
    write_bank(path, [_record("q1", "35")])
    before = path.read_bytes()

    with pytest.raises(InvalidParameterError, match="duplicate record id 'q2'"):
        write_bank(path, [_record("q2", "1"), _record("q2", "2")])

    assert path.read_bytes() == before
    assert [entry.name for entry in tmp_path.iterdir()] == ["bank.jsonl"]


def test_content_hash_pinned() -> None:
    # Calibration files store this hash, so a change of scheme must be deliberate.
    digest = bank_content_hash([_record("q1", "35", "36")])

    assert digest == "sha256:2c579a2ba894331dc28ff0abe737c38fdf23cb17a752444170def25a9e8ab6be"


def test_content_hash_ignores_metadata() -> None:
    plain = _record("q1", "35")
    annotated = BankRecord(
        id="q1",
        prompt=plain.prompt,
        references=plain.references,
        samples=[Sample(text="35", metadata={"log_prob": -1.0})],
        metadata={"source": "x"},
    )

    assert bank_content_hash([plain]) == bank_content_hash([annotated])


@pytest.mark.parametrize(
    "other",
    [
        [_record("q1", "36", "35")],
        [_record("q1", "35")],
        [_record("q2", "35", "36")],
        [_record("q1", "35", "36", references=("36",))],
        [_record("q1", "35", "36", references=())],
        [_record("q1", "35", "36"), _record("q2", "1")],
    ],
)
def test_content_hash_changes(other: list[BankRecord]) -> None:
    base = bank_content_hash([_record("q1", "35", "36")])

    assert bank_content_hash(other) != base
