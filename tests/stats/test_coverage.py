"""Coverage of CPQ sets as a statistical guarantee, on simulated oracles.

Each scenario is a distribution over prompts. A prompt is a known answer
distribution and a reference answer, and its history is ``MAX_QUERIES`` draws
from that distribution, labelled by first appearance. Split conformal
prediction promises, for every method and mapping,

    P(reference in set, or abstained) >= k / (n + 1) >= 1 - alpha,
    with k = ceil((n + 1)(1 - alpha)) and n calibration prompts,

and for continuous scores (the missing-mass mapping with tie-breaking noise)
also ``<= k / (n + 1) <= 1 - alpha + 1 / (n + 1)``.

The guarantee holds conditionally on a fixed pool of prompts too: a uniformly
random split makes the calibration and test prompts exchangeable draws from
the pool. So each scenario draws one pool, and the coverages of independent
random splits of it are i.i.d. with a mean of at least ``k / (n + 1)``; their
average gets a t-interval. Every one-sided check in this file shares a
Bonferroni-corrected family error of ``FAMILY_ERROR``.

The protocol runs twice: through `evaluate` (offline replay, with and without
a tuned budget) on each scenario, and through the raw functions with online
stopping, as the guard uses them, on a mixture of the scenarios.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from statistics import NormalDist

import numpy as np
import pytest

from cpq_guard.evaluation import PolicyReplay, evaluate
from cpq_guard.histories import History
from cpq_guard.stats.conformal import (
    DEFAULT_TIE_JITTER,
    conformal_quantile,
    missing_mass_score,
    missing_mass_set,
)
from cpq_guard.stats.cumulative import cumulative_score, cumulative_set
from cpq_guard.stats.frequencies import FrequencyCounter
from cpq_guard.stats.policies import DerivativePolicy, FixedPolicy, MissingMassPolicy
from cpq_guard.stats.probabilities import estimate_from_counts

ALPHA = 0.1
MIN_QUERIES, MAX_QUERIES = 4, 20
FIXED = FixedPolicy(queries=8)
MISSING_MASS = MissingMassPolicy(
    epsilon=0.15, estimator="smoothed", min_queries=MIN_QUERIES, max_queries=MAX_QUERIES
)
DERIVATIVE = DerivativePolicy(
    lambda_=0.005, bootstrap=5, min_queries=MIN_QUERIES, max_queries=MAX_QUERIES
)
BUDGET = 8.0
MAPPINGS = ["missing-mass", "cumulative"]

# Each scenario has one pool of POOL_SIZE prompts and SPLITS random splits.
# Without a budget, 25 prompts set tau and 75 test. With a budget, 25 tune the
# threshold, 25 set tau and 50 test.
POOL_SIZE, SPLITS = 100, 120
CALIBRATION_FRACTION = {None: 0.25, BUDGET: 0.5}
TAU_PROMPTS = 25

FAMILY_ERROR = 1e-3
SCENARIO_NAMES = ["peaked-right", "spread", "confidently-wrong", "long-tailed"]
METHODS = ["fixed", "missing-mass", "derivative", "derivative-budget"]
RAW_METHODS = ["fixed", "missing-mass", "derivative"]
EVALUATE_CASES = [
    (scenario, method, mapping)
    for scenario in SCENARIO_NAMES
    for method in METHODS
    for mapping in MAPPINGS
]
RAW_CASES = [(method, mapping) for method in RAW_METHODS for mapping in MAPPINGS]
# One lower check per case, and one upper check per missing-mass mapping case.
CHECKS = (len(EVALUATE_CASES) + len(RAW_CASES)) * 3 // 2
Z = NormalDist().inv_cdf(1.0 - FAMILY_ERROR / CHECKS)


def t_quantile(z: float, df: int) -> float:
    """Approximate the Student t quantile at the normal quantile ``z``.

    Uses the Cornish-Fisher expansion of Abramowitz and Stegun 26.7.5. At the
    ``Z`` of this file and ``df >= 29``, the tail probability of the result
    matches the normal one to 0.1 % (checked by numerical integration).
    """
    terms = [
        (z**3 + z) / 4,
        (5 * z**5 + 16 * z**3 + 3 * z) / 96,
        (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384,
        (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160,
    ]
    return z + sum(term / df ** (power + 1) for power, term in enumerate(terms))


# Answer distributions. Each returns (probabilities, index of the reference).
Oracle = Callable[[np.random.Generator], tuple[np.ndarray, int]]


def peaked_right(rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Reference is the mode, with mass Beta(9, 1); five wrong answers share the rest."""
    right = rng.beta(9.0, 1.0)
    wrong = (1.0 - right) * rng.dirichlet(np.ones(5))
    return np.concatenate(([right], wrong)), 0


def spread(rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Four answers with Dirichlet(1) masses; the reference is drawn from them."""
    probabilities = rng.dirichlet(np.ones(4))
    return probabilities, int(rng.choice(4, p=probabilities))


def confidently_wrong(rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """A wrong mode with mass Beta(6, 4); the reference gets a Beta(5, 2) share of the rest."""
    wrong = rng.beta(6.0, 4.0)
    right = (1.0 - wrong) * rng.beta(5.0, 2.0)
    others = (1.0 - wrong - right) * rng.dirichlet(np.ones(4))
    return np.concatenate(([wrong, right], others)), 1


ZIPF_WEIGHTS = 1.0 / np.arange(1, 401) ** 1.1


def long_tailed(rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Zipf(1.1) over 400 answers; the reference is a sample or, half the time, any answer.

    The reference is often unseen after 20 draws, so the sets must abstain.
    """
    probabilities = rng.permutation(ZIPF_WEIGHTS / ZIPF_WEIGHTS.sum())
    if rng.random() < 0.5:
        return probabilities, int(rng.choice(probabilities.size, p=probabilities))
    return probabilities, int(rng.integers(probabilities.size))


SCENARIOS: dict[str, Oracle] = {
    "peaked-right": peaked_right,
    "spread": spread,
    "confidently-wrong": confidently_wrong,
    "long-tailed": long_tailed,
}


def mixture(rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """A prompt of one of the four scenarios, chosen uniformly."""
    oracle = SCENARIOS[SCENARIO_NAMES[int(rng.integers(len(SCENARIO_NAMES)))]]
    return oracle(rng)


def draw_history(oracle: Oracle, rng: np.random.Generator) -> History:
    """Draw one prompt and ``MAX_QUERIES`` answers, labelled by first appearance."""
    probabilities, reference = oracle(rng)
    answers = rng.choice(probabilities.size, size=MAX_QUERIES, p=probabilities)

    values, first, inverse = np.unique(answers, return_index=True, return_inverse=True)
    label_of_value = np.empty(values.size, dtype=np.int64)
    label_of_value[np.argsort(first)] = np.arange(values.size)

    found = np.flatnonzero(values == reference)
    reference_labels = (int(label_of_value[found[0]]),) if found.size else ()
    return History(labels=label_of_value[inverse], reference_labels=reference_labels)


def draw_histories(oracle: Oracle, count: int, seed: int) -> list[History]:
    rng = np.random.default_rng(seed)
    return [draw_history(oracle, rng) for _ in range(count)]


def test_draw_history_labels() -> None:
    def fixed_oracle(rng: np.random.Generator) -> tuple[np.ndarray, int]:
        return np.array([0.0, 0.5, 0.5]), 2

    history = draw_history(fixed_oracle, np.random.default_rng(0))
    labels = history.labels.tolist()

    assert labels[0] == 0
    assert set(labels) == {0, 1}
    assert all(labels[i] <= max(labels[:i]) + 1 for i in range(1, len(labels)))
    assert history.reference_labels in {(0,), (1,)}


@dataclass(frozen=True)
class CoverageSummary:
    """Mean coverage over i.i.d. random splits of one pool, and its standard error."""

    coverage: float
    standard_error: float
    splits: int
    abstention_rate: float
    mean_set_size: float


def assert_coverage(summary: CoverageSummary, n: int, mapping: str) -> None:
    """Check the conformal bounds on mean coverage with Bonferroni-corrected t-tolerances."""
    # Exact rational arithmetic, independent of the library's conformal_rank.
    target = math.ceil((n + 1) * (1 - Fraction(str(ALPHA)))) / (n + 1)
    tolerance = t_quantile(Z, summary.splits - 1) * summary.standard_error

    assert target >= 1 - ALPHA
    assert summary.coverage >= target - tolerance
    if mapping == "missing-mass":
        assert summary.coverage <= 1 - ALPHA + 1 / (n + 1) + tolerance
    # Abstaining everywhere would cover trivially; some sets must be informative.
    assert summary.abstention_rate < 1.0
    assert summary.mean_set_size > 0.0


@pytest.fixture(scope="module")
def pools() -> dict[str, list[History]]:
    return {
        name: draw_histories(SCENARIOS[name], POOL_SIZE, seed=index)
        for index, name in enumerate(SCENARIO_NAMES)
    }


@pytest.fixture(scope="module")
def replays(pools: dict[str, list[History]]) -> dict[tuple[str, str], PolicyReplay]:
    result = {}
    for name, histories in pools.items():
        result[name, "fixed"] = PolicyReplay.compute(FIXED, histories, seed=1)
        result[name, "missing-mass"] = PolicyReplay.compute(MISSING_MASS, histories, seed=2)
        result[name, "derivative"] = PolicyReplay.compute(DERIVATIVE, histories, seed=3)
    return result


@pytest.mark.parametrize(("scenario", "method", "mapping"), EVALUATE_CASES)
def test_evaluate_coverage(
    pools: dict[str, list[History]],
    replays: dict[tuple[str, str], PolicyReplay],
    scenario: str,
    method: str,
    mapping: str,
) -> None:
    budget = BUDGET if method == "derivative-budget" else None
    replay = replays[scenario, method.removesuffix("-budget")]

    (row,) = evaluate(
        pools[scenario],
        [ALPHA],
        replay,
        method=method,
        mapping=mapping,  # type: ignore[arg-type]
        average_budget=budget,
        splits=SPLITS,
        calibration_fraction=CALIBRATION_FRACTION[budget],
        seed=7,
    )

    # EvaluationRow reports the population standard deviation over splits.
    summary = CoverageSummary(
        coverage=row.coverage.mean,
        standard_error=row.coverage.std / math.sqrt(SPLITS - 1),
        splits=SPLITS,
        abstention_rate=row.abstention_rate.mean,
        mean_set_size=row.mean_set_size.mean,
    )
    assert_coverage(summary, TAU_PROMPTS, mapping)
    if budget is not None:
        # Tuning keeps the mean at most the budget on the tuning half only, so
        # the test prompts get a margin. It can be far below: in peaked-right
        # most prompts stop at min_queries even at lambda = 0.
        assert row.policy_threshold is not None
        assert row.mean_queries.mean <= BUDGET + 1.0


Estimate = tuple[float, np.ndarray, tuple[int, ...]]


def online_estimate(
    policy: FixedPolicy | MissingMassPolicy | DerivativePolicy,
    history: History,
    rng: np.random.Generator,
) -> Estimate:
    """Stop ``history`` online as the guard does; return M_hat, p_hat and the reference labels."""
    counter = FrequencyCounter()
    for label in history.labels:
        counter.add(int(label))
        if policy.should_stop(counter, rng) is not None:
            break
    missing_mass, probabilities = estimate_from_counts(counter.counts, "smoothed")
    references = tuple(label for label in history.reference_labels if label < counter.num_clusters)
    return missing_mass, probabilities, references


def raw_split(
    estimates: list[Estimate], mapping: str, rng: np.random.Generator
) -> tuple[float, float, float]:
    """Calibrate tau on a random TAU_PROMPTS prompts and test on the rest.

    Returns:
        The test coverage, abstention rate and mean set size.
    """
    order = rng.permutation(len(estimates))
    calibration = [estimates[index] for index in order[:TAU_PROMPTS]]
    test = [estimates[index] for index in order[TAU_PROMPTS:]]

    score = missing_mass_score if mapping == "missing-mass" else cumulative_score
    scores = np.array([score(p, m, references) for m, p, references in calibration])
    if mapping == "missing-mass":
        scores += rng.uniform(0.0, DEFAULT_TIE_JITTER, size=scores.size)
    tau = conformal_quantile(scores, ALPHA)

    covered, abstained, sizes = [], [], []
    for missing_mass, probabilities, references in test:
        if mapping == "missing-mass":
            abstain, members = missing_mass_set(
                probabilities, missing_mass, tau, rng, DEFAULT_TIE_JITTER
            )
        else:
            abstain, members = cumulative_set(probabilities, missing_mass, tau)
        covered.append(abstain or bool(set(members.tolist()) & set(references)))
        abstained.append(abstain)
        sizes.append(0 if abstain else members.size)
    return float(np.mean(covered)), float(np.mean(abstained)), float(np.mean(sizes))


@pytest.fixture(scope="module")
def mixture_estimates() -> dict[str, list[Estimate]]:
    """Stop every prompt of a mixture pool online; history i uses generator [8, i]."""
    histories = draw_histories(mixture, POOL_SIZE, seed=8)
    policies = {"fixed": FIXED, "missing-mass": MISSING_MASS, "derivative": DERIVATIVE}
    return {
        method: [
            online_estimate(policy, history, np.random.default_rng([8, index]))
            for index, history in enumerate(histories)
        ]
        for method, policy in policies.items()
    }


@pytest.mark.parametrize(("method", "mapping"), RAW_CASES)
def test_raw_coverage(
    mixture_estimates: dict[str, list[Estimate]], method: str, mapping: str
) -> None:
    rng = np.random.default_rng(9)
    results = np.array([raw_split(mixture_estimates[method], mapping, rng) for _ in range(SPLITS)])

    summary = CoverageSummary(
        coverage=float(results[:, 0].mean()),
        standard_error=float(results[:, 0].std(ddof=1) / math.sqrt(SPLITS)),
        splits=SPLITS,
        abstention_rate=float(results[:, 1].mean()),
        mean_set_size=float(results[:, 2].mean()),
    )
    assert_coverage(summary, TAU_PROMPTS, mapping)


def test_online_stop_matches_evaluate() -> None:
    # The raw path stops online and evaluate replays offline; on the same
    # history with the same generator both must use the same samples.
    histories = draw_histories(mixture, 30, seed=10)
    replay = PolicyReplay.compute(DERIVATIVE, histories, seed=10)

    times = replay.stopping_times(np.arange(len(histories)), DERIVATIVE)

    for index, history in enumerate(histories):
        estimate = online_estimate(DERIVATIVE, history, np.random.default_rng([10, index]))
        offline = history.estimate(int(times[index]), "smoothed")
        assert estimate[0] == offline.missing_mass
        assert estimate[1].tolist() == offline.probabilities.tolist()
        assert estimate[2] == offline.reference_clusters
