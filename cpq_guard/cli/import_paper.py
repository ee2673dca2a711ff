"""``cpq-guard import-paper``: convert a CPQ paper release file into a sample bank."""

from __future__ import annotations

import argparse

from cpq_guard.cli._errors import EXIT_OK
from cpq_guard.cli._paths import check_distinct_paths, check_output_path
from cpq_guard.paper import import_paper_file


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``import-paper`` parser to ``subparsers``."""
    parser = subparsers.add_parser(
        "import-paper",
        help="convert a sample file released with the CPQ paper into a sample bank",
        description="Convert a JSON file of recorded samples released with the CPQ paper "
        "(Noorani et al., arXiv:2506.05497) into a JSONL sample bank. Record ids are "
        "PREFIX-0000, PREFIX-0001, ... in file order.",
    )
    parser.add_argument("file", metavar="FILE", help="the release JSON file to read")
    parser.add_argument(
        "--out", required=True, metavar="BANK", help="sample bank (JSONL) to write or replace"
    )
    parser.add_argument(
        "--id-prefix",
        metavar="P",
        help="prefix of the record ids (default: the name of FILE without its extension)",
    )
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Import the file and print the number of prompts written."""
    out = check_output_path(args.out, "--out")
    check_distinct_paths(args.file, "FILE", out, "--out")

    count = import_paper_file(args.file, out, id_prefix=args.id_prefix)
    print(f"wrote {count} prompts to {out}")
    return EXIT_OK
