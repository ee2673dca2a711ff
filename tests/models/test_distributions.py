"""Tests for AnswerDistribution, the regime factories and wrong_answers."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from pydantic import ValidationError

from cpq_guard.errors import InvalidParameterError
from cpq_guard.models.distributions import REGIMES, AnswerDistribution, wrong_answers

# Every frequency check allows 4.5 standard deviations of the binomial count
# (plus one for discreteness). A false alarm has probability below 1e-5 per
# check, and the seeds are fixed, so these tests cannot flake.
SIGMAS = 4.5


def assert_binomial(count: int, n: int, p: float) -> None:
    tolerance = SIGMAS * math.sqrt(n * p * (1.0 - p)) + 1.0
    assert abs(count - n * p) <= tolerance, f"count {count} of {n}, expected p={p}"


def test_probability_includes_no_answer() -> None:
    dist = AnswerDistribution(answers={"4": 0.75, "5": 0.25}, no_answer=0.2)

    assert dist.probability("4") == pytest.approx(0.6)
    assert dist.probability("5") == pytest.approx(0.2)
    assert dist.probability(None) == pytest.approx(0.2)
    assert dist.probability("6") == 0.0


@pytest.mark.parametrize(
    ("answers", "fragment"),
    [
        ({}, "empty"),
        ({"4": -0.1, "5": 1.1}, "zero or positive"),
        ({"4": math.nan, "5": 1.0}, "finite"),
        ({"4": math.inf}, "finite"),
        ({"4": 0.5, "5": 0.4}, "sum to 0.9"),
        ({"  ": 1.0}, "blank"),
    ],
)
def test_invalid_answers_rejected(answers: dict[str, float], fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        AnswerDistribution(answers=answers)

    assert fragment in str(info.value)


@pytest.mark.parametrize("no_answer", [-0.1, 1.5, math.nan])
def test_invalid_no_answer_rejected(no_answer: float) -> None:
    with pytest.raises(ValidationError, match="no_answer"):
        AnswerDistribution(answers={"4": 1.0}, no_answer=no_answer)


def test_sum_error_suggests_from_weights() -> None:
    with pytest.raises(ValueError, match="from_weights"):
        AnswerDistribution(answers={"4": 2.0, "5": 2.0})


def test_sum_within_tolerance_accepted() -> None:
    dist = AnswerDistribution(answers={"a": 0.1, "b": 0.2, "c": 0.7 - 1e-12})

    assert dist.probability("c") == pytest.approx(0.7)


def test_from_weights_normalises() -> None:
    dist = AnswerDistribution.from_weights({"4": 3.0, "5": 1.0}, no_answer=0.5)

    assert dist.answers == {"4": 0.75, "5": 0.25}
    assert dist.no_answer == 0.5


@pytest.mark.parametrize("weights", [{"4": -1.0, "5": 2.0}, {"4": 0.0}, {}, {"4": math.nan}])
def test_from_weights_rejects_invalid(weights: dict[str, float]) -> None:
    with pytest.raises(InvalidParameterError):
        AnswerDistribution.from_weights(weights)


def test_distribution_is_frozen() -> None:
    dist = AnswerDistribution(answers={"4": 1.0})

    with pytest.raises(ValidationError):
        dist.no_answer = 0.5  # type: ignore[misc]


def test_equal_distributions_compare_equal() -> None:
    assert AnswerDistribution(answers={"4": 1.0}) == AnswerDistribution(answers={"4": 1.0})


def test_draw_frequencies_match() -> None:
    dist = AnswerDistribution(answers={"a": 0.5, "b": 0.3, "c": 0.15, "d": 0.05}, no_answer=0.1)
    rng = np.random.default_rng(11)
    n = 20_000

    counts = Counter(dist.draw(rng) for _ in range(n))

    for answer in ["a", "b", "c", "d", None]:
        assert_binomial(counts[answer], n, dist.probability(answer))


def test_draw_skips_zero_probability() -> None:
    dist = AnswerDistribution(answers={"a": 0.0, "b": 1.0, "c": 0.0})
    rng = np.random.default_rng(0)

    draws = {dist.draw(rng) for _ in range(2_000)}

    assert draws == {"b"}


def test_draw_no_answer_keeps_other_answers() -> None:
    with_gaps = AnswerDistribution(answers={"a": 0.5, "b": 0.5}, no_answer=0.3)
    without = AnswerDistribution(answers={"a": 0.5, "b": 0.5})

    pairs = [
        (with_gaps.draw(np.random.default_rng(i)), without.draw(np.random.default_rng(i)))
        for i in range(500)
    ]

    assert any(gap is None for gap, _ in pairs)
    assert all(gap == full for gap, full in pairs if gap is not None)


def test_peaked_shape() -> None:
    dist = AnswerDistribution.peaked("42", np.random.default_rng(1), p_correct=0.8, n_wrong=5)

    assert dist.answers["42"] == pytest.approx(0.8)
    assert len(dist.answers) == 6
    assert max(dist.answers, key=dist.answers.__getitem__) == "42"
    assert math.fsum(dist.answers.values()) == pytest.approx(1.0, abs=1e-12)


def test_peaked_without_wrong_answers() -> None:
    dist = AnswerDistribution.peaked("42", np.random.default_rng(1), n_wrong=0)

    assert dist.answers == {"42": pytest.approx(1.0)}


def test_spread_shape() -> None:
    dist = AnswerDistribution.spread("42", np.random.default_rng(2), n_answers=4)

    assert "42" in dist.answers
    assert len(dist.answers) == 4
    # Each marginal is Beta(20, 60): mean 0.25, standard deviation about 0.048.
    assert all(0.05 < p < 0.5 for p in dist.answers.values())


def test_confidently_wrong_shape() -> None:
    dist = AnswerDistribution.confidently_wrong(
        "42", np.random.default_rng(3), p_wrong=0.7, p_correct=0.1, n_other=2
    )
    top = max(dist.answers, key=dist.answers.__getitem__)

    assert top != "42"
    assert dist.answers[top] == pytest.approx(0.7)
    assert dist.answers["42"] == pytest.approx(0.1)
    assert len(dist.answers) == 4


def test_confidently_wrong_rejects_excess_mass() -> None:
    with pytest.raises(InvalidParameterError, match="more than 1"):
        AnswerDistribution.confidently_wrong(
            "42", np.random.default_rng(3), p_wrong=0.9, p_correct=0.2
        )


def test_long_tailed_shape() -> None:
    dist = AnswerDistribution.long_tailed("42", np.random.default_rng(4))
    wrong = sorted((p for answer, p in dist.answers.items() if answer != "42"), reverse=True)

    assert dist.answers["42"] == pytest.approx(0.03)
    assert len(wrong) == 200
    # Zipf weights with exponent 1: the head is 0.97 / H_200, about 0.166.
    assert wrong[0] == pytest.approx(0.97 / sum(1.0 / k for k in range(1, 201)))
    assert wrong[-1] < 0.001


def test_long_tailed_reference_often_unseen() -> None:
    dist = AnswerDistribution.long_tailed("42", np.random.default_rng(4))
    rng = np.random.default_rng(5)
    runs = 1_000

    unseen = sum("42" not in {dist.draw(rng) for _ in range(20)} for _ in range(runs))

    assert_binomial(unseen, runs, 0.97**20)


@pytest.mark.parametrize("regime", sorted(REGIMES))
def test_regime_is_seeded(regime: str) -> None:
    first = REGIMES[regime]("17", np.random.default_rng(9))
    second = REGIMES[regime]("17", np.random.default_rng(9))
    other = REGIMES[regime]("17", np.random.default_rng(10))

    assert first == second
    assert first != other


@pytest.mark.parametrize("regime", sorted(REGIMES))
def test_regime_passes_no_answer(regime: str) -> None:
    dist = REGIMES[regime]("17", np.random.default_rng(9), no_answer=0.25)

    assert dist.no_answer == 0.25


@pytest.mark.parametrize(
    ("factory", "kwargs"),
    [
        (AnswerDistribution.peaked, {"p_correct": 1.5}),
        (AnswerDistribution.peaked, {"n_wrong": -1}),
        (AnswerDistribution.spread, {"n_answers": 1}),
        (AnswerDistribution.spread, {"concentration": 0.0}),
        (AnswerDistribution.long_tailed, {"exponent": -1.0}),
        (AnswerDistribution.long_tailed, {"n_tail": 0}),
    ],
)
def test_regime_rejects_invalid(factory, kwargs) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidParameterError):
        factory("17", np.random.default_rng(0), **kwargs)


def test_wrong_answers_integers() -> None:
    wrong = wrong_answers("3", 30, np.random.default_rng(0))

    assert len(set(wrong)) == 30
    assert "3" not in wrong
    assert all(int(answer) >= 0 for answer in wrong)


def test_wrong_answers_text() -> None:
    wrong = wrong_answers("Paris", 5, np.random.default_rng(0))

    assert len(set(wrong)) == 5
    assert all(answer.startswith("Paris (variant ") for answer in wrong)


def test_wrong_answers_none() -> None:
    assert wrong_answers("3", 0, np.random.default_rng(0)) == []
