"""Sample banks: the recorded samples of a model for a list of prompts.

A sample bank is a JSONL file in UTF-8, one prompt per line::

    {"format": "cpq-guard.bank/1", "id": "q1", "prompt": "...", "references": ["35"],
     "samples": [{"text": "35", "metadata": {"log_prob": -5.7}}], "metadata": {}}

Records are appended one line at a time by `BankWriter`, which syncs each line
to disk, so a crash loses at most the record being written and a re-run
resumes after the last complete record. docs/sample-banks.md describes the
format in full.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cpq_guard._atomic import atomic_write_text, fsync_directory
from cpq_guard.errors import (
    BankFormatError,
    InvalidParameterError,
    InvalidTypeError,
    SchemaVersionError,
)

__all__ = [
    "BANK_FORMAT",
    "BankRecord",
    "BankWriter",
    "Sample",
    "bank_content_hash",
    "read_bank",
    "record_to_line",
    "write_bank",
]

logger = logging.getLogger("cpq_guard")

BANK_FORMAT = "cpq-guard.bank/1"
"""Format tag that the writer puts on every line."""

_SUPPORTED_VERSIONS = (1,)
_CONTENT_HASH_SCHEME = "cpq-guard.bank-content/1"
_FORMAT_DOC = (
    "a record needs 'id', 'prompt' and 'samples' (a list of {\"text\": ...}) and may have "
    "'references' and 'metadata'; docs/sample-banks.md describes the format"
)
_MAX_REPORTED_ERRORS = 3


class Sample(BaseModel):
    """One sampled model response.

    Attributes:
        text: The response text as the model returned it.
        metadata: Free-form JSON data about the call, such as ``usage``
            (``input_tokens``, ``output_tokens``, ``total_tokens``),
            ``log_prob`` or the provider's ``response_metadata``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    text: str
    metadata: dict[str, Any] = Field(default_factory=dict)


class BankRecord(BaseModel):
    """The recorded samples for one prompt.

    Types are checked strictly: a string field rejects numbers and a list
    field rejects tuples, so a bank written by hand fails early. Unknown
    fields are rejected so that a misspelt key is not silently dropped; put
    free-form data in ``metadata``.

    Attributes:
        id: Identifier of the prompt, non-empty and unique within its bank.
        prompt: The prompt text sent to the model.
        references: Reference answers; empty for unlabelled recordings.
        samples: The samples in the order they were drawn.
        metadata: Free-form JSON data about the prompt or its source.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    id: str = Field(min_length=1)
    prompt: str
    references: list[str] = Field(default_factory=list)
    samples: list[Sample]
    metadata: dict[str, Any] = Field(default_factory=dict)


def record_to_line(record: BankRecord) -> str:
    """Serialise a record as one bank line, newline included.

    The line starts with the ``format`` tag. Non-ASCII text is written as is
    (UTF-8), but the Unicode line separators U+2028, U+2029 and U+0085 are
    escaped, so that tools which split lines on them still see one record
    per line. JSON escapes every other control character.

    Raises:
        InvalidTypeError: If ``record`` is not a `BankRecord`.
        ValueError: If the metadata contains values that JSON cannot represent.
    """
    if not isinstance(record, BankRecord):
        raise InvalidTypeError(
            f"record must be a BankRecord, got {type(record).__name__}; "
            "build one with BankRecord(id=..., prompt=..., samples=[...])"
        )

    document = {"format": BANK_FORMAT, **record.model_dump(mode="json")}
    text = json.dumps(document, ensure_ascii=False)
    for separator, escaped in (("\u2028", "\\u2028"), ("\u2029", "\\u2029"), ("\x85", "\\u0085")):
        text = text.replace(separator, escaped)
    return text + "\n"


@dataclass(frozen=True)
class _Line:
    """One parsed non-blank line of a bank file."""

    number: int
    record: BankRecord


@dataclass(frozen=True)
class _TruncatedTail:
    """A last line that has no newline and does not parse."""

    number: int
    start_offset: int
    size: int


def _scan_bank(path: Path) -> tuple[list[_Line], _TruncatedTail | None, bool]:
    """Parse every line of a bank file.

    Returns:
        The parsed lines; the truncated last line, if any; and whether the
        file ends without a newline after a complete record.

    Raises:
        BankFormatError: For the first invalid line, a duplicate id or an
            unreadable file. A truncated last line is returned, not raised.
        SchemaVersionError: For a line with an unknown ``format`` tag.
    """
    lines: list[_Line] = []
    first_line_by_id: dict[str, int] = {}
    offset = 0
    missing_final_newline = False

    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise BankFormatError(
            f"sample bank {path} not found; check the path, or record a bank first",
            path=str(path),
        ) from None
    except OSError as error:
        raise BankFormatError(
            f"cannot read sample bank {path}: {error.strerror or error}; "
            "check that the path is a readable file",
            path=str(path),
        ) from error

    with handle:
        for number, raw in enumerate(handle, start=1):
            start = offset
            offset += len(raw)
            is_last_without_newline = not raw.endswith(b"\n")

            # Only a line that is not even JSON can be a write cut short, because
            # no prefix of a serialised object is itself a complete JSON value.
            try:
                document = _decode_line(raw, number, path)
            except BankFormatError:
                if is_last_without_newline:
                    return lines, _TruncatedTail(number, start, len(raw)), False
                raise

            if document is _BLANK_LINE:
                continue
            record = _validate_record(document, number, path)
            missing_final_newline = is_last_without_newline

            first = first_line_by_id.get(record.id)
            if first is not None:
                raise BankFormatError(
                    f"{path}, line {number}: duplicate id {record.id!r}, first used on line "
                    f"{first}; ids must be unique within a bank, so rename or remove one record",
                    path=str(path),
                    line=number,
                )
            first_line_by_id[record.id] = number
            lines.append(_Line(number, record))

    return lines, None, missing_final_newline


_BLANK_LINE = object()


def _decode_line(raw: bytes, number: int, path: Path) -> Any:
    """Decode one raw line as JSON, or return `_BLANK_LINE` for a blank line."""
    where = f"{path}, line {number}"

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BankFormatError(
            f"{where}: invalid UTF-8 (byte 0x{raw[error.start]:02x} at column {error.start + 1}); "
            "sample banks must be UTF-8, so re-save the file in UTF-8",
            path=str(path),
            line=number,
        ) from None

    if number == 1:
        text = text.removeprefix("\ufeff")  # tolerate a byte order mark from editors
    if not text.strip():
        return _BLANK_LINE

    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise BankFormatError(
            f"{where}: invalid JSON ({error.msg} at column {error.colno}); "
            "each line must contain one complete JSON object",
            path=str(path),
            line=number,
        ) from None
    return document


def _validate_record(document: Any, number: int, path: Path) -> BankRecord:
    """Validate a decoded line as a record, checking its format tag first."""
    where = f"{path}, line {number}"

    if not isinstance(document, dict):
        raise BankFormatError(
            f"{where}: expected a JSON object, got a JSON {_json_type_name(document)}; "
            f"each line must contain one record object, {_FORMAT_DOC}",
            path=str(path),
            line=number,
        )

    if "format" in document:
        _check_format(document.pop("format"), path)

    try:
        return BankRecord.model_validate(document)
    except ValidationError as error:
        raise BankFormatError(
            f"{where}: invalid record ({_summarize_validation_error(error)}); {_FORMAT_DOC}",
            path=str(path),
            line=number,
        ) from None


def _check_format(tag: object, path: Path) -> None:
    if tag == BANK_FORMAT:
        return
    raise SchemaVersionError(tag, _SUPPORTED_VERSIONS, path=str(path))


def _json_type_name(value: object) -> str:
    """Return the JSON name of the type of a value that `json.loads` returned."""
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


def _summarize_validation_error(error: ValidationError) -> str:
    """Condense a pydantic error into one line such as ``samples.0.text: ...``."""
    parts = []
    details = error.errors(include_url=False)
    for detail in details[:_MAX_REPORTED_ERRORS]:
        location = ".".join(str(part) for part in detail["loc"]) or "record"
        message = detail["msg"]
        if detail["type"] == "extra_forbidden":
            message = "unknown field (misspelt?)"
        parts.append(f"{location}: {message}")
    if len(details) > _MAX_REPORTED_ERRORS:
        parts.append(f"and {len(details) - _MAX_REPORTED_ERRORS} more")
    return "; ".join(parts)


def read_bank(path: str | os.PathLike[str], *, allow_empty: bool = False) -> list[BankRecord]:
    """Read and validate a sample bank.

    Blank lines are skipped. A final line without a newline is accepted if it
    is a complete record.

    Args:
        path: The JSONL bank file.
        allow_empty: Return an empty list for a bank with no records instead
            of raising.

    Returns:
        The records in file order.

    Raises:
        BankFormatError: If the file is missing or unreadable, a line is not
            UTF-8, not JSON or not a valid record, the last line was cut off,
            two records share an id, or the bank is empty and ``allow_empty``
            is false. The error's ``line`` attribute is the 1-based line number.
        SchemaVersionError: If a line has a ``format`` tag other than
            ``"cpq-guard.bank/1"``.
    """
    bank_path = Path(path)
    lines, tail, _ = _scan_bank(bank_path)

    if tail is not None:
        raise BankFormatError(
            f"{bank_path}, line {tail.number}: the last line is incomplete (no newline and not "
            "valid JSON), so the bank was probably cut off by a crash while it was written; "
            "re-run the recording, which resumes and repairs the file, or delete that line",
            path=str(bank_path),
            line=tail.number,
        )

    if not lines and not allow_empty:
        raise BankFormatError(
            f"sample bank {bank_path} contains no records; record some prompts into it, "
            "or pass allow_empty=True if an empty bank is expected",
            path=str(bank_path),
        )

    return [line.record for line in lines]


def write_bank(path: str | os.PathLike[str], records: Iterable[BankRecord]) -> None:
    """Write a whole bank atomically, replacing any file at ``path``.

    The bank is written to a temporary file that is synced and then renamed,
    so readers see either the old file or the complete new one.

    Raises:
        InvalidTypeError: If an item is not a `BankRecord`.
        InvalidParameterError: If two records share an id.
    """
    seen: set[str] = set()
    lines = []
    for record in records:
        line = record_to_line(record)
        if record.id in seen:
            raise InvalidParameterError(
                "records",
                record.id,
                f"duplicate record id {record.id!r}; ids must be unique within a bank",
            )
        seen.add(record.id)
        lines.append(line)

    atomic_write_text(path, "".join(lines))


def bank_content_hash(records: Iterable[BankRecord]) -> str:
    """Return a hash that identifies the data of a bank, as ``"sha256:<hex>"``.

    The hash covers, in record order, each record's id, prompt, references
    and sample texts in sample order, which are the data a calibration is
    computed from. It leaves out the record and sample metadata (token usage,
    log probabilities, provider details), so adding or dropping metadata
    keeps the hash. The input is serialised as canonical JSON: UTF-8, sorted
    keys, no white space.
    """
    canonical = [
        {
            "id": record.id,
            "prompt": record.prompt,
            "references": list(record.references),
            "samples": [sample.text for sample in record.samples],
        }
        for record in records
    ]
    payload = json.dumps(
        {"scheme": _CONTENT_HASH_SCHEME, "records": canonical},
        ensure_ascii=False,
        sort_keys=True,
        separators=(",", ":"),
    )
    return "sha256:" + hashlib.sha256(payload.encode("utf-8")).hexdigest()


class BankWriter:
    """Append records to a bank file, one synced line at a time.

    Opening the writer reads the records already in the file, so that a
    recording can skip the prompts it has done (``record.id in writer``).
    If the last line was cut off by a crash, the writer truncates the file to
    the end of the last complete record and logs a warning. Each `append`
    writes one line, flushes it and calls ``os.fsync``, so a crash loses at
    most the record being written.

    NOTE: Nothing locks the file, so only one writer may use a bank at a time.

    Args:
        path: The bank file. It and its parent directories are created if
            missing.

    Raises:
        BankFormatError: If the existing file has an invalid line other than
            a cut-off last line, or two records with one id.
        SchemaVersionError: If the existing file has an unknown format tag.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)
        self._ids: set[str] = set()
        self._path.parent.mkdir(parents=True, exist_ok=True)

        created = not self._path.exists()
        needs_newline = False
        if not created:
            lines, tail, needs_newline = _scan_bank(self._path)
            self._ids = {line.record.id for line in lines}
            if tail is not None:
                self._cut_truncated_tail(tail)

        self._file = self._path.open("ab")
        if created:
            fsync_directory(self._path.parent)
        if needs_newline:
            self._write_synced(b"\n")

    def _cut_truncated_tail(self, tail: _TruncatedTail) -> None:
        with self._path.open("r+b") as handle:
            handle.truncate(tail.start_offset)
            handle.flush()
            os.fsync(handle.fileno())
        logger.warning(
            "sample bank %s: removed an incomplete last line (line %d, %d bytes), probably "
            "left by a crash; the recording resumes after the %d complete records",
            self._path,
            tail.number,
            tail.size,
            len(self._ids),
        )

    @property
    def path(self) -> Path:
        """The bank file."""
        return self._path

    @property
    def written_ids(self) -> set[str]:
        """Ids of all records in the file, earlier runs included (a copy)."""
        return set(self._ids)

    @property
    def closed(self) -> bool:
        """Whether the writer has been closed."""
        return self._file.closed

    def __contains__(self, record_id: object) -> bool:
        return record_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def __enter__(self) -> BankWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def append(self, record: BankRecord) -> None:
        """Append one record as one line and sync it to disk.

        Raises:
            InvalidTypeError: If ``record`` is not a `BankRecord`.
            InvalidParameterError: If the bank already has a record with this id.
            ValueError: If the writer is closed.
        """
        line = record_to_line(record)
        if record.id in self._ids:
            raise InvalidParameterError(
                "record",
                record.id,
                f"sample bank {self._path} already has a record with id {record.id!r}; "
                "skip ids that are in the writer (record.id in writer) or use another id",
            )
        if self._file.closed:
            raise ValueError(
                f"the BankWriter for {self._path} is closed; open a new BankWriter to append"
            )

        self._write_synced(line.encode("utf-8"))
        self._ids.add(record.id)
        logger.debug("sample bank %s: appended record %r", self._path, record.id)

    def close(self) -> None:
        """Close the file. Closing twice is allowed."""
        self._file.close()

    def _write_synced(self, data: bytes) -> None:
        self._file.write(data)
        self._file.flush()
        os.fsync(self._file.fileno())
