"""Tests of GuardResult as JSON data: dump, load, summary and the answered check."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cpq_guard import GuardResult
from cpq_guard.errors import InvalidParameterError, InvalidTypeError
from cpq_guard.result import AnswerCluster, TokenUsage
from integrations.results import (
    dump_guard_result,
    is_answered,
    load_guard_result,
    summarize_result,
)


def cluster(answer: str | None, probability: float, count: int = 2) -> AnswerCluster:
    return AnswerCluster(
        representative=answer,
        probability=probability,
        count=count,
        responses=[f"The answer is {answer}."] * count,
    )


def make_result(**overrides: Any) -> GuardResult:
    clusters = [cluster("12", 0.61234), cluster("13", 0.2), cluster(None, 0.1)]
    fields: dict[str, Any] = {
        "answers": clusters[:2],
        "clusters": clusters,
        "abstained": False,
        "missing_mass": 0.08765,
        "num_queries": 14,
        "stop_reason": "derivative",
        "alpha": 0.1,
        "threshold": 1.2,
        "usage": TokenUsage(input_tokens=10, output_tokens=20, total_tokens=30),
    }
    fields.update(overrides)
    return GuardResult(**fields)


def test_dump_is_plain_json() -> None:
    data = dump_guard_result(make_result())

    assert json.loads(json.dumps(data)) == data
    assert data["clusters"][2]["representative"] is None
    assert data["usage"]["total_tokens"] == 30


def test_dump_load_round_trip() -> None:
    result = make_result()

    assert load_guard_result(dump_guard_result(result)) == result
    assert load_guard_result(json.loads(json.dumps(dump_guard_result(result)))) == result


def test_dump_drops_responses() -> None:
    result = make_result()
    data = dump_guard_result(result, keep_responses=False)

    assert all(item["responses"] == [] for item in data["answers"] + data["clusters"])
    loaded = load_guard_result(data)
    assert [item.count for item in loaded.clusters] == [2, 2, 2]
    assert result.clusters[0].responses  # the original keeps its responses


def test_load_passes_result_through() -> None:
    result = make_result()
    assert load_guard_result(result) is result


def test_load_rejects_non_mapping() -> None:
    with pytest.raises(InvalidTypeError, match="dump_guard_result"):
        load_guard_result(["not", "a", "result"])  # type: ignore[arg-type]


def test_load_rejects_invalid_dict() -> None:
    data = dump_guard_result(make_result())
    data["missing_mass"] = 3.0
    with pytest.raises(InvalidParameterError, match="missing_mass"):
        load_guard_result(data)


def test_dump_rejects_non_result() -> None:
    with pytest.raises(InvalidTypeError, match="GuardResult"):
        dump_guard_result({"abstained": True})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, True),
        ({"abstained": True, "answers": []}, False),
        ({"answers": [cluster(None, 0.9)]}, False),
        ({"answers": [cluster(None, 0.6), cluster("7", 0.3)]}, True),
        ({"answers": []}, False),
    ],
)
def test_is_answered(overrides: dict[str, Any], expected: bool) -> None:
    assert is_answered(make_result(**overrides)) is expected


def test_summary_fields() -> None:
    summary = summarize_result(make_result())

    assert summary == {
        "abstained": False,
        "answers": [
            {"answer": "12", "probability": 0.612, "count": 2},
            {"answer": "13", "probability": 0.2, "count": 2},
        ],
        "missing_mass": 0.088,
        "num_queries": 14,
        "coverage_target": 0.9,
    }


def test_summary_truncates() -> None:
    summary = summarize_result(make_result(), max_answers=1)

    assert len(summary["answers"]) == 1
    assert summary["answers_omitted"] == 1


def test_summary_rejects_zero_answers() -> None:
    with pytest.raises(InvalidParameterError, match="max_answers"):
        summarize_result(make_result(), max_answers=0)
