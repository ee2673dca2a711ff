"""Offline LangChain chat models: a simulated model and a sample-bank replay.

Both are `langchain_core.language_models.BaseChatModel` subclasses that answer
without a network, so the guard, its tests and its benchmarks run without a
hosted model:

- `SimulatedChatModel` draws each answer from a configured distribution per
  prompt, with optional latency, transient failures and hangs.
- `ReplayChatModel` returns the samples that a sample bank recorded.

Both look up the prompt by the text of the last human message, draw from
random streams seeded by ``(seed, prompt, call index)``, report word-count or
recorded token usage, and count their calls (``calls_started``,
``calls_failed``, ``max_in_flight``) so tests can check how a caller used them.
"""

from cpq_guard.models.distributions import REGIMES, AnswerDistribution, wrong_answers
from cpq_guard.models.replay import ReplayChatModel, ReplayExhaustedError
from cpq_guard.models.simulated import (
    DEFAULT_NO_ANSWER_TEMPLATE,
    DEFAULT_RESPONSE_TEMPLATE,
    SimulatedChatModel,
    SimulatedTransientError,
    UnknownSimulatedPromptError,
)
from cpq_guard.models.tasks import DEFAULT_MIX, SimulatedTask, make_simulated_task

__all__ = [
    "DEFAULT_MIX",
    "DEFAULT_NO_ANSWER_TEMPLATE",
    "DEFAULT_RESPONSE_TEMPLATE",
    "REGIMES",
    "AnswerDistribution",
    "ReplayChatModel",
    "ReplayExhaustedError",
    "SimulatedChatModel",
    "SimulatedTask",
    "SimulatedTransientError",
    "UnknownSimulatedPromptError",
    "make_simulated_task",
    "wrong_answers",
]
