"""One model query: call, retry, time out, and read the response.

Every attempt runs as a child run of the guard's run, tagged with the query
index (and the attempt number from the second attempt on), so tracing shows
one child run per model call.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
from dataclasses import dataclass
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForChainRun, CallbackManagerForChainRun
from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import patch_config

from cpq_guard.errors import ModelQueryError
from cpq_guard.result import TokenUsage
from cpq_guard.retry import RetryPolicy

__all__ = ["MalformedResponseError", "QueryOutcome", "aquery", "query", "read_response"]

logger = logging.getLogger("cpq_guard")


class MalformedResponseError(ValueError):
    """A model returned something other than text (tool calls, images, objects)."""


@dataclass(frozen=True)
class QueryOutcome:
    """A successful query: the response text, its usage and the failed attempts before it."""

    text: str
    usage: TokenUsage
    retries: int


def read_response(output: Any) -> tuple[str, TokenUsage]:
    """Read the text and token usage of a model's output.

    Accepts a message (text from ``message.text``, usage from
    ``usage_metadata``) or a plain string. Empty text is returned as is; the
    extractor then yields no answer for it.

    Raises:
        MalformedResponseError: If the output is a message with tool calls or
            non-text content blocks and no text, or not a message or string.
    """
    if isinstance(output, str):
        return output, TokenUsage(responses_without_usage=1)
    if not isinstance(output, BaseMessage):
        raise MalformedResponseError(
            f"the model returned {type(output).__name__}, not a message or a string; "
            "wrap a chat model, an LLM, or a chain that ends in one"
        )

    text = str(output.text)
    if not text.strip():
        tool_calls = getattr(output, "tool_calls", None) or []
        if tool_calls:
            names = ", ".join(str(call.get("name")) for call in tool_calls)
            raise MalformedResponseError(
                f"the model answered with tool calls ({names}) instead of text; "
                "guard a model without bound tools, or extract the answer in a chain first"
            )
        if isinstance(output.content, list) and output.content:
            kinds = sorted(
                {
                    str(block.get("type", "?")) if isinstance(block, dict) else type(block).__name__
                    for block in output.content
                }
            )
            raise MalformedResponseError(
                f"the model returned only non-text content blocks ({', '.join(kinds)}); "
                "the guard needs a text answer"
            )

    usage = getattr(output, "usage_metadata", None)
    if not usage:
        return text, TokenUsage(responses_without_usage=1)
    return text, TokenUsage(
        input_tokens=int(usage.get("input_tokens", 0)),
        output_tokens=int(usage.get("output_tokens", 0)),
        total_tokens=int(usage.get("total_tokens", 0)),
    )


def _child_config(
    config: RunnableConfig,
    run_manager: CallbackManagerForChainRun | AsyncCallbackManagerForChainRun,
    index: int,
    attempt: int,
) -> RunnableConfig:
    tag = f"cpq:query:{index}" if attempt == 1 else f"cpq:query:{index}:attempt:{attempt}"
    return patch_config(config, callbacks=run_manager.get_child(tag))


def _failure(error: BaseException, index: int, attempts: int, transient: bool) -> ModelQueryError:
    # Samples are used in query order, so query `index` fails after `index` samples.
    if transient:
        advice = "the error is transient: raise the retry limit or try again later"
    else:
        advice = "the error is not transient, so it was not retried: fix its cause"
    return ModelQueryError(
        f"model query {index + 1} failed after {attempts} attempt(s) with "
        f"{type(error).__name__}: {error}; {index} sample(s) had been drawn; {advice}",
        samples_drawn=index,
        attempts=attempts,
    )


def _run_with_timeout(model: Runnable, input: Any, config: RunnableConfig, timeout: float) -> Any:
    # A blocking call cannot be interrupted, so it runs in a worker thread and is
    # abandoned when the timeout passes.
    # NOTE: an abandoned call keeps its thread until the model returns; set the
    # provider client's own timeout as well for long hangs.
    context = contextvars.copy_context()
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        future = executor.submit(context.run, model.invoke, input, config)
        try:
            return future.result(timeout=timeout)
        except concurrent.futures.TimeoutError as exc:
            raise TimeoutError(f"model call timed out after {timeout:g} s") from exc
    finally:
        executor.shutdown(wait=False)


def query(
    model: Runnable,
    input: Any,
    config: RunnableConfig,
    run_manager: CallbackManagerForChainRun,
    *,
    index: int,
    retry: RetryPolicy,
    timeout: float | None,
) -> QueryOutcome:
    """Query the model once, retrying transient failures.

    Raises:
        ModelQueryError: If the call fails with a non-transient error, keeps
            failing past the retry limit, or returns no usable text.
    """
    attempts = 0
    try:
        for attempt in retry.retrying():
            with attempt:
                attempts = attempt.retry_state.attempt_number
                child = _child_config(config, run_manager, index, attempts)
                if timeout is None:
                    output = model.invoke(input, child)
                else:
                    output = _run_with_timeout(model, input, child, timeout)
                text, usage = read_response(output)
    except Exception as exc:
        raise _failure(exc, index, attempts, retry.is_transient(exc)) from exc
    return QueryOutcome(text=text, usage=usage, retries=attempts - 1)


async def aquery(
    model: Runnable,
    input: Any,
    config: RunnableConfig,
    run_manager: AsyncCallbackManagerForChainRun,
    *,
    index: int,
    retry: RetryPolicy,
    timeout: float | None,
) -> QueryOutcome:
    """Query the model once from async code; see `query`."""
    attempts = 0
    try:
        async for attempt in retry.async_retrying():
            with attempt:
                attempts = attempt.retry_state.attempt_number
                child = _child_config(config, run_manager, index, attempts)
                if timeout is None:
                    output = await model.ainvoke(input, child)
                else:
                    try:
                        output = await asyncio.wait_for(model.ainvoke(input, child), timeout)
                    except asyncio.TimeoutError as exc:
                        raise TimeoutError(f"model call timed out after {timeout:g} s") from exc
                text, usage = read_response(output)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        raise _failure(exc, index, attempts, retry.is_transient(exc)) from exc
    return QueryOutcome(text=text, usage=usage, retries=attempts - 1)
