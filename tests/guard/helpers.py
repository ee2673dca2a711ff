"""Prompts, distributions and helpers shared by the guard tests."""

from __future__ import annotations

import numpy as np

from cpq_guard.answers import get_equivalence
from cpq_guard.extractors import FinalAnswerExtractor
from cpq_guard.histories import History
from cpq_guard.models import (
    DEFAULT_NO_ANSWER_TEMPLATE,
    DEFAULT_RESPONSE_TEMPLATE,
    AnswerDistribution,
    SimulatedTask,
)
from cpq_guard.result import GuardResult
from cpq_guard.retry import RetryPolicy
from cpq_guard.stats.policies import DerivativePolicy

PEAKED = "Q0001: A shop sells 7 boxes of 12 pencils. How many pencils does the shop sell?"
SPREAD = "Q0002: A farmer picks 30 apples and gives 12 away. How many apples are left?"
LONG_TAILED = "Q0003: A library has 9 shelves of 31 books and gets 14 more. How many books?"
CERTAIN = "Q0004: 20 students share 60 stickers equally. How many stickers does each get?"

# Under the default calibration (tau = 1.5) the guard abstains when the
# estimated missing mass is at least 0.5. With MODEL_SEED and GUARD_SEED it
# answers PEAKED, SPREAD and CERTAIN and abstains on LONG_TAILED, whose 200
# equally likely answers leave nearly every sample a singleton. Other seeds can
# make SPREAD abstain too: after 16 samples with counts (7, 3, 3, 3) the
# smoothed estimate of the missing mass is 0.78.
DISTRIBUTIONS = {
    PEAKED: AnswerDistribution(answers={"84": 0.9, "83": 0.06, "96": 0.04}),
    SPREAD: AnswerDistribution(answers={"18": 0.4, "17": 0.3, "19": 0.2, "42": 0.1}),
    LONG_TAILED: AnswerDistribution.from_weights({str(n): 1.0 for n in range(100, 300)}),
    CERTAIN: AnswerDistribution(answers={"3": 1.0}),
}

MODEL_SEED = 11
GUARD_SEED = 5

DEFAULT_POLICY = DerivativePolicy(lambda_=0.002, min_queries=5, max_queries=20, bootstrap=10)

FAST_RETRY = RetryPolicy(max_attempts=10, initial_wait=0.0, max_wait=0.0, jitter=0.0)
"""Retries without waiting, so that failure tests run in milliseconds."""


def decision(result: GuardResult) -> tuple[object, ...]:
    """Summarise what a guarded call decided, for comparing two calls."""
    return (
        result.num_queries,
        result.stop_reason,
        result.abstained,
        [(cluster.representative, cluster.count) for cluster in result.clusters],
        [cluster.representative for cluster in result.answers],
    )


def record_histories(
    task: SimulatedTask, prompts: list[str], references: list[str], length: int, seed: int
) -> list[History]:
    """Record ``length`` samples per prompt as the simulated model would write them.

    The answers are drawn from the task's distributions and written into the
    simulated model's response templates, then extracted and clustered as the
    guard does. This draws from the same distribution as `SimulatedChatModel`
    in about a fifth of the time of calling it, which keeps 300 calibration
    prompts cheap.
    """
    extractor = FinalAnswerExtractor()
    equivalence = get_equivalence("numeric")
    rng = np.random.default_rng(seed)
    histories = []
    for prompt, reference in zip(prompts, references, strict=True):
        distribution = task.distributions[prompt]
        answers = []
        for _ in range(length):
            answer = distribution.draw(rng)
            if answer is None:
                text = DEFAULT_NO_ANSWER_TEMPLATE
            else:
                text = DEFAULT_RESPONSE_TEMPLATE.replace("{answer}", answer)
            answers.append(extractor(text))
        histories.append(History.from_answers(answers, [reference], equivalence, prompt))
    return histories
