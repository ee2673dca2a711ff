"""Argument checks shared by the public entry points.

Each check raises `InvalidParameterError` (a `ValueError`) or
`InvalidTypeError` (a `TypeError`) whose message names the parameter, the
rejected value and the valid range, so callers see what to change.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from numbers import Integral, Real

from cpq_guard.errors import InvalidParameterError, InvalidTypeError


def check_alpha(alpha: object, name: str = "alpha") -> float:
    """Validate a miscoverage level, which must lie strictly between 0 and 1."""
    value = check_real(alpha, name)
    if not 0.0 < value < 1.0:
        raise InvalidParameterError(
            name,
            alpha,
            f"{name}={alpha!r} is invalid: the miscoverage level must lie strictly between "
            "0 and 1 (for example 0.1 for 90% coverage)",
        )
    return value


def check_real(value: object, name: str) -> float:
    """Validate a finite real number and return it as a float."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise InvalidTypeError(
            f"{name} must be a real number, got {type(value).__name__} {value!r}"
        )
    result = float(value)
    if not math.isfinite(result):
        raise InvalidParameterError(name, value, f"{name}={value!r} is invalid: it must be finite")
    return result


def check_int(value: object, name: str, *, minimum: int | None = None) -> int:
    """Validate an integer, optionally at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise InvalidTypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    result = int(value)
    if minimum is not None and result < minimum:
        raise InvalidParameterError(
            name, value, f"{name}={value!r} is invalid: it must be at least {minimum}"
        )
    return result


def check_non_negative(value: object, name: str) -> float:
    """Validate a finite real number that is zero or more."""
    result = check_real(value, name)
    if result < 0.0:
        raise InvalidParameterError(
            name, value, f"{name}={value!r} is invalid: it must be zero or positive"
        )
    return result


def check_query_limits(min_queries: object, max_queries: object) -> tuple[int, int]:
    """Validate a pair of query limits with ``1 <= min_queries <= max_queries``."""
    low = check_int(min_queries, "min_queries", minimum=1)
    high = check_int(max_queries, "max_queries", minimum=1)
    if low > high:
        raise InvalidParameterError(
            "min_queries",
            min_queries,
            f"min_queries={low} is greater than max_queries={high}; "
            "lower min_queries or raise max_queries",
        )
    return low, high


def check_timeout(value: object, name: str = "timeout") -> float | None:
    """Validate a per-call time limit in seconds: positive and finite, or ``None`` for none."""
    if value is None:
        return None
    seconds = check_real(value, name)
    if seconds <= 0.0:
        raise InvalidParameterError(
            name,
            value,
            f"{name}={value!r} is invalid: give positive seconds, or None for no limit",
        )
    return seconds


def check_choice(value: object, name: str, choices: Collection[str]) -> str:
    """Validate that ``value`` is one of the names in ``choices``."""
    if not isinstance(value, str) or value not in choices:
        names = ", ".join(repr(choice) for choice in choices)
        raise InvalidParameterError(name, value, f"{name}={value!r} is invalid: use one of {names}")
    return value
