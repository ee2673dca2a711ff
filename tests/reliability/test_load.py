"""Many guarded prompts at once: all complete, concurrency stays bounded, memory stays flat.

The concurrency bound: ``abatch`` runs at most ``config["max_concurrency"]``
guarded inputs at once (LangChain's batching), and each guarded input has at
most the guard's ``max_concurrency`` model calls in flight (`CPQGuard`). So
at most the product of the two calls are in flight at once.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys

import pytest

from cpq_guard.calibration import Calibration
from cpq_guard.guard import CPQGuard
from cpq_guard.models import AnswerDistribution, SimulatedChatModel
from cpq_guard.stats.policies import DerivativePolicy, FixedPolicy

PROMPTS = [f"L{index:04d}: how many?" for index in range(1000)]
QUERIES = 4
BATCH_CONCURRENCY = 64
GUARD_CONCURRENCY = 4


def _calibration(policy: FixedPolicy | DerivativePolicy) -> Calibration:
    return Calibration(
        alpha=0.1,
        tau=1.5,
        policy=policy,
        equivalence="normalized",
        extractor="text",
        num_calibration=100,
        calibration_mean_queries=float(policy.min_queries),
    )


@pytest.mark.slow
async def test_thousand_prompts_bounded() -> None:
    # Each prompt has its own answer, so a result routed to the wrong input shows.
    model = SimulatedChatModel(
        distributions={
            prompt: AnswerDistribution(answers={str(index): 0.9, "-1": 0.1})
            for index, prompt in enumerate(PROMPTS)
        },
        latency=0.001,
        latency_jitter=0.004,
        response_template="{answer}",
    )
    guard = CPQGuard(
        model, _calibration(FixedPolicy(queries=QUERIES)), max_concurrency=GUARD_CONCURRENCY
    )

    results = await guard.abatch(PROMPTS, config={"max_concurrency": BATCH_CONCURRENCY})

    bound = BATCH_CONCURRENCY * GUARD_CONCURRENCY
    assert len(results) == len(PROMPTS)
    assert model.max_in_flight <= bound
    assert model.max_in_flight > bound // 2, "the calls did not overlap"
    assert model.in_flight == 0
    assert model.calls_started == len(PROMPTS) * QUERIES
    assert model.calls_succeeded == len(PROMPTS) * QUERIES
    for index, result in enumerate(results):
        assert result.num_queries == QUERIES
        assert {cluster.representative for cluster in result.clusters} <= {str(index), "-1"}
        assert result.discarded_queries == 0
        assert result.cancelled_queries == 0


def _resident_megabytes() -> float | None:
    """Return the resident set size in MB, on Linux only."""
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
    except OSError:
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


@pytest.mark.slow
def test_memory_flat_across_runs() -> None:
    # A derivative policy with concurrent queries stops at different points,
    # so runs also discard and cancel calls; none of that may be kept.
    model = SimulatedChatModel(
        default=AnswerDistribution.from_weights({str(n): 1.0 / (n + 1) for n in range(20)}),
        latency=0.001,
        latency_jitter=0.004,
    )
    policy = DerivativePolicy(lambda_=0.01, min_queries=3, max_queries=8, bootstrap=5)
    guard = CPQGuard(model, _calibration(policy), max_concurrency=GUARD_CONCURRENCY, seed=3)
    prompts = PROMPTS[:100]

    objects: list[int] = []
    resident: list[float | None] = []
    for _ in range(5):
        results = asyncio.run(guard.abatch(prompts, config={"max_concurrency": 32}))
        assert len(results) == len(prompts)
        del results
        gc.collect()
        objects.append(len(gc.get_objects()))
        resident.append(_resident_megabytes())

    # Run 1 fills caches (imports, tracing setup); later runs must not grow.
    assert objects[4] - objects[1] <= 100, objects
    if sys.platform == "linux":
        assert resident[1] is not None and resident[4] is not None
        assert resident[4] - resident[1] < 2.0, resident
