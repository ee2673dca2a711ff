"""Tests of the cumulative mapping baseline."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cpq_guard.stats.cumulative import cumulative_score, cumulative_set

# Ranked by probability: cluster 1 (0.5), cluster 0 (0.2), cluster 2 (0.1).
# Mass ranked before each: cluster 1 -> 0, cluster 0 -> 0.5, cluster 2 -> 0.7.
PROBABILITIES = np.array([0.2, 0.5, 0.1])
MISSING_MASS = 0.2


@st.composite
def estimates(draw: st.DrawFn) -> tuple[np.ndarray, float]:
    """Draw seen-cluster probabilities and a missing mass that sum to one."""
    weights = draw(st.lists(st.floats(min_value=0.01, max_value=1.0), min_size=1, max_size=8))
    missing_mass = draw(st.floats(min_value=0.0, max_value=0.99))
    probabilities = np.array(weights) / sum(weights) * (1.0 - missing_mass)
    return probabilities, missing_mass


@pytest.mark.parametrize(
    ("references", "score"),
    [
        ([1], 0.0),
        ([0], 0.5),
        ([2], 0.7),
        ([0, 2], 0.5),
        ((2, 1), 0.0),
        ([], 0.8),
    ],
)
def test_score_by_hand(references: list[int], score: float) -> None:
    assert cumulative_score(PROBABILITIES, MISSING_MASS, references) == pytest.approx(score)


def test_score_capped_by_abstention_level() -> None:
    # The reference ranks after mass 0.15, but 1 - M_hat = 0.1 already abstains.
    probabilities = np.array([0.15, 0.1])

    assert cumulative_score(probabilities, 0.9, [1]) == pytest.approx(0.1)
    assert cumulative_score(probabilities, 0.75, [1]) == pytest.approx(0.15)


def test_score_ties_ranked_by_index() -> None:
    probabilities = np.array([0.3, 0.3, 0.2])

    assert cumulative_score(probabilities, 0.2, [0]) == 0.0
    assert cumulative_score(probabilities, 0.2, [1]) == pytest.approx(0.3)
    assert cumulative_score(probabilities, 0.2, [2]) == pytest.approx(0.6)


@pytest.mark.parametrize(
    ("level", "abstained", "members"),
    [
        (0.0, False, [1]),
        (0.49, False, [1]),
        (0.5, False, [1, 0]),
        (0.69, False, [1, 0]),
        (0.7, False, [1, 0, 2]),
        (0.79, False, [1, 0, 2]),
        (0.8, True, []),
        (1.0, True, []),
    ],
)
def test_set_by_hand(level: float, abstained: bool, members: list[int]) -> None:
    result_abstained, result_members = cumulative_set(PROBABILITIES, MISSING_MASS, level)

    assert result_abstained is abstained
    assert result_members.tolist() == members


def test_set_always_abstains_with_full_missing_mass() -> None:
    abstained, members = cumulative_set(np.array([0.0, 0.0]), 1.0, 0.0)

    assert abstained
    assert members.size == 0


@settings(deadline=None)
@given(estimate=estimates(), level=st.floats(min_value=0.0, max_value=1.0), data=st.data())
def test_covered_iff_score_below_level(
    estimate: tuple[np.ndarray, float], level: float, data: st.DataObject
) -> None:
    # The coverage event of the set is {score <= level}; the guarantee rests on it.
    probabilities, missing_mass = estimate
    references = data.draw(
        st.lists(st.integers(min_value=0, max_value=probabilities.size - 1), unique=True)
    )

    abstained, members = cumulative_set(probabilities, missing_mass, level)
    covered = abstained or bool(set(members.tolist()) & set(references))

    assert covered == (cumulative_score(probabilities, missing_mass, references) <= level)


@settings(deadline=None)
@given(
    estimate=estimates(),
    levels=st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=2, max_size=2),
)
def test_sets_nested_in_level(estimate: tuple[np.ndarray, float], levels: list[float]) -> None:
    probabilities, missing_mass = estimate
    low, high = sorted(levels)

    low_abstained, low_members = cumulative_set(probabilities, missing_mass, low)
    high_abstained, high_members = cumulative_set(probabilities, missing_mass, high)

    if low_abstained:
        assert high_abstained
    if not high_abstained:
        assert set(low_members.tolist()) <= set(high_members.tolist())


@settings(deadline=None)
@given(estimate=estimates(), level=st.floats(min_value=0.0, max_value=1.0))
def test_members_in_decreasing_probability(
    estimate: tuple[np.ndarray, float], level: float
) -> None:
    probabilities, missing_mass = estimate

    abstained, members = cumulative_set(probabilities, missing_mass, level)

    if not abstained:
        assert members.size >= 1
        chosen = probabilities[members]
        assert np.all(np.diff(chosen) <= 0.0)
        assert members[0] == int(np.argmax(probabilities))


@settings(deadline=None)
@given(estimate=estimates(), data=st.data())
def test_score_in_unit_interval(estimate: tuple[np.ndarray, float], data: st.DataObject) -> None:
    probabilities, missing_mass = estimate
    references = data.draw(
        st.lists(st.integers(min_value=0, max_value=probabilities.size - 1), unique=True)
    )

    score = cumulative_score(probabilities, missing_mass, references)

    assert 0.0 <= score <= 1.0 - missing_mass + 1e-12
