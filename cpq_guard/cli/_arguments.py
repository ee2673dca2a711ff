"""Argparse value types for numeric flags.

Each function turns a flag's text into a value or raises
`argparse.ArgumentTypeError`, which argparse reports as
``argument --flag: <message>``, so the messages here leave out the flag name.
"""

from __future__ import annotations

import argparse
import math


def _parse_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: it must be a finite number")
    return value


def _parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None


def miscoverage(text: str) -> float:
    """Parse a miscoverage level alpha, strictly between 0 and 1."""
    value = _parse_float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(
            f"invalid value {text!r}: the miscoverage level must lie strictly between 0 and 1 "
            "(for example 0.1 for 90% coverage)"
        )
    return value


def fraction(text: str) -> float:
    """Parse a share of the prompts, strictly between 0 and 1."""
    value = _parse_float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(
            f"invalid value {text!r}: it must lie strictly between 0 and 1 (for example 0.5)"
        )
    return value


def probability(text: str) -> float:
    """Parse a probability threshold in [0, 1]."""
    value = _parse_float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: it must lie in [0, 1]")
    return value


def non_negative_float(text: str) -> float:
    """Parse a finite number that is zero or more."""
    value = _parse_float(text)
    if value < 0.0:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: it must be zero or positive")
    return value


def query_budget(text: str) -> float:
    """Parse a mean number of queries per prompt, at least 1."""
    value = _parse_float(text)
    if value < 1.0:
        raise argparse.ArgumentTypeError(
            f"invalid value {text!r}: a mean number of queries per prompt must be at least 1"
        )
    return value


def positive_int(text: str) -> int:
    """Parse an integer of at least 1."""
    value = _parse_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: it must be at least 1")
    return value


def non_negative_int(text: str) -> int:
    """Parse an integer of at least 0."""
    value = _parse_int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: it must be at least 0")
    return value
