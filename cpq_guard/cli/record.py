"""``cpq-guard record``: sample a chat model on every prompt of a prompts file into a sample bank.

The bank is the input of ``calibrate --bank``, ``evaluate`` and ``demo
--bank``, so the model is paid for once and every later computation is
offline. Recording into an existing bank resumes it: prompts already in it
are not queried again.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from cpq_guard.banks import BankRecord
from cpq_guard.cli import _arguments
from cpq_guard.cli._errors import EXIT_OK
from cpq_guard.cli._paths import check_distinct_paths, check_output_path
from cpq_guard.cli._prompts import PROMPTS_HELP, PromptEntry, read_prompts
from cpq_guard.cli._query_options import add_model_argument, add_query_arguments, query_settings
from cpq_guard.cli._recording import (
    BankState,
    describe_usage,
    inspect_bank,
    print_resume_line,
    record_prompts,
    sum_usage,
)
from cpq_guard.model_loading import load_chat_model

logger = logging.getLogger("cpq_guard")

DEFAULT_SAMPLES = 50
DEFAULT_CONCURRENCY = 8


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``record`` parser to ``subparsers``."""
    parser = subparsers.add_parser(
        "record",
        help="sample a chat model on a prompts file and save the samples as a sample bank",
        description="Send every prompt of a prompts file --samples times to the model and "
        "append each prompt's samples to the sample bank --out as soon as they are in. If "
        "--out exists, the recording resumes: prompts whose id is already in the bank are "
        "not queried again, so an interrupted run can be rerun at no extra cost.",
    )
    add_model_argument(parser, required=True)
    parser.add_argument("--prompts", required=True, metavar="PROMPTS", help=PROMPTS_HELP)
    parser.add_argument(
        "--out",
        required=True,
        metavar="BANK",
        help="sample bank (JSONL) to write, or to resume when it exists",
    )
    parser.add_argument(
        "--samples",
        type=_arguments.positive_int,
        default=DEFAULT_SAMPLES,
        metavar="N",
        help="samples per prompt; calibration needs at least its --max-queries "
        "(default: %(default)s)",
    )
    add_query_arguments(
        parser,
        default_concurrency=DEFAULT_CONCURRENCY,
        concurrency_help="model calls in flight at once, over all prompts",
    )
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Record the prompts into the bank and print what was recorded."""
    out = check_output_path(args.out, "--out")
    check_distinct_paths(args.prompts, "--prompts", out, "--out")
    entries = read_prompts(args.prompts)
    settings = query_settings(args, default_concurrency=DEFAULT_CONCURRENCY)
    model = load_chat_model(args.model)

    state = inspect_bank(out, entries, args.samples, args.prompts)
    print_resume_line(out, len(entries), state)
    _warn_about_kept_records(out, entries, state, args)

    records = record_prompts(
        model, entries, out, samples=args.samples, settings=settings, state=state
    )
    new_records = [record for record in records if record.id not in state.recorded]

    _print_summary(out, len(records), len(new_records), args.samples, new_records)
    return EXIT_OK


def _warn_about_kept_records(
    out: Path, entries: list[PromptEntry], state: BankState, args: argparse.Namespace
) -> None:
    lines = {entry.id: entry.line for entry in entries}
    if state.short:
        first = state.short[0]
        logger.warning(
            "%d prompt(s) in %s have fewer than --samples %d samples (first: id %r, %s line "
            "%d) and are not recorded again; record into a new bank to give every prompt %d",
            len(state.short),
            out,
            args.samples,
            first,
            args.prompts,
            lines[first],
            args.samples,
        )
    if state.other_references:
        first = state.other_references[0]
        logger.warning(
            "%d prompt(s) in %s have other references than %s (first: id %r, line %d); the "
            "bank keeps the references it was recorded with, and calibrate --model uses "
            "those of the prompts file",
            len(state.other_references),
            out,
            args.prompts,
            first,
            lines[first],
        )


def _print_summary(
    out: Path, total: int, recorded_now: int, samples: int, new_records: list[BankRecord]
) -> None:
    lines = [
        ("prompts", f"{total} ({recorded_now} recorded now, {total - recorded_now} already there)"),
        ("samples per prompt", str(samples)),
    ]
    if new_records:
        lines.append(("tokens this run", describe_usage(sum_usage(new_records))))

    width = max(len(label) for label, _ in lines) + 2
    print(f"wrote sample bank {out}")
    for label, value in lines:
        print(f"  {label:<{width}}{value}")
