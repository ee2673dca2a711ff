"""Tests of recorded histories and their estimates at a stopping point."""

import numpy as np
import pytest

from cpq_guard.answers import ExactEquivalence, NormalizedEquivalence
from cpq_guard.banks import BankRecord, Sample
from cpq_guard.histories import History, histories_from_records
from cpq_guard.stats.probabilities import estimate_from_counts

ANSWERS = ["35", "35.", "36", None, "35", "the 36"]


def test_labels_by_first_appearance() -> None:
    history = History.from_answers(ANSWERS, ["35"], NormalizedEquivalence(), prompt_id="q1")

    assert history.labels.tolist() == [0, 0, 1, 2, 0, 1]
    assert history.labels.dtype == np.int64
    assert history.prompt_id == "q1"
    assert len(history) == 6


def test_reference_by_equivalence() -> None:
    equivalence = NormalizedEquivalence()

    assert History.from_answers(ANSWERS, ["35"], equivalence).reference_labels == (0,)
    assert History.from_answers(ANSWERS, ["The 36!"], equivalence).reference_labels == (1,)
    assert History.from_answers(ANSWERS, ["36", "35"], equivalence).reference_labels == (0, 1)
    assert History.from_answers(ANSWERS, ["37"], equivalence).reference_labels == ()
    assert History.from_answers(ANSWERS, [], equivalence).reference_labels == ()


def test_reference_by_representative() -> None:
    # The cluster of "1." and "1" has the representative "1.", which the
    # representative rule does not match with the reference "1".
    answers = ["1.", "1", "2"]
    equivalence = NormalizedEquivalence()

    by_equivalence = History.from_answers(answers, ["1"], equivalence)
    by_representative = History.from_answers(
        answers, ["1"], equivalence, reference_match="representative"
    )

    assert by_equivalence.labels.tolist() == by_representative.labels.tolist() == [0, 0, 1]
    assert by_equivalence.reference_labels == (0,)
    assert by_representative.reference_labels == ()


def test_representative_match_strips() -> None:
    history = History.from_answers(
        [" 2 ", "1"], ["2\n", "3"], NormalizedEquivalence(), reference_match="representative"
    )

    assert history.reference_labels == (0,)


def test_representative_never_matches_no_answer() -> None:
    history = History.from_answers(
        [None, "4"], ["4"], ExactEquivalence(), reference_match="representative"
    )

    assert history.labels.tolist() == [0, 1]
    assert history.reference_labels == (1,)


def test_estimate_matches_counts() -> None:
    history = History.from_answers(ANSWERS, ["36"], NormalizedEquivalence())

    estimate = history.estimate(5, "good-turing")

    # Prefix [0, 0, 1, 2, 0]: counts [3, 1, 1], so N_1 / T = 2 / 5.
    expected_mass, expected_probabilities = estimate_from_counts(np.array([3, 1, 1]), "good-turing")
    assert estimate.num_queries == 5
    assert estimate.missing_mass == pytest.approx(2 / 5)
    assert estimate.missing_mass == expected_mass
    assert estimate.probabilities.tolist() == expected_probabilities.tolist()
    assert estimate.reference_clusters == (1,)


def test_estimate_drops_unseen_references() -> None:
    history = History(labels=np.array([0, 0, 1, 2, 1]), reference_labels=(1, 2))

    assert history.estimate(2, "smoothed").reference_clusters == ()
    assert history.estimate(3, "smoothed").reference_clusters == (1,)
    assert history.estimate(4, "smoothed").reference_clusters == (1, 2)


def test_estimate_probabilities_by_label() -> None:
    history = History(labels=np.array([0, 1, 1, 2, 1, 0]), reference_labels=())

    estimate = history.estimate(6, "smoothed")

    # Counts [2, 3, 1] with N_1 = N_2 = N_3 = 1 give adjusted counts [3, 3, 2].
    seen_mass = 1.0 - estimate.missing_mass
    assert estimate.probabilities == pytest.approx(np.array([3, 3, 2]) / 8 * seen_mass)


def test_estimate_without_samples() -> None:
    history = History(labels=np.array([0, 1]), reference_labels=(0,))

    estimate = history.estimate(0, "smoothed")

    assert estimate.missing_mass == 1.0
    assert estimate.probabilities.shape == (0,)
    assert estimate.reference_clusters == ()


def test_estimate_cached_per_key() -> None:
    history = History(labels=np.array([0, 0, 1, 2]), reference_labels=(0,))

    first = history.estimate(3, "smoothed")

    assert history.estimate(3, "smoothed") is first
    assert history.estimate(3, "good-turing") is not first
    assert history.estimate(4, "smoothed") is not first


def test_cache_ignored_by_equality() -> None:
    history = History(labels=np.array([0, 0, 1]), reference_labels=(0,))
    other = History(labels=history.labels, reference_labels=(0,))

    history.estimate(2, "smoothed")

    assert history == other


def test_histories_from_records() -> None:
    records = [
        BankRecord(
            id="q1",
            prompt="What is 5 * 7?",
            references=["35"],
            samples=[Sample(text=text) for text in ["answer: 35", "answer: 35.", "no idea"]],
        ),
        BankRecord(
            id="q2",
            prompt="What is 6 * 6?",
            references=["36"],
            samples=[Sample(text=text) for text in ["answer: 30", "answer: 36"]],
        ),
    ]

    def extract(text: str) -> str | None:
        return text.removeprefix("answer: ") if text.startswith("answer: ") else None

    histories = histories_from_records(records, NormalizedEquivalence(), extract=extract)

    assert [history.prompt_id for history in histories] == ["q1", "q2"]
    assert histories[0].labels.tolist() == [0, 0, 1]
    assert histories[0].reference_labels == (0,)
    assert histories[1].labels.tolist() == [0, 1]
    assert histories[1].reference_labels == (1,)


def test_histories_from_records_whole_text() -> None:
    record = BankRecord(
        id="q1", prompt="p", references=["35"], samples=[Sample(text="35."), Sample(text="35")]
    )

    (by_equivalence,) = histories_from_records([record], NormalizedEquivalence())
    (by_representative,) = histories_from_records(
        [record], NormalizedEquivalence(), reference_match="representative"
    )

    assert by_equivalence.labels.tolist() == [0, 0]
    assert by_equivalence.reference_labels == (0,)
    assert by_representative.reference_labels == ()
