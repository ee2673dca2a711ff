"""Tests of the split-conformal threshold and the CPQ missing-mass sets."""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cpq_guard.errors import InsufficientCalibrationError, InvalidParameterError, InvalidTypeError
from cpq_guard.stats.conformal import (
    DEFAULT_TIE_JITTER,
    conformal_quantile,
    conformal_rank,
    missing_mass_score,
    missing_mass_set,
    required_calibration_size,
)

PROBABILITIES = np.array([0.5, 0.3, 0.1])


def exact_rank(n: int, alpha: Fraction) -> int:
    return math.ceil((n + 1) * (1 - alpha))


@st.composite
def estimates(draw: st.DrawFn) -> tuple[np.ndarray, float]:
    """Draw seen-cluster probabilities and a missing mass that sum to one."""
    weights = draw(st.lists(st.floats(min_value=0.01, max_value=1.0), min_size=1, max_size=8))
    missing_mass = draw(st.floats(min_value=0.0, max_value=0.99))
    probabilities = np.array(weights) / sum(weights) * (1.0 - missing_mass)
    return probabilities, missing_mass


@pytest.mark.parametrize(
    ("n", "alpha", "rank"),
    [
        (9, 0.1, 9),
        (19, 0.05, 19),
        (99, 0.1, 90),
        (99, 0.01, 99),
        (999, 0.001, 999),
        (4, 0.2, 4),
        (14, 0.1, 14),
        (10, 0.1, 10),
        (100, 0.1, 91),
        (8, 0.1, 9),
        (0, 0.1, 1),
        (1, 0.5, 1),
        (29, 0.3, 21),
    ],
)
def test_conformal_rank_by_hand(n: int, alpha: float, rank: int) -> None:
    assert conformal_rank(n, alpha) == rank


@pytest.mark.parametrize(
    ("n", "alpha", "rank"), [(9, 0.7, 3), (24, 0.44, 14), (29, 0.7, 9), (49, 0.42, 29)]
)
def test_rank_float_edge_cases(n: int, alpha: float, rank: int) -> None:
    # (n + 1)(1 - alpha) is an integer but lands above it in floating point.
    assert (n + 1) * (1 - alpha) > rank

    assert conformal_rank(n, alpha) == rank


@settings(deadline=None)
@given(
    n=st.integers(min_value=0, max_value=2000),
    percent=st.integers(min_value=1, max_value=99),
)
def test_rank_matches_exact_arithmetic(n: int, percent: int) -> None:
    alpha = Fraction(percent, 100)

    assert conformal_rank(n, percent / 100) == exact_rank(n, alpha)


@pytest.mark.parametrize(
    ("alpha", "required"),
    [
        (0.1, 9),
        (0.05, 19),
        (0.3, 3),
        (0.2, 4),
        (0.15, 6),
        (0.01, 99),
        (0.001, 999),
        (0.5, 1),
        (0.99, 1),
    ],
)
def test_required_size_by_hand(alpha: float, required: int) -> None:
    assert required_calibration_size(alpha) == required


@settings(deadline=None)
@given(per_mille=st.integers(min_value=1, max_value=999))
def test_required_size_is_smallest(per_mille: int) -> None:
    alpha = Fraction(per_mille, 1000)

    required = required_calibration_size(per_mille / 1000)

    assert exact_rank(required, alpha) <= required
    if required > 1:
        assert exact_rank(required - 1, alpha) > required - 1
    # Equivalently, the smallest n >= 1 with n >= 1 / alpha - 1.
    assert required == max(math.ceil(1 / alpha - 1), 1)


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, 1.5, float("nan"), float("inf")])
def test_invalid_alpha_rejected(alpha: float) -> None:
    with pytest.raises(InvalidParameterError):
        required_calibration_size(alpha)
    with pytest.raises(InvalidParameterError):
        conformal_quantile([0.1] * 50, alpha)


def test_alpha_type_rejected() -> None:
    with pytest.raises(InvalidTypeError):
        conformal_quantile([0.1] * 50, "0.1")  # type: ignore[arg-type]


def test_insufficient_calibration() -> None:
    with pytest.raises(InsufficientCalibrationError, match="needs at least 9 calibration") as info:
        conformal_quantile(np.linspace(0.0, 1.0, 8), 0.1)

    assert info.value.n == 8
    assert info.value.alpha == 0.1
    assert info.value.required == 9
    assert "but 8 were given" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_empty_scores_insufficient() -> None:
    with pytest.raises(InsufficientCalibrationError, match="needs at least 19 calibration"):
        conformal_quantile([], 0.05)


def test_exactly_required_size_works() -> None:
    scores = np.arange(9, dtype=float)

    assert conformal_quantile(scores, 0.1) == 8.0


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_scores_rejected(bad: float) -> None:
    scores = [0.1] * 20 + [bad]

    with pytest.raises(InvalidParameterError, match="NaN or infinite"):
        conformal_quantile(scores, 0.1)


def test_two_dimensional_scores_rejected() -> None:
    with pytest.raises(InvalidParameterError, match="one-dimensional"):
        conformal_quantile(np.zeros((5, 5)), 0.1)


def test_quantile_by_hand() -> None:
    # n = 10, alpha = 0.2: rank ceil(11 * 0.8) = 9, the 9th smallest score.
    scores = [0.9, 0.1, 1.5, 0.3, 0.2, 1.95, 0.4, 0.7, 0.6, 0.5]

    assert conformal_quantile(scores, 0.2) == 1.5


def test_quantile_with_ties() -> None:
    scores = [0.2] * 5 + [0.7] * 5

    # Rank ceil(11 * 0.8) = 9 falls in the upper tie, ceil(11 * 0.4) = 5 in the lower.
    assert conformal_quantile(scores, 0.2) == 0.7
    assert conformal_quantile(scores, 0.6) == 0.2


def test_quantile_leaves_input() -> None:
    scores = np.array([0.5, 0.1, 0.9, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6, 0.0])
    copy = scores.copy()

    conformal_quantile(scores, 0.1)

    assert scores.tolist() == copy.tolist()


@settings(deadline=None)
@given(
    scores=st.lists(
        st.floats(min_value=-10.0, max_value=10.0, allow_nan=False), min_size=1, max_size=200
    ),
    percent=st.integers(min_value=1, max_value=99),
)
def test_quantile_is_order_statistic(scores: list[float], percent: int) -> None:
    alpha = percent / 100
    rank = exact_rank(len(scores), Fraction(percent, 100))
    assume(rank <= len(scores))

    assert conformal_quantile(scores, alpha) == sorted(scores)[rank - 1]


def test_score_by_hand() -> None:
    assert missing_mass_score(PROBABILITIES, 0.1, [1]) == pytest.approx(0.7)
    assert missing_mass_score(PROBABILITIES, 0.1, (0,)) == pytest.approx(0.5)
    assert missing_mass_score(PROBABILITIES, 0.1, [1, 2]) == pytest.approx(0.7)
    assert missing_mass_score(PROBABILITIES, 0.1, [2, 0]) == pytest.approx(0.5)


def test_score_unseen_reference() -> None:
    assert missing_mass_score(PROBABILITIES, 0.1, []) == pytest.approx(1.9)
    assert missing_mass_score(np.array([]), 1.0, ()) == 1.0


@pytest.mark.parametrize(
    ("tau", "abstained", "members"),
    [
        (0.49, False, []),
        (0.5, False, [0]),
        (0.69, False, [0]),
        (0.75, False, [0, 1]),
        (0.9, False, [0, 1, 2]),
        (1.0, False, [0, 1, 2]),
        (1.89, False, [0, 1, 2]),
        (1.9, True, []),
        (2.0, True, []),
    ],
)
def test_set_by_hand(tau: float, abstained: bool, members: list[int]) -> None:
    result_abstained, result_members = missing_mass_set(PROBABILITIES, 0.1, tau)

    assert result_abstained is abstained
    assert result_members.tolist() == members
    assert result_members.dtype == np.int64


@settings(deadline=None)
@given(estimate=estimates(), tau=st.floats(min_value=-0.5, max_value=2.5))
def test_abstain_rule(estimate: tuple[np.ndarray, float], tau: float) -> None:
    probabilities, missing_mass = estimate

    abstained, members = missing_mass_set(probabilities, missing_mass, tau)

    assert abstained == (2.0 - missing_mass <= tau)
    if abstained:
        assert members.size == 0


@settings(deadline=None)
@given(estimate=estimates(), tau=st.floats(min_value=1.0, max_value=2.0))
def test_tau_at_least_one_keeps_all_seen(estimate: tuple[np.ndarray, float], tau: float) -> None:
    probabilities, missing_mass = estimate
    assume(2.0 - missing_mass > tau)

    abstained, members = missing_mass_set(probabilities, missing_mass, tau)

    assert not abstained
    assert members.tolist() == list(range(probabilities.size))


@settings(deadline=None)
@given(
    estimate=estimates(),
    tau=st.floats(min_value=-0.5, max_value=2.5),
    data=st.data(),
)
def test_covered_iff_score_below_tau(
    estimate: tuple[np.ndarray, float], tau: float, data: st.DataObject
) -> None:
    # The coverage event of the set is {score <= tau}; the guarantee rests on it.
    probabilities, missing_mass = estimate
    references = data.draw(
        st.lists(st.integers(min_value=0, max_value=probabilities.size - 1), unique=True)
    )

    abstained, members = missing_mass_set(probabilities, missing_mass, tau)
    covered = abstained or bool(set(members.tolist()) & set(references))

    assert covered == (missing_mass_score(probabilities, missing_mass, references) <= tau)


def test_jitter_needs_generator() -> None:
    with pytest.raises(InvalidParameterError, match="random generator is required"):
        missing_mass_set(PROBABILITIES, 0.1, 0.75, rng=None, jitter=DEFAULT_TIE_JITTER)


def test_jitter_reproducible() -> None:
    probabilities = np.full(4, 0.2)
    tau = 0.8 + DEFAULT_TIE_JITTER / 2

    first = [
        missing_mass_set(probabilities, 0.2, tau, np.random.default_rng(seed), 1e-3)[1].tolist()
        for seed in range(20)
    ]
    second = [
        missing_mass_set(probabilities, 0.2, tau, np.random.default_rng(seed), 1e-3)[1].tolist()
        for seed in range(20)
    ]

    assert first == second
    assert len({tuple(members) for members in first}) > 1


def test_jitter_draws_one_noise_per_score() -> None:
    rng = np.random.default_rng(4)
    reference = np.random.default_rng(4)

    missing_mass_set(PROBABILITIES, 0.1, 0.75, rng, DEFAULT_TIE_JITTER)
    reference.uniform(0.0, DEFAULT_TIE_JITTER, size=PROBABILITIES.size + 1)

    assert rng.bit_generator.state == reference.bit_generator.state


def test_jitter_far_from_boundaries_changes_nothing() -> None:
    for seed in range(20):
        rng = np.random.default_rng(seed)
        abstained, members = missing_mass_set(PROBABILITIES, 0.1, 0.75, rng, DEFAULT_TIE_JITTER)

        assert not abstained
        assert members.tolist() == [0, 1]


def test_jitter_breaks_ties_at_random() -> None:
    # A score exactly at tau stays in the set when its noise is below tau - score,
    # which for tau = score + jitter / 2 happens with probability 1/2.
    tau = 1.0 - 0.5 + DEFAULT_TIE_JITTER / 2
    draws = 4000
    kept_count = 0
    for seed in range(draws):
        rng = np.random.default_rng(seed)
        _, members = missing_mass_set(np.array([0.5]), 0.5, tau, rng, DEFAULT_TIE_JITTER)
        kept_count += members.size

    # Two-sided binomial check at about 4.9 standard deviations.
    assert abs(kept_count / draws - 0.5) <= 4.9 * math.sqrt(0.25 / draws)
