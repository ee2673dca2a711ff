"""Common base of the offline chat models: call accounting, latency and the call paths.

An offline model decides each call in one step, `_plan_call`, which is a pure
function of the prompt, the number of earlier calls for that prompt and the
number of earlier successful calls for it. The base class runs that step under
a lock, so every call reserves its position in the prompt's random streams
before it waits, and then carries the plan out on the sync, async and
streaming paths alike. It also counts calls, so tests can check how a caller
used the model (for example that a concurrency limit held).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import threading
import time
from abc import abstractmethod
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import numpy as np
from langchain_core.caches import BaseCache
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import (
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from cpq_guard._validation import check_non_negative
from cpq_guard.models._messages import (
    build_message,
    build_stream_chunks,
    prompt_text,
    stable_hash,
)

__all__ = ["CallKey", "CallPlan", "OfflineChatModel", "call_rng"]

logger = logging.getLogger("cpq_guard")

STREAM_ANSWER = 0
"""Random stream that picks a successful call's response."""

STREAM_FAILURE = 1
"""Random stream that decides whether a call fails or hangs."""

STREAM_LATENCY = 2
"""Random stream that draws a call's latency jitter."""

_IGNORED_PARAMETERS = frozenset(
    {"temperature", "max_tokens", "timeout", "stop", "max_retries", "api_key", "streaming"}
)
"""Standard LangChain chat-model parameters that the offline models accept and ignore."""


def call_rng(seed: int, prompt_hash: int, index: int, stream: int) -> np.random.Generator:
    """Return the generator of one call's draws in one random stream.

    The generator depends only on its four arguments, so a draw never depends
    on thread scheduling or on draws made in other streams.
    """
    return np.random.default_rng([seed, prompt_hash, index, stream])


@dataclass(frozen=True)
class CallKey:
    """Position of one call in its prompt's sequence of calls.

    Attributes:
        prompt: Text of the last human message.
        prompt_hash: `stable_hash` of the prompt.
        call_number: Number of earlier calls for this prompt, failed ones included.
        answer_index: Number of earlier successful calls for this prompt.
    """

    prompt: str
    prompt_hash: int
    call_number: int
    answer_index: int


@dataclass(frozen=True)
class CallPlan:
    """Outcome of one call, decided when the call starts.

    Exactly one of ``text`` and ``error`` is set.

    Attributes:
        text: Response text of a successful call.
        usage: Token usage to report with the response, if any.
        response_metadata: Extra entries for the message's ``response_metadata``.
        error: Exception that the call raises after its delay.
        extra_delay: Seconds to wait on top of the model's latency (a hang).
    """

    text: str | None = None
    usage: UsageMetadata | None = None
    response_metadata: dict[str, Any] = field(default_factory=dict)
    error: BaseException | None = None
    extra_delay: float = 0.0

    def __post_init__(self) -> None:
        if (self.text is None) == (self.error is None):
            raise ValueError("a CallPlan needs exactly one of text and error")


@dataclass
class _StartedCall:
    key: CallKey
    plan: CallPlan
    delay: float


class _CallState:
    """Mutable per-model counters, guarded by one lock.

    The lock is a `threading.Lock` and is held only for counter updates with no
    ``await`` inside, so it serves threads and coroutines alike.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls_by_prompt: Counter[str] = Counter()
        self.answers_by_prompt: Counter[str] = Counter()
        self.started = 0
        self.succeeded = 0
        self.failed = 0
        self.cancelled = 0
        self.in_flight = 0
        self.max_in_flight = 0

    def __deepcopy__(self, memo: dict[int, Any]) -> _CallState:
        # A lock cannot be copied, so a deep copy gets a new lock and copies the counters.
        clone = _CallState()
        with self.lock:
            for name, value in vars(self).items():
                if name != "lock":
                    setattr(clone, name, copy.deepcopy(value, memo))
        return clone


class OfflineChatModel(BaseChatModel):
    """Base class of chat models that respond without network access.

    Subclasses implement `_plan_call`. Every call then goes through these steps:

    1. Read the prompt key, the text of the last human message.
    2. Under the lock, call `_plan_call` with the call's position, then reserve
       that position: the prompt's call number always advances, and its answer
       index advances when the plan is a success.
    3. Wait ``latency`` seconds, plus a uniform jitter in ``[0, latency_jitter)``
       and the plan's extra delay (``time.sleep`` on the sync paths,
       ``asyncio.sleep`` on the async paths).
    4. Raise the plan's error, or return its text.

    Because positions are reserved before the wait, sequential calls give the
    same results on every run. Concurrent calls give the same set of results,
    though which caller gets which depends on scheduling. A call that is
    cancelled during its wait has already reserved its position, which is then
    skipped.

    Stop sequences are ignored: the response is always the full text. The
    standard LangChain parameters ``temperature``, ``max_tokens``, ``timeout``,
    ``stop``, ``max_retries``, ``api_key`` and ``streaming`` are accepted at
    construction and ignored, so the model can stand in for a hosted one. Any
    other unknown keyword argument is rejected, so a misspelled field fails
    early instead of being ignored.

    NOTE: ``model_copy()`` shares the call counters with the original, because
    pydantic copies private attributes shallowly. Construct a new model, or use
    ``model_copy(deep=True)``, for independent counters.
    """

    model_config = ConfigDict(extra="forbid")

    model_name: str
    """Name reported to tracing as ``ls_model_name``."""

    seed: int = Field(default=0, ge=0)
    """Seed of every random stream. Non-negative, as `numpy.random.SeedSequence` requires."""

    latency: float = 0.0
    """Seconds each call waits before it returns or raises."""

    latency_jitter: float = 0.0
    """Width in seconds of a uniform random delay added to ``latency``."""

    cache: BaseCache | bool | None = False
    """Off by default, because every call must draw a new sample and a cache would repeat one."""

    _state: _CallState = PrivateAttr(default_factory=_CallState)

    @model_validator(mode="before")
    @classmethod
    def _drop_ignored_parameters(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data

        ignored = sorted(_IGNORED_PARAMETERS.intersection(data))
        if ignored:
            logger.debug("%s ignores the parameters %s", cls.__name__, ignored)
        return {name: value for name, value in data.items() if name not in _IGNORED_PARAMETERS}

    @field_validator("latency", "latency_jitter")
    @classmethod
    def _check_delay(cls, value: float, info: ValidationInfo) -> float:
        return check_non_negative(value, info.field_name)

    # --- call accounting ---

    @property
    def calls_started(self) -> int:
        """Number of calls that passed the prompt lookup since construction or `reset`."""
        return self._state.started

    @property
    def calls_succeeded(self) -> int:
        """Number of calls that returned a response."""
        return self._state.succeeded

    @property
    def calls_failed(self) -> int:
        """Number of calls that raised their planned error (injected failure, hang, exhaustion)."""
        return self._state.failed

    @property
    def calls_cancelled(self) -> int:
        """Number of calls ended from outside: task cancellation or a stream closed early."""
        return self._state.cancelled

    @property
    def in_flight(self) -> int:
        """Number of calls started and not yet ended."""
        return self._state.in_flight

    @property
    def max_in_flight(self) -> int:
        """Largest number of calls in flight at once since construction or `reset`."""
        return self._state.max_in_flight

    def reset(self) -> None:
        """Restart every prompt's sequence of calls and zero the call counters.

        Calls in flight keep their reserved positions and stay counted as
        started and in flight, so ``calls_started`` always equals the sum of
        the succeeded, failed, cancelled and in-flight counts.
        """
        state = self._state
        with state.lock:
            state.calls_by_prompt.clear()
            state.answers_by_prompt.clear()
            state.started = state.in_flight
            state.succeeded = 0
            state.failed = 0
            state.cancelled = 0
            state.max_in_flight = state.in_flight

    # --- hooks for subclasses ---

    @abstractmethod
    def _plan_call(self, key: CallKey, messages: list[BaseMessage]) -> CallPlan:
        """Decide the outcome of the call at position ``key``.

        Must be a pure function of its arguments and the model's fields. It may
        raise to reject the call before it counts (for an unknown prompt).
        """

    def _extra_identifying_params(self) -> dict[str, Any]:
        return {}

    # --- LangChain integration ---

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "seed": self.seed,
            "latency": self.latency,
            "latency_jitter": self.latency_jitter,
            **self._extra_identifying_params(),
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "cpq_guard"
        return params

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        call = self._start_call(messages)
        with self._track(call):
            if call.delay > 0:
                time.sleep(call.delay)
            text = self._outcome(call)

        message = build_message(text, call.plan.usage, self._response_metadata(call))
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        call = self._start_call(messages)
        with self._track(call):
            if call.delay > 0:
                await asyncio.sleep(call.delay)
            text = self._outcome(call)

        message = build_message(text, call.plan.usage, self._response_metadata(call))
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        call = self._start_call(messages)
        with self._track(call):
            if call.delay > 0:
                time.sleep(call.delay)
            text = self._outcome(call)

            chunks = build_stream_chunks(text, call.plan.usage, self._response_metadata(call))
            for chunk in chunks:
                if run_manager is not None:
                    run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        call = self._start_call(messages)
        with self._track(call):
            if call.delay > 0:
                await asyncio.sleep(call.delay)
            text = self._outcome(call)

            chunks = build_stream_chunks(text, call.plan.usage, self._response_metadata(call))
            for chunk in chunks:
                if run_manager is not None:
                    await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk

    # --- call steps ---

    def _start_call(self, messages: list[BaseMessage]) -> _StartedCall:
        prompt = prompt_text(messages)
        prompt_hash = stable_hash(prompt)
        state = self._state

        with state.lock:
            key = CallKey(
                prompt=prompt,
                prompt_hash=prompt_hash,
                call_number=state.calls_by_prompt[prompt],
                answer_index=state.answers_by_prompt[prompt],
            )
            plan = self._plan_call(key, messages)

            state.calls_by_prompt[prompt] += 1
            if plan.error is None:
                state.answers_by_prompt[prompt] += 1
            state.started += 1
            state.in_flight += 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight)

        delay = self._draw_latency(key) + plan.extra_delay
        if plan.error is None:
            logger.debug(
                "%s call %d for prompt %r: answer %d in %.3f s",
                self._llm_type,
                key.call_number,
                prompt,
                key.answer_index,
                delay,
            )
        else:
            logger.debug(
                "%s call %d for prompt %r: raises %r in %.3f s",
                self._llm_type,
                key.call_number,
                prompt,
                plan.error,
                delay,
            )
        return _StartedCall(key=key, plan=plan, delay=delay)

    def _draw_latency(self, key: CallKey) -> float:
        if self.latency_jitter == 0.0:
            return self.latency
        rng = call_rng(self.seed, key.prompt_hash, key.call_number, STREAM_LATENCY)
        return self.latency + float(rng.uniform(0.0, self.latency_jitter))

    @contextmanager
    def _track(self, call: _StartedCall) -> Iterator[None]:
        """Count the end of ``call`` as a success, a failure or a cancellation."""
        try:
            yield
        except BaseException as exc:
            self._end_call("failed" if exc is call.plan.error else "cancelled")
            raise
        else:
            self._end_call("succeeded")

    def _end_call(self, outcome: Literal["succeeded", "failed", "cancelled"]) -> None:
        state = self._state
        with state.lock:
            state.in_flight -= 1
            if outcome == "succeeded":
                state.succeeded += 1
            elif outcome == "failed":
                state.failed += 1
            else:
                state.cancelled += 1

    @staticmethod
    def _outcome(call: _StartedCall) -> str:
        if call.plan.error is not None:
            raise call.plan.error
        return cast(str, call.plan.text)

    def _response_metadata(self, call: _StartedCall) -> dict[str, Any]:
        return {"model_name": self.model_name, **call.plan.response_metadata}
