"""A chat model whose answers follow a configured distribution for each prompt.

`SimulatedChatModel` is the model to run the guard, its tests and its
benchmarks without a hosted LLM. Each prompt has an `AnswerDistribution`, and
each successful call writes one answer drawn from it into a response template.
Transient failures, hangs and latency can be injected to exercise retries,
timeouts and concurrency limits.

Determinism: the answer of the k-th successful call for a prompt is a pure
function of ``(seed, prompt, k)``, and whether the n-th call fails is a pure
function of ``(seed, prompt, n)`` drawn from a separate random stream. So
injecting failures at any rate leaves the sequence of successful answers
unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.messages import BaseMessage
from pydantic import Field, field_validator, model_validator

from cpq_guard._validation import check_non_negative
from cpq_guard.errors import InvalidParameterError, InvalidTypeError, UnknownPromptError
from cpq_guard.models._messages import word_count_usage
from cpq_guard.models._offline import (
    STREAM_ANSWER,
    STREAM_FAILURE,
    CallKey,
    CallPlan,
    OfflineChatModel,
    call_rng,
)
from cpq_guard.models.distributions import REGIMES, AnswerDistribution, wrong_answers
from cpq_guard.models.tasks import SimulatedTask, make_simulated_task

__all__ = [
    "DEFAULT_NO_ANSWER_TEMPLATE",
    "DEFAULT_RESPONSE_TEMPLATE",
    "REGIMES",
    "AnswerDistribution",
    "SimulatedChatModel",
    "SimulatedTask",
    "SimulatedTransientError",
    "UnknownSimulatedPromptError",
    "make_simulated_task",
    "wrong_answers",
]

DEFAULT_RESPONSE_TEMPLATE = (
    "Let me think step by step. I work through the quantities in the question "
    "and combine them. The answer is {answer}."
)
"""Response of a call with an answer. ``{answer}`` is replaced by the drawn answer."""

DEFAULT_NO_ANSWER_TEMPLATE = (
    "Let me think step by step. The question does not give me enough to settle "
    "on a single result, so I cannot give a final answer."
)
"""Response of a call without an answer. It contains no digits, so no number can be extracted."""


class SimulatedTransientError(ConnectionError):
    """An injected transient failure of a simulated call.

    It derives from `ConnectionError` so that retry policies which retry
    connection errors treat it as transient, as they would a dropped
    connection to a hosted model.
    """


class UnknownSimulatedPromptError(UnknownPromptError):
    """A simulated model without a default was called with a prompt it has no distribution for."""

    def __init__(self, prompt: str, known_prompts: int) -> None:
        super().__init__(
            prompt,
            known_prompts,
            source="the answer distributions of this simulated model",
            fix="add the prompt to distributions, or set default for unlisted prompts",
        )


class SimulatedChatModel(OfflineChatModel):
    """Chat model that answers each prompt with a seeded draw from its answer distribution.

    The prompt key is the text of the last human message. A call whose prompt
    is neither in ``distributions`` nor covered by ``default`` raises
    `UnknownSimulatedPromptError` (an `UnknownPromptError`) and is not counted.

    Each call then ends in one of three ways, decided from the failure stream
    of ``(seed, prompt, call number)``:

    - with probability ``failure_rate`` it waits its latency and raises
      ``failure_exception(message)``;
    - with probability ``hang_rate`` it waits its latency plus
      ``hang_seconds`` and raises `TimeoutError`, like a request that never
      gets an answer;
    - otherwise it reserves the prompt's next answer index k, waits its
      latency and returns ``response_template`` filled with the answer drawn
      from the stream of ``(seed, prompt, k)``, or ``no_answer_template``.

    Failed and hung calls do not use an answer index. Usage metadata counts
    words: input tokens are the words of all input messages and output tokens
    the words of the response.

    Example:
        >>> model = SimulatedChatModel(
        ...     distributions={"Q: 2 + 2?": AnswerDistribution(answers={"4": 0.9, "5": 0.1})}
        ... )
        >>> model.invoke("Q: 2 + 2?").content
        'Let me think step by step. ... The answer is 4.'  # doctest: +SKIP
    """

    model_name: str = "cpq-simulated"

    distributions: dict[str, AnswerDistribution] = Field(default_factory=dict)
    """Answer distribution of each prompt, keyed by prompt text."""

    default: AnswerDistribution | None = None
    """Distribution for prompts missing from ``distributions``; `None` rejects them."""

    failure_rate: float = 0.0
    """Probability that a call raises ``failure_exception`` instead of answering."""

    failure_exception: Callable[[str], BaseException] = SimulatedTransientError
    """Exception class or factory, called with a message, for injected failures."""

    hang_rate: float = 0.0
    """Probability that a call waits ``hang_seconds`` more and raises `TimeoutError`."""

    hang_seconds: float = 60.0
    """Extra seconds a hanging call waits before it raises."""

    response_template: str = DEFAULT_RESPONSE_TEMPLATE
    """Response text of a call with an answer; must contain ``{answer}``."""

    no_answer_template: str = DEFAULT_NO_ANSWER_TEMPLATE
    """Response text of a call without an answer; must not contain ``{answer}``."""

    @field_validator("failure_rate", "hang_rate")
    @classmethod
    def _check_rate(cls, value: float, info: Any) -> float:
        if not 0.0 <= value <= 1.0:
            raise InvalidParameterError(
                info.field_name,
                value,
                f"{info.field_name}={value!r} is invalid: it is a probability and must lie "
                "in [0, 1]",
            )
        return value

    @field_validator("hang_seconds")
    @classmethod
    def _check_hang_seconds(cls, value: float) -> float:
        return check_non_negative(value, "hang_seconds")

    @field_validator("response_template")
    @classmethod
    def _check_response_template(cls, value: str) -> str:
        if "{answer}" not in value:
            raise InvalidParameterError(
                "response_template",
                value,
                f"response_template {value!r} has no '{{answer}}' placeholder; add one "
                "where the answer goes",
            )
        return value

    @field_validator("no_answer_template")
    @classmethod
    def _check_no_answer_template(cls, value: str) -> str:
        if "{answer}" in value:
            raise InvalidParameterError(
                "no_answer_template",
                value,
                f"no_answer_template {value!r} contains an '{{answer}}' placeholder, but "
                "no-answer responses have no answer to fill in; remove it",
            )
        return value

    @model_validator(mode="after")
    def _check_rates_sum(self) -> SimulatedChatModel:
        if self.failure_rate + self.hang_rate > 1.0:
            raise InvalidParameterError(
                "hang_rate",
                self.hang_rate,
                f"failure_rate + hang_rate = {self.failure_rate + self.hang_rate!r} is more "
                "than 1; lower one of them",
            )
        return self

    @property
    def _llm_type(self) -> str:
        return "cpq-simulated"

    def _extra_identifying_params(self) -> dict[str, Any]:
        return {
            "prompts": len(self.distributions),
            "has_default": self.default is not None,
            "failure_rate": self.failure_rate,
            "hang_rate": self.hang_rate,
        }

    def distribution_for(self, prompt: str) -> AnswerDistribution:
        """Return the answer distribution that calls with ``prompt`` draw from.

        Raises:
            UnknownSimulatedPromptError: ``prompt`` is not configured and there is no default.
        """
        distribution = self.distributions.get(prompt, self.default)
        if distribution is None:
            raise UnknownSimulatedPromptError(prompt, len(self.distributions))
        return distribution

    def _plan_call(self, key: CallKey, messages: list[BaseMessage]) -> CallPlan:
        distribution = self.distribution_for(key.prompt)

        if self.failure_rate > 0.0 or self.hang_rate > 0.0:
            failure_rng = call_rng(self.seed, key.prompt_hash, key.call_number, STREAM_FAILURE)
            u = float(failure_rng.random())
            if u < self.failure_rate:
                return CallPlan(error=self._injected_failure(key))
            if u < self.failure_rate + self.hang_rate:
                error = TimeoutError(
                    f"simulated hang: call {key.call_number} for this prompt got no answer "
                    f"within {self.hang_seconds} s"
                )
                return CallPlan(error=error, extra_delay=self.hang_seconds)

        answer_rng = call_rng(self.seed, key.prompt_hash, key.answer_index, STREAM_ANSWER)
        answer = distribution.draw(answer_rng)
        if answer is None:
            text = self.no_answer_template
        else:
            text = self.response_template.replace("{answer}", answer)

        return CallPlan(
            text=text,
            usage=word_count_usage(messages, text),
            response_metadata={"answer_index": key.answer_index, "simulated_answer": answer},
        )

    def _injected_failure(self, key: CallKey) -> BaseException:
        message = (
            f"simulated transient failure of call {key.call_number} for this prompt "
            f"(failure_rate={self.failure_rate})"
        )
        error = self.failure_exception(message)
        if not isinstance(error, BaseException):
            raise InvalidTypeError(
                f"failure_exception must return an exception, but it returned "
                f"{type(error).__name__} {error!r}; pass an exception class such as TimeoutError"
            )
        return error
