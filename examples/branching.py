"""Route abstentions downstream: a `RunnableBranch`, or fallbacks on `Abstained`.

A guard that abstains has decided that no answer set can be trusted for this
prompt. The application then needs another route: a human review queue, a
stronger model, or a plain "I don't know". This example shows the two
LangChain ways to build that route:

1. ``guard | RunnableBranch((lambda r: r.abstained, escalate), answer)``: the
   guard always returns a `GuardResult`, and the branch inspects it. The
   escalation step receives the abstaining result, with the model's answers.
2. ``(strict_guard | answer).with_fallbacks([fallback], exceptions_to_handle=(Abstained,))``
   with ``CPQGuard(..., raise_on_abstain=True)``: an abstention raises
   `Abstained`, and the fallback receives the original prompt.

Both routes run offline on cpq-guard's simulated model. Run it with::

    python examples/branching.py
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from langchain_core.output_parsers import StrOutputParser
from langchain_core.runnables import Runnable, RunnableBranch, RunnableLambda

import cpq_guard
from cpq_guard import (
    Abstained,
    CPQGuard,
    FinalAnswerExtractor,
    GuardResult,
    SimulatedChatModel,
    make_simulated_task,
)
from cpq_guard.models import AnswerDistribution

NUM_CALIBRATION = 80
NUM_HELD_OUT = 8
SEED = 7

Route = Literal["answered", "escalated", "fallback"]


@dataclass(frozen=True)
class Reply:
    """What the application does with one prompt.

    Attributes:
        route: ``"answered"`` when the guard gave an answer set,
            ``"escalated"`` when the branch sent an abstention to review, and
            ``"fallback"`` when the fallback model answered instead.
        text: The text shown to the user or to the reviewer.
    """

    route: Route
    text: str


@dataclass(frozen=True)
class BranchingOutput:
    """The replies of both routes, one per held-out prompt, in prompt order."""

    prompts: list[str]
    branch_replies: list[Reply]
    fallback_replies: list[Reply]


def answer_reply(result: GuardResult) -> Reply:
    """Reply with the answer set, most probable answer first."""
    answers = [cluster.representative or "<no answer>" for cluster in result.answers]
    if len(answers) == 1:
        return Reply("answered", answers[0])
    return Reply("answered", "one of " + ", ".join(answers))


def escalation_reply(result: GuardResult) -> Reply:
    """Send an abstention to review, with the model's most frequent answers."""
    seen = ", ".join(
        f"{cluster.representative or '<no answer>'} x{cluster.count}"
        for cluster in result.clusters[:3]
    )
    return Reply(
        "escalated",
        f"needs review: the model said {seen} in {result.num_queries} samples",
    )


def fallback_reply(text: str) -> Reply:
    """Reply with the fallback model's final answer."""
    return Reply("fallback", FinalAnswerExtractor()(text) or text)


def build_fallback_model(prompts: list[str], references: list[str]) -> SimulatedChatModel:
    """Build a stand-in for a stronger model, which always returns the reference answer."""
    return SimulatedChatModel(
        distributions={
            prompt: AnswerDistribution(answers={reference: 1.0})
            for prompt, reference in zip(prompts, references)
        }
    )


def main() -> BranchingOutput:
    """Calibrate a guard, then route the held-out prompts through both pipelines."""
    task = make_simulated_task(NUM_CALIBRATION + NUM_HELD_OUT, seed=SEED)

    # A smaller calibration than in quickstart.py, to keep this example fast.
    calibration = cpq_guard.calibrate(
        task.model(),
        task.prompts[:NUM_CALIBRATION],
        task.references[:NUM_CALIBRATION],
        alpha=0.1,
        average_budget=10,
        min_queries=5,
        max_queries=20,
        extractor="final-answer",
        equivalence="numeric",
        seed=SEED,
    )
    prompts = task.prompts[NUM_CALIBRATION:]
    references = task.references[NUM_CALIBRATION:]

    # Route 1: the guard returns a GuardResult, and RunnableBranch picks the
    # first branch whose condition holds, else the default (last) branch.
    guard = CPQGuard(task.model(), calibration, seed=SEED)
    answer = RunnableLambda(answer_reply)
    escalate = RunnableLambda(escalation_reply)
    branching: Runnable[str, Reply] = guard | RunnableBranch(
        (lambda result: result.abstained, escalate), answer
    )

    # Route 2: the guard raises Abstained, and with_fallbacks catches only
    # that, so a model failure (ModelQueryError) still propagates. The
    # exception leaves the whole sequence, so the fallback replaces
    # guard and answer step together, and receives the original prompt.
    strict_guard = CPQGuard(task.model(), calibration, seed=SEED, raise_on_abstain=True)
    fallback_model = build_fallback_model(prompts, references)
    fallback = fallback_model | StrOutputParser() | RunnableLambda(fallback_reply)
    with_fallback: Runnable[str, Reply] = (strict_guard | answer).with_fallbacks(
        [fallback], exceptions_to_handle=(Abstained,)
    )

    # Each guard gets a fresh model with the same seed, so both see the same
    # samples for a prompt and abstain on the same prompts.
    branch_replies = branching.batch(prompts)
    fallback_replies = with_fallback.batch(prompts)

    for prompt, reference, first, second in zip(
        prompts, references, branch_replies, fallback_replies
    ):
        print(prompt)
        print(f"  reference {reference}")
        print(f"  branch:    [{first.route}] {first.text}")
        print(f"  fallbacks: [{second.route}] {second.text}")
    return BranchingOutput(prompts, branch_replies, fallback_replies)


if __name__ == "__main__":
    main()
