"""Tests of the guard as a LangChain tool, alone and inside a tool-calling loop."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import StructuredTool

from cpq_guard import CPQGuard, GuardResult
from cpq_guard.errors import InvalidParameterError, InvalidTypeError
from cpq_guard.result import AnswerCluster
from integrations.results import load_guard_result
from integrations.tools import format_tool_output, guard_as_tool


def run_loop(model: Any, tool: StructuredTool, question: str) -> list[BaseMessage]:
    """Run a plain tool-calling loop: model, tools, model, until a reply has no tool calls."""
    bound = model.bind_tools([tool])
    messages: list[BaseMessage] = [HumanMessage(question)]
    for _ in range(4):
        reply = bound.invoke(messages)
        messages.append(reply)
        if not reply.tool_calls:
            return messages
        for call in reply.tool_calls:
            messages.append(tool.invoke(call))
    raise AssertionError("the loop did not end")


async def arun_loop(model: Any, tool: StructuredTool, question: str) -> list[BaseMessage]:
    bound = model.bind_tools([tool])
    messages: list[BaseMessage] = [HumanMessage(question)]
    for _ in range(4):
        reply = await bound.ainvoke(messages)
        messages.append(reply)
        if not reply.tool_calls:
            return messages
        for call in reply.tool_calls:
            messages.append(await tool.ainvoke(call))
    raise AssertionError("the loop did not end")


def test_tool_schema(guard: CPQGuard) -> None:
    tool = guard_as_tool(guard)

    assert isinstance(tool, StructuredTool)
    assert tool.name == "ask_guarded_model"
    assert "abstained" in tool.description
    assert list(tool.args) == ["question"]
    assert tool.func is not None
    assert tool.coroutine is not None


def test_tool_answers(prompts: SimpleNamespace, guard: CPQGuard) -> None:
    output = json.loads(guard_as_tool(guard).invoke({"question": prompts.certain}))

    assert output["abstained"] is False
    assert output["answers"] == [{"answer": "3", "probability": 0.995, "count": 5}]
    assert output["num_queries"] == 5
    assert 0.0 < output["missing_mass"] < 0.05
    assert output["coverage_target"] == 0.9
    assert "90%" in output["note"]


def test_tool_reports_abstention(prompts: SimpleNamespace, guard: CPQGuard) -> None:
    output = json.loads(guard_as_tool(guard).invoke({"question": prompts.long_tailed}))

    assert output["abstained"] is True
    assert output["answers"] == []
    assert output["num_queries"] == 20
    assert output["missing_mass"] > 0.5
    assert "Do not answer" in output["note"]


def test_tool_with_raising_guard(
    prompts: SimpleNamespace, make_guard: Callable[..., CPQGuard]
) -> None:
    tool = guard_as_tool(make_guard(raise_on_abstain=True))
    output = json.loads(tool.invoke({"question": prompts.long_tailed}))

    assert output["abstained"] is True


def test_tool_call_carries_artifact(prompts: SimpleNamespace, guard: CPQGuard) -> None:
    call = {
        "name": "ask_guarded_model",
        "args": {"question": prompts.certain},
        "id": "call_9",
        "type": "tool_call",
    }
    message = guard_as_tool(guard).invoke(call)

    assert isinstance(message, ToolMessage)
    assert message.tool_call_id == "call_9"
    result = load_guard_result(message.artifact)
    assert result.best_answer == "3"
    assert result.clusters[0].responses
    assert json.loads(str(message.content))["num_queries"] == result.num_queries


async def test_tool_async(prompts: SimpleNamespace, guard: CPQGuard) -> None:
    output = json.loads(await guard_as_tool(guard).ainvoke({"question": prompts.peaked}))

    assert output["abstained"] is False
    assert output["answers"][0]["answer"] == "84"


def test_tool_in_agent_loop(
    prompts: SimpleNamespace, guard: CPQGuard, agent_model: Any, model: Any
) -> None:
    tool = guard_as_tool(guard)
    answered = run_loop(agent_model, tool, prompts.certain)
    abstained = run_loop(agent_model, tool, prompts.long_tailed)

    assert [type(message).__name__ for message in answered] == [
        "HumanMessage",
        "AIMessage",
        "ToolMessage",
        "AIMessage",
    ]
    assert answered[-1].text == "The answer is 3."
    assert abstained[-1].text == "I am not sure."
    assert agent_model.calls == 4
    # 5 queries for the certain prompt and 20 for the long-tailed one.
    assert model.calls_started == 25


async def test_tool_in_async_agent_loop(
    prompts: SimpleNamespace, guard: CPQGuard, agent_model: Any
) -> None:
    tool = guard_as_tool(guard)
    messages = await arun_loop(agent_model, tool, prompts.peaked)

    assert messages[-1].text == "The answer is 84."
    assert load_guard_result(messages[2].artifact).num_queries == 5


def test_tool_in_create_agent(prompts: SimpleNamespace, guard: CPQGuard, agent_model: Any) -> None:
    agents = pytest.importorskip("langchain.agents")
    agent = agents.create_agent(agent_model, tools=[guard_as_tool(guard)])

    answered = agent.invoke({"messages": [HumanMessage(prompts.certain)]})
    abstained = agent.invoke({"messages": [HumanMessage(prompts.long_tailed)]})

    assert answered["messages"][-1].text == "The answer is 3."
    assert abstained["messages"][-1].text == "I am not sure."
    tool_message = answered["messages"][2]
    assert isinstance(tool_message, ToolMessage)
    assert load_guard_result(tool_message.artifact).best_answer == "3"


def test_tool_truncates_answers() -> None:
    clusters = [
        AnswerCluster(representative=str(n), probability=0.1, count=1, responses=[])
        for n in range(7)
    ]
    result = GuardResult(
        answers=clusters,
        clusters=clusters,
        abstained=False,
        missing_mass=0.3,
        num_queries=7,
        stop_reason="max_queries",
        alpha=0.2,
        threshold=1.5,
    )
    output = json.loads(format_tool_output(result, max_answers=3))

    assert [entry["answer"] for entry in output["answers"]] == ["0", "1", "2"]
    assert output["answers_omitted"] == 4
    assert output["coverage_target"] == 0.8


def test_tool_rejects_non_runnable() -> None:
    with pytest.raises(InvalidTypeError, match="Runnable"):
        guard_as_tool("guard")  # type: ignore[arg-type]


def test_tool_rejects_bad_max_answers(guard: CPQGuard) -> None:
    with pytest.raises(InvalidParameterError, match="max_answers"):
        guard_as_tool(guard, max_answers=0)


def test_tool_rejects_wrong_output() -> None:
    tool = guard_as_tool(RunnableLambda(lambda text: text))
    with pytest.raises(InvalidTypeError, match="GuardResult"):
        tool.invoke({"question": "anything"})


class RunTree(BaseCallbackHandler):
    """Record the parent of every tool and chain run by run name."""

    def __init__(self) -> None:
        self.tool_runs: list[UUID] = []
        self.parents: dict[str, UUID | None] = {}

    def on_tool_start(
        self, serialized: Any, input_str: str, *, run_id: UUID, **kwargs: Any
    ) -> None:
        self.tool_runs.append(run_id)

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self.parents[kwargs.get("name") or ""] = kwargs.get("parent_run_id")


@pytest.mark.parametrize("use_async", [False, True])
async def test_guard_runs_under_tool(
    prompts: SimpleNamespace, guard: CPQGuard, use_async: bool
) -> None:
    tree = RunTree()
    tool = guard_as_tool(guard)
    config = {"callbacks": [tree]}
    if use_async:
        await tool.ainvoke({"question": prompts.certain}, config)
    else:
        tool.invoke({"question": prompts.certain}, config)

    (tool_run,) = tree.tool_runs
    assert tree.parents["CPQGuard"] == tool_run
