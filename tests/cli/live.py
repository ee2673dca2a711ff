"""Prompts files and replay banks for the tests of the commands that query a model.

The "live" model of these tests is ``replay:SOURCE``, a `ReplayChatModel`
over a source bank, so recording it copies the source bank's samples.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from cpq_guard.banks import BankRecord, Sample, write_bank

from .helpers import make_records

INPUT_TOKENS = 5
OUTPUT_TOKENS = 2


def with_usage(records: Sequence[BankRecord]) -> list[BankRecord]:
    """Give every sample a usage entry of `INPUT_TOKENS` and `OUTPUT_TOKENS`."""
    usage = {
        "input_tokens": INPUT_TOKENS,
        "output_tokens": OUTPUT_TOKENS,
        "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS,
    }
    return [
        record.model_copy(
            update={
                "samples": [
                    Sample(text=sample.text, metadata={"usage": usage}) for sample in record.samples
                ]
            }
        )
        for record in records
    ]


def write_source_bank(path: Path, prompts: int, samples: int) -> list[BankRecord]:
    """Write a bank of `make_records` records with token usage, and return the records."""
    records = with_usage(make_records(prompts, samples))
    write_bank(path, records)
    return records


def write_prompts(
    path: Path,
    records: Sequence[BankRecord],
    *,
    references: bool = True,
    ids: bool = True,
) -> Path:
    """Write the prompts of ``records`` as a prompts file, optionally without references or ids."""
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            line: dict[str, object] = {"prompt": record.prompt}
            if references:
                line["references"] = record.references
            if ids:
                line["id"] = record.id
            handle.write(json.dumps(line) + "\n")
    return path
