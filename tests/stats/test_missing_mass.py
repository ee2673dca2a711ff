"""Tests of the Good-Turing missing-mass estimators."""

import math
from statistics import NormalDist

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cpq_guard.stats.frequencies import frequencies_of_counts
from cpq_guard.stats.missing_mass import (
    SINGLE_FREQUENCY_N1,
    estimate_missing_mass,
    good_turing_missing_mass,
    smoothed_missing_mass,
)

ESTIMATORS = ["good-turing", "smoothed"]


def polyfit_estimate(frequencies: dict[int, int], total: int) -> float:
    """Fit log N_r = a + b log r with numpy and return exp(a) / T."""
    rs = np.array(sorted(frequencies), dtype=float)
    ns = np.array([frequencies[int(r)] for r in rs], dtype=float)
    _, intercept = np.polyfit(np.log(rs), np.log(ns), deg=1)
    return float(np.exp(intercept) / total)


def zipf(size: int, exponent: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, size + 1) ** exponent
    return weights / weights.sum()


def test_good_turing_by_hand() -> None:
    assert good_turing_missing_mass({1: 3, 2: 1, 4: 1}, 9) == pytest.approx(3 / 9)
    assert good_turing_missing_mass({2: 2, 3: 1}, 7) == 0.0
    assert good_turing_missing_mass({1: 5}, 5) == 1.0
    assert good_turing_missing_mass({}, 0) == 1.0
    assert good_turing_missing_mass({1: 1}, 0) == 1.0


def test_smoothed_two_points_through_r1() -> None:
    # With r = 1 among two points the line passes through (0, log N_1) exactly.
    assert smoothed_missing_mass({1: 2, 3: 1}, 5) == pytest.approx(2 / 5)


def test_smoothed_two_points_without_r1() -> None:
    # Slope -log 3 / log 2 through (log 2, log 3) and (log 4, 0): a = 2 log 3.
    assert smoothed_missing_mass({2: 3, 4: 1}, 10) == pytest.approx(9 / 10)


@pytest.mark.parametrize(
    "frequencies",
    [
        {1: 4, 2: 2, 3: 1},
        {1: 1, 5: 1, 20: 1},
        {1: 7, 2: 3, 3: 2, 6: 1, 9: 1},
        {2: 4, 3: 2, 10: 1},
        {1: 2, 2: 5, 4: 3},
    ],
)
def test_smoothed_matches_polyfit(frequencies: dict[int, int]) -> None:
    total = sum(r * n for r, n in frequencies.items())

    expected = polyfit_estimate(frequencies, total)

    assert 0.0 < expected < 1.0
    assert smoothed_missing_mass(frequencies, total) == pytest.approx(expected, rel=1e-12)


def test_smoothed_clipped_to_one() -> None:
    frequencies = {2: 10, 3: 1}
    total = 23

    assert polyfit_estimate(frequencies, total) > 1.0
    assert smoothed_missing_mass(frequencies, total) == 1.0


def test_smoothed_ignores_zero_frequencies() -> None:
    assert smoothed_missing_mass({1: 0, 2: 3, 4: 1}, 10) == pytest.approx(9 / 10)


def test_smoothed_empty_sample() -> None:
    assert smoothed_missing_mass({}, 0) == 1.0


@pytest.mark.parametrize("singletons", [1, 2, 7])
def test_smoothed_only_singletons(singletons: int) -> None:
    assert smoothed_missing_mass({1: singletons}, singletons) == 1.0


@pytest.mark.parametrize(("r", "clusters"), [(2, 1), (3, 4), (50, 1)])
def test_smoothed_single_count_above_one(r: int, clusters: int) -> None:
    total = r * clusters

    assert SINGLE_FREQUENCY_N1 == 0.025
    assert smoothed_missing_mass({r: clusters}, total) == pytest.approx(0.025 / total)


def test_estimate_dispatches_by_name() -> None:
    frequencies, total = {1: 4, 2: 2, 3: 1}, 11

    assert estimate_missing_mass(frequencies, total, "good-turing") == 4 / 11
    assert estimate_missing_mass(frequencies, total, "smoothed") == smoothed_missing_mass(
        frequencies, total
    )


def test_estimate_rejects_unknown_name() -> None:
    with pytest.raises(ValueError, match="'laplace' is unknown; use 'smoothed' or 'good-turing'"):
        estimate_missing_mass({1: 1}, 1, "laplace")  # type: ignore[arg-type]


@pytest.mark.parametrize("estimator", ESTIMATORS)
@settings(deadline=None)
@given(counts=st.lists(st.integers(min_value=1, max_value=60), min_size=1, max_size=40))
def test_estimate_in_unit_interval(estimator: str, counts: list[int]) -> None:
    frequencies = frequencies_of_counts(counts)

    value = estimate_missing_mass(frequencies, sum(counts), estimator)  # type: ignore[arg-type]

    assert 0.0 <= value <= 1.0


# Good-Turing as a statistic: E[N_1] = sum_j T p_j (1 - p_j)^(T - 1) exactly, so the
# mean of N_1 / T over seeded multinomial draws must match sum_j p_j (1 - p_j)^(T - 1)
# within a CLT tolerance. Four checks share a two-sided family error of 1e-4.
DRAWS = 20_000
LIBRARY_ROWS = 500
SAMPLE_SIZE = 100
GOOD_TURING_Z = NormalDist().inv_cdf(1.0 - 1e-4 / (2 * 4))
DISTRIBUTIONS = {
    "uniform": np.full(200, 1 / 200),
    "zipf": zipf(200, 1.1),
}


def good_turing_draws(probabilities: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return N_1 / T and the true missing mass of seeded multinomial draws.

    The first rows go through the library and must equal the vectorised count,
    which then replaces the library call on all rows to keep the test fast.
    """
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(SAMPLE_SIZE, probabilities, size=DRAWS)
    estimates = np.count_nonzero(draws == 1, axis=1) / SAMPLE_SIZE
    library = [
        good_turing_missing_mass(frequencies_of_counts(row), SAMPLE_SIZE)
        for row in draws[:LIBRARY_ROWS]
    ]
    assert library == estimates[:LIBRARY_ROWS].tolist()

    true_missing = (probabilities * (draws == 0)).sum(axis=1)
    return estimates, true_missing


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_good_turing_mean_is_exact_expectation(name: str) -> None:
    probabilities = DISTRIBUTIONS[name]
    estimates, _ = good_turing_draws(probabilities, seed=11)

    expected = float(np.sum(probabilities * (1.0 - probabilities) ** (SAMPLE_SIZE - 1)))
    tolerance = GOOD_TURING_Z * estimates.std(ddof=1) / math.sqrt(DRAWS)

    assert expected > 0.05
    assert abs(estimates.mean() - expected) <= tolerance


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_good_turing_bias_is_exact(name: str) -> None:
    # E[N_1 / T] - E[M_T] = sum_j p_j^2 (1 - p_j)^(T - 1), small and positive.
    probabilities = DISTRIBUTIONS[name]
    estimates, true_missing = good_turing_draws(probabilities, seed=12)

    errors = estimates - true_missing
    bias = float(np.sum(probabilities**2 * (1.0 - probabilities) ** (SAMPLE_SIZE - 1)))
    tolerance = GOOD_TURING_Z * errors.std(ddof=1) / math.sqrt(DRAWS)

    assert abs(errors.mean() - bias) <= tolerance
