"""Answer distributions for the simulated chat model, and the named regimes.

An `AnswerDistribution` is the categorical distribution of the answer in a
simulated model's response to one prompt. The four regimes are the cases a
calibrated abstention method has to handle:

- ``peaked``: the model is confident and right;
- ``spread``: several answers have similar probability, the right one among them;
- ``confidently_wrong``: one wrong answer dominates and the right one is rare;
- ``long_tailed``: the right answer is rare among many rare wrong answers, so it
  is often not seen at all in 20 to 50 samples.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, PrivateAttr, field_validator, model_validator

from cpq_guard._validation import check_int, check_real
from cpq_guard.errors import InvalidParameterError

__all__ = ["REGIMES", "AnswerDistribution", "wrong_answers"]

_SUM_TOLERANCE = 1e-9
"""Largest accepted distance between the sum of ``answers`` and 1."""


class AnswerDistribution(BaseModel):
    """Categorical distribution of the answer in a simulated response.

    A response contains no extractable answer with probability ``no_answer``.
    Otherwise its answer is drawn from ``answers``, so the probability of
    answer ``a`` is ``(1 - no_answer) * answers[a]``.

    Attributes:
        answers: Probability of each answer string, given that the response has
            an answer. Non-empty, each value finite and >= 0, summing to 1 within
            1e-9. Use `from_weights` to normalise unnormalised weights.
        no_answer: Probability that the response contains no answer, in [0, 1].
    """

    model_config = ConfigDict(frozen=True)

    answers: dict[str, float]
    no_answer: float = 0.0

    _labels: tuple[str, ...] = PrivateAttr()
    _cumulative: tuple[float, ...] = PrivateAttr()

    @field_validator("answers")
    @classmethod
    def _check_answers(cls, answers: dict[str, float]) -> dict[str, float]:
        if not answers:
            raise InvalidParameterError(
                "answers",
                answers,
                "answers is empty: give at least one answer with its probability",
            )

        for answer, probability in answers.items():
            if not answer.strip():
                raise InvalidParameterError(
                    "answers",
                    answer,
                    f"answer {answer!r} is blank: every answer must contain a non-space character",
                )
            if not math.isfinite(probability) or probability < 0.0:
                raise InvalidParameterError(
                    "answers",
                    probability,
                    f"the probability of answer {answer!r} is {probability!r}: probabilities "
                    "must be finite and zero or positive",
                )

        total = math.fsum(answers.values())
        if abs(total - 1.0) > _SUM_TOLERANCE:
            raise InvalidParameterError(
                "answers",
                total,
                f"the answer probabilities sum to {total!r}, not 1 (tolerance {_SUM_TOLERANCE}); "
                "fix them or build the distribution with AnswerDistribution.from_weights",
            )
        return answers

    @field_validator("no_answer")
    @classmethod
    def _check_no_answer(cls, value: float) -> float:
        if not math.isfinite(value) or not 0.0 <= value <= 1.0:
            raise InvalidParameterError(
                "no_answer",
                value,
                f"no_answer={value!r} is invalid: it is a probability and must lie in [0, 1]",
            )
        return value

    @model_validator(mode="after")
    def _build_sampling_table(self) -> AnswerDistribution:
        # Answers of probability zero are left out, so rounding in the cumulative
        # sums can never select them. The last entry is set to exactly 1.
        support = [(answer, p) for answer, p in self.answers.items() if p > 0.0]
        cumulative = list(itertools.accumulate(p for _, p in support))
        cumulative[-1] = 1.0
        self._labels = tuple(answer for answer, _ in support)
        self._cumulative = tuple(cumulative)
        return self

    # --- construction ---

    @classmethod
    def from_weights(
        cls, weights: dict[str, float], *, no_answer: float = 0.0
    ) -> AnswerDistribution:
        """Build a distribution from non-negative weights by dividing each by their sum.

        Raises:
            InvalidParameterError: a weight is negative or not finite, or all are zero.
        """
        for answer, weight in weights.items():
            value = check_real(weight, f"weights[{answer!r}]")
            if value < 0.0:
                raise InvalidParameterError(
                    "weights",
                    weight,
                    f"the weight of answer {answer!r} is {weight!r}: "
                    "weights must be zero or positive",
                )

        total = math.fsum(weights.values())
        if total <= 0.0:
            raise InvalidParameterError(
                "weights",
                weights,
                "the weights sum to zero or there are none: give at least one positive weight",
            )
        return cls(
            answers={answer: weight / total for answer, weight in weights.items()},
            no_answer=no_answer,
        )

    @classmethod
    def peaked(
        cls,
        correct: str,
        rng: np.random.Generator,
        *,
        p_correct: float = 0.9,
        n_wrong: int = 3,
        no_answer: float = 0.0,
    ) -> AnswerDistribution:
        """Build a distribution peaked on the right answer.

        The right answer gets ``p_correct``. The rest is split among ``n_wrong``
        wrong answers by a flat Dirichlet draw from ``rng``.
        """
        p_correct = _check_probability(p_correct, "p_correct")
        n_wrong = check_int(n_wrong, "n_wrong", minimum=0)

        wrong = wrong_answers(correct, n_wrong, rng)
        shares = rng.dirichlet(np.ones(n_wrong)) if n_wrong else np.zeros(0)
        weights = {correct: p_correct, **_spread_mass(wrong, shares, 1.0 - p_correct)}
        return cls.from_weights(_with_remainder(weights, correct), no_answer=no_answer)

    @classmethod
    def spread(
        cls,
        correct: str,
        rng: np.random.Generator,
        *,
        n_answers: int = 4,
        concentration: float = 20.0,
        no_answer: float = 0.0,
    ) -> AnswerDistribution:
        """Build a distribution with several answers of similar probability, the right one included.

        The ``n_answers`` probabilities (the right answer and ``n_answers - 1``
        wrong ones) come from a symmetric Dirichlet draw with parameter
        ``concentration``. The default of 20 keeps each probability within
        about 0.1 of ``1 / n_answers`` for four answers.
        """
        n_answers = check_int(n_answers, "n_answers", minimum=2)
        concentration = check_real(concentration, "concentration")
        if concentration <= 0.0:
            raise InvalidParameterError(
                "concentration",
                concentration,
                f"concentration={concentration!r} is invalid: it must be positive",
            )

        wrong = wrong_answers(correct, n_answers - 1, rng)
        shares = rng.dirichlet(np.full(n_answers, concentration))
        weights = dict(zip([correct, *wrong], shares.tolist(), strict=True))
        return cls.from_weights(weights, no_answer=no_answer)

    @classmethod
    def confidently_wrong(
        cls,
        correct: str,
        rng: np.random.Generator,
        *,
        p_wrong: float = 0.8,
        p_correct: float = 0.05,
        n_other: int = 3,
        no_answer: float = 0.0,
    ) -> AnswerDistribution:
        """Build a distribution where one wrong answer dominates and the right one is rare.

        The dominant wrong answer gets ``p_wrong`` and the right answer
        ``p_correct``. The rest is split among ``n_other`` further wrong
        answers by a flat Dirichlet draw. ``p_wrong + p_correct`` must be at
        most 1.
        """
        p_wrong = _check_probability(p_wrong, "p_wrong")
        p_correct = _check_probability(p_correct, "p_correct")
        n_other = check_int(n_other, "n_other", minimum=0)
        if p_wrong + p_correct > 1.0 + _SUM_TOLERANCE:
            raise InvalidParameterError(
                "p_wrong",
                p_wrong,
                f"p_wrong + p_correct = {p_wrong + p_correct!r} is more than 1; lower one of them",
            )

        dominant, *others = wrong_answers(correct, n_other + 1, rng)
        shares = rng.dirichlet(np.ones(n_other)) if n_other else np.zeros(0)
        rest = max(0.0, 1.0 - p_wrong - p_correct)
        weights = {dominant: p_wrong, correct: p_correct, **_spread_mass(others, shares, rest)}
        return cls.from_weights(_with_remainder(weights, dominant), no_answer=no_answer)

    @classmethod
    def long_tailed(
        cls,
        correct: str,
        rng: np.random.Generator,
        *,
        p_correct: float = 0.03,
        n_tail: int = 200,
        exponent: float = 1.0,
        no_answer: float = 0.0,
    ) -> AnswerDistribution:
        """Build a distribution where the right answer is rare among a long tail of wrong ones.

        The right answer gets ``p_correct``. The rest goes to ``n_tail`` wrong
        answers with Zipf weights ``rank ** -exponent``. With the defaults, the
        most frequent wrong answer has probability about 0.17 and the right
        answer is missing from 20 samples with probability ``0.97 ** 20``,
        about 0.54, and from 50 samples with probability about 0.22.
        """
        p_correct = _check_probability(p_correct, "p_correct")
        n_tail = check_int(n_tail, "n_tail", minimum=1)
        exponent = check_real(exponent, "exponent")
        if exponent < 0.0:
            raise InvalidParameterError(
                "exponent", exponent, f"exponent={exponent!r} is invalid: it must be >= 0"
            )

        wrong = wrong_answers(correct, n_tail, rng)
        zipf = np.arange(1, n_tail + 1, dtype=float) ** -exponent
        weights = {correct: p_correct, **_spread_mass(wrong, zipf / zipf.sum(), 1.0 - p_correct)}
        return cls.from_weights(_with_remainder(weights, correct), no_answer=no_answer)

    # --- use ---

    def probability(self, answer: str | None) -> float:
        """Return the probability that a response has ``answer``, or no answer for `None`."""
        if answer is None:
            return self.no_answer
        return (1.0 - self.no_answer) * self.answers.get(answer, 0.0)

    def draw(self, rng: np.random.Generator) -> str | None:
        """Draw one response's answer, or `None` for a response without one.

        Takes exactly two uniform numbers from ``rng``, the first for the
        no-answer decision and the second for the answer. So changing
        ``no_answer`` changes only which draws give no answer, and the others
        keep their answer.
        """
        u_no_answer, u_answer = rng.random(2)
        if u_no_answer < self.no_answer:
            return None

        index = bisect.bisect_right(self._cumulative, u_answer)
        return self._labels[min(index, len(self._labels) - 1)]


def wrong_answers(correct: str, count: int, rng: np.random.Generator) -> list[str]:
    """Return ``count`` distinct answers that differ from ``correct``, in random order.

    For an integer ``correct``, the wrong answers are nearby non-negative
    integers, within ``max(10, 2 * count)`` plus the room needed below zero.
    Otherwise they are ``"<correct> (variant <n>)"`` with distinct random ``n``.
    """
    count = check_int(count, "count", minimum=0)
    try:
        value = int(correct)
    except ValueError:
        numbers = rng.choice(10 * count + 10, size=count, replace=False)
        return [f"{correct} (variant {int(n)})" for n in numbers]

    span = max(10, 2 * count)
    low = max(0, value - span)
    candidates = [n for n in range(low, low + 2 * span + 1) if n != value]
    picked = rng.choice(len(candidates), size=count, replace=False)
    return [str(candidates[int(i)]) for i in picked]


def _check_probability(value: Any, name: str) -> float:
    result = check_real(value, name)
    if not 0.0 <= result <= 1.0:
        raise InvalidParameterError(
            name, value, f"{name}={value!r} is invalid: it is a probability and must lie in [0, 1]"
        )
    return result


def _spread_mass(answers: list[str], shares: np.ndarray, mass: float) -> dict[str, float]:
    return {answer: mass * float(share) for answer, share in zip(answers, shares, strict=True)}


def _with_remainder(weights: dict[str, float], answer: str) -> dict[str, float]:
    # With no other answers to take it, the leftover mass goes to ``answer``.
    leftover = 1.0 - math.fsum(weights.values())
    if leftover > _SUM_TOLERANCE:
        weights = {**weights, answer: weights[answer] + leftover}
    return weights


REGIMES: dict[str, Callable[..., AnswerDistribution]] = {
    "peaked": AnswerDistribution.peaked,
    "spread": AnswerDistribution.spread,
    "confidently_wrong": AnswerDistribution.confidently_wrong,
    "long_tailed": AnswerDistribution.long_tailed,
}
"""Regime name mapped to its factory, each called as ``factory(correct, rng)``."""
