"""Fixtures for the agent integration tests: a simulated model, a calibration and guards.

The calibration is written by hand with ``tau = 1.5``, so the guard abstains
exactly when the estimated missing mass is at least 0.5. On the prompts
below that makes its decision predictable: it answers `CERTAIN` and
`PEAKED`, abstains on `LONG_TAILED`, and answers `SILENT` with only the
cluster of responses without an answer.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool

# pytest puts this directory on sys.path, and its name shadows the top-level
# `integrations` package as a namespace package unless the repository root
# comes first. `python -m pytest` puts the root there already; plain `pytest`
# does not.
REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from cpq_guard import Calibration, CPQGuard, RetryPolicy  # noqa: E402
from cpq_guard.models import AnswerDistribution, SimulatedChatModel  # noqa: E402
from cpq_guard.stats.policies import DerivativePolicy  # noqa: E402

CERTAIN = "Q0001: 20 students share 60 stickers equally. How many stickers does each get?"
PEAKED = "Q0002: A shop sells 7 boxes of 12 pencils. How many pencils does the shop sell?"
LONG_TAILED = "Q0003: A library has 9 shelves of 31 books and gets 14 more. How many books?"
SILENT = "Q0004: A train leaves at some time. When does it arrive?"

DISTRIBUTIONS = {
    CERTAIN: AnswerDistribution(answers={"3": 1.0}),
    PEAKED: AnswerDistribution(answers={"84": 0.97, "83": 0.03}),
    # 200 equally likely answers leave nearly every sample a singleton, so the
    # missing mass stays near 1 and the guard abstains.
    LONG_TAILED: AnswerDistribution.from_weights({str(n): 1.0 for n in range(100, 300)}),
    # No response contains an answer, so the set contains only the no-answer cluster.
    SILENT: AnswerDistribution(answers={"0": 1.0}, no_answer=1.0),
}

POLICY = DerivativePolicy(lambda_=0.002, min_queries=5, max_queries=20, bootstrap=10)

FAST_RETRY = RetryPolicy(max_attempts=3, initial_wait=0.0, max_wait=0.0, jitter=0.0)


@pytest.fixture
def prompts() -> SimpleNamespace:
    """The prompts by regime: ``certain``, ``peaked``, ``long_tailed`` and ``silent``."""
    return SimpleNamespace(certain=CERTAIN, peaked=PEAKED, long_tailed=LONG_TAILED, silent=SILENT)


@pytest.fixture
def calibration() -> Calibration:
    """A hand-written calibration with tau 1.5 for the final-answer extractor."""
    return Calibration(
        alpha=0.1,
        tau=1.5,
        policy=POLICY,
        equivalence="numeric",
        extractor="final-answer",
        num_calibration=100,
        calibration_mean_queries=12.0,
    )


@pytest.fixture
def model() -> SimulatedChatModel:
    """A simulated model over `DISTRIBUTIONS`."""
    return SimulatedChatModel(distributions=DISTRIBUTIONS, seed=11)


@pytest.fixture
def make_guard(model: SimulatedChatModel, calibration: Calibration) -> Callable[..., CPQGuard]:
    """Build a seeded guard over `model`; keyword arguments go to `CPQGuard`."""

    def build(**kwargs: Any) -> CPQGuard:
        kwargs.setdefault("seed", 5)
        kwargs.setdefault("retry", FAST_RETRY)
        return CPQGuard(model, calibration, **kwargs)

    return build


@pytest.fixture
def guard(make_guard: Callable[..., CPQGuard]) -> CPQGuard:
    """A seeded guard over the simulated model."""
    return make_guard()


class ScriptedAgentModel(BaseChatModel):
    """Stand-in for a tool-calling chat model that relies on one tool.

    After a human message it calls the first bound tool with the message text
    as ``question``; after a tool message it answers "The answer is X." with
    the first answer of the tool's JSON output, or "I am not sure." when the
    tool reports an abstention. ``calls`` counts its model calls.
    """

    calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "scripted-agent"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable:
        return self.bind(tools=[convert_to_openai_tool(tool) for tool in tools], **kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.calls += 1
        last = messages[-1]
        if isinstance(last, HumanMessage):
            name = kwargs["tools"][0]["function"]["name"]
            call = {"name": name, "args": {"question": str(last.text)}, "id": "call_1"}
            message = AIMessage(content="", tool_calls=[call])
        else:
            assert isinstance(last, ToolMessage)
            output = json.loads(str(last.text))
            if output["abstained"]:
                message = AIMessage(content="I am not sure.")
            else:
                message = AIMessage(content=f"The answer is {output['answers'][0]['answer']}.")
        return ChatResult(generations=[ChatGeneration(message=message)])


@pytest.fixture
def agent_model() -> ScriptedAgentModel:
    """A fresh scripted tool-calling model."""
    return ScriptedAgentModel()
