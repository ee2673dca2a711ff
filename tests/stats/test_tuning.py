"""Tests of threshold tuning for a target average budget."""

import numpy as np
import pytest

from cpq_guard.errors import BudgetOutOfRangeError, InvalidParameterError, InvalidTypeError
from cpq_guard.stats.policies import (
    DerivativePolicy,
    FixedPolicy,
    MissingMassPolicy,
    ThresholdPolicy,
    stopping_times,
)
from cpq_guard.stats.tuning import TuningResult, tune_fixed_queries, tune_threshold

MIN_QUERIES, MAX_QUERIES = 5, 20
TEMPLATE = DerivativePolicy(
    lambda_=1.0, bootstrap=5, min_queries=MIN_QUERIES, max_queries=MAX_QUERIES
)


def relabel(raw: np.ndarray) -> np.ndarray:
    """Relabel answers by order of first appearance (0, 1, 2, ...)."""
    _, first, inverse = np.unique(raw, return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first)] = np.arange(first.size)
    return rank[inverse]


def simulated_trajectories(policy: ThresholdPolicy, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(count):
        categories = int(rng.integers(2, 15))
        probabilities = rng.dirichlet(np.full(categories, 0.5))
        labels = relabel(rng.choice(categories, size=policy.max_queries, p=probabilities))
        rows.append(policy.trajectory(labels, np.random.default_rng([seed, index])))
    return np.vstack(rows)


def mean_queries(policy: ThresholdPolicy, trajectories: np.ndarray, threshold: float) -> float:
    times = stopping_times(trajectories, threshold, policy.min_queries, policy.max_queries)
    return float(times.mean())


@pytest.fixture(scope="module")
def derivative_trajectories() -> np.ndarray:
    return simulated_trajectories(TEMPLATE, count=40, seed=1)


# Hand-made trajectories for queries 1..3. Mean queries by threshold t:
# t < 0.1: 3; [0.1, 0.2): 2.5; [0.2, 0.4): 2; [0.4, 0.5): 1.5; t >= 0.5: 1.
HAND_TRAJECTORIES = np.array([[0.5, 0.4, 0.3], [0.2, 0.1, 0.05]])
HAND_TEMPLATE = DerivativePolicy(lambda_=1.0, bootstrap=0, min_queries=1, max_queries=3)


@pytest.mark.parametrize(
    ("budget", "threshold", "achieved"),
    [
        (3.0, 0.025, 3.0),
        (2.7, 0.15, 2.5),
        (2.5, 0.15, 2.5),
        (2.2, 0.25, 2.0),
        (1.7, 0.45, 1.5),
        (1.5, 0.45, 1.5),
        (1.0, 0.5, 1.0),
    ],
)
def test_hand_trajectories(budget: float, threshold: float, achieved: float) -> None:
    result = tune_threshold(HAND_TEMPLATE, HAND_TRAJECTORIES, budget)

    assert result.policy.threshold == pytest.approx(threshold)
    assert result.mean_queries == achieved
    assert result.target_budget == budget
    assert result.num_histories == 2


@pytest.mark.parametrize("budget", [5.0, 5.5, 7.3, 10.0, 12.5, 16.0, 19.9, 20.0])
def test_closest_step_below_budget(derivative_trajectories: np.ndarray, budget: float) -> None:
    result = tune_threshold(TEMPLATE, derivative_trajectories, budget)
    achieved = result.mean_queries

    candidates = np.unique(derivative_trajectories)
    candidate_means = np.array(
        [mean_queries(TEMPLATE, derivative_trajectories, c) for c in candidates]
    )
    assert achieved <= budget
    assert achieved == mean_queries(TEMPLATE, derivative_trajectories, result.policy.threshold)
    assert not np.any((candidate_means > achieved) & (candidate_means <= budget))
    if candidates[0] > 0.0:
        # A threshold in [0, smallest candidate) stops no history early.
        assert not (achieved < MAX_QUERIES <= budget)


def test_tuned_policy_keeps_settings(derivative_trajectories: np.ndarray) -> None:
    result = tune_threshold(TEMPLATE, derivative_trajectories, 10.0)

    assert isinstance(result.policy, DerivativePolicy)
    assert result.policy.bootstrap == TEMPLATE.bootstrap
    assert result.policy.min_queries == MIN_QUERIES
    assert result.policy.max_queries == MAX_QUERIES
    assert result.num_histories == 40


def test_threshold_inside_its_step(derivative_trajectories: np.ndarray) -> None:
    # The tuned value lies strictly between two candidates, so that tiny rounding
    # of the threshold in a file cannot move it onto another step.
    result = tune_threshold(TEMPLATE, derivative_trajectories, 10.0)
    threshold = result.policy.threshold
    candidates = np.unique(derivative_trajectories)

    assert threshold not in candidates
    below = candidates[candidates < threshold].max()
    above = candidates[candidates > threshold].min()
    assert threshold == pytest.approx((below + above) / 2)
    assert mean_queries(TEMPLATE, derivative_trajectories, below) == result.mean_queries


def test_budget_equal_min(derivative_trajectories: np.ndarray) -> None:
    result = tune_threshold(TEMPLATE, derivative_trajectories, MIN_QUERIES)

    assert result.mean_queries == MIN_QUERIES


def test_budget_equal_max_all_positive(derivative_trajectories: np.ndarray) -> None:
    positive = derivative_trajectories[derivative_trajectories.min(axis=1) > 0.0]
    assert positive.shape[0] >= 10

    result = tune_threshold(TEMPLATE, positive, MAX_QUERIES)

    assert result.mean_queries == MAX_QUERIES
    assert 0.0 <= result.policy.threshold < positive.min()


def test_budget_equal_max_with_zero_statistic() -> None:
    # A statistic of exactly 0 stops at any lambda >= 0, so MAX_QUERIES is not reachable.
    trajectories = np.array([[0.3, 0.2, 0.1], [0.0, 0.0, 0.0]])

    result = tune_threshold(HAND_TEMPLATE, trajectories, 3.0)

    assert result.policy.threshold == 0.0
    assert result.mean_queries == 2.0


def test_missing_mass_tuning_in_unit_interval() -> None:
    template = MissingMassPolicy(epsilon=0.5, min_queries=MIN_QUERIES, max_queries=MAX_QUERIES)
    trajectories = simulated_trajectories(template, count=30, seed=2)

    for budget in [MIN_QUERIES, 8.0, 12.0, MAX_QUERIES]:
        result = tune_threshold(template, trajectories, budget)

        assert isinstance(result.policy, MissingMassPolicy)
        assert 0.0 <= result.policy.epsilon <= 1.0
        assert result.mean_queries <= budget


@pytest.mark.parametrize("budget", [4.99, 0.0, -1.0, 20.01, 100.0])
def test_budget_out_of_range(derivative_trajectories: np.ndarray, budget: float) -> None:
    pattern = r"outside \[min_queries, max_queries\] = \[5, 20\]"
    with pytest.raises(BudgetOutOfRangeError, match=pattern) as info:
        tune_threshold(TEMPLATE, derivative_trajectories, budget)

    assert info.value.budget == budget
    assert (info.value.min_queries, info.value.max_queries) == (MIN_QUERIES, MAX_QUERIES)


def test_budget_not_a_number(derivative_trajectories: np.ndarray) -> None:
    with pytest.raises(InvalidTypeError):
        tune_threshold(TEMPLATE, derivative_trajectories, "10")  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError):
        tune_threshold(TEMPLATE, derivative_trajectories, float("nan"))


@pytest.mark.parametrize(
    "trajectories",
    [np.empty((0, 16)), np.zeros((3, 15)), np.zeros((3, 17)), np.zeros(16)],
    ids=["empty", "narrow", "wide", "one-dimensional"],
)
def test_trajectory_shape_rejected(trajectories: np.ndarray) -> None:
    pattern = r"expected a non-empty array of shape \(n, 16\)"
    with pytest.raises(InvalidParameterError, match=pattern):
        tune_threshold(TEMPLATE, trajectories, 10.0)


@pytest.mark.parametrize(
    ("budget", "queries"), [(1, 1), (20, 20), (20.7, 20), (49.999, 49), (50, 50)]
)
def test_fixed_queries(budget: float, queries: int) -> None:
    result = tune_fixed_queries(budget, max_queries=50)

    assert result.policy == FixedPolicy(queries=queries)
    assert result.mean_queries == float(queries)
    assert result.target_budget == budget
    assert result.num_histories == 0


def test_fixed_queries_without_limit() -> None:
    assert tune_fixed_queries(1000.5).policy == FixedPolicy(queries=1000)


@pytest.mark.parametrize(("budget", "max_queries"), [(0.5, 50), (0, None), (50.5, 50)])
def test_fixed_queries_out_of_range(budget: float, max_queries: int | None) -> None:
    with pytest.raises(BudgetOutOfRangeError):
        tune_fixed_queries(budget, max_queries=max_queries)


@pytest.mark.parametrize(
    "policy",
    [
        DerivativePolicy(lambda_=0.003, bootstrap=7),
        MissingMassPolicy(epsilon=0.2, estimator="good-turing"),
        FixedPolicy(queries=12),
    ],
    ids=repr,
)
def test_result_json_round_trip(policy: ThresholdPolicy | FixedPolicy) -> None:
    result = TuningResult(policy=policy, mean_queries=9.5, target_budget=10.0, num_histories=4)

    restored = TuningResult.model_validate_json(result.model_dump_json(by_alias=True))

    assert type(restored.policy) is type(policy)
    assert restored == result
