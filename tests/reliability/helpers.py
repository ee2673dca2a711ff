"""Prompts, models, banks and calibrations shared by the reliability tests."""

from __future__ import annotations

from typing import Any

from cpq_guard.banks import BankRecord, Sample
from cpq_guard.calibration import Calibration
from cpq_guard.models import AnswerDistribution, SimulatedChatModel
from cpq_guard.retry import RetryPolicy
from cpq_guard.stats.policies import DerivativePolicy, FixedPolicy

PROMPTS = [f"Q{index:02d}: how many apples are {index} apples and 2 apples?" for index in range(30)]
REFERENCES = [str(index + 2) for index in range(30)]

DISTRIBUTIONS = {
    prompt: AnswerDistribution(answers={reference: 0.7, "0": 0.2, "99": 0.1})
    for prompt, reference in zip(PROMPTS, REFERENCES)
}

MODEL_SEED = 17

FAST_RETRY = RetryPolicy(max_attempts=8, initial_wait=0.0, max_wait=0.0, jitter=0.0)
"""Retries without waiting, so that failure tests run in milliseconds."""

SMALL_POLICY = DerivativePolicy(lambda_=0.002, min_queries=3, max_queries=6, bootstrap=5)


def make_model(**kwargs: Any) -> SimulatedChatModel:
    """Build a simulated model over `DISTRIBUTIONS`; keyword arguments override fields."""
    kwargs.setdefault("seed", MODEL_SEED)
    return SimulatedChatModel(distributions=DISTRIBUTIONS, **kwargs)


def make_records(count: int = 30, samples: int = 6) -> list[BankRecord]:
    """Build labelled records whose samples are the reference (two in three) or the wrong "0"."""
    records = []
    for index in range(count):
        texts = [REFERENCES[index] if draw % 3 else "0" for draw in range(samples)]
        records.append(
            BankRecord(
                id=f"q{index:02d}",
                prompt=PROMPTS[index],
                references=[REFERENCES[index]],
                samples=[Sample(text=text) for text in texts],
            )
        )
    return records


def make_calibration(**kwargs: Any) -> Calibration:
    """Build a valid calibration by hand; keyword arguments override fields."""
    settings: dict[str, Any] = {
        "alpha": 0.1,
        "tau": 1.5,
        "policy": FixedPolicy(queries=4),
        "equivalence": "normalized",
        "extractor": "text",
        "num_calibration": 20,
        "calibration_mean_queries": 4.0,
    }
    settings.update(kwargs)
    return Calibration(**settings)
