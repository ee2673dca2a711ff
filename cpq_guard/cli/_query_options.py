"""Flags of the commands that query a model: the model spec, concurrency, timeout and retries.

The query flags default to ``None`` in the parser and get their defaults in
`query_settings`, so that a command can tell whether the user gave them (as
``calibrate`` does, which accepts them only with ``--model``).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cpq_guard.cli import _arguments
from cpq_guard.model_loading import ModelLoadError, split_model_spec

if TYPE_CHECKING:
    from cpq_guard.retry import RetryPolicy

DEFAULT_MAX_ATTEMPTS = 4
MAX_ATTEMPTS_LIMIT = 100
"""Largest ``--max-attempts`` that `cpq_guard.retry.RetryPolicy` accepts."""

MODEL_HELP = (
    "chat model as PROVIDER:MODEL, named as LangChain's init_chat_model names them, such as "
    'openai:gpt-4o-mini (needs pip install "cpq-guard[models]" and the provider\'s package, '
    "such as langchain-openai, and its API key), or replay:BANK.jsonl to replay a recorded "
    "sample bank offline"
)


@dataclass(frozen=True)
class QueryFlag:
    """A query flag and its attribute name in the parsed namespace."""

    flag: str
    dest: str


QUERY_FLAGS = (
    QueryFlag("--max-concurrency", "max_concurrency"),
    QueryFlag("--timeout", "timeout"),
    QueryFlag("--max-attempts", "max_attempts"),
)


@dataclass(frozen=True)
class QuerySettings:
    """Settings of a command's model calls.

    Attributes:
        max_concurrency: Model calls in flight at once.
        timeout: Seconds allowed per call attempt, or ``None`` for no limit.
        max_attempts: Attempts per call, the first included.
    """

    max_concurrency: int
    timeout: float | None
    max_attempts: int

    def retry_policy(self) -> RetryPolicy:
        """Build the retry policy with ``max_attempts`` and the default backoff."""
        from cpq_guard.retry import RetryPolicy

        return RetryPolicy(max_attempts=self.max_attempts)


def model_spec(text: str) -> str:
    """Check the form ``PROVIDER:MODEL`` of ``--model``; the provider is checked on loading."""
    try:
        split_model_spec(text.strip())
    except ModelLoadError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text.strip()


def _positive_seconds(text: str) -> float:
    value = _arguments.non_negative_float(text)
    if value == 0.0:
        raise argparse.ArgumentTypeError(
            f"invalid value {text!r}: give a positive number of seconds, or leave the flag out "
            "for no limit"
        )
    return value


def _max_attempts(text: str) -> int:
    value = _arguments.positive_int(text)
    if value > MAX_ATTEMPTS_LIMIT:
        raise argparse.ArgumentTypeError(
            f"invalid value {text!r}: it must be at most {MAX_ATTEMPTS_LIMIT}"
        )
    return value


def add_model_argument(
    container: argparse.ArgumentParser | argparse._ActionsContainer, *, required: bool
) -> None:
    """Add ``--model SPEC``; ``container`` may be a mutually exclusive group."""
    container.add_argument(
        "--model", type=model_spec, required=required, metavar="SPEC", help=MODEL_HELP
    )


def add_query_arguments(
    parser: argparse.ArgumentParser, *, default_concurrency: int, concurrency_help: str
) -> None:
    """Add ``--max-concurrency``, ``--timeout`` and ``--max-attempts``."""
    parser.add_argument(
        "--max-concurrency",
        type=_arguments.positive_int,
        metavar="N",
        help=f"{concurrency_help} (default: {default_concurrency})",
    )
    parser.add_argument(
        "--timeout",
        type=_positive_seconds,
        metavar="S",
        help="seconds allowed per model call attempt; a call that takes longer counts as a "
        "transient failure and is retried (default: no limit)",
    )
    parser.add_argument(
        "--max-attempts",
        type=_max_attempts,
        metavar="N",
        help="attempts per model call, the first included; rate limits, timeouts, dropped "
        "connections and 5xx errors are retried with exponential backoff, and other errors "
        f"end the command at once (default: {DEFAULT_MAX_ATTEMPTS})",
    )


def query_settings(args: argparse.Namespace, *, default_concurrency: int) -> QuerySettings:
    """Return the query settings of ``args``, with defaults for the flags not given."""
    return QuerySettings(
        max_concurrency=args.max_concurrency or default_concurrency,
        timeout=args.timeout,
        max_attempts=args.max_attempts or DEFAULT_MAX_ATTEMPTS,
    )


def given_query_flags(args: argparse.Namespace) -> list[str]:
    """Return the query flags that were given on the command line."""
    return [item.flag for item in QUERY_FLAGS if getattr(args, item.dest) is not None]
