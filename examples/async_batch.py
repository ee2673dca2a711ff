"""Guard many prompts concurrently with ``abatch``, and count what concurrency costs.

Two limits apply at once. ``config={"max_concurrency": 8}`` in ``abatch``
bounds how many prompts are guarded at a time, and ``CPQGuard(...,
max_concurrency=5)`` bounds the queries in flight for one prompt, so at most
8 x 5 = 40 model calls are in flight in total. With 5 queries in flight, the
guard may stop while other queries are still running: queries that finish
after the stopping point are "discarded" (paid for, not used), and those
still running are cancelled. Each `GuardResult` counts both.

The model is cpq-guard's simulated model with 20 ms of latency per call, a
stand-in for a hosted model's network round trip. Run it with::

    python examples/async_batch.py
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import cpq_guard
from cpq_guard import CPQGuard, GuardResult, make_simulated_task

NUM_CALIBRATION = 80
NUM_HELD_OUT = 24
SEED = 7

LATENCY_SECONDS = 0.02
"""Latency of every model call while guarding."""

PROMPTS_IN_FLIGHT = 8
"""Prompts guarded at once, passed as ``abatch``'s ``max_concurrency``."""

QUERIES_IN_FLIGHT = 5
"""Queries in flight at once for one prompt, passed as the guard's ``max_concurrency``."""


@dataclass(frozen=True)
class AsyncBatchOutput:
    """Results and call counts of the concurrent batch.

    Attributes:
        results: One result per held-out prompt, in prompt order.
        wall_seconds: Wall time of the ``abatch`` call.
        model_calls: Calls the guarded model received.
        max_in_flight: Most model calls that were in flight at the same time.
    """

    results: list[GuardResult]
    wall_seconds: float
    model_calls: int
    max_in_flight: int


async def run() -> AsyncBatchOutput:
    """Calibrate on a fast model, then guard held-out prompts on a slow one with ``abatch``."""
    task = make_simulated_task(NUM_CALIBRATION + NUM_HELD_OUT, seed=SEED)

    # Calibrate on the model without latency, to keep the example fast. The
    # slow model below has the same seed and answer distributions, so it
    # answers like the model that was calibrated.
    calibration = await cpq_guard.acalibrate(
        task.model(),
        task.prompts[:NUM_CALIBRATION],
        task.references[:NUM_CALIBRATION],
        alpha=0.1,
        average_budget=10,
        min_queries=5,
        max_queries=20,
        extractor="final-answer",
        equivalence="numeric",
        seed=SEED,
    )

    model = task.model(latency=LATENCY_SECONDS)
    guard = CPQGuard(model, calibration, max_concurrency=QUERIES_IN_FLIGHT, seed=SEED)
    prompts = task.prompts[NUM_CALIBRATION:]

    started = time.perf_counter()
    results = await guard.abatch(prompts, config={"max_concurrency": PROMPTS_IN_FLIGHT})
    wall_seconds = time.perf_counter() - started

    return AsyncBatchOutput(
        results=results,
        wall_seconds=wall_seconds,
        model_calls=model.calls_started,
        max_in_flight=model.max_in_flight,
    )


def main() -> AsyncBatchOutput:
    """Run the concurrent batch and print its timing and query counts."""
    output = asyncio.run(run())
    results = output.results

    used = sum(result.num_queries for result in results)
    discarded = sum(result.discarded_queries for result in results)
    cancelled = sum(result.cancelled_queries for result in results)
    abstained = sum(result.abstained for result in results)

    # One call after another, the calls would take at least this long.
    serial_seconds = output.model_calls * LATENCY_SECONDS

    print(f"guarded {len(results)} prompts in {output.wall_seconds:.2f} s")
    print(f"  one call at a time, the model calls alone would take {serial_seconds:.2f} s")
    print(f"  answered {len(results) - abstained}, abstained {abstained}")
    print(f"  mean queries per prompt: {used / len(results):.1f}")
    print(f"  queries used {used}, discarded {discarded}, cancelled {cancelled}")
    print(
        f"  model calls started {output.model_calls}, at most {output.max_in_flight} in flight "
        f"(limit {PROMPTS_IN_FLIGHT} x {QUERIES_IN_FLIGHT} = "
        f"{PROMPTS_IN_FLIGHT * QUERIES_IN_FLIGHT})"
    )
    return output


if __name__ == "__main__":
    main()
