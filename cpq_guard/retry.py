"""Retrying transient model failures with tenacity.

A query that fails with a transient error (rate limit, timeout, dropped
connection, server overload) is retried with exponential backoff and jitter,
up to a bounded number of attempts. A failed attempt is never counted as a
sample. Any other error, or a transient one that outlasts the attempts, ends
the guarded call with `ModelQueryError`.

Provider SDKs raise their own exception classes, which cpq-guard does not
import. So besides the configured types, an error counts as transient when
its HTTP status code is 408, 409, 429 or 5xx, or when its class name is one
of the usual names for such failures (``RateLimitError``, ``APITimeoutError``,
``APIConnectionError``, ``InternalServerError``, ``ServiceUnavailableError``).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from tenacity import (
    AsyncRetrying,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

__all__ = ["DEFAULT_TRANSIENT_TYPES", "RetryPolicy", "is_transient_error"]

logger = logging.getLogger("cpq_guard")

DEFAULT_TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    ConnectionError,
    TimeoutError,
    asyncio.TimeoutError,
)

_TRANSIENT_CLASS_NAMES = frozenset(
    {
        "RateLimitError",
        "APITimeoutError",
        "APIConnectionError",
        "InternalServerError",
        "ServiceUnavailableError",
        "Timeout",
        "ReadTimeout",
        "ConnectTimeout",
    }
)
_TRANSIENT_STATUS_CODES = frozenset({408, 409, 429})

# tenacity 9.2 renamed the first delay of wait_exponential_jitter from
# ``initial`` to ``multiplier`` and warns on the old name; older releases know
# only ``initial``. Both mean the delay before the second attempt.
_FIRST_WAIT_ARGUMENT = (
    "multiplier"
    if "multiplier" in inspect.signature(wait_exponential_jitter).parameters
    else "initial"
)


def is_transient_error(error: BaseException, types: tuple[type[BaseException], ...]) -> bool:
    """Decide whether ``error`` is worth retrying (see the module docstring)."""
    if isinstance(error, types):
        return True
    if type(error).__name__ in _TRANSIENT_CLASS_NAMES:
        return True
    status = getattr(error, "status_code", None)
    if status is None:
        status = getattr(getattr(error, "response", None), "status_code", None)
    return isinstance(status, int) and (status in _TRANSIENT_STATUS_CODES or 500 <= status < 600)


class RetryPolicy(BaseModel):
    """How failed model calls are retried.

    Attributes:
        max_attempts: Attempts per query, the first included; 1 disables retries.
        initial_wait: First backoff delay, in seconds.
        max_wait: Largest backoff delay, in seconds.
        jitter: Largest random extra delay added to each wait, in seconds.
        transient_types: Exception types that are always retried.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    max_attempts: int = Field(default=4, ge=1, le=100)
    initial_wait: float = Field(default=0.5, ge=0.0)
    max_wait: float = Field(default=20.0, ge=0.0)
    jitter: float = Field(default=1.0, ge=0.0)
    transient_types: tuple[type[BaseException], ...] = DEFAULT_TRANSIENT_TYPES

    @field_validator("transient_types", mode="before")
    @classmethod
    def _check_types(cls, value: Any) -> tuple[type[BaseException], ...]:
        values = tuple(value) if isinstance(value, (list, tuple)) else (value,)
        for item in values:
            if not (isinstance(item, type) and issubclass(item, BaseException)):
                raise ValueError(f"transient_types must be exception classes, got {item!r}")
        return values

    def is_transient(self, error: BaseException) -> bool:
        """Decide whether this policy retries ``error``."""
        return is_transient_error(error, self.transient_types)

    def _arguments(self) -> dict[str, Any]:
        return {
            "stop": stop_after_attempt(self.max_attempts),
            "wait": wait_exponential_jitter(
                max=self.max_wait, jitter=self.jitter, **{_FIRST_WAIT_ARGUMENT: self.initial_wait}
            ),
            "retry": retry_if_exception(self.is_transient),
            "before_sleep": _log_retry,
            "reraise": True,
        }

    def retrying(self) -> Retrying:
        """Build a tenacity controller for synchronous calls."""
        return Retrying(**self._arguments())

    def async_retrying(self) -> AsyncRetrying:
        """Build a tenacity controller for asynchronous calls."""
        return AsyncRetrying(**self._arguments())


def _log_retry(state: Any) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    wait = state.next_action.sleep if state.next_action is not None else 0.0
    logger.info(
        "model call failed with %s (attempt %d); retrying in %.2f s",
        type(error).__name__,
        state.attempt_number,
        wait,
    )
