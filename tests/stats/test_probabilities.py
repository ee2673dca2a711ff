"""Tests of the Good-Turing probabilities of the seen clusters."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cpq_guard.stats.frequencies import frequencies_of_counts
from cpq_guard.stats.missing_mass import estimate_missing_mass
from cpq_guard.stats.probabilities import cluster_probabilities, estimate_from_counts


def test_adjusted_counts_by_hand() -> None:
    # N_1 = 2, N_2 = 1, N_3 = 1: r* is 2 * 1 / 2 = 1 for r = 1, 3 * 1 / 1 = 3 for
    # r = 2, and 3 for r = 3 because N_4 = 0. Adjusted counts [3, 1, 1, 3] sum to 8.
    counts = np.array([3, 1, 1, 2])

    probabilities = cluster_probabilities(counts, {1: 2, 2: 1, 3: 1}, 0.2)

    assert probabilities == pytest.approx([0.3, 0.1, 0.1, 0.3])


def test_no_following_frequency_keeps_counts() -> None:
    # Every r has N_{r+1} = 0, so the probabilities are the plain frequencies.
    counts = np.array([5, 3])

    probabilities = cluster_probabilities(counts, {5: 1, 3: 1}, 0.0)

    assert probabilities == pytest.approx([5 / 8, 3 / 8])


def test_missing_mass_one_gives_zeros() -> None:
    probabilities = cluster_probabilities(np.array([1, 1, 1]), {1: 3}, 1.0)

    assert probabilities.tolist() == [0.0, 0.0, 0.0]


def test_empty_counts() -> None:
    probabilities = cluster_probabilities(np.array([], dtype=np.int64), {}, 1.0)

    assert probabilities.shape == (0,)


def test_estimate_from_counts_good_turing() -> None:
    missing_mass, probabilities = estimate_from_counts(np.array([3, 1, 1, 2]), "good-turing")

    assert missing_mass == pytest.approx(2 / 7)
    assert probabilities == pytest.approx(np.array([3, 1, 1, 3]) / 8 * (5 / 7))


def test_estimate_from_counts_smoothed() -> None:
    counts = np.array([3, 1, 1, 2])

    missing_mass, probabilities = estimate_from_counts(counts, "smoothed")

    frequencies = {1: 2, 2: 1, 3: 1}
    assert missing_mass == estimate_missing_mass(frequencies, 7, "smoothed")
    assert probabilities == pytest.approx(cluster_probabilities(counts, frequencies, missing_mass))


def test_estimate_from_counts_drops_zero_counts() -> None:
    missing_mass, probabilities = estimate_from_counts(np.array([3, 0, 1, 0]), "good-turing")

    assert missing_mass == pytest.approx(1 / 4)
    assert probabilities.shape == (2,)
    assert probabilities == pytest.approx([3 / 4 * 3 / 4, 1 / 4 * 3 / 4])


def test_estimate_from_counts_empty() -> None:
    missing_mass, probabilities = estimate_from_counts(np.array([], dtype=np.int64), "smoothed")

    assert missing_mass == 1.0
    assert probabilities.shape == (0,)


@pytest.mark.parametrize("estimator", ["good-turing", "smoothed"])
@settings(deadline=None)
@given(counts=st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=30))
def test_probabilities_sum_with_missing_mass(estimator: str, counts: list[int]) -> None:
    missing_mass, probabilities = estimate_from_counts(np.array(counts), estimator)  # type: ignore[arg-type]

    assert probabilities.shape == (len(counts),)
    assert np.all(probabilities >= 0.0)
    assert probabilities.sum() + missing_mass == pytest.approx(1.0)


@settings(deadline=None)
@given(
    counts=st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=30),
    missing_mass=st.floats(min_value=0.0, max_value=1.0),
)
def test_equal_counts_equal_probabilities(counts: list[int], missing_mass: float) -> None:
    array = np.array(counts)

    probabilities = cluster_probabilities(array, frequencies_of_counts(counts), missing_mass)

    for r in np.unique(array):
        assert np.ptp(probabilities[array == r]) == 0.0
    assert probabilities.sum() == pytest.approx(1.0 - missing_mass)
