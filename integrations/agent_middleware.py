"""Middleware for ``langchain.agents.create_agent`` that guards the agent's final answers.

`GuardedAnswerMiddleware` wraps the agent's model calls (``wrap_model_call``
and ``awrap_model_call``). A call whose response contains tool calls passes
through unchanged. A call that produces a final text answer is resampled
through a `CPQGuard`: the guard sends the same model request again, with the
same messages and tools, until its calibrated stopping policy stops, counting
the first response as the first sample. The guard then either answers, and
the middleware returns a sample of the most probable answer in the set, or
abstains, and the middleware replaces the answer with an abstention message,
raises `Abstained`, or asks a human through LangGraph's ``interrupt``.

What the guarantee covers: the guard's coverage holds for requests drawn
like the calibration prompts, with the same model, extractor and
equivalence. Here the sampled request is the agent's whole final step:
system prompt, conversation and any tool results. Calibrate on that kind of
request. For an agent that answers without tools, that is
``calibrate(prompt | model, questions, references, ...)`` with the agent's
system prompt in ``prompt``. When tool results enter the final step, the
calibration prompts must contain them too, or the guard's decision is a
heuristic without the guarantee.

Cost: a guarded final answer takes up to ``policy.max_queries`` model calls
instead of one.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

from langchain.agents.middleware import AgentMiddleware, AgentState, ModelRequest, ModelResponse
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import RunnableLambda
from langgraph.runtime import Runtime
from langgraph.types import interrupt

from cpq_guard.calibration import Calibration
from cpq_guard.errors import Abstained, InvalidParameterError, InvalidTypeError
from cpq_guard.guard import CPQGuard
from cpq_guard.result import GuardResult
from cpq_guard.retry import RetryPolicy
from integrations.escalation import escalation_payload, input_text, read_human_answer
from integrations.results import dump_guard_result, is_answered, load_guard_result

__all__ = [
    "DEFAULT_ABSTAIN_MESSAGE",
    "METADATA_KEY",
    "REVIEWED_KEY",
    "GuardedAnswerMiddleware",
    "OnAbstain",
]

logger = logging.getLogger("cpq_guard")

OnAbstain = Literal["message", "raise", "interrupt"]
"""Action the middleware takes when the guard has no answer for a final step.

``"message"``: the final answer becomes ``abstain_message``.
``"raise"``: the agent run raises `Abstained`.
``"interrupt"``: the final answer becomes ``abstain_message``, then the
middleware's ``after_model`` hook calls LangGraph's ``interrupt`` and
replaces it with the reviewer's answer on resume.
"""

DEFAULT_ABSTAIN_MESSAGE = (
    "I can't give a reliable answer to this. I sampled my answer {num_queries} times, and "
    "the samples were not enough evidence to trust any answer (estimated probability of an "
    "answer I have not seen yet: {missing_mass:.2f})."
)
"""Default final answer on abstention. `str.format` fills in ``{missing_mass}``,
``{num_queries}`` and ``{coverage_target}``."""

METADATA_KEY = "cpq_guard"
"""Key in a guarded final message's ``response_metadata`` that holds the dumped `GuardResult`."""

REVIEWED_KEY = "cpq_guard_reviewed"
"""Key set to ``True`` in ``response_metadata`` when a human supplied the final answer."""

_ON_ABSTAIN = ("message", "raise", "interrupt")


class GuardedAnswerMiddleware(AgentMiddleware):
    """Resample an agent's final answers through a calibrated guard, and abstain when unsure.

    Every guarded final message carries the result, as `dump_guard_result`
    output without the raw responses, in ``response_metadata["cpq_guard"]``;
    `load_guard_result` rebuilds it. Responses with tool calls, and responses
    with a structured output, pass through unguarded.

    A resampled response that calls tools instead of answering counts as a
    sample without an answer, so a model that is unsure whether it needs more
    tool calls leads to abstention rather than to an answer.

    Args:
        calibration: The guard's `Calibration`, or the path of a saved one.
            Calibrate on requests like the agent's final step; see the module
            documentation.
        extractor: Answer extractor; defaults to the calibration's.
        equivalence: Answer equivalence; defaults to the calibration's.
        max_concurrency: Model calls in flight at once in ``ainvoke``.
        retry: How transient model failures are retried.
        timeout: Seconds allowed per model call attempt.
        seed: Seeds the guard's bootstrap and tie-breaking per request.
        on_abstain: What to do without an answer; see `OnAbstain`.
        abstain_message: Final answer on abstention, a `str.format` template
            with ``missing_mass``, ``num_queries`` and ``coverage_target``.

    Raises:
        CalibrationMismatchError: If ``extractor`` or ``equivalence`` differ
            from the calibration's.
        InvalidParameterError: If ``on_abstain`` or ``abstain_message`` is invalid.
    """

    def __init__(
        self,
        calibration: Calibration | str | Path,
        *,
        extractor: Any = None,
        equivalence: Any = None,
        max_concurrency: int = 1,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        seed: int | None = None,
        on_abstain: OnAbstain = "message",
        abstain_message: str = DEFAULT_ABSTAIN_MESSAGE,
    ) -> None:
        super().__init__()
        if on_abstain not in _ON_ABSTAIN:
            raise InvalidParameterError(
                "on_abstain",
                on_abstain,
                f"on_abstain={on_abstain!r} is invalid; use one of {list(_ON_ABSTAIN)}",
            )
        _check_template(abstain_message)

        if isinstance(calibration, (str, Path)):
            calibration = Calibration.load(calibration)

        self.calibration = calibration
        self.on_abstain: OnAbstain = on_abstain
        self.abstain_message = abstain_message
        self.tools = []
        self._guard_options: dict[str, Any] = {
            "extractor": extractor,
            "equivalence": equivalence,
            "max_concurrency": max_concurrency,
            "retry": retry,
            "timeout": timeout,
            "seed": seed,
        }

        # Building one guard now checks the settings against the calibration
        # at construction, instead of at the agent's first final answer.
        self._build_guard(RunnableLambda(_unused_model))

    # -- model calls -------------------------------------------------------

    def wrap_model_call(
        self,
        request: ModelRequest,
        handler: Callable[[ModelRequest], ModelResponse],
    ) -> ModelResponse:
        """Pass tool-calling responses through, and guard final answers."""
        first = _as_response(handler(request))
        if not _is_final_answer(first):
            return first

        resampler = _Resampler(first.result[0])

        def draw(_: Any) -> AIMessage:
            sample = resampler.first_sample()
            if sample is None:
                sample = resampler.record(_as_response(handler(request)))
            return sample

        result = self._build_guard(RunnableLambda(draw)).invoke(request.messages)
        return self._respond(result, resampler)

    async def awrap_model_call(
        self,
        request: ModelRequest,
        handler: Callable[[ModelRequest], Awaitable[ModelResponse]],
    ) -> ModelResponse:
        """Pass tool-calling responses through, and guard final answers, from async code."""
        first = _as_response(await handler(request))
        if not _is_final_answer(first):
            return first

        resampler = _Resampler(first.result[0])

        async def adraw(_: Any) -> AIMessage:
            sample = resampler.first_sample()
            if sample is None:
                sample = resampler.record(_as_response(await handler(request)))
            return sample

        result = await self._build_guard(RunnableLambda(adraw)).ainvoke(request.messages)
        return self._respond(result, resampler)

    def _build_guard(self, model: RunnableLambda) -> CPQGuard:
        return CPQGuard(model, self.calibration, **self._guard_options)

    def _respond(self, result: GuardResult, resampler: _Resampler) -> ModelResponse:
        metadata = dump_guard_result(result, keep_responses=False)
        if is_answered(result):
            message = resampler.message_of(result)
            return ModelResponse(result=[_with_metadata(message, {METADATA_KEY: metadata})])

        if self.on_abstain == "raise":
            raise Abstained(result)

        logger.info(
            "agent final answer replaced by an abstention after %d queries (missing mass %.3f)",
            result.num_queries,
            result.missing_mass,
        )
        content = self.abstain_message.format(
            missing_mass=result.missing_mass,
            num_queries=result.num_queries,
            coverage_target=result.coverage_target,
        )
        message = AIMessage(content=content, response_metadata={METADATA_KEY: metadata})
        return ModelResponse(result=[message])

    # -- human review ------------------------------------------------------

    def after_model(self, state: AgentState, runtime: Runtime) -> dict[str, Any] | None:
        """Ask a human for the answer when the last final answer is an abstention.

        Runs only with ``on_abstain="interrupt"``. LangGraph reruns this hook,
        not the model call, on resume, so the guard's samples are not drawn
        again. The agent needs a checkpointer and a ``thread_id``.
        """
        del runtime  # the hook reads only the state
        if self.on_abstain != "interrupt":
            return None

        messages = state["messages"]
        last = messages[-1] if messages else None
        if not isinstance(last, AIMessage) or last.tool_calls:
            return None
        stored = last.response_metadata.get(METADATA_KEY)
        if stored is None or last.response_metadata.get(REVIEWED_KEY):
            return None
        result = load_guard_result(stored)
        if is_answered(result):
            return None

        reply = interrupt(escalation_payload(result, input_text(messages)))
        answer = read_human_answer(reply)
        reviewed = AIMessage(
            id=last.id,
            content=answer,
            response_metadata={**last.response_metadata, REVIEWED_KEY: True},
        )
        return {"messages": [reviewed]}


class _Resampler:
    """The guard's model: hands out the agent's first response, then fresh ones.

    It keeps every message it handed out, so the final answer can be one of
    the messages the model actually wrote, with its id and usage.
    """

    def __init__(self, first: BaseMessage) -> None:
        self._first: BaseMessage | None = first
        self.messages: list[BaseMessage] = []

    def first_sample(self) -> AIMessage | None:
        """Return the agent's first response as a sample once, then ``None``."""
        if self._first is None:
            return None
        message, self._first = self._first, None
        self.messages.append(message)
        return _as_sample(message)

    def record(self, response: ModelResponse) -> AIMessage:
        """Keep a fresh response's message and return it as a sample."""
        message = response.result[0] if response.result else AIMessage(content="")
        self.messages.append(message)
        return _as_sample(message)

    def message_of(self, result: GuardResult) -> BaseMessage:
        """Return the first drawn message of the most probable real answer in the set."""
        cluster = next(cluster for cluster in result.answers if cluster.representative is not None)
        text = cluster.responses[0]
        for message in self.messages:
            if str(message.text) == text:
                return message
        return AIMessage(content=text)


def _as_response(output: Any) -> ModelResponse:
    # Handlers return a ModelResponse; an AIMessage is accepted as well, as
    # langchain's own composition does.
    if isinstance(output, ModelResponse):
        return output
    if isinstance(output, AIMessage):
        return ModelResponse(result=[output])
    raise InvalidTypeError(
        f"the agent's model handler returned {type(output).__name__}, not a ModelResponse "
        "or an AIMessage; check that the middleware inside this one returns one of them"
    )


def _is_final_answer(response: ModelResponse) -> bool:
    if response.structured_response is not None or len(response.result) != 1:
        return False
    message = response.result[0]
    return isinstance(message, AIMessage) and not message.tool_calls


def _as_sample(message: BaseMessage) -> AIMessage:
    # A sample that calls tools has no answer: its text (if any) comments on
    # the tool call, so the guard sees an empty answer.
    if isinstance(message, AIMessage) and not message.tool_calls:
        return message
    usage = message.usage_metadata if isinstance(message, AIMessage) else None
    return AIMessage(content="", usage_metadata=usage)


def _with_metadata(message: BaseMessage, extra: dict[str, Any]) -> BaseMessage:
    metadata = {**message.response_metadata, **extra}
    return message.model_copy(update={"response_metadata": metadata})


def _unused_model(*_: Any) -> Any:
    raise RuntimeError("placeholder model of GuardedAnswerMiddleware was called")


def _check_template(template: str) -> None:
    if not isinstance(template, str):
        raise InvalidTypeError(f"abstain_message must be a string, got {type(template).__name__}")
    try:
        template.format(missing_mass=0.5, num_queries=10, coverage_target=0.9)
    except (KeyError, IndexError, ValueError) as exc:
        raise InvalidParameterError(
            "abstain_message",
            template,
            f"abstain_message {template!r} is not a valid template ({exc}); use only the "
            "fields {missing_mass}, {num_queries} and {coverage_target}",
        ) from exc
