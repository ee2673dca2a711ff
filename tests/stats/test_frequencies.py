"""Tests of the frequency-of-frequencies bookkeeping."""

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cpq_guard.stats.frequencies import FrequencyCounter, frequencies_of_counts


@st.composite
def first_appearance_labels(draw: st.DrawFn, max_size: int = 60) -> list[int]:
    """Draw a label sequence where each label is an old one or the next new one."""
    size = draw(st.integers(min_value=0, max_value=max_size))
    labels: list[int] = []
    for _ in range(size):
        new_label = len(set(labels))
        labels.append(draw(st.integers(min_value=0, max_value=new_label)))
    return labels


def test_empty_counter() -> None:
    counter = FrequencyCounter()

    assert counter.total == 0
    assert counter.num_clusters == 0
    assert counter.counts.tolist() == []
    assert counter.counts.dtype == np.int64
    assert counter.frequencies == {}
    assert counter.frequency(1) == 0


def test_hand_made_sequence_step_by_step() -> None:
    counter = FrequencyCounter()
    expected = [
        # (label, counts, frequencies)
        (0, [1], {1: 1}),
        (0, [2], {2: 1}),
        (1, [2, 1], {2: 1, 1: 1}),
        (2, [2, 1, 1], {2: 1, 1: 2}),
        (1, [2, 2, 1], {2: 2, 1: 1}),
        (0, [3, 2, 1], {3: 1, 2: 1, 1: 1}),
        (2, [3, 2, 2], {3: 1, 2: 2}),
        (3, [3, 2, 2, 1], {3: 1, 2: 2, 1: 1}),
    ]
    for step, (label, counts, frequencies) in enumerate(expected, start=1):
        counter.add(label)

        assert counter.total == step
        assert counter.counts.tolist() == counts
        assert counter.frequencies == frequencies
        assert counter.num_clusters == len(counts)


def test_frequency_lookup() -> None:
    counter = FrequencyCounter([0, 0, 0, 1, 1, 2, 3, 4])

    assert counter.frequency(1) == 3
    assert counter.frequency(2) == 1
    assert counter.frequency(3) == 1
    assert counter.frequency(4) == 0
    assert 0 not in counter.frequencies


def test_constructor_equals_repeated_add() -> None:
    labels = [0, 1, 0, 2, 2, 2, 1, 3]
    built = FrequencyCounter(labels)
    added = FrequencyCounter()
    for label in labels:
        added.add(label)

    assert built.counts.tolist() == added.counts.tolist()
    assert built.frequencies == added.frequencies
    assert built.total == added.total


def test_views_are_copies() -> None:
    counter = FrequencyCounter([0, 0, 1])

    counts = counter.counts
    counts[0] = 99
    frequencies = counter.frequencies
    assert isinstance(frequencies, dict)
    frequencies[1] = 99

    assert counter.counts.tolist() == [2, 1]
    assert counter.frequencies == {2: 1, 1: 1}


@pytest.mark.parametrize("label", [-1, 3, 5])
def test_invalid_label_rejected(label: int) -> None:
    counter = FrequencyCounter([0, 1])

    with pytest.raises(ValueError, match=f"cluster label {label} is invalid"):
        counter.add(label)


def test_rejected_label_leaves_state() -> None:
    counter = FrequencyCounter([0, 1, 1])

    with pytest.raises(ValueError, match=r"labels must be 0\.\.2"):
        counter.add(3)

    assert counter.total == 3
    assert counter.counts.tolist() == [1, 2]
    assert counter.frequencies == {1: 1, 2: 1}


def test_first_label_must_be_zero() -> None:
    with pytest.raises(ValueError, match=r"labels must be 0\.\.0"):
        FrequencyCounter([1])


def test_frequencies_of_counts_by_hand() -> None:
    assert frequencies_of_counts([3, 1, 1, 2, 0, 1]) == {1: 3, 2: 1, 3: 1}
    assert frequencies_of_counts([]) == {}
    assert frequencies_of_counts([0, 0]) == {}
    assert frequencies_of_counts(np.array([5])) == {5: 1}


def test_frequencies_of_counts_plain_ints() -> None:
    frequencies = frequencies_of_counts(np.array([2, 2, 7]))

    assert all(type(key) is int and type(value) is int for key, value in frequencies.items())


@settings(deadline=None)
@given(first_appearance_labels())
def test_counter_matches_recount(labels: list[int]) -> None:
    counter = FrequencyCounter(labels)
    cluster_counts = Counter(labels)
    expected_counts = [cluster_counts[label] for label in range(len(cluster_counts))]

    assert counter.total == len(labels)
    assert counter.num_clusters == len(cluster_counts)
    assert counter.counts.tolist() == expected_counts
    assert counter.frequencies == dict(Counter(expected_counts))
    assert counter.frequencies == frequencies_of_counts(expected_counts)
    assert sum(r * n for r, n in counter.frequencies.items()) == counter.total
    assert sum(counter.frequencies.values()) == counter.num_clusters
