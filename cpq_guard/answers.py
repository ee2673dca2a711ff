"""Answer normalisation, answer equivalence and clustering of sampled answers.

CPQ counts how often each distinct answer appears among a model's samples, so
it needs a rule for when two sampled answers are the same answer. That rule is
an `Equivalence`. Most rules are a key function (two answers are equivalent
when their keys are equal), and those are `KeyedEquivalence` objects, which
`Clusterer` groups with a dict lookup in O(1) per answer. A rule that is not a
key function, such as an embedding-similarity or LLM-judge backend, needs only
``name`` and ``equivalent``, and `Clusterer` compares each new answer with the
first answer of every cluster seen so far.

A sample with no extractable answer is passed as ``None``. All such samples
form one "no answer" cluster, which is counted like any other cluster and is
never equivalent to a real answer.
"""

from __future__ import annotations

import enum
import re
import string
from collections.abc import Hashable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Protocol, runtime_checkable

import numpy as np

from cpq_guard.errors import InvalidParameterError, InvalidTypeError

__all__ = [
    "NO_ANSWER_KEY",
    "Clusterer",
    "Equivalence",
    "ExactEquivalence",
    "KeyedEquivalence",
    "NormalizedEquivalence",
    "NumericEquivalence",
    "cluster_labels",
    "equivalence_names",
    "get_equivalence",
    "normalize_answer",
    "parse_number",
]

_PUNCTUATION_TO_REMOVE = frozenset(string.punctuation) - {"-"}
_PUNCTUATION_TABLE = str.maketrans("", "", "".join(sorted(_PUNCTUATION_TO_REMOVE)))
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Normalise an answer string with the CPQ reference rule.

    The steps, in order: lower-case; remove every ASCII punctuation character
    of `string.punctuation` except ``-`` (so negative numbers keep their sign);
    replace the articles "a", "an" and "the" (whole words) with a space; and
    collapse runs of white space into single spaces, trimming both ends.

    The rule removes decimal points too, so ``"35.0"`` becomes ``"350"``; use
    `NumericEquivalence` when answers are numbers with decimals.

    Args:
        text: The answer to normalise.

    Returns:
        The normalised answer, possibly the empty string.

    Raises:
        InvalidTypeError: If ``text`` is not a string.
    """
    if not isinstance(text, str):
        raise InvalidTypeError(
            f"answer must be a string, got {type(text).__name__} {text!r}; "
            "pass the extracted answer text"
        )

    lowered = text.lower()
    without_punctuation = lowered.translate(_PUNCTUATION_TABLE)
    without_articles = _ARTICLES.sub(" ", without_punctuation)
    return " ".join(without_articles.split())


@runtime_checkable
class Equivalence(Protocol):
    """A rule that decides whether two answers are the same answer.

    Implementations must be reflexive and symmetric. `Clusterer` compares a
    new answer only with the first answer of each existing cluster, so a rule
    that is not transitive groups answers by their similarity to those first
    answers.

    Attributes:
        name: Stable identifier of the rule, stored in calibration files so a
            guard can check it uses the rule its calibration was made with.
    """

    name: str

    def equivalent(self, a: str, b: str) -> bool:
        """Return whether answers ``a`` and ``b`` are the same answer."""
        ...


@runtime_checkable
class KeyedEquivalence(Equivalence, Protocol):
    """An `Equivalence` defined by a key function.

    Contract: ``equivalent(a, b) == (key(a) == key(b))`` for all answers.
    `Clusterer` relies on it to group answers with a dict lookup.
    """

    def key(self, answer: str) -> Hashable:
        """Return the key that identifies the equivalence class of ``answer``."""
        ...


class _KeyFunctionEquivalence:
    """Shared `equivalent` and representation for the built-in keyed rules."""

    name: str = ""

    def key(self, answer: str) -> Hashable:
        raise NotImplementedError

    def equivalent(self, a: str, b: str) -> bool:
        """Return whether ``a`` and ``b`` have equal keys."""
        return self.key(a) == self.key(b)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(type(self))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ExactEquivalence(_KeyFunctionEquivalence):
    """Answers are equal when they are equal after stripping outer white space."""

    name = "exact"

    def key(self, answer: str) -> Hashable:
        """Return ``answer.strip()``."""
        _check_answer(answer)
        return answer.strip()


class NormalizedEquivalence(_KeyFunctionEquivalence):
    """Answers are equal when `normalize_answer` maps them to the same string.

    This is the rule of the code released with the CPQ paper (arXiv:2506.05497).
    """

    name = "normalized"

    def key(self, answer: str) -> Hashable:
        """Return ``normalize_answer(answer)``."""
        return normalize_answer(answer)


# A number as models write it. Every part but the digits is optional: a sign,
# a dollar sign before or after the sign, digits grouped in threes by commas,
# a decimal part (a bare trailing point is allowed), an exponent and a percent sign.
_NUMBER = re.compile(
    r"""
    (?P<sign1>[+-]?)\s*\$?\s*(?P<sign2>[+-]?)
    (?P<mantissa>
        (?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?
        |\.\d+
    )
    (?P<exponent>[eE][+-]?\d+)?
    \s*%?
    """,
    re.VERBOSE,
)
_SENTENCE_END = (".", "!", "?")
_UNICODE_MINUS = "\u2212"


def parse_number(answer: str) -> Decimal | None:
    """Parse an answer written as a number, or return None if it is not one.

    The accepted parts, in order, all optional except the digits:

    - white space around the number;
    - a sign: ``+``, ``-`` or the Unicode minus U+2212;
    - a ``$``, before or after the sign;
    - digits, plain or grouped in threes with commas (``"1,000"``, but not ``"1,00"``);
    - a decimal part, where a bare trailing point counts as none (``"35."``);
    - an exponent (``"1e3"`` is 1000);
    - a trailing ``%``, which is dropped, so ``"50%"`` is 50 and not 0.5.

    If the whole string does not parse but ends with ``.``, ``!`` or ``?``,
    the string without that last character is tried, so ``"35.0."`` is 35.
    ``NaN`` and ``Infinity`` are not numbers here.

    Args:
        answer: The answer text.

    Returns:
        The exact decimal value, or None if ``answer`` is not a number.
    """
    _check_answer(answer)
    text = answer.strip().replace(_UNICODE_MINUS, "-")

    value = _parse_number_exactly(text)
    if value is None and text.endswith(_SENTENCE_END):
        value = _parse_number_exactly(text[:-1].rstrip())
    return value


def _parse_number_exactly(text: str) -> Decimal | None:
    match = _NUMBER.fullmatch(text)
    if match is None or (match["sign1"] and match["sign2"]):
        return None

    sign = match["sign1"] or match["sign2"]
    literal = sign + match["mantissa"].replace(",", "") + (match["exponent"] or "")
    try:
        return Decimal(literal)
    except InvalidOperation:  # an exponent beyond the range that decimal supports
        return None


def _canonical_decimal(value: Decimal) -> tuple[int, tuple[int, ...], int]:
    """Return an exact canonical form: equal values give equal tuples.

    `Decimal.normalize` would round to the context precision (28 digits), so
    the trailing zeros are stripped by hand instead.
    """
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite by construction of the pattern

    if digits == (0,):  # Decimal keeps no leading zeros, so this is every zero, -0 included
        return (0, (0,), 0)

    digit_list = list(digits)
    while digit_list[-1] == 0:
        digit_list.pop()
        exponent += 1
    return (sign, tuple(digit_list), exponent)


class NumericEquivalence(_KeyFunctionEquivalence):
    """Numbers compare by exact value, other answers by `normalize_answer`.

    An answer that `parse_number` reads as a number is keyed by its exact
    decimal value, so ``"35"``, ``"35.0"``, ``"35."``, ``"$35"`` and
    ``"+35"`` are one answer, ``"1,000"`` equals ``"1000"`` and ``"1e3"``,
    ``"0.50"`` equals ``"0.5"``, ``"-0"`` equals ``"0"``, and ``"50%"``
    equals ``"50"``. Values are compared with `decimal.Decimal`, never
    floats, so ``"0.1"`` and ``"0.10000000000000001"`` differ. Any other
    answer is keyed by `normalize_answer`, and a number never equals a text
    answer, even one that normalises to the same digits (``"3.5.1"``).
    """

    name = "numeric"

    def key(self, answer: str) -> Hashable:
        """Return ``("number", canonical value)`` or ``("text", normalised text)``."""
        value = parse_number(answer)
        if value is not None:
            return ("number", _canonical_decimal(value))
        return ("text", normalize_answer(answer))


_BUILT_INS: dict[str, type[_KeyFunctionEquivalence]] = {
    ExactEquivalence.name: ExactEquivalence,
    NormalizedEquivalence.name: NormalizedEquivalence,
    NumericEquivalence.name: NumericEquivalence,
}


def equivalence_names() -> list[str]:
    """Return the names that `get_equivalence` accepts, sorted."""
    return sorted(_BUILT_INS)


def get_equivalence(name: str) -> Equivalence:
    """Return a new instance of the built-in equivalence called ``name``.

    Raises:
        InvalidTypeError: If ``name`` is not a string.
        InvalidParameterError: If no built-in equivalence has that name.
    """
    if not isinstance(name, str):
        raise InvalidTypeError(
            f"equivalence name must be a string, got {type(name).__name__} {name!r}"
        )

    factory = _BUILT_INS.get(name)
    if factory is None:
        valid = ", ".join(repr(valid_name) for valid_name in equivalence_names())
        raise InvalidParameterError(
            "equivalence",
            name,
            f"unknown equivalence {name!r}; use one of {valid}, "
            "or pass an object with a 'name' attribute and an 'equivalent(a, b)' method",
        )
    return factory()


class _NoAnswer(enum.Enum):
    NO_ANSWER = "no answer"

    def __repr__(self) -> str:
        return "NO_ANSWER_KEY"


NO_ANSWER_KEY = _NoAnswer.NO_ANSWER
"""Cluster key of the samples that have no extractable answer (passed as None).

No key function returns it, so the no-answer cluster never merges with a real
answer's cluster.
"""


class Clusterer:
    """Incremental grouping of sampled answers into equivalence clusters.

    Clusters are numbered 0, 1, 2, ... in the order their first answer was
    added. ``None`` stands for a sample without an extractable answer, and all
    such samples share one cluster whose representative is ``None``.

    With a `KeyedEquivalence` each `add` and `find` is one dict lookup. With
    a plain `Equivalence` they compare the answer with each cluster's
    representative in cluster order and take the first match, which costs
    one ``equivalent`` call per cluster.

    Args:
        equivalence: The rule that decides whether two answers are the same.

    Raises:
        InvalidTypeError: If ``equivalence`` has no ``name`` attribute or no
            ``equivalent`` method.
    """

    def __init__(self, equivalence: Equivalence) -> None:
        if not isinstance(equivalence, Equivalence):
            raise InvalidTypeError(
                "equivalence must have a 'name' attribute and an 'equivalent(a, b)' method, "
                f"got {type(equivalence).__name__}; use get_equivalence('normalized') "
                "for the reference rule"
            )

        self._equivalence = equivalence
        self._keyed = isinstance(equivalence, KeyedEquivalence)
        self._index_by_key: dict[Hashable, int] = {}
        self._no_answer_index: int | None = None
        self._representatives: list[str | None] = []
        self._counts: list[int] = []
        self._labels: list[int] = []

    @property
    def equivalence(self) -> Equivalence:
        """The rule this clusterer groups answers with."""
        return self._equivalence

    @property
    def representatives(self) -> list[str | None]:
        """First answer added to each cluster, in cluster order (a copy)."""
        return list(self._representatives)

    @property
    def counts(self) -> list[int]:
        """Number of samples in each cluster, in cluster order (a copy)."""
        return list(self._counts)

    @property
    def labels(self) -> list[int]:
        """Cluster index of every added sample, in the order added (a copy)."""
        return list(self._labels)

    @property
    def num_clusters(self) -> int:
        """Number of distinct clusters seen, the no-answer cluster included."""
        return len(self._counts)

    def __len__(self) -> int:
        return len(self._labels)

    def __repr__(self) -> str:
        return (
            f"Clusterer(equivalence={self._equivalence!r}, samples={len(self)}, "
            f"clusters={self.num_clusters})"
        )

    def add(self, answer: str | None) -> int:
        """Add one sampled answer and return the index of its cluster.

        Args:
            answer: The extracted answer, or None if the response had none.

        Returns:
            The cluster index; a new cluster gets the next unused index.

        Raises:
            InvalidTypeError: If ``answer`` is neither a string nor None.
        """
        if answer is None:
            index = self._no_answer_index
            if index is None:
                index = self._new_cluster(None)
                self._no_answer_index = index
        elif self._keyed:
            key = self._key(answer)
            index = self._index_by_key.get(key)
            if index is None:
                index = self._new_cluster(answer)
                self._index_by_key[key] = index
        else:
            _check_answer(answer)
            index = self._scan(answer)
            if index is None:
                index = self._new_cluster(answer)

        self._counts[index] += 1
        self._labels.append(index)
        return index

    def find(self, answer: str | None) -> int | None:
        """Return the index of the cluster ``answer`` belongs to, without adding it.

        Returns:
            The cluster index, or None if no added answer is equivalent to it.

        Raises:
            InvalidTypeError: If ``answer`` is neither a string nor None.
        """
        if answer is None:
            return self._no_answer_index
        if self._keyed:
            return self._index_by_key.get(self._key(answer))
        _check_answer(answer)
        return self._scan(answer)

    def _key(self, answer: str) -> Hashable:
        _check_answer(answer)
        return self._equivalence.key(answer)  # type: ignore[attr-defined]

    def _scan(self, answer: str) -> int | None:
        for index, representative in enumerate(self._representatives):
            if representative is not None and self._equivalence.equivalent(representative, answer):
                return index
        return None

    def _new_cluster(self, representative: str | None) -> int:
        self._representatives.append(representative)
        self._counts.append(0)
        return len(self._counts) - 1


def cluster_labels(
    answers: Sequence[str | None], equivalence: Equivalence
) -> tuple[np.ndarray, list[str | None]]:
    """Cluster a sequence of answers in one call.

    Args:
        answers: Sampled answers in order; None marks a sample without an answer.
        equivalence: The rule that decides whether two answers are the same.

    Returns:
        ``(labels, representatives)``: an int64 array with the cluster index
        of each answer, and the first answer of each cluster.
    """
    clusterer = Clusterer(equivalence)
    for answer in answers:
        clusterer.add(answer)
    return np.asarray(clusterer.labels, dtype=np.int64), clusterer.representatives


def _check_answer(answer: object) -> None:
    if not isinstance(answer, str):
        raise InvalidTypeError(
            f"answer must be a string or None, got {type(answer).__name__} {answer!r}; "
            "pass the extracted answer text, or None when a response has no answer"
        )
