"""What a human reviewer sees when the guard escalates, and how the reviewer's reply is read.

The LangGraph review node and the agent middleware both pass
`escalation_payload` to LangGraph's ``interrupt``, so a client sees the same
JSON for either. The client resumes the graph with
``Command(resume=<answer text>)`` or ``Command(resume={"answer": <answer text>})``,
and `read_human_answer` checks that reply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.prompt_values import PromptValue

from cpq_guard._validation import check_int
from cpq_guard.errors import InvalidParameterError, InvalidTypeError
from cpq_guard.result import GuardResult
from integrations.results import cluster_summary, is_answered

__all__ = ["EscalationReason", "escalation_payload", "input_text", "read_human_answer"]

EscalationReason = Literal["abstained", "no_answer", "review"]
"""Why a question reached a reviewer.

``"abstained"``: the guard abstained. ``"no_answer"``: the set contains only
the cluster of responses without an extractable answer. ``"review"``: the
guard answered, and the graph sent the set to a reviewer anyway (for example
because it holds several answers).
"""

PAYLOAD_KIND = "cpq_guard_escalation"
"""Value of the payload's ``kind`` field, so a client can tell these interrupts from others."""


def escalation_payload(
    result: GuardResult, question: Any, *, max_clusters: int = 10
) -> dict[str, Any]:
    """Build the JSON payload that shows a reviewer the question and the model's sampled answers.

    Args:
        result: The guard's result for the question.
        question: The guarded input: a string, a message, a list of messages
            or a prompt value; see `input_text`.
        max_clusters: Most seen clusters listed; ``seen_omitted`` counts the rest.

    Returns:
        A dict with ``kind`` (`PAYLOAD_KIND`), ``reason`` (an `EscalationReason`),
        ``question``, ``missing_mass`` (estimated probability of an answer not
        seen yet), ``num_queries``, ``coverage_target``, ``answers`` (the
        calibrated set, empty when abstained) and ``seen`` (every cluster of
        samples, most probable first, each with answer, estimated probability
        and sample count).
    """
    max_clusters = check_int(max_clusters, "max_clusters", minimum=1)

    reason: EscalationReason
    if result.abstained:
        reason = "abstained"
    elif not is_answered(result):
        reason = "no_answer"
    else:
        reason = "review"

    payload: dict[str, Any] = {
        "kind": PAYLOAD_KIND,
        "reason": reason,
        "question": input_text(question),
        "missing_mass": round(result.missing_mass, 3),
        "num_queries": result.num_queries,
        "coverage_target": round(result.coverage_target, 3),
        "answers": [cluster_summary(cluster) for cluster in result.answers],
        "seen": [cluster_summary(cluster) for cluster in result.clusters[:max_clusters]],
    }
    omitted = len(result.clusters) - max_clusters
    if omitted > 0:
        payload["seen_omitted"] = omitted
    return payload


def read_human_answer(reply: Any) -> str:
    """Read the answer from a reviewer's resume value.

    Args:
        reply: The answer text, or a mapping with the answer text under ``"answer"``.

    Returns:
        The answer text, stripped of surrounding white space.

    Raises:
        InvalidTypeError: If ``reply`` is neither a string nor a mapping with a
            string ``"answer"``.
        InvalidParameterError: If the answer is empty.
    """
    answer = reply.get("answer") if isinstance(reply, Mapping) else reply
    if not isinstance(answer, str):
        raise InvalidTypeError(
            f"the reviewer's reply must be the answer text or {{'answer': <text>}}, got "
            f"{type(reply).__name__} {reply!r}; resume with Command(resume='<answer>')"
        )

    text = answer.strip()
    if not text:
        raise InvalidParameterError(
            "reply", reply, "the reviewer's answer is empty; resume with a non-empty answer"
        )
    return text


def input_text(value: Any) -> str:
    """Return the text of a guarded input, for display.

    A string is returned as is, a prompt value as its string form, a message
    as its text, and a list of messages as the text of its last human message
    (or of its last message when none is human). Anything else is shown with
    ``str``.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, PromptValue):
        return value.to_string()
    if isinstance(value, BaseMessage):
        return str(value.text)

    if isinstance(value, Sequence) and value and all(isinstance(m, BaseMessage) for m in value):
        human = [message for message in value if isinstance(message, HumanMessage)]
        return str((human or list(value))[-1].text)
    return str(value)
