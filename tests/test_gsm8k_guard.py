"""End to end on real LLM samples: calibrate and guard GSM8K through the public API.

The authors' released GSM8K file is imported into a sample bank and replayed
through `ReplayChatModel`. A guard calibrated on 150 prompts at alpha 0.1 and
an average budget of 20 queries then guards the other 150 with ``ainvoke``
and ``abatch``. Its coverage and abstention rate must agree with the offline
evaluation of the same calibration on the same test prompts, which replays
the recorded samples through the same policy and set rule.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

import cpq_guard
from cpq_guard.evaluation import PolicyReplay, split_metrics
from cpq_guard.histories import histories_from_records
from cpq_guard.paper import import_paper_file

ALPHA = 0.1
BUDGET = 20.0
SPLIT_SEED = 42


def covered(result: cpq_guard.GuardResult, references: list[str]) -> bool:
    equivalence = cpq_guard.NormalizedEquivalence()
    return result.abstained or any(
        cluster.representative is not None
        and any(equivalence.equivalent(cluster.representative, ref) for ref in references)
        for cluster in result.answers
    )


@pytest.mark.slow
def test_guard_agrees_with_evaluation(paper_gsm8k: Path, tmp_path: Path) -> None:
    bank = tmp_path / "gsm8k.jsonl"
    import_paper_file(paper_gsm8k, bank)
    records = cpq_guard.read_bank(bank)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(records))
    calibration_records = [records[i] for i in order[:150]]
    test_records = [records[i] for i in order[150:]]

    model = cpq_guard.ReplayChatModel(records=records)
    calibration = cpq_guard.calibrate(
        model,
        [record.prompt for record in calibration_records],
        [record.references for record in calibration_records],
        alpha=ALPHA,
        average_budget=BUDGET,
        bank=tmp_path / "calibration-bank.jsonl",
        max_concurrency=16,
        seed=0,
    )

    guard = cpq_guard.CPQGuard(model, calibration, seed=0, max_concurrency=4)
    prompts = [record.prompt for record in test_records]

    async def guard_all() -> tuple[list[cpq_guard.GuardResult], list[cpq_guard.GuardResult]]:
        model.reset()
        single = [await guard.ainvoke(prompt) for prompt in prompts]
        model.reset()
        batched = await guard.abatch(prompts, config={"max_concurrency": 16})
        return single, batched

    single, batched = asyncio.run(guard_all())

    # Offline: the same calibration, the same test prompts, the recorded samples.
    histories = histories_from_records(test_records, cpq_guard.NormalizedEquivalence())
    replay = PolicyReplay.compute(calibration.policy, histories, seed=0)
    times = replay.stopping_times(np.arange(len(histories)), calibration.policy)
    estimates = [
        history.estimate(int(time), calibration.estimator)
        for history, time in zip(histories, times)
    ]
    offline = split_metrics(
        estimates,
        calibration.tau,
        calibration.mapping,
        np.random.default_rng(0),
        calibration.tie_jitter,
    )

    # Ordered replay gives ainvoke and abatch the same samples, and the seeded
    # guard decides alike on them.
    assert [r.num_queries for r in single] == [r.num_queries for r in batched]
    assert [r.abstained for r in single] == [r.abstained for r in batched]

    references = [list(record.references) for record in test_records]
    coverage = float(np.mean([covered(r, refs) for r, refs in zip(batched, references)]))
    abstention = float(np.mean([r.abstained for r in batched]))
    mean_queries = float(np.mean([r.num_queries for r in batched]))

    # Online and offline differ only in the bootstrap's random draws, which
    # move a few stopping points by a sample or two: a few prompts of 150.
    assert abs(coverage - offline["coverage"]) <= 0.04
    assert abs(abstention - offline["abstention_rate"]) <= 0.04
    assert abs(mean_queries - offline["mean_queries"]) <= 1.0
    # The budget is met on the tuning prompts; 150 other prompts vary around it.
    assert abs(mean_queries - BUDGET) <= 2.5
    assert coverage >= 1 - ALPHA - 0.08
