"""Tests for GuardResult, AnswerCluster and TokenUsage."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pydantic import ValidationError

from cpq_guard.guard import CPQGuard
from cpq_guard.result import AnswerCluster, GuardResult, TokenUsage

from .helpers import CERTAIN, LONG_TAILED, SPREAD

MakeGuard = Callable[..., CPQGuard]


def cluster(representative: str | None, probability: float, count: int = 1) -> AnswerCluster:
    return AnswerCluster(
        representative=representative,
        probability=probability,
        count=count,
        responses=[f"response {n}" for n in range(count)],
    )


def result(answers: list[AnswerCluster], *, abstained: bool = False) -> GuardResult:
    return GuardResult(
        answers=answers,
        clusters=answers,
        abstained=abstained,
        missing_mass=0.1,
        num_queries=sum(item.count for item in answers),
        stop_reason="max_queries",
        alpha=0.1,
        threshold=1.2,
    )


def test_best_answer_first() -> None:
    built = result([cluster("12", 0.6, 6), cluster("13", 0.3, 3)])

    assert built.best_answer == "12"
    assert built.set_size == 2
    assert not built.is_single_answer


def test_best_answer_skips_no_answer() -> None:
    built = result([cluster(None, 0.5, 5), cluster("12", 0.4, 4)])

    assert built.best_answer == "12"
    assert built.answers[0].is_no_answer
    assert not built.answers[1].is_no_answer


def test_only_no_answer_has_none() -> None:
    built = result([cluster(None, 0.9, 9)])

    assert built.best_answer is None
    assert built.is_single_answer


def test_single_answer() -> None:
    built = result([cluster("12", 0.9, 9)])

    assert built.is_single_answer
    assert built.set_size == 1
    assert built.coverage_target == pytest.approx(0.9)


def test_abstained_result() -> None:
    built = result([], abstained=True)

    assert built.best_answer is None
    assert built.set_size == 0
    assert not built.is_single_answer


def test_abstained_set_size_zero() -> None:
    # set_size follows the decision, whatever the answers list holds.
    built = result([cluster("12", 0.9, 9)], abstained=True)

    assert built.set_size == 0
    assert not built.is_single_answer


def test_result_is_frozen() -> None:
    built = result([cluster("12", 0.9, 9)])

    with pytest.raises(ValidationError):
        built.abstained = True  # type: ignore[misc]


def test_result_json_round_trip() -> None:
    built = result([cluster("12", 0.6, 6), cluster(None, 0.3, 3)])

    assert GuardResult.model_validate_json(built.model_dump_json()) == built


@pytest.mark.parametrize(
    "fields",
    [
        {"probability": 1.5},
        {"probability": -0.1},
        {"count": 0},
    ],
)
def test_cluster_rejects_invalid(fields: dict[str, float]) -> None:
    values = {"representative": "1", "probability": 0.5, "count": 1, "responses": ["r"]}
    values.update(fields)

    with pytest.raises(ValidationError):
        AnswerCluster(**values)


def test_usage_adds() -> None:
    first = TokenUsage(input_tokens=1, output_tokens=2, total_tokens=3)
    second = TokenUsage(
        input_tokens=10, output_tokens=20, total_tokens=30, responses_without_usage=2
    )

    assert first + second == TokenUsage(
        input_tokens=11, output_tokens=22, total_tokens=33, responses_without_usage=2
    )
    assert TokenUsage() + TokenUsage() == TokenUsage()


def test_guard_answers_sorted(make_guard: MakeGuard) -> None:
    guarded = make_guard().invoke(SPREAD)

    probabilities = [item.probability for item in guarded.answers]
    assert probabilities == sorted(probabilities, reverse=True)
    assert guarded.set_size == len(guarded.answers) > 1
    assert guarded.best_answer == guarded.answers[0].representative
    assert {item.representative for item in guarded.answers} <= {"17", "18", "19", "42"}
    assert sum(item.count for item in guarded.clusters) == guarded.num_queries


def test_guard_single_answer(make_guard: MakeGuard) -> None:
    guarded = make_guard().invoke(CERTAIN)

    assert guarded.is_single_answer
    assert guarded.best_answer == "3"
    assert guarded.answers[0].count == guarded.num_queries


def test_guard_abstention_keeps_clusters(make_guard: MakeGuard) -> None:
    guarded = make_guard().invoke(LONG_TAILED)

    assert guarded.abstained
    assert guarded.answers == []
    assert guarded.best_answer is None
    assert len(guarded.clusters) > guarded.num_queries // 2
    assert guarded.missing_mass >= 2.0 - guarded.threshold
