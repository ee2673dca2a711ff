"""Options and loading for the recorded samples that commands compute from.

`add_answer_arguments` adds the flags that turn sample texts into clustered
answers. `read_records` reads a sample bank, and `build_histories` turns its
records into one `History` per prompt with those settings.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import get_args

from cpq_guard.answers import equivalence_names, get_equivalence
from cpq_guard.banks import BankRecord, read_bank
from cpq_guard.cli._errors import UsageError
from cpq_guard.errors import InvalidParameterError
from cpq_guard.extractors import get_extractor
from cpq_guard.histories import History, ReferenceMatch, histories_from_records

logger = logging.getLogger("cpq_guard")

REFERENCE_MATCHES: tuple[str, ...] = get_args(ReferenceMatch)


def add_answer_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--equivalence`` and ``--extractor``."""
    parser.add_argument(
        "--equivalence",
        default="normalized",
        choices=equivalence_names(),
        help="rule that decides when two answers are the same (default: %(default)s)",
    )
    parser.add_argument(
        "--extractor",
        default="text",
        metavar="NAME",
        help="answer extractor applied to each sample: text, final-answer, "
        "final-answer:strict or regex:PATTERN (default: %(default)s, the whole sample)",
    )


def check_answer_arguments(args: argparse.Namespace) -> None:
    """Check ``--extractor`` before the bank is read, so a typo fails at once.

    Raises:
        UsageError: If the extractor name is not a built-in one.
    """
    try:
        get_extractor(args.extractor)
    except InvalidParameterError as error:
        raise UsageError(f"argument --extractor: {error}") from None


def read_records(path: str | Path) -> list[BankRecord]:
    """Read a sample bank and log its size.

    Raises:
        BankFormatError: If the bank is missing, unreadable or invalid.
        SchemaVersionError: If a line has an unknown format tag.
    """
    started = time.perf_counter()
    records = read_bank(path)
    logger.info(
        "read %d prompts from sample bank %s in %.2f s",
        len(records),
        path,
        time.perf_counter() - started,
    )
    return records


def build_histories(
    records: list[BankRecord],
    *,
    equivalence: str,
    extractor: str,
    reference_match: ReferenceMatch,
) -> list[History]:
    """Cluster every record's samples into a `History`.

    Each sample goes through the built-in extractor of that name, as it does
    in a guard calibrated with these settings, so the histories contain the
    answers such a guard sees. With ``text``, a sample that is empty after
    ``strip()`` counts as no answer.

    Raises:
        InvalidParameterError: If ``equivalence`` or ``extractor`` is unknown.
    """
    rule = get_equivalence(equivalence)
    extract = get_extractor(extractor)

    started = time.perf_counter()
    histories = histories_from_records(
        records, rule, extract=extract, reference_match=reference_match
    )
    logger.info(
        "clustered the samples of %d prompts (equivalence %s, extractor %s) in %.2f s",
        len(histories),
        equivalence,
        extractor,
        time.perf_counter() - started,
    )
    return histories
