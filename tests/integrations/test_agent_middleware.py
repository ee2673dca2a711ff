"""Tests of the agent middleware that guards final answers of ``create_agent`` agents."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("langchain.agents")

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from cpq_guard import Calibration
from cpq_guard.errors import Abstained, CalibrationMismatchError, InvalidParameterError
from integrations.agent_middleware import (
    METADATA_KEY,
    REVIEWED_KEY,
    GuardedAnswerMiddleware,
)
from integrations.escalation import PAYLOAD_KIND
from integrations.results import load_guard_result
from integrations.tools import guard_as_tool


@pytest.fixture
def make_middleware(calibration: Calibration) -> Callable[..., GuardedAnswerMiddleware]:
    def build(**kwargs: Any) -> GuardedAnswerMiddleware:
        kwargs.setdefault("seed", 5)
        return GuardedAnswerMiddleware(calibration, **kwargs)

    return build


def ask(question: str) -> dict[str, Any]:
    return {"messages": [HumanMessage(question)]}


def test_final_answer_is_guarded(
    prompts: SimpleNamespace, model: Any, make_middleware: Callable[..., Any]
) -> None:
    agent = create_agent(model, middleware=[make_middleware()])
    state = agent.invoke(ask(prompts.certain))

    final = state["messages"][-1]
    assert isinstance(final, AIMessage)
    assert final.text.endswith("The answer is 3.")
    result = load_guard_result(final.response_metadata[METADATA_KEY])
    assert not result.abstained
    assert result.best_answer == "3"
    # The agent's own model call is the guard's first sample.
    assert model.calls_started == result.num_queries == 5


def test_abstention_replaces_answer(
    prompts: SimpleNamespace, model: Any, make_middleware: Callable[..., Any]
) -> None:
    agent = create_agent(model, middleware=[make_middleware()])
    state = agent.invoke(ask(prompts.long_tailed))

    final = state["messages"][-1]
    assert final.text.startswith("I can't give a reliable answer to this.")
    assert "20 times" in final.text
    result = load_guard_result(final.response_metadata[METADATA_KEY])
    assert result.abstained
    assert result.clusters
    assert all(cluster.responses == [] for cluster in result.clusters)
    assert model.calls_started == 20


def test_custom_abstain_message(
    prompts: SimpleNamespace, model: Any, make_middleware: Callable[..., Any]
) -> None:
    middleware = make_middleware(abstain_message="Unsure after {num_queries} tries.")
    state = create_agent(model, middleware=[middleware]).invoke(ask(prompts.long_tailed))

    assert state["messages"][-1].text == "Unsure after 20 tries."


def test_abstention_raises(
    prompts: SimpleNamespace, model: Any, make_middleware: Callable[..., Any]
) -> None:
    agent = create_agent(model, middleware=[make_middleware(on_abstain="raise")])

    with pytest.raises(Abstained) as caught:
        agent.invoke(ask(prompts.long_tailed))
    assert caught.value.result.num_queries == 20


def test_no_answer_set_is_not_an_answer(
    prompts: SimpleNamespace, model: Any, make_middleware: Callable[..., Any]
) -> None:
    agent = create_agent(model, middleware=[make_middleware()])
    state = agent.invoke(ask(prompts.silent))

    final = state["messages"][-1]
    result = load_guard_result(final.response_metadata[METADATA_KEY])
    assert not result.abstained
    assert result.best_answer is None
    assert final.text.startswith("I can't give a reliable answer")


async def test_async_agent(
    prompts: SimpleNamespace, model: Any, make_middleware: Callable[..., Any]
) -> None:
    agent = create_agent(model, middleware=[make_middleware(max_concurrency=3)])
    answered = await agent.ainvoke(ask(prompts.certain))
    abstained = await agent.ainvoke(ask(prompts.long_tailed))

    assert answered["messages"][-1].text.endswith("The answer is 3.")
    result = load_guard_result(abstained["messages"][-1].response_metadata[METADATA_KEY])
    assert result.abstained
    # Concurrent queries may finish after the stop: all are counted as started.
    assert model.calls_started >= 5 + 20


def test_interrupt_and_resume(
    prompts: SimpleNamespace, model: Any, make_middleware: Callable[..., Any]
) -> None:
    agent = create_agent(
        model,
        middleware=[make_middleware(on_abstain="interrupt")],
        checkpointer=InMemorySaver(),
    )
    config = {"configurable": {"thread_id": "review"}}
    state = agent.invoke(ask(prompts.long_tailed), config)

    (pending,) = state["__interrupt__"]
    assert pending.value["kind"] == PAYLOAD_KIND
    assert pending.value["reason"] == "abstained"
    assert pending.value["question"] == prompts.long_tailed
    calls = model.calls_started

    final = agent.invoke(Command(resume="201"), config)

    assert model.calls_started == calls
    last = final["messages"][-1]
    assert last.text == "201"
    assert last.response_metadata[REVIEWED_KEY] is True
    assert load_guard_result(last.response_metadata[METADATA_KEY]).abstained
    assert len(final["messages"]) == 2


def test_interrupt_skips_answers(
    prompts: SimpleNamespace, model: Any, make_middleware: Callable[..., Any]
) -> None:
    agent = create_agent(
        model,
        middleware=[make_middleware(on_abstain="interrupt")],
        checkpointer=InMemorySaver(),
    )
    state = agent.invoke(ask(prompts.certain), {"configurable": {"thread_id": "answered"}})

    assert "__interrupt__" not in state
    assert state["messages"][-1].text.endswith("The answer is 3.")


def test_tool_calls_pass_through(
    prompts: SimpleNamespace,
    guard: Any,
    agent_model: Any,
    calibration: Calibration,
) -> None:
    # The scripted agent calls the guard tool, then answers "The answer is 3."
    # every time, so its final answer is one cluster and the guard answers
    # after min_queries samples. The tool-calling step is not resampled.
    middleware = GuardedAnswerMiddleware(calibration, seed=1)
    agent = create_agent(agent_model, tools=[guard_as_tool(guard)], middleware=[middleware])
    state = agent.invoke(ask(prompts.certain))

    final = state["messages"][-1]
    assert final.text == "The answer is 3."
    result = load_guard_result(final.response_metadata[METADATA_KEY])
    assert result.num_queries == 5
    assert agent_model.calls == 1 + 5
    tool_step = state["messages"][1]
    assert tool_step.tool_calls
    assert METADATA_KEY not in tool_step.response_metadata


def test_rejects_invalid_on_abstain(calibration: Calibration) -> None:
    with pytest.raises(InvalidParameterError, match="on_abstain"):
        GuardedAnswerMiddleware(calibration, on_abstain="ignore")  # type: ignore[arg-type]


def test_rejects_invalid_template(calibration: Calibration) -> None:
    with pytest.raises(InvalidParameterError, match="abstain_message"):
        GuardedAnswerMiddleware(calibration, abstain_message="Unsure ({reason})")


def test_rejects_mismatched_extractor(calibration: Calibration) -> None:
    with pytest.raises(CalibrationMismatchError, match="extractor"):
        GuardedAnswerMiddleware(calibration, extractor="text")


def test_loads_calibration_path(calibration: Calibration, tmp_path: Any) -> None:
    path = tmp_path / "calibration.json"
    calibration.save(path)

    assert GuardedAnswerMiddleware(path).calibration == calibration
