"""Tests for CPQGuard: the Runnable contract, composition, tracing, failures and coverage."""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import numpy as np
import pytest
from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackHandler
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableBranch, RunnableLambda

from cpq_guard.answers import get_equivalence
from cpq_guard.calibration import Calibration
from cpq_guard.errors import (
    Abstained,
    CalibrationMismatchError,
    ExtractionError,
    InvalidParameterError,
    InvalidTypeError,
    ModelQueryError,
)
from cpq_guard.extractors import CallableExtractor
from cpq_guard.guard import CPQGuard
from cpq_guard.models import DEFAULT_RESPONSE_TEMPLATE, SimulatedChatModel, SimulatedTask
from cpq_guard.models._messages import count_words
from cpq_guard.result import GuardResult, TokenUsage
from cpq_guard.retry import RetryPolicy
from cpq_guard.stats.policies import FixedPolicy, MissingMassPolicy

from .helpers import CERTAIN, LONG_TAILED, PEAKED, SPREAD, decision

MakeModel = Callable[..., SimulatedChatModel]
MakeGuard = Callable[..., CPQGuard]
MakeCalibration = Callable[..., Calibration]

PROMPTS = [PEAKED, SPREAD, LONG_TAILED]

# Latency jitter of up to 4 ms per call makes concurrent queries finish out of
# launch order, while keeping a guarded call under about 0.1 s.
JITTER = 0.004


@dataclass
class RunRecord:
    """One run start seen by `RunRecorder`."""

    run_id: UUID
    parent_run_id: UUID | None
    name: str | None
    tags: list[str]
    metadata: dict[str, Any]


@dataclass
class RunRecorder(BaseCallbackHandler):
    """Record chain and chat-model run starts with their parents, tags and metadata."""

    run_inline: bool = True
    chains: list[RunRecord] = field(default_factory=list)
    chat_models: list[RunRecord] = field(default_factory=list)

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        record = RunRecord(run_id, parent_run_id, kwargs.get("name"), tags or [], metadata or {})
        self.chains.append(record)

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        record = RunRecord(run_id, parent_run_id, kwargs.get("name"), tags or [], metadata or {})
        self.chat_models.append(record)

    def guard_run(self) -> RunRecord:
        """Return the single root chain run, which is the guard's when it is invoked alone."""
        roots = [run for run in self.chains if run.parent_run_id is None]
        assert len(roots) == 1, roots
        return roots[0]


class EndOrder(AsyncCallbackHandler):
    """Record the query tag of each chat-model run in the order the runs end."""

    def __init__(self) -> None:
        self.tags: dict[UUID, str] = {}
        self.ended: list[int] = []

    async def on_chat_model_start(
        self, serialized: Any, messages: Any, *, run_id: UUID, tags: Any = None, **kwargs: Any
    ) -> None:
        self.tags[run_id] = next(tag for tag in tags if tag.startswith("cpq:query:"))

    async def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self.ended.append(int(self.tags[run_id].split(":")[2]))


def query_indices(runs: list[RunRecord]) -> list[int]:
    """Return the query index in each run's ``cpq:query:<i>`` tag, attempts excluded."""
    indices = []
    for run in runs:
        for tag in run.tags:
            parts = tag.split(":")
            if parts[:2] == ["cpq", "query"] and len(parts) == 3:
                indices.append(int(parts[2]))
    return indices


def counting_model(respond: Callable[[int], Any]) -> tuple[RunnableLambda, list[int]]:
    """Wrap ``respond(call_number)`` as a stand-in model that counts its calls."""
    calls: list[int] = []

    def call(prompt: Any) -> Any:
        calls.append(len(calls))
        return respond(len(calls) - 1)

    return RunnableLambda(call), calls


# --- Runnable contract ---


async def run_path(guard: CPQGuard, path: str, inputs: list[str]) -> list[GuardResult]:
    if path == "invoke":
        return [guard.invoke(prompt) for prompt in inputs]
    if path == "ainvoke":
        return [await guard.ainvoke(prompt) for prompt in inputs]
    if path == "batch":
        return guard.batch(inputs)
    if path == "abatch":
        return await guard.abatch(inputs)
    if path == "stream":
        return [chunk for prompt in inputs for chunk in guard.stream(prompt)]
    assert path == "astream"
    return [chunk for prompt in inputs async for chunk in guard.astream(prompt)]


@pytest.mark.parametrize("path", ["invoke", "ainvoke", "batch", "abatch", "stream", "astream"])
async def test_paths_agree(path: str, make_model: MakeModel, make_guard: MakeGuard) -> None:
    # The reference is the sequential path without latency. Every other path
    # queries 3 at a time (async) or in threads (batch), with jittered latency,
    # and must reach the same decision from the same seed.
    reference = [make_guard(make_model()).invoke(prompt) for prompt in PROMPTS]
    guard = make_guard(make_model(latency_jitter=JITTER), max_concurrency=3)

    results = await run_path(guard, path, PROMPTS)

    assert len(results) == len(PROMPTS)
    for result, expected in zip(results, reference):
        assert isinstance(result, GuardResult)
        assert decision(result) == decision(expected)
        assert result.missing_mass == expected.missing_mass
    assert [result.abstained for result in results] == [False, False, True]


async def test_concurrent_matches_sequential(make_model: MakeModel, make_guard: MakeGuard) -> None:
    end_orders = []
    for seed in range(8):
        sequential = make_guard(make_model(), seed=seed).invoke(SPREAD)
        order = EndOrder()
        guard = make_guard(make_model(latency_jitter=JITTER), seed=seed, max_concurrency=4)

        result = await guard.ainvoke(SPREAD, {"callbacks": [order]})

        assert decision(result) == decision(sequential), f"guard seed {seed}"
        assert result.usage.output_tokens >= sequential.usage.output_tokens
        end_orders.append(order.ended)

    # Queries must have finished out of launch order, or the comparison above
    # tested nothing.
    assert any(ended != sorted(ended) for ended in end_orders)


def test_seed_fixes_decision(make_model: MakeModel, make_guard: MakeGuard) -> None:
    first = make_guard(make_model(), seed=1).invoke(SPREAD)
    again = make_guard(make_model(), seed=1).invoke(SPREAD)

    assert decision(first) == decision(again)
    assert first.missing_mass == again.missing_mass


def test_unseeded_guard_runs(make_model: MakeModel, make_guard: MakeGuard) -> None:
    result = make_guard(make_model(), seed=None).invoke(CERTAIN)

    assert result.best_answer == "3"


def test_output_type_is_result(make_guard: MakeGuard) -> None:
    guard = make_guard()

    assert guard.OutputType is GuardResult
    assert guard.get_name() == "CPQGuard"
    assert "tau=1.5000" in repr(guard)


# --- composition ---


def test_pipe_into_lambda(make_guard: MakeGuard) -> None:
    chain = make_guard() | RunnableLambda(lambda result: result.best_answer)

    assert chain.invoke(PEAKED) == "84"


def test_branch_routes_abstentions(make_guard: MakeGuard) -> None:
    escalate = RunnableLambda(lambda result: f"escalated after {result.num_queries}")
    answer = RunnableLambda(lambda result: result.best_answer)
    chain = make_guard() | RunnableBranch((lambda result: result.abstained, escalate), answer)

    outputs = chain.batch([PEAKED, LONG_TAILED])

    assert outputs[0] == "84"
    assert outputs[1].startswith("escalated after ")


async def test_fallback_on_abstained(make_guard: MakeGuard) -> None:
    guard = make_guard(raise_on_abstain=True)
    fallback = RunnableLambda(lambda prompt: "asked a human")
    chain = guard.with_fallbacks([fallback], exceptions_to_handle=(Abstained,))

    assert chain.invoke(LONG_TAILED) == "asked a human"
    assert await chain.ainvoke(LONG_TAILED) == "asked a human"
    assert chain.invoke(PEAKED).best_answer == "84"


def test_abstained_carries_result(make_guard: MakeGuard) -> None:
    guard = make_guard(raise_on_abstain=True)

    with pytest.raises(Abstained) as caught:
        guard.invoke(LONG_TAILED)

    assert caught.value.result.abstained
    assert caught.value.result.num_queries >= 5
    assert "abstained after" in str(caught.value)


def test_with_config_names_run(make_guard: MakeGuard) -> None:
    recorder = RunRecorder()
    guard = make_guard().with_config(run_name="checked-answer", tags=["billing"])

    result = guard.invoke(PEAKED, {"callbacks": [recorder]})

    root = recorder.guard_run()
    assert root.name == "checked-answer"
    assert "billing" in root.tags
    assert len(recorder.chat_models) == result.num_queries
    for run in recorder.chat_models:
        assert "billing" in run.tags


def test_with_retry_reruns_guard(make_guard: MakeGuard) -> None:
    # ValueError is not transient, so the first guarded call fails with
    # ModelQueryError; with_retry then runs the whole guard again.
    def respond(call: int) -> str:
        if call == 0:
            raise ValueError("bad request")
        return "The answer is 7."

    model, calls = counting_model(respond)
    guard = make_guard(model)
    retried = guard.with_retry(
        retry_if_exception_type=(ModelQueryError,),
        stop_after_attempt=2,
        wait_exponential_jitter=False,
    )

    result = retried.invoke("any prompt")

    assert result.best_answer == "7"
    assert len(calls) == 1 + result.num_queries


# --- tracing ---


def test_sync_child_runs(make_guard: MakeGuard) -> None:
    recorder = RunRecorder()
    config = {"callbacks": [recorder], "tags": ["caller"], "metadata": {"request": "r-17"}}

    result = make_guard().invoke(SPREAD, config)

    root = recorder.guard_run()
    assert root.name == "CPQGuard"
    assert len(recorder.chat_models) == result.num_queries
    assert sorted(query_indices(recorder.chat_models)) == list(range(result.num_queries))
    for run in recorder.chat_models:
        assert run.parent_run_id == root.run_id
        assert "caller" in run.tags
        assert run.metadata.get("request") == "r-17"


def test_retried_attempts_traced(make_model: MakeModel, make_guard: MakeGuard) -> None:
    recorder = RunRecorder()

    result = make_guard(make_model(failure_rate=0.3)).invoke(SPREAD, {"callbacks": [recorder]})

    root = recorder.guard_run()
    attempts = [run for run in recorder.chat_models if any(":attempt:" in t for t in run.tags)]
    assert result.retries > 0
    assert len(recorder.chat_models) == result.num_queries + result.retries
    assert len(attempts) == result.retries
    assert all(run.parent_run_id == root.run_id for run in recorder.chat_models)


async def test_async_child_runs(make_model: MakeModel, make_guard: MakeGuard) -> None:
    recorder = RunRecorder()
    guard = make_guard(make_model(latency_jitter=JITTER), max_concurrency=3)
    config = {"callbacks": [recorder], "tags": ["caller"], "metadata": {"request": "r-18"}}

    result = await guard.ainvoke(SPREAD, config)

    # A query cancelled before its task first ran never starts a model run.
    used = result.num_queries + result.discarded_queries
    assert used <= len(recorder.chat_models) <= used + result.cancelled_queries
    indices = query_indices(recorder.chat_models)
    assert len(set(indices)) == len(indices)
    assert set(range(result.num_queries)) <= set(indices)
    root = recorder.guard_run()
    for run in recorder.chat_models:
        assert run.parent_run_id == root.run_id
        assert "caller" in run.tags
        assert run.metadata.get("request") == "r-18"


async def test_stream_events_per_query(make_model: MakeModel, make_guard: MakeGuard) -> None:
    model = make_model(latency=0.002)
    guard = make_guard(model)
    events = []
    started_at_first_end = None

    async for event in guard.astream_events(SPREAD, version="v2"):
        events.append(event)
        if event["event"] == "on_chat_model_end" and started_at_first_end is None:
            started_at_first_end = model.calls_started

    kinds = [event["event"] for event in events]
    guard_end = max(i for i, e in enumerate(events) if e["event"] == "on_chain_end")
    result = events[guard_end]["data"]["output"]
    assert events[guard_end]["name"] == "CPQGuard"
    assert kinds.count("on_chat_model_start") == result.num_queries
    assert kinds.count("on_chat_model_end") == result.num_queries
    model_events = [i for i, kind in enumerate(kinds) if kind.startswith("on_chat_model")]
    assert max(model_events) < guard_end
    # Events arrive while the guard runs: the first query's end reaches the
    # caller before the later queries start.
    assert started_at_first_end is not None
    assert started_at_first_end < result.num_queries


# --- failures, retries and timeouts ---


@pytest.mark.parametrize("path", ["invoke", "ainvoke"])
async def test_transient_failures_retried(
    path: str, make_model: MakeModel, make_guard: MakeGuard
) -> None:
    # Failed calls use no answer of the simulated model, so with one query at
    # a time the retried run sees the fault-free answers in the same order.
    clean = make_guard(make_model()).invoke(SPREAD)
    guard = make_guard(make_model(failure_rate=0.3))

    result = guard.invoke(SPREAD) if path == "invoke" else await guard.ainvoke(SPREAD)

    assert result.retries > 0
    assert decision(result) == decision(clean)
    assert result.usage == clean.usage


@pytest.mark.parametrize("path", ["invoke", "ainvoke"])
async def test_persistent_failure_raises(
    path: str, make_model: MakeModel, make_guard: MakeGuard
) -> None:
    retry = RetryPolicy(max_attempts=3, initial_wait=0.0, max_wait=0.0, jitter=0.0)
    guard = make_guard(make_model(failure_rate=1.0), retry=retry, max_concurrency=2)

    with pytest.raises(ModelQueryError) as caught:
        await guard.ainvoke(SPREAD) if path == "ainvoke" else guard.invoke(SPREAD)

    assert caught.value.attempts == 3
    assert caught.value.samples_drawn == 0
    assert "SimulatedTransientError" in str(caught.value)


@pytest.mark.parametrize("path", ["invoke", "ainvoke"])
async def test_failure_counts_samples(path: str, make_guard: MakeGuard) -> None:
    # Four calls succeed, then every call fails with a transient error.
    def respond(call: int) -> str:
        if call >= 4:
            raise ConnectionError("connection reset")
        return "The answer is 7."

    model, calls = counting_model(respond)
    guard = make_guard(model, retry=RetryPolicy(max_attempts=2, initial_wait=0.0, jitter=0.0))

    with pytest.raises(ModelQueryError) as caught:
        await guard.ainvoke("prompt") if path == "ainvoke" else guard.invoke("prompt")

    assert caught.value.samples_drawn == 4
    assert caught.value.attempts == 2
    assert len(calls) == 4 + 2
    assert isinstance(caught.value.__cause__, ConnectionError)


async def test_failure_retrieves_all(
    caplog: pytest.LogCaptureFixture, make_guard: MakeGuard
) -> None:
    # Queries that failed out of order, after the one that ends the call, must
    # not leave asyncio "Task exception was never retrieved" errors behind.
    caplog.set_level(logging.ERROR, logger="asyncio")
    calls: list[int] = []

    async def respond(prompt: Any) -> str:
        # Query 0 fails last, after queries 1 to 3 have failed.
        call = len(calls)
        calls.append(call)
        await asyncio.sleep(0.05 if call == 0 else 0.0)
        raise ValueError(f"call {call} rejected")

    guard = make_guard(RunnableLambda(respond), max_concurrency=4)

    with pytest.raises(ModelQueryError, match="call 0 rejected"):
        await guard.ainvoke("prompt")
    gc.collect()

    assert calls == [0, 1, 2, 3]
    assert [record.getMessage() for record in caplog.records] == []


def test_value_error_not_retried(make_guard: MakeGuard) -> None:
    def respond(call: int) -> str:
        raise ValueError("invalid request body")

    model, calls = counting_model(respond)

    with pytest.raises(ModelQueryError) as caught:
        make_guard(model).invoke("prompt")

    assert caught.value.attempts == 1
    assert len(calls) == 1
    assert isinstance(caught.value.__cause__, ValueError)


async def test_ainvoke_hang_times_out(make_model: MakeModel, make_guard: MakeGuard) -> None:
    model = make_model(hang_rate=1.0, hang_seconds=30.0)
    guard = make_guard(model, timeout=0.05, retry=RetryPolicy(max_attempts=1))

    start = time.monotonic()
    with pytest.raises(ModelQueryError) as caught:
        await guard.ainvoke(SPREAD)

    assert time.monotonic() - start < 1.0
    assert caught.value.attempts == 1
    assert isinstance(caught.value.__cause__, TimeoutError)
    assert "timed out after 0.05 s" in str(caught.value)
    assert model.in_flight == 0


def test_invoke_hang_times_out(make_model: MakeModel, make_guard: MakeGuard) -> None:
    # The hung call keeps its worker thread until hang_seconds pass, so keep it short.
    model = make_model(hang_rate=1.0, hang_seconds=1.0)
    guard = make_guard(model, timeout=0.05, retry=RetryPolicy(max_attempts=1))

    start = time.monotonic()
    with pytest.raises(ModelQueryError) as caught:
        guard.invoke(SPREAD)

    assert time.monotonic() - start < 0.8
    assert caught.value.attempts == 1
    assert isinstance(caught.value.__cause__, TimeoutError)


@pytest.mark.parametrize("path", ["invoke", "ainvoke"])
async def test_hangs_retried(path: str, make_model: MakeModel, make_guard: MakeGuard) -> None:
    clean = make_guard(make_model()).invoke(SPREAD)
    guard = make_guard(make_model(hang_rate=0.2, hang_seconds=0.3), timeout=0.05)

    result = guard.invoke(SPREAD) if path == "invoke" else await guard.ainvoke(SPREAD)

    assert result.retries > 0
    assert decision(result) == decision(clean)


# --- cancellation and concurrency ---


async def test_cancel_stops_queries(make_model: MakeModel, make_guard: MakeGuard) -> None:
    # Calls take 0.2 s, so the second round of queries is still in flight
    # when the test cancels, even on a loaded machine.
    model = make_model(latency=0.2)
    guard = make_guard(model, max_concurrency=3)
    before = asyncio.all_tasks()

    task = asyncio.create_task(guard.ainvoke(SPREAD))
    while model.calls_started < 4:
        await asyncio.sleep(0.005)
    in_flight = model.in_flight
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert in_flight > 0
    assert asyncio.all_tasks() == before
    assert model.in_flight == 0
    # A launched query may still start its call before the cancellation reaches it.
    assert in_flight <= model.calls_cancelled <= 3
    assert model.calls_succeeded + model.calls_cancelled == model.calls_started


@pytest.mark.parametrize("max_concurrency", [1, 2, 4])
async def test_max_concurrency_held(
    max_concurrency: int, make_model: MakeModel, make_guard: MakeGuard
) -> None:
    for seed in range(6):
        model = make_model(latency_jitter=JITTER)
        guard = make_guard(model, seed=seed, max_concurrency=max_concurrency)

        result = await guard.ainvoke(SPREAD)

        assert model.max_in_flight <= max_concurrency
        # Launches stay within max_concurrency of the first unused query, so
        # at most max_concurrency - 1 queries run past the stopping point.
        unused = result.discarded_queries + result.cancelled_queries
        assert unused <= max_concurrency - 1, f"guard seed {seed}"
        assert model.calls_started == result.num_queries + unused
        assert model.in_flight == 0


async def test_unused_queries_bounded(
    make_calibration: MakeCalibration, make_guard: MakeGuard
) -> None:
    # Query 1 is slow, so queries 2, 3, ... finish before it. The guard must
    # not keep launching past max_concurrency queries beyond the first one it
    # still waits for, or all of those run after the stopping point unused.
    delays = {0: 0.03, 1: 0.12}
    calls: list[int] = []

    async def respond(prompt: Any) -> str:
        call = len(calls)
        calls.append(call)
        await asyncio.sleep(delays.get(call, 0.0))
        return "The answer is 7."

    # A missing-mass threshold of 1 stops at min_queries = 2, with room to launch more.
    policy = MissingMassPolicy(epsilon=1.0, min_queries=2, max_queries=20)
    guard = make_guard(RunnableLambda(respond), make_calibration(policy=policy), max_concurrency=3)

    result = await guard.ainvoke("prompt")

    assert result.num_queries == 2
    assert result.discarded_queries + result.cancelled_queries <= 2
    assert len(calls) <= 4


# --- token usage ---


def test_usage_sums_responses(make_guard: MakeGuard) -> None:
    result = make_guard().invoke(SPREAD)

    responses = [text for cluster in result.clusters for text in cluster.responses]
    output_tokens = sum(count_words(text) for text in responses)
    input_tokens = count_words(SPREAD) * result.num_queries
    assert result.usage.output_tokens == output_tokens
    assert result.usage.input_tokens == input_tokens
    assert result.usage.total_tokens == input_tokens + output_tokens
    assert result.usage.responses_without_usage == 0


async def test_usage_counts_discarded(
    make_calibration: MakeCalibration, make_guard: MakeGuard
) -> None:
    # Query 0 is slow, so queries 1 and 2 have finished when it does. The
    # policy stops at 2 samples, so query 2 is discarded but paid for.
    calls: list[int] = []

    async def respond(prompt: Any) -> AIMessage:
        call = len(calls)
        calls.append(call)
        await asyncio.sleep(0.05 if call == 0 else 0.0)
        usage = {"input_tokens": 3, "output_tokens": 5, "total_tokens": 8}
        return AIMessage("The answer is 7.", usage_metadata=usage)

    policy = MissingMassPolicy(epsilon=1.0, min_queries=2, max_queries=20)
    calibration = make_calibration(policy=policy)
    guard = make_guard(RunnableLambda(respond), calibration, max_concurrency=3)

    result = await guard.ainvoke("prompt")

    assert result.num_queries == 2
    assert result.discarded_queries == 1
    assert result.cancelled_queries == 0
    assert result.usage == TokenUsage(input_tokens=9, output_tokens=15, total_tokens=24)


async def test_usage_counts_completed(make_model: MakeModel, make_guard: MakeGuard) -> None:
    # Every SPREAD answer is one word, so every response has the same length.
    response_words = count_words(DEFAULT_RESPONSE_TEMPLATE.replace("{answer}", "18"))
    for seed in range(6):
        guard = make_guard(make_model(latency_jitter=JITTER), seed=seed, max_concurrency=4)

        result = await guard.ainvoke(SPREAD)

        completed = result.num_queries + result.discarded_queries
        assert result.usage.output_tokens == response_words * completed
        assert result.usage.input_tokens == count_words(SPREAD) * completed


def test_string_output_has_no_usage(make_guard: MakeGuard) -> None:
    model = RunnableLambda(lambda prompt: "The answer is 5.")

    result = make_guard(model).invoke("prompt")

    assert result.best_answer == "5"
    assert result.usage.responses_without_usage == result.num_queries
    assert result.usage.total_tokens == 0


# --- extraction and calibration settings ---


def test_raising_extractor_fails(make_calibration: MakeCalibration, make_guard: MakeGuard) -> None:
    def broken(text: str) -> str | None:
        raise KeyError("missing field")

    extractor = CallableExtractor(broken, name="broken")
    guard = make_guard(calibration=make_calibration(extractor="broken"), extractor=extractor)

    with pytest.raises(ExtractionError, match=r"'broken' raised KeyError.*sample 1"):
        guard.invoke(PEAKED)


async def test_raising_extractor_fails_async(
    make_calibration: MakeCalibration, make_model: MakeModel, make_guard: MakeGuard
) -> None:
    def broken(text: str) -> str | None:
        raise KeyError("missing field")

    model = make_model(latency_jitter=JITTER)
    extractor = CallableExtractor(broken, name="broken")
    calibration = make_calibration(extractor="broken")
    guard = make_guard(model, calibration, extractor=extractor, max_concurrency=3)

    with pytest.raises(ExtractionError):
        await guard.ainvoke(PEAKED)

    assert model.in_flight == 0


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("extractor", "text"),
        ("equivalence", "exact"),
        ("policy", FixedPolicy(queries=10)),
        ("policy", MissingMassPolicy(epsilon=0.1)),
    ],
)
def test_mismatch_names_setting(setting: str, value: Any, make_guard: MakeGuard) -> None:
    with pytest.raises(CalibrationMismatchError, match=setting) as caught:
        make_guard(**{setting: value})

    assert list(caught.value.differences) == [setting]


def test_matching_settings_accepted(
    make_calibration: MakeCalibration, make_guard: MakeGuard
) -> None:
    calibration = make_calibration()

    guard = make_guard(
        calibration=calibration,
        extractor="final-answer",
        equivalence=get_equivalence("numeric"),
        policy=calibration.policy,
    )

    assert guard.extractor.name == "final-answer"


def test_loads_saved_calibration(
    tmp_path: Path, make_calibration: MakeCalibration, make_model: MakeModel, make_guard: MakeGuard
) -> None:
    calibration = make_calibration()
    path = tmp_path / "calibration.json"
    calibration.save(path)

    from_path = make_guard(make_model(), path).invoke(SPREAD)
    from_text = make_guard(make_model(), str(path)).invoke(SPREAD)
    in_memory = make_guard(make_model(), calibration).invoke(SPREAD)

    assert decision(from_path) == decision(in_memory)
    assert decision(from_text) == decision(in_memory)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"model": "gpt"}, InvalidTypeError),
        ({"calibration": {"tau": 1.0}}, InvalidTypeError),
        ({"max_concurrency": 0}, InvalidParameterError),
        ({"timeout": 0}, InvalidParameterError),
        ({"timeout": -1.5}, InvalidParameterError),
        ({"retry": {"max_attempts": 2}}, InvalidTypeError),
        ({"seed": -1}, InvalidParameterError),
    ],
)
def test_invalid_arguments(kwargs: dict[str, Any], error: type, make_guard: MakeGuard) -> None:
    with pytest.raises(error):
        make_guard(**kwargs)


# --- logging ---


async def test_info_logs_omit_prompt(
    caplog: pytest.LogCaptureFixture, make_model: MakeModel, make_guard: MakeGuard
) -> None:
    caplog.set_level(logging.INFO)
    guard = make_guard(make_model(failure_rate=0.3), max_concurrency=2)

    guard.invoke(SPREAD)
    await guard.ainvoke(PEAKED)

    messages = [record.getMessage() for record in caplog.records]
    assert any("guard stopped after" in message for message in messages)
    assert any("retrying" in message for message in messages)
    for message in messages:
        assert "apples" not in message
        assert "pencils" not in message
        assert "step by step" not in message


# --- coverage on a simulated task ---


@pytest.mark.slow
async def test_coverage_on_held_out(
    simulated_task: SimulatedTask, task_calibration: Calibration
) -> None:
    # About 6000 model calls; abatch already runs the 300 prompts concurrently,
    # and one query at a time per prompt avoids paying for discarded queries.
    prompts = simulated_task.prompts[300:]
    references = simulated_task.references[300:]
    guard = CPQGuard(simulated_task.model(seed=99), task_calibration, seed=7)
    equivalence = get_equivalence("numeric")

    results = await guard.abatch(prompts)

    covered = [
        result.abstained
        or any(
            cluster.representative is not None
            and equivalence.equivalent(cluster.representative, reference)
            for cluster in result.answers
        )
        for result, reference in zip(results, references)
    ]
    coverage = float(np.mean(covered))
    queries = np.array([result.num_queries for result in results])
    abstention_rate = float(np.mean([result.abstained for result in results]))

    # Coverage is at least 1 - alpha = 0.9 in expectation. Given tau, the
    # coverage of one test prompt is Bernoulli, so the mean over n_test = 300
    # has variance about alpha (1 - alpha) / n_test; tau itself, set by
    # n_cal = 150 prompts, moves the conditional coverage with variance about
    # alpha (1 - alpha) / n_cal (a Beta law). Three standard deviations of
    # the sum, about 0.09, leave a valid guard a failure chance near 0.1%.
    alpha = task_calibration.alpha
    n_cal = task_calibration.num_calibration
    tolerance = 3.0 * math.sqrt(alpha * (1.0 - alpha) * (1.0 / len(prompts) + 1.0 / n_cal))
    assert coverage >= 1.0 - alpha - tolerance, f"coverage {coverage:.3f}"
    # Abstaining on everything would cover trivially.
    assert abstention_rate < 0.5, f"abstention rate {abstention_rate:.3f}"

    # The policy was tuned to 20 queries on average over 150 tuning prompts.
    # Both that mean and the held-out mean vary with the spread of the
    # stopping times, so allow three standard deviations of their difference.
    n_tuning = task_calibration.num_tuning
    spread = float(queries.std()) * math.sqrt(1.0 / len(prompts) + 1.0 / n_tuning)
    assert abs(float(queries.mean()) - 20.0) <= 3.0 * spread, f"mean queries {queries.mean()}"


@pytest.mark.parametrize("bad_input", [42, None, 3.5, b"bytes"])
async def test_invalid_input_rejected(bad_input: Any, make_guard: MakeGuard) -> None:
    guard = make_guard()

    with pytest.raises(InvalidTypeError, match="guard input must be a string"):
        guard.invoke(bad_input)
    with pytest.raises(InvalidTypeError, match=type(bad_input).__name__):
        await guard.ainvoke(bad_input)

    assert guard.model.calls_started == 0
