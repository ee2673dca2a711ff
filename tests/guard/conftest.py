"""Shared fixtures for the guard tests: offline models, calibrations and guards."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from cpq_guard.calibration import Calibration, calibrate_histories
from cpq_guard.guard import CPQGuard
from cpq_guard.models import SimulatedChatModel, SimulatedTask, make_simulated_task
from cpq_guard.stats.policies import DerivativePolicy

from .helpers import (
    DEFAULT_POLICY,
    DISTRIBUTIONS,
    FAST_RETRY,
    GUARD_SEED,
    MODEL_SEED,
    record_histories,
)


@pytest.fixture
def make_model() -> Callable[..., SimulatedChatModel]:
    """Build a simulated model over `DISTRIBUTIONS`; keyword arguments override fields."""

    def build(**kwargs: Any) -> SimulatedChatModel:
        kwargs.setdefault("seed", MODEL_SEED)
        return SimulatedChatModel(distributions=DISTRIBUTIONS, **kwargs)

    return build


@pytest.fixture
def make_calibration() -> Callable[..., Calibration]:
    """Build a calibration by hand with a chosen ``tau`` and policy, not from data."""

    def build(**kwargs: Any) -> Calibration:
        settings: dict[str, Any] = {
            "alpha": 0.1,
            "tau": 1.5,
            "policy": DEFAULT_POLICY,
            "equivalence": "numeric",
            "extractor": "final-answer",
            "num_calibration": 100,
            "calibration_mean_queries": 12.0,
        }
        settings.update(kwargs)
        return Calibration(**settings)

    return build


@pytest.fixture
def make_guard(
    make_model: Callable[..., SimulatedChatModel],
    make_calibration: Callable[..., Calibration],
) -> Callable[..., CPQGuard]:
    """Build a seeded guard with fast retries over a fresh simulated model by default."""

    def build(model: Any = None, calibration: Any = None, **kwargs: Any) -> CPQGuard:
        kwargs.setdefault("seed", GUARD_SEED)
        kwargs.setdefault("retry", FAST_RETRY)
        return CPQGuard(
            make_model() if model is None else model,
            make_calibration() if calibration is None else calibration,
            **kwargs,
        )

    return build


@pytest.fixture(scope="session")
def simulated_task() -> SimulatedTask:
    """600 prompts of the default regime mix: the first 300 calibrate, the rest test."""
    return make_simulated_task(600, seed=2024)


@pytest.fixture(scope="session")
def task_calibration(simulated_task: SimulatedTask) -> Calibration:
    """CPQ calibrated on the task's first 300 prompts at alpha 0.1 and 20 queries on average."""
    prompts = simulated_task.prompts[:300]
    references = simulated_task.references[:300]
    histories = record_histories(simulated_task, prompts, references, length=40, seed=1)
    return calibrate_histories(
        histories,
        alpha=0.1,
        policy=DerivativePolicy(lambda_=0.01, min_queries=5, max_queries=40),
        equivalence="numeric",
        extractor="final-answer",
        average_budget=20,
        seed=3,
    )
