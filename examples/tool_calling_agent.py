"""A tool-calling agent that asks a guarded model and answers only when the guard does.

The guard, calibrated on cpq-guard's simulated model, becomes a LangChain tool
with `guard_as_tool`. The agent's own chat model is a scripted stand-in: it
calls the tool with the user's question, reads the JSON the tool returns,
and answers, or says it is unsure when the guard abstained. A hosted chat
model with tool calling takes its place unchanged; the loop below is the
usual one (call the model, run its tool calls, repeat until it answers).

Run it with::

    python examples/tool_calling_agent.py

It needs only langchain-core, so it runs offline in a few seconds.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool

import cpq_guard
from cpq_guard import CPQGuard, GuardResult, make_simulated_task
from integrations.results import load_guard_result
from integrations.tools import guard_as_tool

NUM_CALIBRATION = 60
"""Labelled prompts for calibration. Half tune the stopping policy and half set ``tau``."""

NUM_QUESTIONS = 10
"""Held-out questions put to the agent."""

SEED = 10
"""Seed of the task, the calibration and the guard. With it, the guard answers some questions
and abstains on others."""

MAX_STEPS = 4
"""Model calls per question before the loop gives up."""


class ScriptedAgentModel(BaseChatModel):
    """Stand-in for a tool-calling chat model, scripted for a one-tool agent.

    After a human message it calls the first bound tool with the message text
    as ``question``. After a tool message it reads the tool's JSON output and
    answers with the most probable answer, or says it is unsure when the
    guard abstained or gave no answer.
    """

    @property
    def _llm_type(self) -> str:
        return "scripted-agent"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable:
        """Bind tools in OpenAI format, as hosted chat models do."""
        return self.bind(tools=[convert_to_openai_tool(tool) for tool in tools], **kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        last = messages[-1]
        if isinstance(last, HumanMessage):
            tools = kwargs.get("tools") or []
            if not tools:
                raise ValueError("ScriptedAgentModel needs a bound tool; call bind_tools first")
            call = {
                "name": tools[0]["function"]["name"],
                "args": {"question": str(last.text)},
                "id": f"call_{len(messages)}",
            }
            message = AIMessage(content="", tool_calls=[call])
        elif isinstance(last, ToolMessage):
            message = AIMessage(content=answer_from_tool_output(str(last.text)))
        else:
            raise ValueError(f"ScriptedAgentModel has no reply to a {type(last).__name__}")
        return ChatResult(generations=[ChatGeneration(message=message)])


def answer_from_tool_output(text: str) -> str:
    """Write the agent's final answer from the guard tool's JSON output."""
    output = json.loads(text)
    answers = [entry for entry in output["answers"] if entry["answer"] is not None]
    if output["abstained"] or not answers:
        return (
            f"I am not sure: the guarded model abstained after {output['num_queries']} "
            f"samples (estimated missing mass {output['missing_mass']:.2f}), so I won't guess."
        )
    best = answers[0]
    others = len(output["answers"]) - 1
    alternatives = f", with {others} other candidate(s)" if others else ""
    return (
        f"The answer is {best['answer']} (estimated probability "
        f"{best['probability']:.2f}{alternatives})."
    )


@dataclass(frozen=True)
class AgentRun:
    """One question put to the agent.

    Attributes:
        question: The user's question.
        reference: Its reference answer.
        answer: The agent's final message text.
        tool_output: The JSON the tool returned, parsed.
        result: The guard's full result, from the tool message's artifact.
        messages: The whole conversation.
    """

    question: str
    reference: str
    answer: str
    tool_output: dict[str, Any]
    result: GuardResult
    messages: list[BaseMessage]


def run_agent(model: Runnable, tools: Sequence[BaseTool], question: str) -> list[BaseMessage]:
    """Run the tool-calling loop on one question and return the conversation."""
    by_name = {tool.name: tool for tool in tools}
    messages: list[BaseMessage] = [HumanMessage(question)]
    for _ in range(MAX_STEPS):
        reply = model.invoke(messages)
        messages.append(reply)
        if not reply.tool_calls:
            return messages
        # Invoked with the tool call, a tool returns a ToolMessage with its
        # output as content and, here, the GuardResult as artifact.
        for call in reply.tool_calls:
            messages.append(by_name[call["name"]].invoke(call))
    raise RuntimeError(f"the agent did not answer within {MAX_STEPS} model calls")


def main() -> list[AgentRun]:
    """Calibrate a guard on the simulated model and let the agent use it as a tool."""
    task = make_simulated_task(NUM_CALIBRATION + NUM_QUESTIONS, seed=SEED)
    simulated = task.model()
    calibration = cpq_guard.calibrate(
        simulated,
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
    tool = guard_as_tool(CPQGuard(simulated, calibration, seed=SEED))
    agent_model = ScriptedAgentModel().bind_tools([tool])
    print(f"calibrated on {NUM_CALIBRATION} prompts: tau={calibration.tau:.3f}\n")

    runs = []
    questions = task.prompts[NUM_CALIBRATION:]
    references = task.references[NUM_CALIBRATION:]
    for question, reference in zip(questions, references):
        messages = run_agent(agent_model, [tool], question)
        tool_message = next(message for message in messages if isinstance(message, ToolMessage))
        run = AgentRun(
            question=question,
            reference=reference,
            answer=str(messages[-1].text),
            tool_output=json.loads(str(tool_message.text)),
            result=load_guard_result(tool_message.artifact),
            messages=messages,
        )
        runs.append(run)
        print(question)
        print(f"  tool: {tool_message.text}")
        print(f"  agent (reference {reference}): {run.answer}")
    return runs


if __name__ == "__main__":
    main()
