"""Tests for one model query: reading responses, retries, timeouts and the guard's handling."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from langchain_core.callbacks import AsyncCallbackManagerForChainRun, CallbackManagerForChainRun
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableLambda

from cpq_guard.errors import ModelQueryError
from cpq_guard.guard import CPQGuard
from cpq_guard.querying import MalformedResponseError, aquery, query, read_response
from cpq_guard.result import TokenUsage
from cpq_guard.retry import RetryPolicy

MakeGuard = Callable[..., CPQGuard]

NO_WAIT = RetryPolicy(max_attempts=3, initial_wait=0.0, max_wait=0.0, jitter=0.0)
ONE_ATTEMPT = RetryPolicy(max_attempts=1)

USAGE = {"input_tokens": 5, "output_tokens": 7, "total_tokens": 12}
TOOL_CALL = {"name": "calculator", "args": {"expression": "7 * 12"}, "id": "call-1"}
IMAGE = {"type": "image", "url": "https://example.invalid/chart.png"}


def sync_query(model: Any, **kwargs: Any) -> Any:
    kwargs.setdefault("index", 0)
    kwargs.setdefault("retry", NO_WAIT)
    kwargs.setdefault("timeout", None)
    return query(model, "prompt", {}, CallbackManagerForChainRun.get_noop_manager(), **kwargs)


async def async_query(model: Any, **kwargs: Any) -> Any:
    kwargs.setdefault("index", 0)
    kwargs.setdefault("retry", NO_WAIT)
    kwargs.setdefault("timeout", None)
    manager = AsyncCallbackManagerForChainRun.get_noop_manager()
    return await aquery(model, "prompt", {}, manager, **kwargs)


def flaky(
    failures: int, error: Callable[[], Exception] = lambda: ConnectionError("reset")
) -> tuple[RunnableLambda, list[int]]:
    """Build a stand-in model whose first ``failures`` calls raise, then answer."""
    calls: list[int] = []

    def call(prompt: Any) -> str:
        calls.append(len(calls))
        if len(calls) <= failures:
            raise error()
        return "The answer is 7."

    return RunnableLambda(call), calls


# --- reading responses ---


@pytest.mark.parametrize(
    ("output", "text", "usage"),
    [
        ("The answer is 7.", "The answer is 7.", TokenUsage(responses_without_usage=1)),
        (
            AIMessage("The answer is 7.", usage_metadata=USAGE),
            "The answer is 7.",
            TokenUsage(input_tokens=5, output_tokens=7, total_tokens=12),
        ),
        (AIMessage("Seven."), "Seven.", TokenUsage(responses_without_usage=1)),
        (
            AIMessage([{"type": "text", "text": "The answer "}, {"type": "text", "text": "is 7."}]),
            "The answer is 7.",
            TokenUsage(responses_without_usage=1),
        ),
        (
            AIMessage("The answer is 7.", tool_calls=[TOOL_CALL]),
            "The answer is 7.",
            TokenUsage(responses_without_usage=1),
        ),
        (
            AIMessage([{"type": "text", "text": "See the chart: 7."}, IMAGE]),
            "See the chart: 7.",
            TokenUsage(responses_without_usage=1),
        ),
        (AIMessage(""), "", TokenUsage(responses_without_usage=1)),
        ("", "", TokenUsage(responses_without_usage=1)),
    ],
    ids=[
        "string",
        "message-with-usage",
        "message-without-usage",
        "text-blocks",
        "text-and-tool-call",
        "text-and-image",
        "empty-message",
        "empty-string",
    ],
)
def test_read_response(output: Any, text: str, usage: TokenUsage) -> None:
    assert read_response(output) == (text, usage)


@pytest.mark.parametrize(
    ("output", "fragment"),
    [
        (AIMessage("", tool_calls=[TOOL_CALL]), "tool calls (calculator)"),
        (AIMessage([IMAGE]), "non-text content blocks (image)"),
        ({"answer": "7"}, "returned dict, not a message or a string"),
        (7, "returned int"),
    ],
    ids=["tool-calls", "image-only", "dict", "int"],
)
def test_read_response_rejects(output: Any, fragment: str) -> None:
    with pytest.raises(MalformedResponseError) as caught:
        read_response(output)

    assert fragment in str(caught.value)


# --- one query ---


def test_query_returns_outcome() -> None:
    model = RunnableLambda(lambda prompt: AIMessage("The answer is 7.", usage_metadata=USAGE))

    outcome = sync_query(model)

    assert outcome.text == "The answer is 7."
    assert outcome.usage.total_tokens == 12
    assert outcome.retries == 0


def test_query_counts_retries() -> None:
    model, calls = flaky(2)

    outcome = sync_query(model)

    assert outcome.retries == 2
    assert len(calls) == 3


async def test_aquery_counts_retries() -> None:
    model, calls = flaky(2)

    outcome = await async_query(model)

    assert outcome.retries == 2
    assert len(calls) == 3


def test_query_failure_reports_position() -> None:
    model, calls = flaky(10)

    with pytest.raises(ModelQueryError) as caught:
        sync_query(model, index=7)

    error = caught.value
    assert error.samples_drawn == 7
    assert error.attempts == 3
    assert len(calls) == 3
    assert "model query 8 failed after 3 attempt(s) with ConnectionError" in str(error)


def test_query_permanent_error_once() -> None:
    model, calls = flaky(10, error=lambda: ValueError("invalid request"))

    with pytest.raises(ModelQueryError) as caught:
        sync_query(model)

    assert caught.value.attempts == 1
    assert len(calls) == 1


def test_malformed_response_not_retried() -> None:
    calls: list[int] = []

    def call(prompt: Any) -> AIMessage:
        calls.append(1)
        return AIMessage("", tool_calls=[TOOL_CALL])

    with pytest.raises(ModelQueryError, match="tool calls") as caught:
        sync_query(RunnableLambda(call))

    assert caught.value.attempts == 1
    assert len(calls) == 1


def test_query_timeout() -> None:
    # The abandoned call keeps its worker thread for the full second.
    def hang(prompt: Any) -> str:
        time.sleep(1.0)
        return "The answer is 7."

    start = time.monotonic()
    with pytest.raises(ModelQueryError) as caught:
        sync_query(RunnableLambda(hang), retry=ONE_ATTEMPT, timeout=0.05)

    assert time.monotonic() - start < 0.8
    assert isinstance(caught.value.__cause__, TimeoutError)
    assert "timed out after 0.05 s" in str(caught.value)


def test_query_timeout_retried() -> None:
    calls: list[int] = []

    def first_hangs(prompt: Any) -> str:
        calls.append(1)
        if len(calls) == 1:
            time.sleep(0.3)
        return "The answer is 7."

    outcome = sync_query(RunnableLambda(first_hangs), timeout=0.05)

    assert outcome.retries == 1
    assert outcome.text == "The answer is 7."


async def test_aquery_timeout() -> None:
    async def hang(prompt: Any) -> str:
        await asyncio.sleep(30)
        return "The answer is 7."

    start = time.monotonic()
    with pytest.raises(ModelQueryError) as caught:
        await async_query(RunnableLambda(hang), retry=ONE_ATTEMPT, timeout=0.05)

    assert time.monotonic() - start < 1.0
    assert isinstance(caught.value.__cause__, TimeoutError)


async def test_aquery_cancel_propagates() -> None:
    started = asyncio.Event()

    async def slow(prompt: Any) -> str:
        started.set()
        await asyncio.sleep(30)
        return "The answer is 7."

    task = asyncio.create_task(async_query(RunnableLambda(slow)))
    await started.wait()
    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task


# --- responses through the guard ---


@pytest.mark.parametrize("path", ["invoke", "ainvoke"])
async def test_guard_rejects_tool_calls(path: str, make_guard: MakeGuard) -> None:
    model = RunnableLambda(lambda prompt: AIMessage("", tool_calls=[TOOL_CALL]))
    guard = make_guard(model)

    with pytest.raises(ModelQueryError, match="tool calls") as caught:
        await guard.ainvoke("prompt") if path == "ainvoke" else guard.invoke("prompt")

    assert caught.value.samples_drawn == 0
    assert caught.value.attempts == 1


def test_guard_rejects_images(make_guard: MakeGuard) -> None:
    model = RunnableLambda(lambda prompt: AIMessage([IMAGE]))

    with pytest.raises(ModelQueryError, match="non-text content blocks"):
        make_guard(model).invoke("prompt")


def test_guard_rejects_objects(make_guard: MakeGuard) -> None:
    model = RunnableLambda(lambda prompt: {"answer": "7"})

    with pytest.raises(ModelQueryError, match="returned dict"):
        make_guard(model).invoke("prompt")


def test_empty_text_is_no_answer(make_guard: MakeGuard) -> None:
    # Every third response is empty: it counts as a sample without an answer.
    calls: list[int] = []

    def respond(prompt: Any) -> AIMessage:
        calls.append(1)
        return AIMessage("" if len(calls) % 3 == 0 else "The answer is 7.")

    result = make_guard(RunnableLambda(respond)).invoke("prompt")

    no_answer = [cluster for cluster in result.clusters if cluster.is_no_answer]
    assert len(no_answer) == 1
    assert no_answer[0].representative is None
    assert no_answer[0].count == result.num_queries // 3
    assert no_answer[0].responses == [""] * no_answer[0].count
    assert result.best_answer == "7"


def test_string_model_works(make_guard: MakeGuard) -> None:
    model = RunnableLambda(lambda prompt: f"Echo of {len(str(prompt))} characters: #### 7")

    result = make_guard(model).invoke("prompt")

    assert result.is_single_answer
    assert result.best_answer == "7"


def test_failure_advice_depends_on_transience() -> None:
    from cpq_guard.querying import _failure

    transient = _failure(ConnectionError("reset"), index=2, attempts=4, transient=True)
    permanent = _failure(ValueError("bad"), index=0, attempts=1, transient=False)

    assert "the error is transient: raise the retry limit" in str(transient)
    assert transient.samples_drawn == 2
    assert "not transient, so it was not retried" in str(permanent)
    assert permanent.attempts == 1
