"""Tests for RetryPolicy and is_transient_error."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from pydantic import ValidationError
from tenacity import RetryCallState

from cpq_guard.retry import DEFAULT_TRANSIENT_TYPES, RetryPolicy, is_transient_error

NO_WAIT = RetryPolicy(max_attempts=3, initial_wait=0.0, max_wait=0.0, jitter=0.0)


class StatusError(Exception):
    """An SDK-style error that carries its HTTP status code."""

    def __init__(self, status_code: Any) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code


class Response:
    def __init__(self, status_code: int) -> None:
        self.status_code = status_code


class ResponseError(Exception):
    """An SDK-style error whose status code sits on its response."""

    def __init__(self, status_code: int) -> None:
        super().__init__(f"HTTP {status_code}")
        self.response = Response(status_code)


def named_error(name: str) -> Exception:
    """Build an instance of a fresh exception class called ``name``, like a provider SDK's."""
    return type(name, (Exception,), {})("provider failure")


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (ConnectionError("reset"), True),
        (ConnectionResetError("reset by peer"), True),
        (TimeoutError("slow"), True),
        (asyncio.TimeoutError(), True),
        (StatusError(429), True),
        (StatusError(503), True),
        (StatusError(500), True),
        (StatusError(408), True),
        (StatusError(409), True),
        (StatusError(400), False),
        (StatusError(404), False),
        (StatusError(600), False),
        (StatusError("429"), False),
        (ResponseError(429), True),
        (ResponseError(401), False),
        (named_error("RateLimitError"), True),
        (named_error("APITimeoutError"), True),
        (named_error("APIConnectionError"), True),
        (named_error("InternalServerError"), True),
        (named_error("ServiceUnavailableError"), True),
        (named_error("AuthenticationError"), False),
        (ValueError("bad request"), False),
        (KeyError("missing"), False),
    ],
    ids=repr,
)
def test_transient_errors(error: Exception, transient: bool) -> None:
    assert is_transient_error(error, DEFAULT_TRANSIENT_TYPES) is transient
    assert RetryPolicy().is_transient(error) is transient


def test_configured_types_transient() -> None:
    policy = RetryPolicy(transient_types=(KeyError,))

    assert policy.is_transient(KeyError("x"))
    assert not policy.is_transient(ConnectionError("reset"))
    assert policy.is_transient(StatusError(503))


def test_single_type_accepted() -> None:
    assert RetryPolicy(transient_types=KeyError).transient_types == (KeyError,)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"transient_types": ("ConnectionError",)},
        {"transient_types": (int,)},
        {"max_attempts": 0},
        {"max_attempts": 101},
        {"initial_wait": -0.1},
        {"max_wait": -1.0},
        {"jitter": -0.5},
    ],
)
def test_invalid_policy_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        RetryPolicy(**kwargs)


def test_policy_is_frozen() -> None:
    with pytest.raises(ValidationError):
        RetryPolicy().max_attempts = 2  # type: ignore[misc]


def waits(policy: RetryPolicy, attempts: int) -> list[float]:
    """Return the delay the policy waits after each of the first ``attempts`` failures."""
    controller = policy.retrying()
    state = RetryCallState(controller, None, (), {})
    delays = []
    for number in range(1, attempts + 1):
        state.attempt_number = number
        delays.append(controller.wait(state))
    return delays


def test_backoff_doubles_to_max() -> None:
    policy = RetryPolicy(initial_wait=0.5, max_wait=3.0, jitter=0.0)

    assert waits(policy, 5) == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_jitter_bounded() -> None:
    policy = RetryPolicy(initial_wait=0.5, max_wait=100.0, jitter=0.25)

    bases = [0.5 * 2**n for n in range(8)]
    delays = waits(policy, 8)

    for delay, base in zip(delays, bases):
        assert base <= delay <= base + 0.25
    assert delays != bases


def test_zero_waits() -> None:
    assert waits(NO_WAIT, 4) == [0.0, 0.0, 0.0, 0.0]


def run_sync(policy: RetryPolicy, errors: list[BaseException | None]) -> int:
    """Run attempts that raise ``errors`` in order (None succeeds) and count them."""
    attempts = 0
    for attempt in policy.retrying():
        with attempt:
            error = errors[attempts]
            attempts += 1
            if error is not None:
                raise error
    return attempts


async def run_async(policy: RetryPolicy, errors: list[BaseException | None]) -> int:
    attempts = 0
    async for attempt in policy.async_retrying():
        with attempt:
            error = errors[attempts]
            attempts += 1
            if error is not None:
                raise error
    return attempts


def test_retries_until_success() -> None:
    errors: list[BaseException | None] = [ConnectionError("a"), TimeoutError("b"), None]

    assert run_sync(NO_WAIT, errors) == 3


async def test_async_retries_until_success() -> None:
    errors: list[BaseException | None] = [ConnectionError("a"), StatusError(503), None]

    assert await run_async(NO_WAIT, errors) == 3


def test_stops_after_max_attempts() -> None:
    errors: list[BaseException | None] = [ConnectionError(str(n)) for n in range(5)]

    with pytest.raises(ConnectionError, match="2"):
        run_sync(NO_WAIT, errors)


async def test_async_stops_after_max_attempts() -> None:
    errors: list[BaseException | None] = [StatusError(429) for _ in range(5)]

    with pytest.raises(StatusError):
        await run_async(NO_WAIT, errors)


def test_permanent_error_not_retried() -> None:
    calls: list[int] = []

    with pytest.raises(ValueError, match="bad"):
        for attempt in NO_WAIT.retrying():
            with attempt:
                calls.append(1)
                raise ValueError("bad request")

    assert len(calls) == 1


def test_single_attempt_disables_retry() -> None:
    policy = RetryPolicy(max_attempts=1)

    with pytest.raises(ConnectionError):
        run_sync(policy, [ConnectionError("reset"), None])


def test_retry_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cpq_guard")

    run_sync(NO_WAIT, [ConnectionError("secret detail"), None])

    messages = [record.getMessage() for record in caplog.records]
    assert messages == ["model call failed with ConnectionError (attempt 1); retrying in 0.00 s"]
