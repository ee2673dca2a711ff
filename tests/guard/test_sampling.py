"""Tests for SamplingSession: stopping, clusters, sets, usage and offline agreement."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from cpq_guard.answers import get_equivalence
from cpq_guard.calibration import Calibration
from cpq_guard.errors import ExtractionError
from cpq_guard.extractors import CallableExtractor, FinalAnswerExtractor
from cpq_guard.histories import History
from cpq_guard.models import DEFAULT_NO_ANSWER_TEMPLATE, AnswerDistribution
from cpq_guard.result import TokenUsage
from cpq_guard.sampling import SamplingSession
from cpq_guard.stats.policies import (
    DerivativePolicy,
    FixedPolicy,
    MissingMassPolicy,
    stopping_times,
)

MakeCalibration = Callable[..., Calibration]


def make_session(calibration: Calibration, seed: int = 0, extractor: Any = None) -> SamplingSession:
    return SamplingSession(
        calibration,
        extractor or FinalAnswerExtractor(),
        get_equivalence("numeric"),
        np.random.default_rng(seed),
    )


def feed(session: SamplingSession, texts: list[str]) -> int:
    """Add texts until the policy stops and return how many were added."""
    for count, text in enumerate(texts, start=1):
        if session.add(text, TokenUsage()) is not None:
            return count
    raise AssertionError(f"the policy did not stop within {len(texts)} samples")


def answer_texts(answers: list[str | None]) -> list[str]:
    return [DEFAULT_NO_ANSWER_TEMPLATE if a is None else f"The answer is {a}." for a in answers]


def drawn_answers(seed: int, n: int) -> list[str | None]:
    distribution = AnswerDistribution(
        answers={"18": 0.4, "17": 0.3, "19": 0.15, "42": 0.1, "7": 0.05}, no_answer=0.05
    )
    rng = np.random.default_rng(seed)
    return [distribution.draw(rng) for _ in range(n)]


def test_fixed_policy_stops(make_calibration: MakeCalibration) -> None:
    session = make_session(make_calibration(policy=FixedPolicy(queries=3)))

    reasons = [session.add(text, TokenUsage()) for text in answer_texts(["1", "1", "2"])]

    assert reasons == [None, None, "fixed_queries"]
    assert session.stop_reason == "fixed_queries"
    assert session.num_samples == 3
    assert session.max_queries == 3


def test_add_after_stop_raises(make_calibration: MakeCalibration) -> None:
    session = make_session(make_calibration(policy=FixedPolicy(queries=1)))
    session.add("The answer is 1.", TokenUsage())

    with pytest.raises(RuntimeError, match="already stopped"):
        session.add("The answer is 2.", TokenUsage())


def test_result_before_stop_raises(make_calibration: MakeCalibration) -> None:
    session = make_session(make_calibration(policy=FixedPolicy(queries=2)))
    session.add("The answer is 1.", TokenUsage())

    with pytest.raises(RuntimeError, match="not stopped after 1 samples"):
        session.result()


def test_clusters_keep_responses(make_calibration: MakeCalibration) -> None:
    session = make_session(make_calibration(policy=FixedPolicy(queries=6), tau=0.9))
    texts = [
        "The answer is 7.",
        "#### 7.0",
        "I get 12 in the end.",
        DEFAULT_NO_ANSWER_TEMPLATE,
        "Answer: 7",
        "The answer is 12.",
    ]

    feed(session, texts)
    result = session.result()

    by_answer = {cluster.representative: cluster for cluster in result.clusters}
    assert by_answer["7"].responses == [texts[0], texts[1], texts[4]]
    assert by_answer["12"].responses == [texts[2], texts[5]]
    assert by_answer[None].responses == [texts[3]]
    assert by_answer[None].is_no_answer
    assert [cluster.count for cluster in result.clusters] == [3, 2, 1]
    probabilities = [cluster.probability for cluster in result.clusters]
    assert probabilities == sorted(probabilities, reverse=True)


def test_set_uses_threshold(make_calibration: MakeCalibration) -> None:
    # With tau < 1 the set holds the clusters whose probability is at least
    # 1 - tau; the guard never abstains, since that needs a missing mass of 2 - tau > 1.
    session = make_session(make_calibration(policy=FixedPolicy(queries=10), tau=0.6))

    feed(session, answer_texts(["5"] * 7 + ["6"] * 3))
    result = session.result()

    assert not result.abstained
    assert [cluster.representative for cluster in result.answers] == ["5"]
    assert [cluster.representative for cluster in result.clusters] == ["5", "6"]
    assert result.clusters[0].probability >= 0.4
    assert result.clusters[1].probability < 0.4


def test_abstains_on_missing_mass(make_calibration: MakeCalibration) -> None:
    session = make_session(make_calibration(policy=FixedPolicy(queries=10), tau=1.5))

    feed(session, answer_texts([str(n) for n in range(10)]))
    result = session.result()

    assert result.abstained
    assert result.answers == []
    assert len(result.clusters) == 10
    assert result.missing_mass >= 0.5
    assert result.set_size == 0


def test_cumulative_mapping(make_calibration: MakeCalibration) -> None:
    # At level 0.5 the cumulative set takes clusters while the mass ranked
    # before them is at most 0.5: "5" (before it 0) and "6" (before it ~0.6) is out.
    calibration = make_calibration(
        policy=FixedPolicy(queries=10), mapping="cumulative", tau=0.5, tie_jitter=0.0
    )
    session = make_session(calibration)

    feed(session, answer_texts(["5"] * 6 + ["6"] * 4))
    result = session.result()

    assert not result.abstained
    assert [cluster.representative for cluster in result.answers] == ["5"]


def test_raising_extractor_wrapped(make_calibration: MakeCalibration) -> None:
    def broken(text: str) -> str | None:
        if "2" in text:
            raise IndexError("no such group")
        return text

    extractor = CallableExtractor(broken, name="broken")
    session = make_session(make_calibration(policy=FixedPolicy(queries=3)), extractor=extractor)
    session.add("answer 1", TokenUsage())

    with pytest.raises(ExtractionError, match="sample 2") as caught:
        session.add("answer 2", TokenUsage())

    assert isinstance(caught.value.__cause__, IndexError)
    assert "'broken' raised IndexError" in str(caught.value)
    assert session.num_samples == 1


def test_usage_and_counters_reported(make_calibration: MakeCalibration) -> None:
    session = make_session(make_calibration(policy=FixedPolicy(queries=2)))
    session.add("The answer is 1.", TokenUsage(input_tokens=3, output_tokens=4, total_tokens=7))
    session.add("The answer is 1.", TokenUsage(responses_without_usage=1))
    extra = TokenUsage(input_tokens=3, output_tokens=5, total_tokens=8)

    result = session.result(extra_usage=extra, discarded_queries=1, cancelled_queries=2, retries=4)

    assert result.usage == TokenUsage(
        input_tokens=6, output_tokens=9, total_tokens=15, responses_without_usage=1
    )
    assert result.discarded_queries == 1
    assert result.cancelled_queries == 2
    assert result.retries == 4
    assert result.num_queries == 2
    assert result.alpha == 0.1
    assert result.threshold == 1.5


@pytest.mark.parametrize(
    "policy",
    [
        MissingMassPolicy(epsilon=0.15, min_queries=5, max_queries=40),
        DerivativePolicy(lambda_=0.004, min_queries=5, max_queries=40, bootstrap=10),
    ],
    ids=["missing-mass", "derivative"],
)
def test_matches_offline_replay(policy: Any, make_calibration: MakeCalibration) -> None:
    # Calibration replays recorded histories offline. The guard must stop at
    # the same sample and estimate the same missing mass, or tau would not
    # fit the guard's scores.
    calibration = make_calibration(policy=policy)
    equivalence = get_equivalence("numeric")
    for seed in range(10):
        answers = drawn_answers(seed, policy.max_queries)
        session = make_session(calibration, seed=seed)

        stopped_at = feed(session, answer_texts(answers))

        history = History.from_answers(answers, [], equivalence)
        trajectory = policy.trajectory(history.labels, np.random.default_rng(seed))
        expected = stopping_times(
            trajectory[np.newaxis, :], policy.threshold, policy.min_queries, policy.max_queries
        )
        assert stopped_at == int(expected[0]), f"seed {seed}"
        estimate = history.estimate(stopped_at, calibration.estimator)
        assert session.result().missing_mass == pytest.approx(estimate.missing_mass)


def test_equal_probability_ranks_larger_count() -> None:
    from cpq_guard.answers import NormalizedEquivalence
    from cpq_guard.calibration import Calibration
    from cpq_guard.extractors import WholeTextExtractor
    from cpq_guard.result import TokenUsage
    from cpq_guard.sampling import SamplingSession
    from cpq_guard.stats.policies import FixedPolicy

    calibration = Calibration(
        alpha=0.1,
        tau=1.5,
        policy=FixedPolicy(queries=11),
        equivalence="normalized",
        extractor="text",
        num_calibration=20,
        calibration_mean_queries=11,
    )
    session = SamplingSession(
        calibration, WholeTextExtractor(), NormalizedEquivalence(), np.random.default_rng(0)
    )
    # Counts 5 and 6: N_5 = N_6 = 1, so Good-Turing gives both the adjusted count 6.
    for text in ["12"] * 5 + ["1"] * 6:
        session.add(text, TokenUsage())
    result = session.result()

    assert result.clusters[0].probability == result.clusters[1].probability
    assert result.clusters[0].representative == "1"
    assert result.clusters[0].count == 6
