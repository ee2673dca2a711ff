"""The prompts file that ``record`` and ``calibrate --model`` send to a model.

A prompts file is JSONL in UTF-8, one prompt per line::

    {"prompt": "What is 6 * 7?", "references": ["42"], "id": "q1"}
    {"prompt": "What is the capital of France?", "reference": "Paris"}

``prompt`` is required. ``references`` (a list) or ``reference`` (one
string) give the reference answers; calibration needs them, recording does
not. ``id`` names the prompt in the sample bank; without it the id derives
from the prompt text (`cpq_guard.recording.prompt_id`), so the same prompt
gets the same id in every run and a rerun resumes. Blank lines are skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cpq_guard.errors import ArtifactError

PROMPTS_HELP = (
    'prompts file (JSONL), one {"prompt": ..., "references": [...], "id": ...} object per '
    'line; "references" (or one "reference") and "id" are optional, and the id defaults to '
    "a hash of the prompt text"
)

_EXAMPLE = '{"prompt": "What is 6 * 7?", "references": ["42"], "id": "q1"}'
_MAX_REPORTED_ERRORS = 3
_JSON_TYPES = {list: "array", str: "string", bool: "boolean", type(None): "null"}


class PromptLine(BaseModel):
    """One line of a prompts file, validated strictly.

    Unknown fields are rejected, so that a misspelt ``refrences`` fails
    instead of leaving the prompt without references.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    prompt: str
    references: list[Annotated[str, Field(min_length=1)]] | None = None
    reference: str | None = Field(default=None, min_length=1)
    id: str | None = Field(default=None, min_length=1)

    @field_validator("prompt")
    @classmethod
    def _check_prompt(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the prompt is empty")
        return value

    @model_validator(mode="after")
    def _check_one_reference_field(self) -> PromptLine:
        if self.references is not None and self.reference is not None:
            raise ValueError("give either 'reference' or 'references', not both")
        return self


@dataclass(frozen=True)
class PromptEntry:
    """A validated prompt with its bank id and its references as a list.

    Attributes:
        line: One-based line number in the prompts file, for messages.
        id: Bank id: the line's ``id``, or one derived from the prompt text.
        prompt: The prompt text.
        references: Reference answers; empty when the line gives none.
    """

    line: int
    id: str
    prompt: str
    references: list[str]


def read_prompts(path: str | Path) -> list[PromptEntry]:
    """Read and validate a prompts file.

    Raises:
        ArtifactError: If the file is not UTF-8, a line is not a JSON object
            or not a valid prompt, or the file has no prompts. Also if two
            prompts have the same id, given or derived from the same text.
            The message names the file and the line.
        OSError: If the file cannot be opened.
    """
    from cpq_guard.recording import prompt_id

    prompts_path = Path(path)
    entries: list[PromptEntry] = []
    first_line_by_id: dict[str, int] = {}

    with prompts_path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            item = _parse_line(raw, number, prompts_path)
            if item is None:
                continue

            identifier = item.id if item.id is not None else prompt_id(item.prompt)
            first = first_line_by_id.get(identifier)
            if first is not None:
                duplicate = (
                    f"id {identifier!r}" if item.id is not None else "prompt text, without ids,"
                )
                raise ArtifactError(
                    f"{prompts_path}, line {number}: the same {duplicate} as line {first}; every "
                    "prompt needs its own id, so remove the duplicate or give both an 'id'",
                    path=str(prompts_path),
                )
            first_line_by_id[identifier] = number

            if item.references is not None:
                references = list(item.references)
            elif item.reference is not None:
                references = [item.reference]
            else:
                references = []
            entries.append(PromptEntry(number, identifier, item.prompt, references))

    if not entries:
        raise ArtifactError(
            f"prompts file {prompts_path} contains no prompts; write one JSON object per "
            f"line, such as {_EXAMPLE}",
            path=str(prompts_path),
        )
    return entries


def _parse_line(raw: bytes, number: int, path: Path) -> PromptLine | None:
    """Validate one line; return ``None`` for a blank line."""
    where = f"{path}, line {number}"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ArtifactError(
            f"{where}: not valid UTF-8 (byte {error.start}); save the file as UTF-8",
            path=str(path),
        ) from None
    if not text.strip():
        return None

    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise ArtifactError(
            f"{where}: not valid JSON ({error.msg} at column {error.colno}); each line must "
            f"be one JSON object, such as {_EXAMPLE}",
            path=str(path),
        ) from None
    if not isinstance(document, dict):
        json_type = _JSON_TYPES.get(type(document), "number")
        raise ArtifactError(
            f"{where}: expected a JSON object, got a JSON {json_type}; each line must be one "
            f"JSON object, such as {_EXAMPLE}",
            path=str(path),
        )

    try:
        return PromptLine.model_validate(document)
    except ValidationError as error:
        raise ArtifactError(
            f"{where}: invalid prompt ({_summarize(error)}); a line needs a non-empty "
            "'prompt' string and may have 'references' (a list of strings) or 'reference' "
            f"(a string) and 'id' (a string), such as {_EXAMPLE}",
            path=str(path),
        ) from None


def _summarize(error: ValidationError) -> str:
    """Condense a pydantic error into one line such as ``references.0: ...``."""
    parts = []
    details = error.errors(include_url=False, include_input=False)
    for detail in details[:_MAX_REPORTED_ERRORS]:
        location = ".".join(str(part) for part in detail["loc"])
        message = detail["msg"]
        cause = detail.get("ctx", {}).get("error")
        if detail["type"] == "value_error" and cause is not None:
            message = str(cause)
        elif detail["type"] == "extra_forbidden":
            message = "unknown field (misspelt?)"
        parts.append(f"{location}: {message}" if location else message)
    if len(details) > _MAX_REPORTED_ERRORS:
        parts.append(f"and {len(details) - _MAX_REPORTED_ERRORS} more")
    return "; ".join(parts)
