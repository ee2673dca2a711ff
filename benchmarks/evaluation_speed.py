"""Speed of the evaluation sweep: one replay per policy against a replay per split.

The sweep is the one ``cpq-guard evaluate`` runs for ``--method cpq fixed
missing-mass --average-budget 20``: 6 alphas x 3 methods x 10 splits on the
authors' released GSM8K samples (300 prompts, 50 samples each).

- ours: `PolicyReplay.compute` once per method, then one `evaluate` call for
  all alphas and splits;
- straightforward: in every split, recompute the stopping statistics of the
  tuning prompts to tune the threshold, replay every calibration and test
  prompt online through ``policy.should_stop``, and recompute its estimates,
  with no cache shared between splits. It reuses the library's statistics
  (`tune_threshold`, `estimate_from_counts`, `conformal_quantile`,
  `split_metrics`), so the comparison measures the replay design alone.

Both use the same seeds, so they must produce the same metrics; the script
checks that before it reports times. A loop that also recomputed the replay
for every alpha would be about six times slower than the straightforward one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import _common
import numpy as np

from cpq_guard.answers import get_equivalence
from cpq_guard.evaluation import (
    METRIC_NAMES,
    EvaluationRow,
    PolicyReplay,
    evaluate,
    nonconformity_score,
    split_metrics,
)
from cpq_guard.histories import History, StopEstimate, histories_from_records
from cpq_guard.paper import import_paper
from cpq_guard.stats.conformal import DEFAULT_TIE_JITTER, conformal_quantile
from cpq_guard.stats.frequencies import FrequencyCounter
from cpq_guard.stats.policies import (
    DerivativePolicy,
    FixedPolicy,
    MissingMassPolicy,
    ThresholdPolicy,
)
from cpq_guard.stats.probabilities import estimate_from_counts
from cpq_guard.stats.tuning import tune_fixed_queries, tune_threshold

logger = logging.getLogger("cpq_guard.benchmarks")

ALPHAS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
SPLITS = 10
BUDGET = 20
SEED = 42
ESTIMATOR = "smoothed"
POLICIES: dict[str, ThresholdPolicy | FixedPolicy] = {
    "cpq": DerivativePolicy(lambda_=0.0, min_queries=10, max_queries=50, bootstrap=20),
    "fixed": FixedPolicy(queries=50),
    "missing-mass": MissingMassPolicy(epsilon=0.0, min_queries=10, max_queries=50),
}


def fresh(histories: Sequence[History]) -> list[History]:
    """Copy histories without their estimate caches, so every timed run starts cold."""
    return [History(h.labels, h.reference_labels, h.prompt_id) for h in histories]


def ours(histories: Sequence[History], alphas: Sequence[float], splits: int) -> dict[str, Any]:
    """Run the sweep with one `PolicyReplay` per method and one `evaluate` call."""
    results: dict[str, list[EvaluationRow]] = {}
    for method, policy in POLICIES.items():
        replay = PolicyReplay.compute(policy, histories, SEED)
        results[method] = evaluate(
            histories,
            alphas,
            replay,
            method=method,
            average_budget=BUDGET,
            splits=splits,
            seed=SEED,
            estimator=ESTIMATOR,
        )
    return {
        method: [{name: getattr(row, name).mean for name in METRIC_NAMES} for row in rows]
        for method, rows in results.items()
    }


def _online_stop(history: History, index: int, policy: ThresholdPolicy | FixedPolicy) -> int:
    # The generator [SEED, index] is the one PolicyReplay.compute gives history `index`.
    rng = np.random.default_rng([SEED, index])
    counter = FrequencyCounter()
    for label in history.labels[: policy.max_queries]:
        counter.add(int(label))
        if policy.should_stop(counter, rng) is not None:
            break
    return counter.total


def _estimate(history: History, queries: int) -> StopEstimate:
    counts = np.bincount(history.labels[:queries])
    missing_mass, probabilities = estimate_from_counts(counts, ESTIMATOR)
    references = tuple(label for label in history.reference_labels if label < counts.size)
    return StopEstimate(queries, missing_mass, probabilities, references)


def straightforward(
    histories: Sequence[History], alphas: Sequence[float], splits: int
) -> dict[str, Any]:
    """Run the sweep recomputing every prompt's replay in every split."""
    n = len(histories)
    n_calibration = round(0.5 * n)
    results: dict[str, Any] = {}
    for method, template in POLICIES.items():
        per_alpha: list[list[dict[str, float]]] = [[] for _ in alphas]
        for split in range(splits):
            order = np.random.default_rng([SEED, split]).permutation(n)
            tuning = order[: n_calibration // 2]
            calibration = order[n_calibration // 2 : n_calibration]
            test = order[n_calibration:]

            if isinstance(template, FixedPolicy):
                policy: ThresholdPolicy | FixedPolicy = tune_fixed_queries(
                    BUDGET, template.max_queries
                ).policy
            else:
                trajectories = np.vstack(
                    [
                        template.trajectory(
                            histories[index].labels, np.random.default_rng([SEED, index])
                        )
                        for index in tuning
                    ]
                )
                policy = tune_threshold(template, trajectories, BUDGET).policy

            calibration_estimates = [
                _estimate(histories[i], _online_stop(histories[i], i, policy)) for i in calibration
            ]
            test_estimates = [
                _estimate(histories[i], _online_stop(histories[i], i, policy)) for i in test
            ]
            scores = np.array(
                [nonconformity_score(e, "missing-mass") for e in calibration_estimates]
            )
            for position, alpha in enumerate(alphas):
                rng = np.random.default_rng([SEED, split, position, 1])
                jittered = scores + rng.uniform(0.0, DEFAULT_TIE_JITTER, size=scores.size)
                tau = conformal_quantile(jittered, alpha)
                per_alpha[position].append(
                    split_metrics(test_estimates, tau, "missing-mass", rng, DEFAULT_TIE_JITTER)
                )
        results[method] = [
            {name: float(np.mean([row[name] for row in rows])) for name in METRIC_NAMES}
            for rows in per_alpha
        ]
    return results


def timed(
    function: Callable[[list[History], Sequence[float], int], dict[str, Any]],
    histories: Sequence[History],
    alphas: Sequence[float],
    splits: int,
    repeats: int,
) -> tuple[list[float], list[float], dict[str, Any]]:
    """Run ``function`` ``repeats`` times on cold histories and return wall and CPU seconds."""
    walls, cpus = [], []
    result: dict[str, Any] = {}
    for _ in range(repeats):
        cold = fresh(histories)
        wall, cpu = time.perf_counter(), time.process_time()
        result = function(cold, alphas, splits)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return walls, cpus, result


def check_same(first: dict[str, Any], second: dict[str, Any]) -> None:
    """Exit if the two sweeps disagree on any metric."""
    for method in first:
        for a, b in zip(first[method], second[method]):
            for name in METRIC_NAMES:
                if not np.isclose(a[name], b[name], rtol=0.0, atol=1e-12):
                    raise SystemExit(f"the sweeps disagree: {method} {name} {a[name]} != {b[name]}")


def main() -> None:
    args = _common.parser(__doc__.splitlines()[0], data=True).parse_args()
    _common.configure_logging()
    folder = _common.output_dir(args)
    data_dir = args.data if args.data is not None else _common.default_data_dir()
    records = import_paper(_common.gsm8k_path(data_dir))
    histories = histories_from_records(records, get_equivalence("normalized"))

    alphas = ALPHAS[:2] if args.quick else ALPHAS
    splits = 2 if args.quick else SPLITS
    repeats_ours = 1 if args.quick else 5
    repeats_straightforward = 1 if args.quick else 3

    ours_wall, ours_cpu, ours_result = timed(ours, histories, alphas, splits, repeats_ours)
    logger.info("ours: %.2f s", np.mean(ours_wall))
    plain_wall, plain_cpu, plain_result = timed(
        straightforward, histories, alphas, splits, repeats_straightforward
    )
    logger.info("straightforward: %.2f s", np.mean(plain_wall))
    check_same(ours_result, plain_result)

    info = _common.machine()
    sweep = f"{len(alphas)} alphas x {len(POLICIES)} methods x {splits} splits"
    rows = [
        [
            "`PolicyReplay` once per method + `evaluate`",
            repeats_ours,
            _common.pm(*_common.mean_std(ours_wall), 2),
            _common.pm(*_common.mean_std(ours_cpu), 2),
        ],
        [
            "straightforward: replay every prompt in every split",
            repeats_straightforward,
            _common.pm(*_common.mean_std(plain_wall), 2),
            _common.pm(*_common.mean_std(plain_cpu), 2),
        ],
    ]
    table = _common.markdown_table(["implementation", "runs", "wall s", "CPU s"], rows)
    speedup = float(np.mean(plain_wall) / np.mean(ours_wall))
    block = "\n".join(
        [
            f"Sweep: {sweep} on GSM8K ({len(histories)} prompts), average budget {BUDGET}. "
            f"{_common.machine_line(info)}",
            "",
            table,
            "",
            f"Ratio of mean wall times (straightforward / ours): **{speedup:.1f}x**. "
            "Both produce identical metrics (checked by the script).",
        ]
    )
    print(block)

    data = {
        "machine": info,
        "sweep": sweep,
        "ours": {"wall": ours_wall, "cpu": ours_cpu},
        "straightforward": {"wall": plain_wall, "cpu": plain_cpu},
        "speedup": speedup,
    }
    _common.write_results(folder, "evaluation_speed", data, block)
    if _common.updates_readme(args, folder):
        _common.update_readme("evaluation_speed", block)


if __name__ == "__main__":
    main()
