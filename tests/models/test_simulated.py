"""Tests for SimulatedChatModel: answers, determinism, failures, timing and paths."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter

import pytest
from langchain_core.caches import InMemoryCache
from langchain_core.globals import set_llm_cache
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage
from pydantic import ValidationError

from cpq_guard.errors import InvalidParameterError, UnknownPromptError
from cpq_guard.models import (
    DEFAULT_NO_ANSWER_TEMPLATE,
    AnswerDistribution,
    SimulatedChatModel,
    SimulatedTransientError,
    UnknownSimulatedPromptError,
)
from cpq_guard.models._messages import stable_hash
from cpq_guard.models._offline import STREAM_ANSWER, call_rng

PROMPT = "Q0001: A shop sells 7 boxes of 12 pencils. How many pencils does the shop sell?"
OTHER = "Q0002: A farmer picks 30 apples and gives 12 away. How many apples are left?"
DIST = AnswerDistribution(answers={"84": 0.6, "82": 0.25, "96": 0.1, "19": 0.05}, no_answer=0.1)

# Frequency checks allow 4.5 binomial standard deviations plus one; with fixed
# seeds they are deterministic, and a correct model fails one with
# probability below 1e-5.
SIGMAS = 4.5


def assert_binomial(count: int, n: int, p: float) -> None:
    tolerance = SIGMAS * math.sqrt(n * p * (1.0 - p)) + 1.0
    assert abs(count - n * p) <= tolerance, f"count {count} of {n}, expected p={p}"


def make_model(**kwargs: object) -> SimulatedChatModel:
    return SimulatedChatModel(distributions={PROMPT: DIST, OTHER: DIST}, **kwargs)


def answer_of(message: AIMessage) -> str | None:
    return message.response_metadata["simulated_answer"]


def answers(model: SimulatedChatModel, prompt: str, n: int) -> list[str | None]:
    return [answer_of(model.invoke(prompt)) for _ in range(n)]


def streamed_message(model: SimulatedChatModel, prompt: str) -> AIMessageChunk:
    chunks = list(model.stream(prompt))
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    return total


def successful_answers(model: SimulatedChatModel, prompt: str, n: int) -> list[str | None]:
    found: list[str | None] = []
    while len(found) < n:
        try:
            found.append(answer_of(model.invoke(prompt)))
        except SimulatedTransientError:
            pass
    return found


# --- responses ---


def test_response_uses_template() -> None:
    model = make_model(response_template="Result: {answer}!", seed=3)

    message = model.invoke(PROMPT)
    answer = answer_of(message)

    if answer is None:
        assert message.content == DEFAULT_NO_ANSWER_TEMPLATE
    else:
        assert message.content == f"Result: {answer}!"


def test_no_answer_response() -> None:
    dist = AnswerDistribution(answers={"84": 1.0}, no_answer=1.0)
    model = SimulatedChatModel(default=dist, no_answer_template="I am not sure.")

    message = model.invoke(PROMPT)

    assert message.content == "I am not sure."
    assert answer_of(message) is None


def test_default_templates_hold_only_answer_number() -> None:
    model = SimulatedChatModel(default=AnswerDistribution(answers={"1234": 1.0}))

    content = model.invoke(PROMPT).content

    assert content.endswith("The answer is 1234.")
    assert not any(char.isdigit() for char in content.replace("1234", ""))
    assert not any(char.isdigit() for char in DEFAULT_NO_ANSWER_TEMPLATE)


def test_answer_frequencies_match() -> None:
    model = make_model(seed=21)
    n = 1_500

    counts = Counter(answers(model, PROMPT, n))

    for answer in ["84", "82", "96", "19", None]:
        assert_binomial(counts[answer], n, DIST.probability(answer))


def test_usage_counts_words() -> None:
    model = make_model()
    messages = [SystemMessage("Answer with one number."), HumanMessage(PROMPT)]

    message = model.invoke(messages)

    usage = message.usage_metadata
    assert usage is not None
    assert usage["input_tokens"] == 4 + len(PROMPT.split())
    assert usage["output_tokens"] == len(str(message.content).split())
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_response_metadata() -> None:
    model = make_model()

    first = model.invoke(PROMPT)
    second = model.invoke(PROMPT)

    assert first.response_metadata["model_name"] == "cpq-simulated"
    assert first.response_metadata["answer_index"] == 0
    assert second.response_metadata["answer_index"] == 1


# --- prompt key ---


def test_prompt_key_is_last_human_message() -> None:
    model = SimulatedChatModel(
        distributions={
            "first": AnswerDistribution(answers={"1": 1.0}),
            "second": AnswerDistribution(answers={"2": 1.0}),
        }
    )
    messages = [
        SystemMessage("first"),
        HumanMessage("first"),
        AIMessage("The answer is 1."),
        HumanMessage("second"),
    ]

    assert answer_of(model.invoke(messages)) == "2"


def test_prompt_key_joins_text_blocks() -> None:
    model = SimulatedChatModel(distributions={"ab": AnswerDistribution(answers={"7": 1.0})})
    content = [
        {"type": "text", "text": "a"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "text", "text": "b"},
    ]

    assert answer_of(model.invoke([HumanMessage(content=content)])) == "7"


def test_prompt_key_needs_human_message() -> None:
    model = make_model()

    with pytest.raises(InvalidParameterError, match="no human message"):
        model.invoke([SystemMessage(PROMPT)])


def test_unknown_prompt_raises() -> None:
    model = make_model()

    with pytest.raises(UnknownSimulatedPromptError) as info:
        model.invoke("What is the capital of France?")

    assert isinstance(info.value, UnknownPromptError)
    assert isinstance(info.value, KeyError)
    assert info.value.prompt == "What is the capital of France?"
    assert "set default" in str(info.value)
    assert model.calls_started == 0


def test_default_covers_unknown_prompt() -> None:
    model = SimulatedChatModel(default=AnswerDistribution(answers={"3": 1.0}))

    assert answer_of(model.invoke("anything")) == "3"
    assert model.distribution_for("anything") == model.default


# --- determinism ---


def test_same_seed_same_answers() -> None:
    assert answers(make_model(seed=5), PROMPT, 50) == answers(make_model(seed=5), PROMPT, 50)


def test_other_seed_other_answers() -> None:
    assert answers(make_model(seed=5), PROMPT, 50) != answers(make_model(seed=6), PROMPT, 50)


def test_answer_is_pure_function() -> None:
    model = make_model(seed=8)

    observed = answers(model, PROMPT, 30)

    expected = [DIST.draw(call_rng(8, stable_hash(PROMPT), k, STREAM_ANSWER)) for k in range(30)]
    assert observed == expected


def test_prompts_have_separate_sequences() -> None:
    alone = answers(make_model(seed=2), PROMPT, 30)
    model = make_model(seed=2)

    interleaved = []
    for _ in range(30):
        model.invoke(OTHER)
        interleaved.append(answer_of(model.invoke(PROMPT)))

    assert interleaved == alone


def test_reset_restarts_sequence() -> None:
    model = make_model(seed=4)
    first = answers(model, PROMPT, 20)

    model.reset()

    assert answers(model, PROMPT, 20) == first
    assert model.calls_started == 20


def test_failures_keep_answer_sequence() -> None:
    clean = answers(make_model(seed=9), PROMPT, 200)
    model = make_model(seed=9, failure_rate=0.3)

    with_failures = successful_answers(model, PROMPT, 200)

    assert with_failures == clean
    assert model.calls_succeeded == 200
    assert model.calls_failed == model.calls_started - 200


def test_failure_rate_observed() -> None:
    model = make_model(seed=10, failure_rate=0.3)
    n = 500

    for _ in range(n):
        try:
            model.invoke(PROMPT)
        except SimulatedTransientError:
            pass

    assert model.calls_started == n
    assert_binomial(model.calls_failed, n, 0.3)


def test_failures_are_seeded() -> None:
    def pattern(seed: int) -> list[bool]:
        model = make_model(seed=seed, failure_rate=0.5)
        outcomes = []
        for _ in range(40):
            try:
                model.invoke(PROMPT)
                outcomes.append(True)
            except SimulatedTransientError:
                outcomes.append(False)
        return outcomes

    assert pattern(1) == pattern(1)
    assert pattern(1) != pattern(2)


# --- failures and hangs ---


def test_failure_is_connection_error() -> None:
    model = make_model(failure_rate=1.0)

    with pytest.raises(ConnectionError, match="simulated transient failure"):
        model.invoke(PROMPT)

    assert model.calls_failed == 1
    assert model.in_flight == 0


def test_failure_exception_configurable() -> None:
    model = make_model(failure_rate=1.0, failure_exception=TimeoutError)

    with pytest.raises(TimeoutError):
        model.invoke(PROMPT)


def test_failure_exception_must_make_exception() -> None:
    model = make_model(failure_rate=1.0, failure_exception=lambda message: message)

    with pytest.raises(TypeError, match="must return an exception"):
        model.invoke(PROMPT)


def test_hang_raises_timeout() -> None:
    model = make_model(hang_rate=1.0, hang_seconds=0.05)

    start = time.perf_counter()
    with pytest.raises(TimeoutError, match="simulated hang"):
        model.invoke(PROMPT)

    assert time.perf_counter() - start >= 0.05
    assert model.calls_failed == 1


async def test_hang_lets_caller_time_out() -> None:
    model = make_model(hang_rate=1.0, hang_seconds=30.0)

    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(model.ainvoke(PROMPT), timeout=0.05)

    assert model.calls_cancelled == 1
    assert model.calls_failed == 0
    assert model.in_flight == 0


def test_hangs_keep_answer_sequence() -> None:
    clean = answers(make_model(seed=12), PROMPT, 40)
    model = make_model(seed=12, hang_rate=0.3, hang_seconds=0.0)

    found = []
    while len(found) < 40:
        try:
            found.append(answer_of(model.invoke(PROMPT)))
        except TimeoutError:
            pass

    assert found == clean
    assert model.calls_failed > 0


# --- latency and concurrency ---


def test_latency_applied() -> None:
    model = make_model(latency=0.05)

    start = time.perf_counter()
    model.invoke(PROMPT)

    assert time.perf_counter() - start >= 0.05


async def test_async_latency_applied() -> None:
    model = make_model(latency=0.05)

    start = time.perf_counter()
    await model.ainvoke(PROMPT)

    assert time.perf_counter() - start >= 0.05


def test_latency_jitter_bounded() -> None:
    model = make_model(latency=0.01, latency_jitter=0.03)
    durations = []

    for _ in range(5):
        start = time.perf_counter()
        model.invoke(PROMPT)
        durations.append(time.perf_counter() - start)

    assert min(durations) >= 0.01
    assert max(durations) - min(durations) > 0.001


async def test_max_in_flight_under_gather() -> None:
    model = make_model(latency=0.05)

    await asyncio.gather(*(model.ainvoke(PROMPT) for _ in range(8)))

    assert model.max_in_flight == 8
    assert model.in_flight == 0
    assert model.calls_succeeded == 8


async def test_max_in_flight_respects_semaphore() -> None:
    model = make_model(latency=0.02)
    limit = asyncio.Semaphore(3)

    async def call() -> None:
        async with limit:
            await model.ainvoke(PROMPT)

    await asyncio.gather(*(call() for _ in range(12)))

    assert model.max_in_flight == 3
    assert model.calls_started == 12


async def test_max_in_flight_respects_abatch() -> None:
    model = make_model(latency=0.02)

    await model.abatch([PROMPT] * 12, config={"max_concurrency": 3})

    assert model.max_in_flight == 3


def test_max_in_flight_counts_threads() -> None:
    model = make_model(latency=0.05)

    model.batch([PROMPT] * 12, config={"max_concurrency": 4})

    assert 2 <= model.max_in_flight <= 4
    assert model.calls_succeeded == 12


async def test_concurrent_calls_same_answer_set() -> None:
    sequential = answers(make_model(seed=14), PROMPT, 20)
    model = make_model(seed=14, latency=0.01, latency_jitter=0.02)

    concurrent = await asyncio.gather(*(model.ainvoke(PROMPT) for _ in range(20)))

    assert Counter(answer_of(message) for message in concurrent) == Counter(sequential)


async def test_reset_keeps_calls_in_flight() -> None:
    model = make_model(latency=0.1)
    model.invoke(OTHER)
    pending = asyncio.create_task(model.ainvoke(PROMPT))
    await asyncio.sleep(0.02)

    model.reset()

    assert model.calls_started == 1
    assert model.calls_succeeded == 0
    assert model.in_flight == 1
    assert model.max_in_flight == 1

    await pending

    assert model.in_flight == 0
    assert model.calls_succeeded == 1
    assert model.calls_started == 1


# --- async and streaming paths ---


async def test_ainvoke_matches_invoke() -> None:
    expected = answers(make_model(seed=15), PROMPT, 20)
    model = make_model(seed=15)

    observed = [answer_of(await model.ainvoke(PROMPT)) for _ in range(20)]

    assert observed == expected


def test_stream_matches_invoke() -> None:
    reference = make_model(seed=16).invoke(PROMPT)
    model = make_model(seed=16)

    chunks = list(model.stream(PROMPT))

    assert len(chunks) > 1
    assert "".join(str(chunk.content) for chunk in chunks) == reference.content
    assert [chunk.usage_metadata is not None for chunk in chunks] == [False] * (len(chunks) - 1) + [
        True
    ]
    total = sum(chunks[1:], chunks[0])
    assert isinstance(total, AIMessageChunk)
    assert total.usage_metadata == reference.usage_metadata
    assert total.response_metadata["simulated_answer"] == answer_of(reference)


async def test_astream_matches_invoke() -> None:
    reference = make_model(seed=17).invoke(PROMPT)
    model = make_model(seed=17)

    chunks = [chunk async for chunk in model.astream(PROMPT)]

    assert len(chunks) > 1
    assert "".join(str(chunk.content) for chunk in chunks) == reference.content
    total = sum(chunks[1:], chunks[0])
    assert total.usage_metadata == reference.usage_metadata


def test_stream_failure_raises_before_chunks() -> None:
    model = make_model(failure_rate=1.0)

    received = []
    with pytest.raises(SimulatedTransientError):
        for chunk in model.stream(PROMPT):
            received.append(chunk)

    assert received == []
    assert model.calls_failed == 1


def test_stream_closed_early_counts_cancelled() -> None:
    model = make_model()

    stream = model.stream(PROMPT)
    next(stream)
    stream.close()

    assert model.calls_cancelled == 1
    assert model.in_flight == 0


def test_stream_and_invoke_share_sequence() -> None:
    expected = answers(make_model(seed=18), PROMPT, 4)
    model = make_model(seed=18)

    observed = [
        answer_of(model.invoke(PROMPT)),
        answer_of(streamed_message(model, PROMPT)),
        answer_of(model.invoke(PROMPT)),
    ]

    assert observed == expected[:3]


# --- configuration ---


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"failure_rate": 1.5}, "failure_rate"),
        ({"hang_rate": -0.1}, "hang_rate"),
        ({"failure_rate": 0.6, "hang_rate": 0.6}, "more than 1"),
        ({"hang_seconds": -1.0}, "hang_seconds"),
        ({"latency": -0.1}, "latency"),
        ({"latency_jitter": math.nan}, "latency_jitter"),
        ({"seed": -1}, "seed"),
        ({"response_template": "The answer."}, "placeholder"),
        ({"no_answer_template": "It is {answer}."}, "placeholder"),
        ({"failure_rat": 0.3}, "failure_rat"),
    ],
)
def test_invalid_settings_rejected(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        make_model(**kwargs)


def test_standard_parameters_ignored(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="cpq_guard"):
        model = make_model(temperature=0.7, max_tokens=10, stop=["x"], api_key="test", seed=1)

    assert answers(model, PROMPT, 10) == answers(make_model(seed=1), PROMPT, 10)
    assert "ignores the parameters" in caplog.text


def test_identifying_params() -> None:
    model = make_model(seed=7, failure_rate=0.2)

    params = model._identifying_params

    assert model._llm_type == "cpq-simulated"
    assert params["seed"] == 7
    assert params["failure_rate"] == 0.2
    assert params["prompts"] == 2


def test_ls_params() -> None:
    params = make_model()._get_ls_params()

    assert params["ls_provider"] == "cpq_guard"
    assert params["ls_model_name"] == "cpq-simulated"


def test_global_cache_not_used() -> None:
    model = make_model(seed=3)
    set_llm_cache(InMemoryCache())
    try:
        observed = answers(model, PROMPT, 10)
    finally:
        set_llm_cache(None)

    assert observed == answers(make_model(seed=3), PROMPT, 10)
    assert model.calls_started == 10


def test_deep_copy_has_own_counters() -> None:
    model = make_model()
    model.invoke(PROMPT)

    clone = model.model_copy(deep=True)
    clone.invoke(PROMPT)

    assert model.calls_started == 1
    assert clone.calls_started == 2
