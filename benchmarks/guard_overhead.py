"""CPU time of the guard's own work per sample, and ``ainvoke`` wall time against its floor.

Part 1 times the work `SamplingSession.add` does for the ``T``-th sample of a
guarded call, ``T`` in 10, 20 and 50, with the derivative policy's bootstrap
of ``h = 20`` resamples: the whole ``add`` call, and each piece on the same
states (answer extraction, clustering, the frequency update, the token-usage
sum, the bootstrap derivative and the stopping rule around it). To time the
``T``-th call exactly, the policy's ``min_queries`` is ``T``: earlier samples
skip the stopping statistic and the ``T``-th computes it, as every sample
from ``min_queries`` on does in a real call. It also times
`SamplingSession.result` (once per call) and, next to all this, one model
call through LangChain (`SimulatedChatModel` with no latency), and a whole
``CPQGuard.invoke`` per sample.

Part 2 measures ``CPQGuard.ainvoke`` wall time with `SimulatedChatModel` at
50 ms latency and a fixed policy of ``K = 50`` queries (a `FixedPolicy`
calibration, so every call makes exactly 50 queries), against the floor
``ceil(K / c) x latency`` for ``c = max_concurrency`` in 1, 5, 10 and 25.

The responses are the simulated model's template (``"... The answer is 42."``)
with answers drawn from the library's default mix of regimes; the guard
uses the ``final-answer`` extractor and ``numeric`` equivalence. Timed loops
run with the garbage collector off, as `timeit` does.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import _common
import numpy as np
from langchain_core.callbacks import CallbackManager
from langchain_core.runnables.config import ensure_config

from cpq_guard import CPQGuard
from cpq_guard.answers import Clusterer, get_equivalence
from cpq_guard.calibration import Calibration
from cpq_guard.extractors import get_extractor
from cpq_guard.models import DEFAULT_RESPONSE_TEMPLATE, SimulatedChatModel, make_simulated_task
from cpq_guard.querying import query
from cpq_guard.result import TokenUsage
from cpq_guard.retry import RetryPolicy
from cpq_guard.sampling import SamplingSession
from cpq_guard.stats.derivative import (
    bootstrap_derivative,
    expected_bootstrap_derivative,
    raw_derivative,
)
from cpq_guard.stats.frequencies import FrequencyCounter
from cpq_guard.stats.policies import DerivativePolicy, FixedPolicy

logger = logging.getLogger("cpq_guard.benchmarks")

SAMPLE_COUNTS = (10, 20, 50)
BOOTSTRAP = 20
MAX_QUERIES = 50
LATENCY = 0.05
CONCURRENCY = (1, 5, 10, 25)
EXTRACTOR = "final-answer"
EQUIVALENCE = "numeric"
USAGE = TokenUsage(input_tokens=30, output_tokens=25, total_tokens=55)


def calibration(policy: DerivativePolicy | FixedPolicy) -> Calibration:
    """Build a calibration around ``policy``. Its ``tau`` does not change the timed work."""
    return Calibration(
        alpha=0.1,
        tau=0.9,
        policy=policy,
        equivalence=EQUIVALENCE,
        extractor=EXTRACTOR,
        num_calibration=100,
        calibration_mean_queries=float(policy.max_queries),
    )


def response_texts(prompts: int, seed: int) -> list[list[str]]:
    """Draw ``MAX_QUERIES`` response texts for each of ``prompts`` simulated prompts."""
    task = make_simulated_task(prompts, seed=seed)
    texts = []
    for index, prompt in enumerate(task.prompts):
        rng = np.random.default_rng([seed, index])
        distribution = task.distributions[prompt]
        texts.append(
            [
                DEFAULT_RESPONSE_TEMPLATE.replace("{answer}", distribution.draw(rng) or "")
                for _ in range(MAX_QUERIES)
            ]
        )
    return texts


def per_call_seconds(
    prepare: Callable[[], list[Any]], call: Callable[[Any], Any], rounds: int
) -> tuple[float, float]:
    """Time ``call(state)`` over fresh states from ``prepare`` and return mean and std per call.

    Each round prepares its states untimed, then times one call per state
    with `time.process_time` and the garbage collector off. One more round
    runs first, untimed, so that lazy imports and caches on first use are
    not charged to the first timed round.
    """
    values = []
    for round_number in range(rounds + 1):
        states = prepare()
        gc.disable()
        try:
            started = time.process_time()
            for state in states:
                call(state)
            elapsed = time.process_time() - started
        finally:
            gc.enable()
        if round_number > 0:
            values.append(elapsed / len(states))
    return _common.mean_std(values)


def session_pieces(
    texts: list[list[str]], size: int, rounds: int
) -> dict[str, tuple[float, float]]:
    """Time the ``size``-th `SamplingSession.add` and each of its pieces."""
    extractor = get_extractor(EXTRACTOR)
    equivalence = get_equivalence(EQUIVALENCE)
    derivative = calibration(
        DerivativePolicy(
            lambda_=0.0, min_queries=size, max_queries=MAX_QUERIES, bootstrap=BOOTSTRAP
        )
    )
    expected = calibration(
        DerivativePolicy(
            lambda_=0.0, min_queries=size, max_queries=MAX_QUERIES, derivative="expected"
        )
    )
    fixed = calibration(FixedPolicy(queries=MAX_QUERIES))
    policy = derivative.policy

    def sessions(calibrated: Calibration) -> Callable[[], list[Any]]:
        def prepare() -> list[Any]:
            states = []
            for index, history in enumerate(texts):
                session = SamplingSession(
                    calibrated, extractor, equivalence, np.random.default_rng(index)
                )
                for text in history[: size - 1]:
                    session.add(text, USAGE)
                states.append((session, history[size - 1]))
            return states

        return prepare

    def counters() -> list[Any]:
        states = []
        for index, history in enumerate(texts):
            clusterer = Clusterer(equivalence)
            labels = [clusterer.add(extractor(text)) for text in history[:size]]
            counter = FrequencyCounter(labels[:-1])
            states.append((clusterer, counter, labels[-1], np.random.default_rng(index)))
        return states

    def full_counters() -> list[Any]:
        states = []
        for _, counter, label, rng in counters():
            counter.add(label)
            states.append((counter, rng))
        return states

    def clusterers() -> list[Any]:
        states = []
        for history in texts:
            clusterer = Clusterer(equivalence)
            for text in history[: size - 1]:
                clusterer.add(extractor(text))
            states.append((clusterer, extractor(history[size - 1])))
        return states

    last_texts = [history[size - 1] for history in texts]
    return {
        "SamplingSession.add, derivative policy (total)": per_call_seconds(
            sessions(derivative), lambda state: state[0].add(state[1], USAGE), rounds
        ),
        "SamplingSession.add, derivative policy, exact expectation (total)": per_call_seconds(
            sessions(expected), lambda state: state[0].add(state[1], USAGE), rounds
        ),
        "SamplingSession.add, fixed policy (no statistic)": per_call_seconds(
            sessions(fixed), lambda state: state[0].add(state[1], USAGE), rounds
        ),
        "extract (final-answer)": per_call_seconds(lambda: last_texts, extractor, rounds),
        "cluster (Clusterer.add, numeric)": per_call_seconds(
            clusterers, lambda state: state[0].add(state[1]), rounds
        ),
        "frequency update (FrequencyCounter.add)": per_call_seconds(
            counters, lambda state: state[1].add(state[2]), rounds
        ),
        "token usage sum (TokenUsage.__add__)": per_call_seconds(
            lambda: [USAGE] * len(texts), lambda usage: usage + USAGE, rounds
        ),
        f"stopping rule (should_stop, h = {BOOTSTRAP})": per_call_seconds(
            full_counters, lambda state: policy.should_stop(state[0], state[1]), rounds
        ),
        f"bootstrap derivative (h = {BOOTSTRAP})": per_call_seconds(
            full_counters,
            lambda state: bootstrap_derivative(state[0].counts, BOOTSTRAP, state[1]),
            rounds,
        ),
        "raw derivative 2 N_2 / T^2 (h = 0)": per_call_seconds(
            full_counters, lambda state: raw_derivative(state[0].counts), rounds
        ),
        "exact bootstrap mean from N_r (expected_bootstrap_derivative)": per_call_seconds(
            full_counters,
            lambda state: expected_bootstrap_derivative(state[0].frequencies, state[0].total),
            rounds,
        ),
    }


def derivative_accuracy(texts: list[list[str]], size: int) -> tuple[float, float]:
    """Compare the ``h = 20`` bootstrap with its exact mean on the first ``size`` samples.

    Returns:
        The mean of the exact values and the root mean square of the bootstrap's
        deviation from them, over the prompts.
    """
    extractor = get_extractor(EXTRACTOR)
    equivalence = get_equivalence(EQUIVALENCE)
    exact, errors = [], []
    for index, history in enumerate(texts):
        clusterer = Clusterer(equivalence)
        counter = FrequencyCounter(clusterer.add(extractor(text)) for text in history[:size])
        value = expected_bootstrap_derivative(counter.frequencies, counter.total)
        sampled = bootstrap_derivative(counter.counts, BOOTSTRAP, np.random.default_rng(index))
        exact.append(value)
        errors.append(sampled - value)
    return float(np.mean(exact)), float(np.sqrt(np.mean(np.square(errors))))


def result_seconds(texts: list[list[str]], size: int, rounds: int) -> tuple[float, float]:
    """Time `SamplingSession.result` after ``size`` samples (once per guarded call)."""
    extractor = get_extractor(EXTRACTOR)
    equivalence = get_equivalence(EQUIVALENCE)
    calibrated = calibration(FixedPolicy(queries=size))

    def prepare() -> list[SamplingSession]:
        sessions = []
        for index, history in enumerate(texts):
            session = SamplingSession(
                calibrated, extractor, equivalence, np.random.default_rng(index)
            )
            for text in history[:size]:
                session.add(text, USAGE)
            sessions.append(session)
        return sessions

    return per_call_seconds(prepare, lambda session: session.result(), rounds)


def model_seconds(prompts: list[str], model: SimulatedChatModel, rounds: int) -> dict[str, Any]:
    """Time one `SimulatedChatModel` call through LangChain, sync and async."""

    async def ainvoke_all() -> None:
        for prompt in prompts:
            await model.ainvoke(prompt)

    # One event loop serves all prompts, so its start-up is spread over len(prompts) calls.
    batch_mean, batch_std = per_call_seconds(
        lambda: [None], lambda _: asyncio.run(ainvoke_all()), rounds
    )
    # query() is the guard's per-sample call path: retry loop, child run config,
    # response reading. A chain run manager without handlers stands in for the guard's.
    config = ensure_config(None)
    run_manager = CallbackManager.configure().on_chain_start(None, {"input": ""}, name="bench")
    retry = RetryPolicy()

    def query_once(prompt: str) -> None:
        query(model, prompt, config, run_manager, index=0, retry=retry, timeout=None)

    return {
        "SimulatedChatModel.invoke (LangChain, no latency)": per_call_seconds(
            lambda: prompts, model.invoke, rounds
        ),
        "cpq_guard.querying.query (retry wrapper and child run, model call included)": (
            per_call_seconds(lambda: prompts, query_once, rounds)
        ),
        "SimulatedChatModel.ainvoke (LangChain, no latency)": (
            batch_mean / len(prompts),
            batch_std / len(prompts),
        ),
    }


def guard_seconds_per_sample(
    prompts: list[str],
    model: SimulatedChatModel,
    policy: DerivativePolicy | FixedPolicy,
    rounds: int,
) -> tuple[float, float]:
    """Time `CPQGuard.invoke` per sample drawn, model calls included; mean and std over rounds.

    Each round guards every prompt once. One untimed call comes first, as in
    `per_call_seconds`.
    """
    guard = CPQGuard(model, calibration(policy), seed=0)
    guard.invoke(prompts[0])
    values = []
    for _ in range(rounds):
        samples = 0
        gc.disable()
        try:
            started = time.process_time()
            for prompt in prompts:
                samples += guard.invoke(prompt).num_queries
            elapsed = time.process_time() - started
        finally:
            gc.enable()
        values.append(elapsed / samples)
    return _common.mean_std(values)


def ainvoke_walls(prompts: list[str], task_model: dict[str, Any], repeats: int) -> list[dict]:
    """Measure `CPQGuard.ainvoke` wall time at each ``max_concurrency``."""
    rows = []
    for concurrency in CONCURRENCY:
        model = SimulatedChatModel(latency=LATENCY, **task_model)
        guard = CPQGuard(
            model,
            calibration(FixedPolicy(queries=MAX_QUERIES)),
            max_concurrency=concurrency,
            seed=0,
        )

        async def run_all(guard: CPQGuard = guard) -> tuple[list[float], list[float]]:
            walls, cpus = [], []
            for prompt in prompts[:repeats]:
                started, cpu_started = time.perf_counter(), time.process_time()
                result = await guard.ainvoke(prompt)
                walls.append(time.perf_counter() - started)
                cpus.append(time.process_time() - cpu_started)
                assert result.num_queries == MAX_QUERIES
            return walls, cpus

        walls, cpus = asyncio.run(run_all())
        floor = math.ceil(MAX_QUERIES / concurrency) * LATENCY
        mean, std = _common.mean_std(walls)
        rows.append(
            {
                "concurrency": concurrency,
                "floor": floor,
                "wall": (mean, std),
                "overhead": mean - floor,
                "cpu_per_sample": float(np.mean(cpus)) / MAX_QUERIES,
                "max_in_flight": model.max_in_flight,
                "repeats": len(walls),
            }
        )
        logger.info("ainvoke c=%d: %.3f s (floor %.3f s)", concurrency, mean, floor)
    return rows


def us(value: tuple[float, float]) -> str:
    """Format seconds as microseconds, mean ± std."""
    return _common.pm(value[0] * 1e6, value[1] * 1e6, 1)


def main() -> None:
    args = _common.parser(__doc__.splitlines()[0]).parse_args()
    _common.configure_logging()
    folder = _common.output_dir(args)
    prompts_count = 40 if args.quick else 300
    rounds = 2 if args.quick else 5
    repeats = 1 if args.quick else 4

    task = make_simulated_task(prompts_count, seed=3)
    texts = response_texts(prompts_count, seed=3)

    pieces = {size: session_pieces(texts, size, rounds) for size in SAMPLE_COUNTS}
    results = {size: result_seconds(texts, size, rounds) for size in SAMPLE_COUNTS}
    accuracy = {size: derivative_accuracy(texts, size) for size in SAMPLE_COUNTS}
    model = task.model()
    calls = model_seconds(task.prompts, model, rounds)
    guard_prompts = task.prompts[: 10 if args.quick else 60]
    guard_fixed = guard_seconds_per_sample(
        guard_prompts, model, FixedPolicy(queries=MAX_QUERIES), rounds
    )
    guard_derivative = guard_seconds_per_sample(
        guard_prompts,
        model,
        DerivativePolicy(lambda_=0.0, min_queries=10, max_queries=MAX_QUERIES, bootstrap=20),
        rounds,
    )
    walls = ainvoke_walls(
        task.prompts, {"distributions": task.distributions, "seed": task.seed}, repeats
    )
    info = _common.machine()

    names = list(pieces[SAMPLE_COUNTS[0]])
    piece_rows = [[name, *(us(pieces[size][name]) for size in SAMPLE_COUNTS)] for name in names]
    piece_rows.append(
        ["SamplingSession.result (once per call)", *(us(results[s]) for s in SAMPLE_COUNTS)]
    )
    piece_table = _common.markdown_table(
        ["CPU µs per call", *(f"T = {size}" for size in SAMPLE_COUNTS)], piece_rows
    )
    accuracy_table = _common.markdown_table(
        ["statistic, mean over prompts", *(f"T = {size}" for size in SAMPLE_COUNTS)],
        [
            [
                "exact bootstrap mean of 2 N_2 / T^2",
                *(f"{accuracy[s][0]:.2e}" for s in SAMPLE_COUNTS),
            ],
            [
                f"RMS error of the h = {BOOTSTRAP} bootstrap against it",
                *(f"{accuracy[s][1]:.2e}" for s in SAMPLE_COUNTS),
            ],
        ],
    )
    call_rows = [[name, us(value)] for name, value in calls.items()]
    call_rows.append(
        [
            "CPQGuard.invoke per sample, fixed K = 50 (model call included)",
            us(guard_fixed),
        ]
    )
    call_rows.append(
        [
            "CPQGuard.invoke per sample, derivative policy (model call included)",
            us(guard_derivative),
        ]
    )
    call_table = _common.markdown_table(["CPU µs per call", "value"], call_rows)
    wall_rows = [
        [
            row["concurrency"],
            f"{row['floor']:.3f}",
            _common.pm(*row["wall"], 3),
            f"{row['overhead']:+.3f}",
            f"{row['overhead'] / MAX_QUERIES * 1e3:.2f}",
            f"{row['cpu_per_sample'] * 1e3:.2f}",
            row["max_in_flight"],
        ]
        for row in walls
    ]
    wall_table = _common.markdown_table(
        [
            "max_concurrency c",
            "floor ceil(K/c) x latency, s",
            "wall s",
            "wall − floor, s",
            "ms per sample over floor",
            "CPU ms per sample",
            "max calls in flight",
        ],
        wall_rows,
    )

    block = "\n".join(
        [
            f"{_common.machine_line(info)} {prompts_count} simulated prompts, {rounds} rounds "
            "per cell (mean ± std over rounds).",
            "",
            "The guard's own work for the T-th sample:",
            "",
            piece_table,
            "",
            "Noise of the bootstrap statistic against its exact mean:",
            "",
            accuracy_table,
            "",
            "Next to a model call through LangChain:",
            "",
            call_table,
            "",
            f"`ainvoke` with K = {MAX_QUERIES} (fixed policy), {LATENCY * 1e3:.0f} ms latency, "
            f"{repeats} calls per row:",
            "",
            wall_table,
        ]
    )
    print(block)
    data = {
        "machine": info,
        "pieces": {str(size): value for size, value in pieces.items()},
        "result": {str(size): value for size, value in results.items()},
        "derivative_accuracy": {str(size): value for size, value in accuracy.items()},
        "model_calls": calls,
        "guard_per_sample": {"fixed": guard_fixed, "derivative": guard_derivative},
        "ainvoke": walls,
    }
    _common.write_results(folder, "guard_overhead", data, block)
    if _common.updates_readme(args, folder):
        _common.update_readme("guard_overhead", block)


if __name__ == "__main__":
    main()
