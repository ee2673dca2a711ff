"""LangChain's standard unit tests for chat models, run on both offline models.

The standard unit tests (langchain-tests 1.1.9) construct the model with the
standard parameters, check tracing parameters, tool binding and
serialisation, and time construction. They never invoke the model, so the
replay model needs no records for particular prompts.
"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_tests.unit_tests import ChatModelUnitTests

from cpq_guard.banks import BankRecord, Sample
from cpq_guard.models import AnswerDistribution, ReplayChatModel, SimulatedChatModel


class TestSimulatedStandard(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return SimulatedChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {
            "default": AnswerDistribution(answers={"4": 0.8, "5": 0.2}),
            "seed": 1,
        }


class TestReplayStandard(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return ReplayChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        record = BankRecord(
            id="q1",
            prompt="What is 2 + 2?",
            references=["4"],
            samples=[Sample(text="The answer is 4.")],
        )
        return {"records": [record], "on_exhausted": "cycle"}
