"""Tests of the missing-mass derivative estimators."""

import math
from statistics import NormalDist

import numpy as np
import pytest

from cpq_guard.stats.derivative import (
    bootstrap_derivative,
    expected_bootstrap_derivative,
    raw_derivative,
)
from cpq_guard.stats.frequencies import frequencies_of_counts


def generator_state(rng: np.random.Generator) -> dict:
    return rng.bit_generator.state


def doubleton_moments(counts: np.ndarray) -> tuple[float, float]:
    """Return the exact mean and variance of N_2* under multinomial(T, counts / T).

    N_2* is the number of clusters drawn exactly twice. With indicators
    I_j = [X_j = 2], P(I_j) = C(T, 2) q_j^2 (1 - q_j)^(T - 2) and
    P(I_j I_k) = T! / (2! 2! (T - 4)!) q_j^2 q_k^2 (1 - q_j - q_k)^(T - 4).
    """
    total = int(counts.sum())
    q = counts / total
    single = math.comb(total, 2) * q**2 * (1.0 - q) ** (total - 2)
    mean = float(single.sum())

    pair_coefficient = math.factorial(total) / (4 * math.factorial(total - 4))
    second_moment = mean  # E[I_j^2] = E[I_j]
    for j in range(q.size):
        for k in range(q.size):
            if j != k:
                rest = max(1.0 - q[j] - q[k], 0.0)
                second_moment += pair_coefficient * q[j] ** 2 * q[k] ** 2 * rest ** (total - 4)
    return mean, second_moment - mean**2


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ([2, 2, 1, 3], 2 * 2 / 8**2),
        ([2], 2 * 1 / 2**2),
        ([1, 1, 1], 0.0),
        ([5], 0.0),
        ([2, 0, 2, 2, 4], 2 * 3 / 10**2),
        ([], 0.0),
        ([0, 0], 0.0),
    ],
)
def test_raw_by_hand(counts: list[int], expected: float) -> None:
    assert raw_derivative(np.array(counts, dtype=np.int64)) == pytest.approx(expected)


def test_raw_accepts_lists() -> None:
    assert raw_derivative([2, 1, 1]) == pytest.approx(2 / 16)  # type: ignore[arg-type]


@pytest.mark.parametrize("counts", [[2, 2, 1, 3], [7, 2, 1], []])
def test_zero_resamples_is_raw(counts: list[int]) -> None:
    rng = np.random.default_rng(3)
    before = generator_state(rng)

    value = bootstrap_derivative(np.array(counts, dtype=np.int64), 0, rng)

    assert value == raw_derivative(np.array(counts, dtype=np.int64))
    assert generator_state(rng) == before


def test_empty_sample_draws_nothing() -> None:
    rng = np.random.default_rng(3)
    before = generator_state(rng)

    assert bootstrap_derivative(np.array([], dtype=np.int64), 20, rng) == 0.0
    assert generator_state(rng) == before


def test_bootstrap_reproducible() -> None:
    counts = np.array([4, 3, 2, 2, 1, 1, 1])

    first = bootstrap_derivative(counts, 20, np.random.default_rng(42))
    second = bootstrap_derivative(counts, 20, np.random.default_rng(42))
    other = bootstrap_derivative(counts, 20, np.random.default_rng(41))

    assert first == second
    assert first != other


def test_bootstrap_consumes_one_multinomial_draw() -> None:
    # Online and offline replay stay in step only if each call draws exactly this.
    counts = np.array([4, 3, 2, 2, 1, 1, 1])
    rng = np.random.default_rng(5)
    reference = np.random.default_rng(5)

    value = bootstrap_derivative(counts, 20, rng)
    draws = reference.multinomial(counts.sum(), counts / counts.sum(), size=20)

    assert generator_state(rng) == generator_state(reference)
    assert value == pytest.approx(2 * np.count_nonzero(draws == 2, axis=1).mean() / 14**2)


def test_bootstrap_unanimous_is_zero() -> None:
    # One cluster with T > 2 samples: every resample puts all T in it, so N_2* = 0.
    assert bootstrap_derivative(np.array([12]), 20, np.random.default_rng(0)) == 0.0


@pytest.mark.parametrize(
    "counts",
    [
        [5, 3, 2, 2, 1, 1, 1],
        [10, 1, 1],
        [1] * 12,
        [2, 2, 2, 2, 2],
    ],
)
def test_bootstrap_mean_is_exact_expectation(counts: list[int]) -> None:
    array = np.array(counts, dtype=np.int64)
    total = int(array.sum())
    resamples = 20_000
    # Two-sided, Bonferroni over the four cases, family error 1e-4.
    z = NormalDist().inv_cdf(1.0 - 1e-4 / (2 * 4))

    mean, variance = doubleton_moments(array)
    value = bootstrap_derivative(array, resamples, np.random.default_rng(2024))
    expected = 2.0 * mean / total**2
    tolerance = z * 2.0 * math.sqrt(variance / resamples) / total**2

    assert value >= 0.0
    assert abs(value - expected) <= tolerance


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ([2], 0.5),  # every resample of [a, a] is a doubleton: 2 * 1 / 2^2
        ([1], 0.0),
        ([1, 1], 2 * 0.5 / 4),  # resamples aa, ab, ba, bb: one doubleton half the time
    ],
)
def test_expected_derivative_by_hand(counts: list[int], expected: float) -> None:
    counts_array = np.array(counts)
    value = expected_bootstrap_derivative(frequencies_of_counts(counts_array), int(sum(counts)))

    assert value == pytest.approx(expected)


@pytest.mark.parametrize("counts", [[5, 3, 1, 1], [7, 3, 3, 3], [10, 5, 2, 1, 1, 1], [1] * 9])
def test_expected_derivative_is_bootstrap_limit(counts: list[int]) -> None:
    counts_array = np.array(counts)
    total = int(counts_array.sum())
    resamples = 40_000
    draws = np.random.default_rng(11).multinomial(total, counts_array / total, size=resamples)
    doubletons = np.count_nonzero(draws == 2, axis=1) * 2.0 / total**2
    # The bootstrap mean over many resamples is within 5 standard errors of the limit.
    tolerance = 5 * doubletons.std() / np.sqrt(resamples)

    value = expected_bootstrap_derivative(frequencies_of_counts(counts_array), total)

    assert abs(value - doubletons.mean()) <= tolerance
