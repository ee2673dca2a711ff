"""Tests of the stopping policies, online and replayed."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from cpq_guard.errors import InvalidParameterError
from cpq_guard.stats.derivative import bootstrap_derivative
from cpq_guard.stats.frequencies import FrequencyCounter
from cpq_guard.stats.missing_mass import estimate_missing_mass
from cpq_guard.stats.policies import (
    DerivativePolicy,
    FixedPolicy,
    MissingMassPolicy,
    Policy,
    ThresholdPolicy,
    stopping_times,
)

POLICY_ADAPTER: TypeAdapter[Policy] = TypeAdapter(Policy)

POLICIES = [
    FixedPolicy(queries=20),
    MissingMassPolicy(epsilon=0.1, estimator="good-turing", min_queries=5, max_queries=30),
    MissingMassPolicy(epsilon=0.25),
    DerivativePolicy(lambda_=0.0015, min_queries=10, max_queries=50, bootstrap=20),
    DerivativePolicy.model_validate({"lambda": 0.02, "bootstrap": 0, "min_queries": 1}),
]

THRESHOLD_POLICIES = [
    MissingMassPolicy(epsilon=0.3, estimator="smoothed", min_queries=3, max_queries=15),
    MissingMassPolicy(epsilon=0.2, estimator="good-turing", min_queries=1, max_queries=12),
    DerivativePolicy(lambda_=0.02, bootstrap=5, min_queries=4, max_queries=20),
    DerivativePolicy(lambda_=0.01, bootstrap=0, min_queries=2, max_queries=10),
    DerivativePolicy(lambda_=0.01, derivative="expected", min_queries=3, max_queries=18),
]
HISTORY_LENGTH = 25


def relabel(raw: np.ndarray) -> np.ndarray:
    """Relabel answers by order of first appearance (0, 1, 2, ...)."""
    _, first, inverse = np.unique(raw, return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first)] = np.arange(first.size)
    return rank[inverse]


def random_history(seed: int, categories: int, concentration: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    probabilities = rng.dirichlet(np.full(categories, concentration))
    return relabel(rng.choice(categories, size=HISTORY_LENGTH, p=probabilities))


histories = st.builds(
    random_history,
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    categories=st.integers(min_value=1, max_value=30),
    concentration=st.sampled_from([0.1, 0.5, 1.0, 5.0]),
)


def run_online(
    policy: FixedPolicy | ThresholdPolicy, labels: np.ndarray, seed: int
) -> tuple[int, str, FrequencyCounter]:
    """Feed ``labels`` to ``policy.should_stop`` one at a time, as the guard does."""
    rng = np.random.default_rng(seed)
    counter = FrequencyCounter()
    for label in labels:
        counter.add(int(label))
        reason = policy.should_stop(counter, rng)
        if reason is not None:
            return counter.total, reason, counter
    raise AssertionError(f"{policy!r} did not stop within {len(labels)} samples")


def replayed_stop(policy: ThresholdPolicy, labels: np.ndarray, seed: int) -> int:
    trajectory = policy.trajectory(labels, np.random.default_rng(seed))
    times = stopping_times(
        trajectory[np.newaxis, :], policy.threshold, policy.min_queries, policy.max_queries
    )
    return int(times[0])


@pytest.mark.parametrize("policy", POLICIES, ids=repr)
@pytest.mark.parametrize("by_alias", [True, False])
def test_json_round_trip(policy: FixedPolicy | ThresholdPolicy, by_alias: bool) -> None:
    text = POLICY_ADAPTER.dump_json(policy, by_alias=by_alias)

    restored = POLICY_ADAPTER.validate_json(text)

    assert type(restored) is type(policy)
    assert restored == policy


@pytest.mark.parametrize("policy", POLICIES, ids=repr)
def test_model_json_round_trip(policy: FixedPolicy | ThresholdPolicy) -> None:
    restored = POLICY_ADAPTER.validate_json(policy.model_dump_json(by_alias=True))

    assert restored == policy


def test_lambda_alias() -> None:
    policy = DerivativePolicy.model_validate({"lambda": 0.004})
    dumped = policy.model_dump(by_alias=True)

    assert policy.lambda_ == 0.004
    assert DerivativePolicy(lambda_=0.004) == policy
    assert dumped["lambda"] == 0.004
    assert "lambda_" not in dumped
    assert dumped["kind"] == "derivative"


def test_defaults_from_kind_only() -> None:
    policy = POLICY_ADAPTER.validate_python({"kind": "derivative", "lambda": 0.002})

    assert isinstance(policy, DerivativePolicy)
    assert (policy.min_queries, policy.max_queries, policy.bootstrap) == (10, 50, 20)


def test_missing_mass_defaults() -> None:
    policy = POLICY_ADAPTER.validate_python({"kind": "missing-mass", "epsilon": 0.1})

    assert isinstance(policy, MissingMassPolicy)
    assert policy.estimator == "smoothed"


@pytest.mark.parametrize(
    "data",
    [
        {"kind": "fixed", "queries": 0},
        {"kind": "fixed", "queries": -3},
        {"kind": "fixed"},
        {"kind": "derivative", "lambda": -0.001},
        {"kind": "derivative", "lambda": 0.1, "bootstrap": -1},
        {"kind": "derivative", "lambda": 0.1, "min_queries": 0},
        {"kind": "derivative", "lambda": 0.1, "min_queries": 20, "max_queries": 10},
        {"kind": "missing-mass", "epsilon": 1.5},
        {"kind": "missing-mass", "epsilon": -0.1},
        {"kind": "missing-mass", "epsilon": 0.1, "estimator": "laplace"},
        {"kind": "missing-mass", "epsilon": 0.1, "max_queries": 0},
        {"kind": "missing-mass", "epsilon": 0.1, "threshold": 0.2},
        {"kind": "adaptive", "epsilon": 0.1},
        {"epsilon": 0.1},
    ],
    ids=str,
)
def test_invalid_policy_rejected(data: dict) -> None:
    with pytest.raises(ValidationError):
        POLICY_ADAPTER.validate_python(data)


def test_min_above_max_message() -> None:
    with pytest.raises(ValidationError, match="min_queries=20 is greater than max_queries=10"):
        MissingMassPolicy(epsilon=0.1, min_queries=20, max_queries=10)


def test_min_equal_max_allowed() -> None:
    policy = DerivativePolicy(lambda_=0.1, min_queries=7, max_queries=7)

    assert policy.min_queries == policy.max_queries == 7


def test_policies_frozen() -> None:
    policy = DerivativePolicy(lambda_=0.1)

    with pytest.raises(ValidationError):
        policy.lambda_ = 0.2  # type: ignore[misc]


def test_threshold_properties() -> None:
    missing = MissingMassPolicy(epsilon=0.2)
    derivative = DerivativePolicy(lambda_=0.003)

    assert (missing.threshold, missing.threshold_name, missing.stop_reason) == (
        0.2,
        "epsilon",
        "missing_mass",
    )
    assert (derivative.threshold, derivative.threshold_name, derivative.stop_reason) == (
        0.003,
        "lambda",
        "derivative",
    )


def test_fixed_limits() -> None:
    policy = FixedPolicy(queries=7)

    assert policy.min_queries == policy.max_queries == 7


@pytest.mark.parametrize("policy", THRESHOLD_POLICIES, ids=repr)
def test_with_threshold_keeps_settings(policy: ThresholdPolicy) -> None:
    changed = policy.with_threshold(0.05)

    assert type(changed) is type(policy)
    assert changed.threshold == 0.05
    assert changed.model_dump(exclude={"epsilon", "lambda_"}) == policy.model_dump(
        exclude={"epsilon", "lambda_"}
    )
    assert policy.threshold != 0.05


def test_with_threshold_validates() -> None:
    with pytest.raises(ValidationError):
        DerivativePolicy(lambda_=0.1).with_threshold(-1.0)
    with pytest.raises(ValidationError):
        MissingMassPolicy(epsilon=0.1).with_threshold(2.0)


def test_fixed_stops_at_queries() -> None:
    policy = FixedPolicy(queries=3)
    rng = np.random.default_rng(0)
    before = rng.bit_generator.state
    counter = FrequencyCounter()

    reasons = []
    for label in [0, 1, 0, 2]:
        counter.add(label)
        reasons.append(policy.should_stop(counter, rng))

    assert reasons == [None, None, "fixed_queries", "fixed_queries"]
    assert rng.bit_generator.state == before


def test_threshold_not_checked_before_min() -> None:
    # A unanimous history has missing mass 0.025 / T from T = 2 on, far below epsilon.
    policy = MissingMassPolicy(epsilon=0.5, min_queries=6, max_queries=10)

    total, reason, _ = run_online(policy, np.zeros(10, dtype=np.int64), seed=0)

    assert (total, reason) == (6, "missing_mass")


def test_max_queries_reason() -> None:
    # All singletons: the missing mass stays 1, above any epsilon below 1.
    policy = MissingMassPolicy(epsilon=0.9, min_queries=2, max_queries=8)

    total, reason, _ = run_online(policy, np.arange(10), seed=0)

    assert (total, reason) == (8, "max_queries")


def test_unanimous_history_stops_at_zero_lambda() -> None:
    policy = DerivativePolicy(lambda_=0.0, bootstrap=20, min_queries=5, max_queries=30)

    total, reason, _ = run_online(policy, np.zeros(30, dtype=np.int64), seed=0)

    assert (total, reason) == (5, "derivative")


def test_statistic_at_threshold_stops() -> None:
    # After labels 0, 0, 1: N_2 = 1, T = 3, so the raw statistic is exactly 2 / 9.
    policy = DerivativePolicy(lambda_=2 / 9, bootstrap=0, min_queries=3, max_queries=5)

    total, reason, _ = run_online(policy, np.array([0, 0, 1, 2, 3]), seed=0)

    assert (total, reason) == (3, "derivative")


@settings(max_examples=60, deadline=None)
@given(labels=histories, seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_online_stop_within_limits(labels: np.ndarray, seed: int) -> None:
    for policy in THRESHOLD_POLICIES:
        total, reason, counter = run_online(policy, labels, seed)

        assert policy.min_queries <= total <= policy.max_queries
        if reason == "max_queries":
            assert total == policy.max_queries
        else:
            assert reason == policy.stop_reason
            assert counter.total == total


@settings(max_examples=60, deadline=None)
@given(labels=histories, seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_online_matches_replay(labels: np.ndarray, seed: int) -> None:
    # The guard stops online and evaluation replays offline; both must agree.
    for policy in THRESHOLD_POLICIES:
        online, _, _ = run_online(policy, labels, seed)

        assert online == replayed_stop(policy, labels, seed)


@pytest.mark.parametrize("seed", range(20))
def test_online_matches_replay_paper_setting(seed: int) -> None:
    policy = DerivativePolicy(lambda_=0.0015, min_queries=10, max_queries=50, bootstrap=20)
    rng = np.random.default_rng([seed, 99])
    probabilities = rng.dirichlet(np.full(8, 0.3))
    labels = relabel(rng.choice(8, size=60, p=probabilities))

    online, _, _ = run_online(policy, labels, seed)

    assert online == replayed_stop(policy, labels, seed)


@settings(max_examples=60, deadline=None)
@given(
    labels=histories,
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    thresholds=st.lists(st.floats(min_value=0.0, max_value=0.2), min_size=2, max_size=5),
)
def test_queries_non_increasing_in_lambda(
    labels: np.ndarray, seed: int, thresholds: list[float]
) -> None:
    template = DerivativePolicy(lambda_=0.0, bootstrap=5, min_queries=3, max_queries=20)

    totals = [
        run_online(template.with_threshold(threshold), labels, seed)[0]
        for threshold in sorted(thresholds)
    ]

    assert totals == sorted(totals, reverse=True)


@settings(max_examples=60, deadline=None)
@given(
    labels=histories,
    thresholds=st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=2, max_size=5),
)
def test_queries_non_increasing_in_epsilon(labels: np.ndarray, thresholds: list[float]) -> None:
    template = MissingMassPolicy(epsilon=0.0, min_queries=2, max_queries=20)
    trajectory = template.trajectory(labels, np.random.default_rng(0))[np.newaxis, :]

    totals = [int(stopping_times(trajectory, t, 2, 20)[0]) for t in sorted(thresholds)]

    assert totals == sorted(totals, reverse=True)


@pytest.mark.parametrize("estimator", ["good-turing", "smoothed"])
def test_missing_mass_trajectory_by_prefix(estimator: str) -> None:
    labels = random_history(7, categories=10, concentration=0.5)
    policy = MissingMassPolicy(epsilon=0.1, estimator=estimator, min_queries=4, max_queries=12)  # type: ignore[arg-type]

    trajectory = policy.trajectory(labels, np.random.default_rng(0))

    expected = []
    for total in range(4, 13):
        counter = FrequencyCounter(labels[:total].tolist())
        expected.append(estimate_missing_mass(counter.frequencies, total, estimator))  # type: ignore[arg-type]
    assert trajectory.shape == (9,)
    assert trajectory.tolist() == expected


def test_derivative_trajectory_by_prefix() -> None:
    labels = random_history(8, categories=6, concentration=1.0)
    policy = DerivativePolicy(lambda_=0.01, bootstrap=4, min_queries=3, max_queries=10)

    trajectory = policy.trajectory(labels, np.random.default_rng(17))

    rng = np.random.default_rng(17)
    expected = [
        bootstrap_derivative(FrequencyCounter(labels[:total].tolist()).counts, 4, rng)
        for total in range(3, 11)
    ]
    assert trajectory.tolist() == expected


def test_trajectory_ignores_samples_after_max() -> None:
    labels = random_history(9, categories=12, concentration=1.0)
    policy = MissingMassPolicy(epsilon=0.1, min_queries=2, max_queries=10)

    full = policy.trajectory(labels, np.random.default_rng(0))
    exact = policy.trajectory(labels[:10], np.random.default_rng(0))

    assert full.tolist() == exact.tolist()


def test_trajectory_rejects_short_history() -> None:
    policy = DerivativePolicy(lambda_=0.01, min_queries=5, max_queries=30)

    with pytest.raises(InvalidParameterError, match="a history has 29 samples but max_queries=30"):
        policy.trajectory(np.zeros(29, dtype=np.int64), np.random.default_rng(0))


def test_stopping_times_by_hand() -> None:
    trajectories = np.array(
        [
            [0.5, 0.1, 0.3],  # first at or below 0.2 at index 1: 5 + 1
            [0.9, 0.9, 0.9],  # never: max_queries
            [0.05, 0.5, 0.01],  # index 0: min_queries
            [0.3, 0.3, 0.2],  # equal to the threshold counts: 5 + 2
        ]
    )

    times = stopping_times(trajectories, 0.2, min_queries=5, max_queries=7)

    assert times.tolist() == [6, 7, 5, 7]
    assert times.dtype == np.int64


def test_stopping_times_empty() -> None:
    times = stopping_times(np.empty((0, 3)), 0.2, min_queries=5, max_queries=7)

    assert times.shape == (0,)


def test_expected_derivative_draws_nothing() -> None:
    policy = DerivativePolicy(lambda_=0.0, derivative="expected", min_queries=2, max_queries=6)
    rng = np.random.default_rng(3)
    state_before = rng.bit_generator.state

    policy.trajectory(np.array([0, 0, 1, 0, 2, 1]), rng)

    assert rng.bit_generator.state == state_before


def test_derivative_mode_round_trips() -> None:
    policy = DerivativePolicy(lambda_=0.002, derivative="expected")

    restored = TypeAdapter(Policy).validate_json(policy.model_dump_json(by_alias=True))

    assert restored == policy
    assert restored.derivative == "expected"
