"""A guard as a LangChain tool that an agent calls with a question.

The tool returns a short JSON text for the agent to read: whether the guard
abstained, the calibrated answer set with estimated probabilities, the
number of model queries and the estimated missing mass. The full
`GuardResult`, as the dict from `dump_guard_result`, travels as the tool
message's ``artifact``, which the calling code can read and the model does not see.
"""

from __future__ import annotations

import json
from typing import Any

from langchain_core.callbacks import Callbacks
from langchain_core.runnables import Runnable
from langchain_core.tools import StructuredTool
from pydantic import BaseModel, Field

from cpq_guard._validation import check_int
from cpq_guard.errors import Abstained, InvalidTypeError
from cpq_guard.result import GuardResult
from integrations.results import dump_guard_result, is_answered, summarize_result

__all__ = ["DEFAULT_DESCRIPTION", "GuardToolInput", "format_tool_output", "guard_as_tool"]

DEFAULT_DESCRIPTION = (
    "Ask a model that samples its answer several times and abstains when the samples "
    "are not enough evidence to trust an answer. Input: one self-contained question. "
    "Output: JSON with 'abstained', "
    "'answers' (the calibrated answer set, each with its estimated 'probability'), "
    "'missing_mass' (estimated probability of an answer not seen yet) and 'num_queries'. "
    "If 'abstained' is true, do not answer from this output."
)
"""Tool description the agent's model reads when it decides whether to call the tool."""


class GuardToolInput(BaseModel):
    """Arguments of the guard tool."""

    question: str = Field(
        min_length=1,
        description=(
            "The question to answer, self-contained: the tool sees nothing else of the "
            "conversation."
        ),
    )


def guard_as_tool(
    guard: Runnable[Any, GuardResult],
    *,
    name: str = "ask_guarded_model",
    description: str = DEFAULT_DESCRIPTION,
    max_answers: int = 5,
    keep_responses: bool = True,
    return_direct: bool = False,
) -> StructuredTool:
    """Wrap a guard as a tool with sync and async paths.

    The tool passes the question string to ``guard.invoke`` (``guard.ainvoke``
    when the agent runs async), with the tool run's callbacks, so the model
    calls appear under the tool in traces. A guard built with
    ``raise_on_abstain=True`` reports its abstention in the output rather
    than raising. Other guard errors, such as `ModelQueryError`, propagate
    to the agent's tool error handling.

    Args:
        guard: A `CPQGuard`, or any Runnable that takes a string and returns a `GuardResult`.
        name: Tool name the agent's model calls.
        description: Tool description the agent's model reads.
        max_answers: Most answers listed in the output; the rest are counted.
        keep_responses: Keep the samples' raw texts in the artifact.
        return_direct: End the agent loop with the tool output (LangChain's
            ``return_direct``).

    Returns:
        A `StructuredTool` with ``response_format="content_and_artifact"``:
        called with a tool call it returns a ``ToolMessage`` whose content is
        `format_tool_output` and whose artifact is the dumped `GuardResult`;
        called with ``{"question": ...}`` it returns the content only.
    """
    if not isinstance(guard, Runnable):
        raise InvalidTypeError(
            f"guard must be a CPQGuard or a Runnable returning a GuardResult, "
            f"got {type(guard).__name__}"
        )
    max_answers = check_int(max_answers, "max_answers", minimum=1)

    def respond(result: Any) -> tuple[str, dict[str, Any]]:
        if not isinstance(result, GuardResult):
            raise InvalidTypeError(
                f"the guard returned {type(result).__name__}, not a GuardResult; "
                "pass a CPQGuard or a Runnable that ends in one"
            )
        content = format_tool_output(result, max_answers=max_answers)
        return content, dump_guard_result(result, keep_responses=keep_responses)

    def ask(question: str, callbacks: Callbacks = None) -> tuple[str, dict[str, Any]]:
        try:
            result = guard.invoke(question, {"callbacks": callbacks})
        except Abstained as abstention:
            result = abstention.result
        return respond(result)

    async def aask(question: str, callbacks: Callbacks = None) -> tuple[str, dict[str, Any]]:
        try:
            result = await guard.ainvoke(question, {"callbacks": callbacks})
        except Abstained as abstention:
            result = abstention.result
        return respond(result)

    return StructuredTool.from_function(
        func=ask,
        coroutine=aask,
        name=name,
        description=description,
        args_schema=GuardToolInput,
        return_direct=return_direct,
        response_format="content_and_artifact",
    )


def format_tool_output(result: GuardResult, *, max_answers: int = 5) -> str:
    """Format a result as the compact JSON text the agent reads.

    The JSON holds the fields of `summarize_result` and a ``note`` that says
    in one sentence how to use them.
    """
    summary = summarize_result(result, max_answers=max_answers)
    percent = f"{100 * result.coverage_target:g}%"
    if result.abstained:
        note = (
            "The model abstained: its sampled answers were not enough evidence to trust any "
            "answer at the calibrated level. Do not answer from this output; say that the "
            "answer is uncertain."
        )
    elif not is_answered(result):
        note = (
            "The model gave no usable answer in its samples. Do not answer from this output; "
            "say that the answer is uncertain."
        )
    else:
        note = (
            "On questions like the calibration questions, the correct answer is in "
            f"'answers', or the model abstains, at least {percent} of the time."
        )
    summary["note"] = note
    return json.dumps(summary, ensure_ascii=False)
