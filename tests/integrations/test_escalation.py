"""Tests of the reviewer payload, the reading of the reviewer's reply and input texts."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.prompts import ChatPromptTemplate

from cpq_guard import GuardResult
from cpq_guard.errors import InvalidParameterError, InvalidTypeError
from cpq_guard.result import AnswerCluster
from integrations.escalation import (
    PAYLOAD_KIND,
    escalation_payload,
    input_text,
    read_human_answer,
)


def cluster(answer: str | None, probability: float) -> AnswerCluster:
    return AnswerCluster(representative=answer, probability=probability, count=1, responses=[])


def make_result(**overrides: Any) -> GuardResult:
    fields: dict[str, Any] = {
        "answers": [],
        "clusters": [cluster(str(n), 0.05) for n in range(12)],
        "abstained": True,
        "missing_mass": 0.6123,
        "num_queries": 20,
        "stop_reason": "max_queries",
        "alpha": 0.1,
        "threshold": 1.5,
    }
    fields.update(overrides)
    return GuardResult(**fields)


def test_payload_of_abstention() -> None:
    payload = escalation_payload(make_result(), "What is 6 x 7?", max_clusters=5)

    assert payload["kind"] == PAYLOAD_KIND
    assert payload["reason"] == "abstained"
    assert payload["question"] == "What is 6 x 7?"
    assert payload["missing_mass"] == 0.612
    assert payload["num_queries"] == 20
    assert payload["coverage_target"] == 0.9
    assert payload["answers"] == []
    assert [entry["answer"] for entry in payload["seen"]] == ["0", "1", "2", "3", "4"]
    assert payload["seen_omitted"] == 7


def test_payload_reasons() -> None:
    no_answer = make_result(
        abstained=False, answers=[cluster(None, 0.9)], clusters=[cluster(None, 0.9)]
    )
    several = make_result(
        abstained=False,
        answers=[cluster("1", 0.5), cluster("2", 0.4)],
        clusters=[cluster("1", 0.5), cluster("2", 0.4)],
    )

    assert escalation_payload(no_answer, "q")["reason"] == "no_answer"
    assert escalation_payload(several, "q")["reason"] == "review"
    assert "seen_omitted" not in escalation_payload(several, "q")
    assert [entry["answer"] for entry in escalation_payload(several, "q")["answers"]] == [
        "1",
        "2",
    ]


def test_payload_rejects_zero_clusters() -> None:
    with pytest.raises(InvalidParameterError, match="max_clusters"):
        escalation_payload(make_result(), "q", max_clusters=0)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [("42", "42"), ("  42\n", "42"), ({"answer": "seven"}, "seven"), ({"answer": " 7 "}, "7")],
)
def test_read_human_answer(reply: Any, expected: str) -> None:
    assert read_human_answer(reply) == expected


@pytest.mark.parametrize("reply", [42, None, {"text": "42"}, {"answer": 42}, ["42"]])
def test_read_human_answer_rejects_type(reply: Any) -> None:
    with pytest.raises(InvalidTypeError, match="Command"):
        read_human_answer(reply)


@pytest.mark.parametrize("reply", ["", "   ", {"answer": ""}])
def test_read_human_answer_rejects_empty(reply: Any) -> None:
    with pytest.raises(InvalidParameterError, match="empty"):
        read_human_answer(reply)


def test_input_text_forms() -> None:
    messages = [
        SystemMessage("Be brief."),
        HumanMessage("first question"),
        AIMessage("an answer"),
        HumanMessage("second question"),
        AIMessage("another answer"),
    ]
    prompt = ChatPromptTemplate.from_messages([("human", "Q: {q}")]).invoke({"q": "2 + 2?"})

    assert input_text("plain") == "plain"
    assert input_text(HumanMessage("one message")) == "one message"
    assert input_text(messages) == "second question"
    assert input_text([SystemMessage("only system")]) == "only system"
    assert input_text(prompt) == "Human: Q: 2 + 2?"
    assert input_text(17) == "17"
