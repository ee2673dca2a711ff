"""Tests of the LangGraph nodes: guarding, routing and human review, sync and async."""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any
from uuid import UUID

import pytest

pytest.importorskip("langgraph")

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.runnables import RunnableLambda
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command
from pydantic import BaseModel
from typing_extensions import TypedDict

from cpq_guard import CPQGuard, GuardResult
from cpq_guard.errors import InvalidParameterError, InvalidTypeError
from integrations.escalation import PAYLOAD_KIND
from integrations.langgraph import (
    answer_node,
    guard_node,
    human_review_node,
    read_guard_result,
    route_on_abstention,
)
from integrations.results import dump_guard_result


class State(TypedDict, total=False):
    question: str
    guard_result: dict[str, Any]
    answer: str
    route: str


def build(guard: Any, *, max_set_size: int | None = None) -> Any:
    """Compile guard -> (answer | escalate) with an in-memory checkpointer.

    Each branch also records its name in ``route``, so tests can see which ran.
    """
    answer = answer_node()
    review = human_review_node()

    def answered(state: State) -> dict[str, Any]:
        return {**answer(state), "route": "answer"}

    def escalated(state: State) -> dict[str, Any]:
        return {**review(state), "route": "escalate"}

    builder = StateGraph(State)
    builder.add_node("guard", guard_node(guard))
    builder.add_node("answer", answered)
    builder.add_node("escalate", escalated)
    builder.add_edge(START, "guard")
    builder.add_conditional_edges(
        "guard", route_on_abstention(max_set_size=max_set_size), ["answer", "escalate"]
    )
    builder.add_edge("answer", END)
    builder.add_edge("escalate", END)
    return builder.compile(checkpointer=InMemorySaver())


def thread(name: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": name}}


def test_sync_graph_answers(prompts: SimpleNamespace, guard: CPQGuard) -> None:
    graph = build(guard)
    state = graph.invoke({"question": prompts.certain}, thread("certain"))

    assert "__interrupt__" not in state
    assert state["route"] == "answer"
    assert state["answer"] == "3"
    assert isinstance(state["guard_result"], dict)
    result = read_guard_result(state)
    assert isinstance(result, GuardResult)
    assert not result.abstained
    assert result.num_queries >= 5


def test_checkpoint_keeps_result_as_dict(prompts: SimpleNamespace, guard: CPQGuard) -> None:
    graph = build(guard)
    config = thread("saved")
    state = graph.invoke({"question": prompts.peaked}, config)

    saved = graph.get_state(config).values["guard_result"]
    assert saved == state["guard_result"]
    assert read_guard_result(graph.get_state(config).values) == read_guard_result(state)


def test_both_routes_taken(prompts: SimpleNamespace, guard: CPQGuard) -> None:
    graph = build(guard)
    expected = {
        prompts.certain: "answer",
        prompts.peaked: "answer",
        prompts.long_tailed: "escalate",
        prompts.silent: "escalate",
    }

    routes = {}
    for number, question in enumerate(expected):
        state = graph.invoke({"question": question}, thread(f"route-{number}"))
        abstained = read_guard_result(graph.get_state(thread(f"route-{number}")).values).abstained
        routes[question] = "escalate" if "__interrupt__" in state else "answer"
        assert abstained == (question == prompts.long_tailed)

    assert routes == expected
    assert set(routes.values()) == {"answer", "escalate"}


def test_interrupt_and_resume(prompts: SimpleNamespace, guard: CPQGuard) -> None:
    graph = build(guard)
    config = thread("review")
    state = graph.invoke({"question": prompts.long_tailed}, config)

    (pending,) = state["__interrupt__"]
    payload = pending.value
    assert payload["kind"] == PAYLOAD_KIND
    assert payload["reason"] == "abstained"
    assert payload["question"] == prompts.long_tailed
    assert payload["answers"] == []
    assert len(payload["seen"]) == 10
    assert payload["seen_omitted"] > 0
    assert payload["missing_mass"] > 0.5
    assert payload["num_queries"] == 20
    assert "answer" not in state

    final = graph.invoke(Command(resume="293"), config)
    assert "__interrupt__" not in final
    assert final["answer"] == "293"
    assert final["route"] == "escalate"
    assert read_guard_result(final).abstained


def test_resume_reruns_no_guard(prompts: SimpleNamespace, guard: CPQGuard, model: Any) -> None:
    graph = build(guard)
    config = thread("no-requery")
    graph.invoke({"question": prompts.long_tailed}, config)
    calls = model.calls_started

    graph.invoke(Command(resume={"answer": " 250 "}), config)

    assert model.calls_started == calls
    assert graph.get_state(config).values["answer"] == "250"


def test_resume_rejects_invalid_reply(prompts: SimpleNamespace, guard: CPQGuard) -> None:
    graph = build(guard)
    config = thread("bad-reply")
    graph.invoke({"question": prompts.long_tailed}, config)

    with pytest.raises(InvalidTypeError, match="resume"):
        graph.invoke(Command(resume=42), config)


def test_no_answer_set_escalates(prompts: SimpleNamespace, guard: CPQGuard) -> None:
    graph = build(guard)
    state = graph.invoke({"question": prompts.silent}, thread("silent"))

    result = read_guard_result(graph.get_state(thread("silent")).values)
    assert not result.abstained
    assert result.best_answer is None
    assert state["__interrupt__"][0].value["reason"] == "no_answer"


def test_max_set_size_sends_sets_to_review(
    prompts: SimpleNamespace, make_guard: Callable[..., CPQGuard]
) -> None:
    # Under the fixtures' seeds all five samples of the peaked prompt answer
    # 84, so its set is a single answer and still routes to "answer".
    graph = build(make_guard(), max_set_size=1)
    state = graph.invoke({"question": prompts.peaked}, thread("single"))
    assert state["route"] == "answer"

    many = GuardResult(
        answers=[_cluster("1", 0.5), _cluster("2", 0.4)],
        clusters=[_cluster("1", 0.5), _cluster("2", 0.4)],
        abstained=False,
        missing_mass=0.1,
        num_queries=10,
        stop_reason="derivative",
        alpha=0.1,
        threshold=1.5,
    )
    stored = {"guard_result": dump_guard_result(many)}
    assert route_on_abstention(max_set_size=1)(stored) == "escalate"
    assert route_on_abstention(max_set_size=2)(stored) == "answer"
    assert route_on_abstention()(stored) == "answer"


def test_guard_raising_abstained_is_stored(
    prompts: SimpleNamespace, make_guard: Callable[..., CPQGuard]
) -> None:
    graph = build(make_guard(raise_on_abstain=True))
    state = graph.invoke({"question": prompts.long_tailed}, thread("raise"))

    assert state["__interrupt__"][0].value["reason"] == "abstained"


async def test_async_graph_answers(prompts: SimpleNamespace, guard: CPQGuard) -> None:
    graph = build(guard)
    state = await graph.ainvoke({"question": prompts.certain}, thread("async-certain"))

    assert state["route"] == "answer"
    assert state["answer"] == "3"
    assert not read_guard_result(state).abstained


async def test_async_interrupt_and_resume(prompts: SimpleNamespace, guard: CPQGuard) -> None:
    graph = build(guard)
    config = thread("async-review")
    state = await graph.ainvoke({"question": prompts.long_tailed}, config)

    assert state["__interrupt__"][0].value["reason"] == "abstained"
    final = await graph.ainvoke(Command(resume="111"), config)
    assert final["answer"] == "111"
    assert final["route"] == "escalate"


async def test_async_node_uses_ainvoke(prompts: SimpleNamespace, guard: CPQGuard) -> None:
    calls = []

    def sync_path(_: Any) -> GuardResult:
        calls.append("sync")
        return guard.invoke(prompts.certain)

    async def async_path(_: Any) -> GuardResult:
        calls.append("async")
        return await guard.ainvoke(prompts.certain)

    graph = build(RunnableLambda(sync_path, afunc=async_path))
    await graph.ainvoke({"question": prompts.certain}, thread("paths-async"))
    graph.invoke({"question": prompts.certain}, thread("paths-sync"))

    assert calls == ["async", "sync"]


def test_checkpoint_logs_no_type_warning(
    prompts: SimpleNamespace, guard: CPQGuard, caplog: pytest.LogCaptureFixture
) -> None:
    # Resuming reads the checkpoint back; a pydantic model in the state
    # would make langgraph log that the type is unregistered.
    graph = build(guard)
    config = thread("serde")
    with caplog.at_level(logging.WARNING):
        graph.invoke({"question": prompts.long_tailed}, config)
        graph.invoke(Command(resume="5"), config)

    assert not [record for record in caplog.records if "cpq_guard" in record.getMessage()]


def test_pydantic_state(prompts: SimpleNamespace, guard: CPQGuard) -> None:
    class ModelState(BaseModel):
        question: str
        guard_result: dict[str, Any] | None = None
        answer: str | None = None

    builder = StateGraph(ModelState)
    builder.add_node("guard", guard_node(guard))
    builder.add_node("answer", answer_node())
    builder.add_edge(START, "guard")
    builder.add_edge("guard", "answer")
    builder.add_edge("answer", END)
    state = builder.compile().invoke({"question": prompts.certain})

    assert state["answer"] == "3"


def test_callbacks_reach_model_calls(prompts: SimpleNamespace, guard: CPQGuard) -> None:
    class Collector(BaseCallbackHandler):
        def __init__(self) -> None:
            self.tags: list[list[str]] = []

        def on_chat_model_start(
            self, serialized: Any, messages: Any, *, run_id: UUID, **kwargs: Any
        ) -> None:
            self.tags.append(list(kwargs.get("tags") or []))

    collector = Collector()
    graph = build(guard)
    state = graph.invoke(
        {"question": prompts.certain}, {**thread("callbacks"), "callbacks": [collector]}
    )

    num_queries = read_guard_result(state).num_queries
    assert len(collector.tags) == num_queries
    assert all(any(tag.startswith("cpq:query:") for tag in tags) for tags in collector.tags)


def test_missing_question_field(prompts: SimpleNamespace, guard: CPQGuard) -> None:
    node = guard_node(guard)
    with pytest.raises(InvalidParameterError, match="'question'"):
        node.invoke({"prompt": prompts.certain})


def test_router_needs_stored_result(prompts: SimpleNamespace) -> None:
    with pytest.raises(InvalidParameterError, match="'guard_result'"):
        route_on_abstention()({"question": prompts.certain})


def test_answer_node_rejects_abstention(prompts: SimpleNamespace, guard: CPQGuard) -> None:
    stored = {"guard_result": dump_guard_result(guard.invoke(prompts.long_tailed))}
    with pytest.raises(InvalidParameterError, match="no answer"):
        answer_node()(stored)


def test_guard_node_rejects_non_runnable() -> None:
    with pytest.raises(InvalidTypeError, match="Runnable"):
        guard_node(lambda text: text)  # type: ignore[arg-type]


def test_guard_node_rejects_wrong_output(prompts: SimpleNamespace) -> None:
    node = guard_node(RunnableLambda(lambda text: "not a result"))
    with pytest.raises(InvalidTypeError, match="GuardResult"):
        node.invoke({"question": prompts.certain})


def test_custom_keys(prompts: SimpleNamespace, guard: CPQGuard) -> None:
    node = guard_node(guard, input_key="prompt", output_key="decision", keep_responses=False)
    update = node.invoke({"prompt": prompts.certain})

    assert set(update) == {"decision"}
    assert all(cluster["responses"] == [] for cluster in update["decision"]["clusters"])
    assert route_on_abstention(output_key="decision", answered="yes")(update) == "yes"


def _cluster(answer: str, probability: float) -> Any:
    from cpq_guard.result import AnswerCluster

    return AnswerCluster(representative=answer, probability=probability, count=1, responses=[])
