"""Tests for answer normalisation, equivalences and the clusterer."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cpq_guard.answers import (
    NO_ANSWER_KEY,
    Clusterer,
    Equivalence,
    ExactEquivalence,
    KeyedEquivalence,
    NormalizedEquivalence,
    NumericEquivalence,
    cluster_labels,
    equivalence_names,
    get_equivalence,
    normalize_answer,
    parse_number,
)
from cpq_guard.errors import InvalidParameterError, InvalidTypeError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("35", "35"),
        ("The answer is 35.", "answer is 35"),
        ("-3", "-3"),
        ("1.", "1"),
        ("35.0", "350"),
        ("30,000", "30000"),
        ("  Hello,   World!  ", "hello world"),
        ("A cat and an owl", "cat and owl"),
        ("the-end", "-end"),
        ("There", "there"),
        ("anthem", "anthem"),
        ("a.n", ""),
        ("state-of-the-art", "state-of- -art"),
        ("(x+y)/2", "xy2"),
        ("Tab\tand\nnewline", "tab and newline"),
        ("", ""),
        ("...", ""),
        ("Café", "café"),
    ],
)
def test_normalize_answer_table(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


def test_normalize_answer_rejects_non_string() -> None:
    with pytest.raises(InvalidTypeError, match="must be a string"):
        normalize_answer(35)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("35", "35.0"),
        ("35", "$35"),
        ("35", "35."),
        ("35", "35.00"),
        ("35", " 35 "),
        ("1,000", "1000"),
        ("1,000,000.50", "1000000.5"),
        ("1e3", "1000"),
        ("1E-2", "0.01"),
        ("+3", "3"),
        ("0.50", "0.5"),
        (".5", "0.5"),
        ("-0", "0"),
        ("0.000", "0"),
        ("50%", "50"),
        ("-$35", "-35"),
        ("$-35", "-35"),
        ("\u22123", "-3"),
        ("35.0.", "35"),
        ("35!", "35"),
        ("007", "7"),
        ("The Answer", "answer"),
        ("100000000000000000000000000000001", "100000000000000000000000000000001.0"),
    ],
)
def test_numeric_equal(a: str, b: str) -> None:
    equivalence = NumericEquivalence()

    assert equivalence.equivalent(a, b)
    assert equivalence.equivalent(b, a)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("35", "350"),
        ("35.0", "350"),
        ("-3", "3"),
        ("0.1", "0.10000000000000001"),
        ("50%", "0.5"),
        ("1,00", "100"),
        ("3.5.1", "351"),
        ("35", "thirty-five"),
        ("35 apples", "35"),
        ("100000000000000000000000000000001", "100000000000000000000000000000000"),
        ("-$-35", "35"),
        ("NaN", "nan1"),
    ],
)
def test_numeric_different(a: str, b: str) -> None:
    assert not NumericEquivalence().equivalent(a, b)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("35", Decimal(35)),
        ("$1,234.5", Decimal("1234.5")),
        ("-2.5e1", Decimal(-25)),
        ("12 %", Decimal(12)),
        ("abc", None),
        ("", None),
        ("NaN", None),
        ("Infinity", None),
        ("1e99999999999999999999", None),
        ("1,2345", None),
        ("--3", None),
    ],
)
def test_parse_number_table(text: str, expected: Decimal | None) -> None:
    assert parse_number(text) == expected


def test_numeric_text_falls_back_to_normalized() -> None:
    equivalence = NumericEquivalence()

    assert equivalence.key("The Cat.") == ("text", "cat")


def test_exact_strips_only_outer_space() -> None:
    equivalence = ExactEquivalence()

    assert equivalence.equivalent(" 35\n", "35")
    assert not equivalence.equivalent("35.", "35")
    assert not equivalence.equivalent("Paris", "paris")


def test_builtins_are_keyed() -> None:
    for name in equivalence_names():
        equivalence = get_equivalence(name)
        assert isinstance(equivalence, KeyedEquivalence)
        assert isinstance(equivalence, Equivalence)
        assert equivalence.name == name


def test_get_equivalence_names() -> None:
    assert equivalence_names() == ["exact", "normalized", "numeric"]
    assert get_equivalence("normalized") == NormalizedEquivalence()
    assert get_equivalence("numeric") != NormalizedEquivalence()


def test_get_equivalence_unknown() -> None:
    with pytest.raises(InvalidParameterError, match="'exact', 'normalized', 'numeric'") as info:
        get_equivalence("fuzzy")
    assert info.value.value == "fuzzy"


def test_get_equivalence_non_string() -> None:
    with pytest.raises(InvalidTypeError):
        get_equivalence(None)  # type: ignore[arg-type]


def test_clusterer_labels_counts() -> None:
    clusterer = Clusterer(NormalizedEquivalence())
    answers = ["35", "The 35.", "40", "35", "forty", "40!"]

    indices = [clusterer.add(answer) for answer in answers]

    assert indices == [0, 0, 1, 0, 2, 1]
    assert clusterer.labels == indices
    assert clusterer.counts == [3, 2, 1]
    assert clusterer.representatives == ["35", "40", "forty"]
    assert clusterer.num_clusters == 3
    assert len(clusterer) == 6


def test_clusterer_find() -> None:
    clusterer = Clusterer(NumericEquivalence())
    clusterer.add("35")
    clusterer.add("12")

    assert clusterer.find("35.0") == 0
    assert clusterer.find("$12") == 1
    assert clusterer.find("13") is None
    assert clusterer.find(None) is None
    assert len(clusterer) == 2
    assert clusterer.counts == [1, 1]


def test_clusterer_properties_are_copies() -> None:
    clusterer = Clusterer(NormalizedEquivalence())
    clusterer.add("a1")

    clusterer.counts.append(99)
    clusterer.labels.append(99)
    clusterer.representatives.append("x")

    assert clusterer.counts == [1]
    assert clusterer.labels == [0]
    assert clusterer.representatives == ["a1"]


def test_clusterer_no_answer_cluster() -> None:
    clusterer = Clusterer(NormalizedEquivalence())

    labels = [clusterer.add(answer) for answer in ["35", None, "", None, "35"]]

    assert labels == [0, 1, 2, 1, 0]
    assert clusterer.representatives == ["35", None, ""]
    assert clusterer.counts == [2, 2, 1]
    assert clusterer.find(None) == 1
    assert clusterer.find("") == 2


def test_no_answer_key_is_distinct() -> None:
    assert NO_ANSWER_KEY != ""
    assert NO_ANSWER_KEY is not None
    assert repr(NO_ANSWER_KEY) == "NO_ANSWER_KEY"


class _PrefixEquivalence:
    """A plain equivalence with no key: answers equal on their first two characters."""

    name = "prefix2"

    def __init__(self) -> None:
        self.calls = 0

    def equivalent(self, a: str, b: str) -> bool:
        self.calls += 1
        return a[:2] == b[:2]


def test_clusterer_plain_equivalence() -> None:
    equivalence = _PrefixEquivalence()
    assert isinstance(equivalence, Equivalence)
    assert not isinstance(equivalence, KeyedEquivalence)
    clusterer = Clusterer(equivalence)

    labels = [clusterer.add(answer) for answer in ["abc", "abd", None, "xyz", "abz", None]]

    assert labels == [0, 0, 1, 2, 0, 1]
    assert clusterer.representatives == ["abc", None, "xyz"]
    assert clusterer.counts == [3, 2, 1]
    assert clusterer.find("xy!") == 2
    assert clusterer.find("qq") is None
    assert equivalence.calls > 0


def test_clusterer_rejects_non_equivalence() -> None:
    with pytest.raises(InvalidTypeError, match="'equivalent"):
        Clusterer(lambda a, b: a == b)  # type: ignore[arg-type]


@pytest.mark.parametrize("equivalence", [NormalizedEquivalence(), _PrefixEquivalence()])
def test_clusterer_rejects_non_string(equivalence: Equivalence) -> None:
    clusterer = Clusterer(equivalence)

    with pytest.raises(InvalidTypeError, match="string or None"):
        clusterer.add(35)  # type: ignore[arg-type]
    with pytest.raises(InvalidTypeError, match="string or None"):
        clusterer.find(35)  # type: ignore[arg-type]
    assert len(clusterer) == 0


def test_cluster_labels_array() -> None:
    labels, representatives = cluster_labels(["1", "2", "1.", None], NormalizedEquivalence())

    assert labels.dtype == np.int64
    assert labels.tolist() == [0, 1, 0, 2]
    assert representatives == ["1", "2", None]


def test_cluster_labels_empty() -> None:
    labels, representatives = cluster_labels([], NormalizedEquivalence())

    assert labels.shape == (0,)
    assert representatives == []


_ANSWERS = st.one_of(
    st.none(),
    st.sampled_from(["35", "35.0", "$35", "The 35", "1,000", "1000", "-3", "+3", "a", "A."]),
    st.text(alphabet="0123456789.,-$%ae ", max_size=6),
)


@given(
    answers=st.lists(_ANSWERS, max_size=40),
    name=st.sampled_from(["exact", "normalized", "numeric"]),
)
def test_clusterer_property(answers: list[str | None], name: str) -> None:
    equivalence = get_equivalence(name)
    clusterer = Clusterer(equivalence)
    for answer in answers:
        clusterer.add(answer)

    labels = clusterer.labels
    assert sum(clusterer.counts) == len(answers) == len(clusterer)
    assert clusterer.counts == [labels.count(index) for index in range(clusterer.num_clusters)]
    assert sorted(set(labels)) == list(range(clusterer.num_clusters))
    for i, a in enumerate(answers):
        for j, b in enumerate(answers):
            if a is None or b is None:
                same = a is None and b is None
            else:
                same = equivalence.equivalent(a, b)
            assert (labels[i] == labels[j]) == same, (a, b)


@given(answers=st.lists(st.one_of(st.none(), st.text(alphabet="abc", max_size=3)), max_size=30))
def test_plain_matches_keyed(answers: list[str | None]) -> None:
    keyed = Clusterer(NormalizedEquivalence())
    plain = Clusterer(_PlainNormalized())
    for answer in answers:
        keyed.add(answer)
        plain.add(answer)

    assert plain.labels == keyed.labels
    assert plain.representatives == keyed.representatives


class _PlainNormalized:
    """The normalized rule without a key, to drive the linear-scan path."""

    name = "normalized-plain"

    def equivalent(self, a: str, b: str) -> bool:
        return normalize_answer(a) == normalize_answer(b)
