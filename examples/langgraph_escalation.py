"""Escalate to a human when the guard abstains: a LangGraph graph on the simulated model.

The graph guards each question with CPQ and branches on the result::

    guard ──(route_on_abstention)──> answer ──> END
                                 └─> escalate ──> END

``answer`` writes the answer when the calibrated set is a single answer.
Otherwise, and whenever the guard abstains, ``escalate`` stops the graph with
LangGraph's ``interrupt`` and shows what the model said; the caller resumes
it with ``Command(resume=<answer>)``. Here a
lookup table of reference answers stands in for the human reviewer, so the
example runs offline in a few seconds.

Run it with::

    python examples/langgraph_escalation.py

It needs the ``langgraph`` extra: ``pip install "cpq-guard[langgraph]"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command
from typing_extensions import TypedDict

import cpq_guard
from cpq_guard import CPQGuard, GuardResult, make_simulated_task
from integrations.langgraph import (
    answer_node,
    guard_node,
    human_review_node,
    read_guard_result,
    route_on_abstention,
)

NUM_CALIBRATION = 60
"""Labelled prompts for calibration. Half tune the stopping policy and half set ``tau``."""

NUM_QUESTIONS = 10
"""Held-out questions the graph answers or escalates."""

SEED = 10
"""Seed of the task, the calibration and the guard. With it, both branches occur."""


class QuestionState(TypedDict, total=False):
    """State of one run of the graph."""

    question: str
    guard_result: dict[str, Any]
    """The `GuardResult` as JSON data, which checkpointers store unchanged."""
    answer: str


@dataclass(frozen=True)
class Outcome:
    """How the graph handled one question.

    Attributes:
        question: The question.
        reference: Its reference answer.
        answered_by: ``"model"`` when the guard answered, ``"human"`` when it escalated.
        answer: The final answer in the graph state.
        result: The guard's result.
        escalation: The interrupt payload shown to the reviewer, when escalated.
    """

    question: str
    reference: str
    answered_by: Literal["model", "human"]
    answer: str
    result: GuardResult
    escalation: dict[str, Any] | None


def build_graph(guard: CPQGuard) -> Any:
    """Compile the guard, answer and escalate nodes into a graph with an in-memory checkpointer.

    The checkpointer keeps an interrupted run's state until it is resumed.
    """
    builder = StateGraph(QuestionState)
    builder.add_node("guard", guard_node(guard))
    builder.add_node("answer", answer_node())
    builder.add_node("escalate", human_review_node())

    builder.add_edge(START, "guard")
    # A set of several answers goes to the reviewer too.
    router = route_on_abstention(max_set_size=1)
    builder.add_conditional_edges("guard", router, ["answer", "escalate"])
    builder.add_edge("answer", END)
    builder.add_edge("escalate", END)
    return builder.compile(checkpointer=InMemorySaver())


def main() -> list[Outcome]:
    """Calibrate on simulated prompts, then answer or escalate held-out questions."""
    task = make_simulated_task(NUM_CALIBRATION + NUM_QUESTIONS, seed=SEED)
    model = task.model()

    # Every calibration prompt is sent max_queries times (60 x 12 = 720 calls
    # to the simulated model), the policy is tuned to 7 queries per prompt on
    # average, and tau is set for coverage >= 90%.
    calibration = cpq_guard.calibrate(
        model,
        task.prompts[:NUM_CALIBRATION],
        task.references[:NUM_CALIBRATION],
        alpha=0.1,
        average_budget=7,
        min_queries=4,
        max_queries=12,
        extractor="final-answer",
        equivalence="numeric",
        seed=SEED,
    )
    print(f"calibrated on {NUM_CALIBRATION} prompts: tau={calibration.tau:.3f}\n")

    graph = build_graph(CPQGuard(model, calibration, seed=SEED))

    # Stands in for the person who answers escalated questions.
    reviewer_answers = dict(zip(task.prompts, task.references))

    outcomes = []
    questions = task.prompts[NUM_CALIBRATION:]
    references = task.references[NUM_CALIBRATION:]
    for number, (question, reference) in enumerate(zip(questions, references)):
        config = {"configurable": {"thread_id": f"question-{number}"}}
        state = graph.invoke({"question": question}, config)

        escalation = None
        if "__interrupt__" in state:
            escalation = state["__interrupt__"][0].value
            reply = reviewer_answers[escalation["question"]]
            state = graph.invoke(Command(resume=reply), config)

        outcome = Outcome(
            question=question,
            reference=reference,
            answered_by="model" if escalation is None else "human",
            answer=state["answer"],
            result=read_guard_result(state),
            escalation=escalation,
        )
        outcomes.append(outcome)
        print(describe(outcome))

    by_model = sum(outcome.answered_by == "model" for outcome in outcomes)
    print(f"\n{by_model} answered by the model, {len(outcomes) - by_model} escalated to a human")
    return outcomes


def describe(outcome: Outcome) -> str:
    """Describe on two lines who answered a question, with what, and why."""
    result = outcome.result
    answers = ", ".join(
        f"{cluster.representative} ({cluster.probability:.2f})" for cluster in result.answers
    )
    if outcome.escalation is None:
        why = f"set {{{answers}}} after {result.num_queries} queries"
    elif result.abstained:
        seen = ", ".join(str(cluster["answer"]) for cluster in outcome.escalation["seen"][:4])
        why = (
            f"the guard abstained after {result.num_queries} queries "
            f"(missing mass {result.missing_mass:.2f}; seen {seen}, ...)"
        )
    else:
        why = f"set of several answers {{{answers}}} after {result.num_queries} queries"
    return (
        f"{outcome.question}\n"
        f"  {outcome.answered_by} answered {outcome.answer} "
        f"(reference {outcome.reference}): {why}"
    )


if __name__ == "__main__":
    main()
