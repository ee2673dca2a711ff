"""The offline demonstration behind ``cpq-guard demo``.

It calibrates a guard on labelled prompts, guards held-out prompts with
``abatch``, and measures what the guarantee promises: the share of held-out
prompts whose reference answer is in the set or that were abstained on, next
to the target ``1 - alpha``. Two sources of prompts are offered:

- a simulated task (`make_simulated_task`): the model is `SimulatedChatModel`,
  and calibration records its samples through `acalibrate`, as it would for a
  hosted model;
- a sample bank: the model is `ReplayChatModel` over the bank, and calibration
  reads the recorded samples of the calibration prompts directly.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict

from cpq_guard._validation import check_alpha, check_int
from cpq_guard.banks import BankRecord, read_bank
from cpq_guard.calibration import Calibration, calibrate_bank
from cpq_guard.errors import InvalidParameterError
from cpq_guard.guard import CPQGuard
from cpq_guard.live_calibration import acalibrate
from cpq_guard.models import ReplayChatModel, make_simulated_task
from cpq_guard.result import GuardResult
from cpq_guard.stats.policies import DerivativePolicy

__all__ = ["DEMO_MIX", "DemoExample", "DemoReport", "run_bank_demo", "run_simulated_demo"]

DEMO_MIX = {"peaked": 0.6, "spread": 0.2, "confidently_wrong": 0.1, "long_tailed": 0.1}
"""Regimes of the simulated demo task: mostly answerable questions, some hard ones."""

DEMO_TUNING_FRACTION = 0.3
"""Share of the calibration prompts that tune lambda; the rest set tau.

A mean number of queries is estimated well from few prompts, while tau is an
order statistic whose coverage varies less with more prompts.
"""


class DemoExample(BaseModel):
    """One guarded held-out prompt, for display."""

    model_config = ConfigDict(frozen=True)

    prompt: str
    references: list[str]
    result: GuardResult
    covered: bool


class DemoReport(BaseModel):
    """What the demo measured on the held-out prompts.

    Attributes:
        source: ``"simulated"`` or the bank path.
        calibration: The calibration the guard used.
        num_test: Number of held-out prompts guarded.
        coverage: Share with the reference in the set, or abstained.
        abstention_rate: Share abstained.
        informative_coverage: Share with the reference in a non-abstaining set.
        mean_set_size: Mean set size, an abstention counting as 0.
        mean_queries: Mean samples used per prompt.
        seconds_calibrating: Wall time of calibration.
        seconds_guarding: Wall time of guarding the held-out prompts.
        examples: Every held-out prompt with its result.
    """

    model_config = ConfigDict(frozen=True)

    source: str
    calibration: Calibration
    num_test: int
    coverage: float
    abstention_rate: float
    informative_coverage: float
    mean_set_size: float
    mean_queries: float
    seconds_calibrating: float
    seconds_guarding: float
    examples: list[DemoExample]


async def run_simulated_demo(
    *,
    num_calibration: int = 200,
    num_test: int = 200,
    alpha: float = 0.1,
    average_budget: float = 20.0,
    seed: int = 0,
    max_concurrency: int = 4,
    progress: bool = False,
    mix: dict[str, float] | None = None,
) -> DemoReport:
    """Calibrate on a simulated task and guard its held-out prompts.

    ``max_concurrency`` bounds the guard's queries in flight per prompt; queries
    beyond the stopping point are wasted, so a small value suits a fast model.
    """
    alpha = check_alpha(alpha)
    num_calibration = check_int(num_calibration, "num_calibration", minimum=2)
    num_test = check_int(num_test, "num_test", minimum=1)

    task = make_simulated_task(
        num_calibration + num_test, seed=seed, mix=mix if mix is not None else DEMO_MIX
    )
    model = task.model()
    prompts, references = task.prompts, task.references

    started = time.perf_counter()
    calibration = await acalibrate(
        model,
        prompts[:num_calibration],
        references[:num_calibration],
        alpha=alpha,
        average_budget=average_budget,
        extractor="final-answer",
        equivalence="numeric",
        tuning_fraction=DEMO_TUNING_FRACTION,
        max_concurrency=16,
        seed=seed,
        progress=progress,
    )
    calibrated = time.perf_counter()

    guard = CPQGuard(model, calibration, seed=seed, max_concurrency=max_concurrency)
    test_prompts = prompts[num_calibration:]
    test_references = [[reference] for reference in references[num_calibration:]]
    return await _guard_and_measure(
        guard, test_prompts, test_references, "simulated", calibrated - started
    )


async def run_bank_demo(
    bank: str | Path,
    *,
    alpha: float = 0.1,
    average_budget: float = 20.0,
    calibration_fraction: float = 0.5,
    extractor: str = "text",
    equivalence: str = "normalized",
    min_queries: int = 10,
    max_queries: int = 50,
    seed: int = 0,
    max_concurrency: int = 4,
) -> DemoReport:
    """Calibrate on part of a sample bank and guard the rest through `ReplayChatModel`."""
    alpha = check_alpha(alpha)
    records = read_bank(bank)
    calibration_records, test_records = _split(records, calibration_fraction, seed)

    started = time.perf_counter()
    calibration = calibrate_bank(
        calibration_records,
        alpha=alpha,
        policy=DerivativePolicy(lambda_=0.0, min_queries=min_queries, max_queries=max_queries),
        extractor=extractor,
        equivalence=equivalence,
        average_budget=average_budget,
        tuning_fraction=DEMO_TUNING_FRACTION,
        seed=seed,
    )
    calibrated = time.perf_counter()

    model = ReplayChatModel(records=test_records)
    guard = CPQGuard(model, calibration, seed=seed, max_concurrency=max_concurrency)
    return await _guard_and_measure(
        guard,
        [record.prompt for record in test_records],
        [list(record.references) for record in test_records],
        str(bank),
        calibrated - started,
    )


def _split(
    records: Sequence[BankRecord], fraction: float, seed: int
) -> tuple[list[BankRecord], list[BankRecord]]:
    if not 0.0 < fraction < 1.0:
        raise InvalidParameterError(
            "calibration_fraction",
            fraction,
            f"calibration_fraction={fraction} must lie strictly between 0 and 1",
        )
    unlabelled = [record.id for record in records if not record.references]
    if unlabelled:
        raise InvalidParameterError(
            "bank",
            unlabelled[:3],
            f"{len(unlabelled)} bank prompts have no reference answer (first: {unlabelled[:3]}); "
            "the demo needs a labelled bank",
        )
    order = np.random.default_rng([seed, 2]).permutation(len(records))
    cut = round(fraction * len(records))
    return [records[i] for i in order[:cut]], [records[i] for i in order[cut:]]


async def _guard_and_measure(
    guard: CPQGuard,
    prompts: list[str],
    references: list[list[str]],
    source: str,
    seconds_calibrating: float,
) -> DemoReport:
    started = time.perf_counter()
    results = await guard.abatch(prompts)
    seconds_guarding = time.perf_counter() - started

    equivalence = guard.equivalence
    examples = []
    for prompt, refs, result in zip(prompts, references, results):
        in_set = any(
            cluster.representative is not None
            and any(equivalence.equivalent(cluster.representative, ref) for ref in refs)
            for cluster in result.answers
        )
        examples.append(
            DemoExample(
                prompt=prompt, references=refs, result=result, covered=result.abstained or in_set
            )
        )

    covered = np.array([example.covered for example in examples])
    abstained = np.array([example.result.abstained for example in examples])
    return DemoReport(
        source=source,
        calibration=guard.calibration,
        num_test=len(examples),
        coverage=float(covered.mean()),
        abstention_rate=float(abstained.mean()),
        informative_coverage=float((covered & ~abstained).mean()),
        mean_set_size=float(np.mean([example.result.set_size for example in examples])),
        mean_queries=float(np.mean([example.result.num_queries for example in examples])),
        seconds_calibrating=seconds_calibrating,
        seconds_guarding=seconds_guarding,
        examples=examples,
    )
