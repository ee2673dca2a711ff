"""``cpq-guard ask``: guard one question with a calibration and print the answer set or ABSTAIN.

Abstention is a result, not an error, so the command exits with status 0
either way. ``--fail-on-abstain`` makes it exit with status 3 on abstention,
so that a script can branch on it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

from rich.console import Console

from cpq_guard.calibration import Calibration
from cpq_guard.cli import _arguments
from cpq_guard.cli._errors import EXIT_OK, UsageError
from cpq_guard.cli._query_options import add_model_argument, add_query_arguments, query_settings
from cpq_guard.cli._recording import describe_tokens
from cpq_guard.model_loading import load_chat_model

if TYPE_CHECKING:
    from cpq_guard.result import AnswerCluster, GuardResult

EXIT_ABSTAINED = 3
"""Exit status of ``ask --fail-on-abstain`` when the guard abstains."""

DEFAULT_CONCURRENCY = 1


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``ask`` parser to ``subparsers``."""
    parser = subparsers.add_parser(
        "ask",
        help="ask a guarded chat model one question: a calibrated answer set or ABSTAIN",
        description="Send QUESTION to the model repeatedly, as the calibration's stopping "
        "policy decides, group the answers, and print the calibrated answer set (each answer "
        "with its estimated probability and sample count) or ABSTAIN with the answers seen "
        "and the estimated missing mass, followed by the number of queries and the token "
        "usage. The answer extractor, equivalence and policy come from the calibration file, "
        "which must have been calibrated on this model. Abstaining is a result, so the exit "
        "status is 0 either way, unless --fail-on-abstain is given.",
    )
    parser.add_argument(
        "question",
        metavar="QUESTION",
        help="the prompt to send, or - to read it from stdin without its trailing newlines",
    )
    add_model_argument(parser, required=True)
    parser.add_argument(
        "--calibration",
        required=True,
        metavar="FILE",
        help="calibration file (JSON) that cpq-guard calibrate wrote for this model",
    )
    add_query_arguments(
        parser,
        default_concurrency=DEFAULT_CONCURRENCY,
        concurrency_help="model calls in flight at once; a higher N returns the result sooner, "
        "but up to N - 1 calls may run past the stopping point and are paid for without being "
        "used",
    )
    parser.add_argument(
        "--seed",
        type=_arguments.non_negative_int,
        metavar="S",
        help="seed of the stopping policy's bootstrap and the tie-breaking noise, so that "
        "the same samples give the same decision (default: fresh randomness)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the full result as JSON (GuardResult)"
    )
    parser.add_argument(
        "--fail-on-abstain",
        action="store_true",
        help=f"exit with status {EXIT_ABSTAINED} instead of 0 when the guard abstains",
    )
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Guard the question and print the result."""
    from cpq_guard.guard import CPQGuard

    question = _read_question(args.question)
    calibration = Calibration.load(args.calibration)
    settings = query_settings(args, default_concurrency=DEFAULT_CONCURRENCY)
    model = load_chat_model(args.model)
    guard = CPQGuard(
        model,
        calibration,
        max_concurrency=settings.max_concurrency,
        retry=settings.retry_policy(),
        timeout=settings.timeout,
        seed=args.seed,
    )

    with Console(stderr=True).status("querying the model..."):
        result = asyncio.run(guard.ainvoke(question))

    if args.json:
        sys.stdout.write(result.model_dump_json(indent=2) + "\n")
    else:
        _print_result(result)

    if args.fail_on_abstain and result.abstained:
        return EXIT_ABSTAINED
    return EXIT_OK


def _read_question(argument: str) -> str:
    """Return the question, reading stdin for ``-``.

    The trailing newlines of stdin are removed, since ``echo`` and editors
    add one that is not part of the prompt.

    Raises:
        UsageError: If the question is empty.
    """
    question = sys.stdin.read().rstrip("\r\n") if argument == "-" else argument
    if not question.strip():
        source = "stdin" if argument == "-" else "QUESTION"
        raise UsageError(f"the question from {source} is empty; give the prompt to send")
    return question


def _print_result(result: GuardResult) -> None:
    coverage = f"{result.coverage_target:.0%} coverage target"
    if result.abstained:
        print(
            f"ABSTAIN: estimated missing mass {result.missing_mass:.3f}, and the guard abstains "
            f"from {max(2.0 - result.threshold, 0.0):.3f} (2 - tau, tau = {result.threshold:.3f}; "
            f"{coverage})"
        )
        print("answers seen:")
        _print_clusters(result.clusters, result.num_queries)
    else:
        count = len(result.answers)
        if count:
            print(f"answer set of {count} answer{'s' if count != 1 else ''} ({coverage}):")
            _print_clusters(result.answers, result.num_queries)
        else:
            print(f"empty answer set: no answer seen passed the calibrated threshold ({coverage})")
        print(f"estimated missing mass: {result.missing_mass:.3f}")

    print(f"queries: {result.num_queries} (stopped by {result.stop_reason.replace('_', ' ')})")
    extra = _describe_extra_calls(result)
    if extra:
        print(f"extra calls: {extra}")
    usage = result.usage
    tokens = describe_tokens(
        usage.input_tokens,
        usage.output_tokens,
        usage.total_tokens,
        usage.responses_without_usage,
    )
    print(f"tokens: {tokens}")


def _print_clusters(clusters: list[AnswerCluster], num_queries: int) -> None:
    for cluster in clusters:
        if cluster.representative is None:
            answer = "<no answer>"
        else:
            # One line per answer: newlines and runs of spaces become single spaces.
            answer = " ".join(cluster.representative.split()) or repr(cluster.representative)
        print(
            f"  {answer}  (probability {cluster.probability:.3f}, "
            f"{cluster.count} of {num_queries} samples)"
        )


def _describe_extra_calls(result: GuardResult) -> str:
    parts = []
    if result.retries:
        parts.append(f"{result.retries} retried")
    if result.discarded_queries:
        parts.append(f"{result.discarded_queries} finished after the stop and unused")
    if result.cancelled_queries:
        parts.append(f"{result.cancelled_queries} cancelled at the stop")
    return ", ".join(parts)
