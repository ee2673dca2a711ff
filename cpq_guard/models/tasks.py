"""Seeded synthetic tasks for the simulated chat model.

`make_simulated_task` invents arithmetic word problems with numeric reference
answers and gives each prompt an answer distribution from one of the regimes
in `cpq_guard.models.distributions`. Demos, tests and benchmarks use it to get
a labelled task and a matching `SimulatedChatModel` from one seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator

from cpq_guard._validation import check_int, check_real
from cpq_guard.errors import InvalidParameterError
from cpq_guard.models.distributions import REGIMES, AnswerDistribution

if TYPE_CHECKING:
    from cpq_guard.models.simulated import SimulatedChatModel

__all__ = ["DEFAULT_MIX", "SimulatedTask", "make_simulated_task"]

DEFAULT_MIX: dict[str, float] = {
    "peaked": 0.5,
    "spread": 0.2,
    "confidently_wrong": 0.15,
    "long_tailed": 0.15,
}
"""Default fraction of prompts in each regime."""

_MIX_TOLERANCE = 1e-9


class SimulatedTask(BaseModel):
    """A labelled set of prompts with the answer distribution of each.

    The lists are parallel: ``references[i]`` is the reference answer of
    ``prompts[i]`` and ``regimes[i]`` the regime of its distribution.

    Attributes:
        prompts: Prompt texts, all distinct.
        references: Reference answer of each prompt.
        regimes: Regime name of each prompt, a key of `REGIMES`.
        distributions: Answer distribution of each prompt, keyed by prompt text.
        seed: Seed the task was made with, also the default seed of `model`.
    """

    model_config = ConfigDict(frozen=True)

    prompts: list[str]
    references: list[str]
    regimes: list[str]
    distributions: dict[str, AnswerDistribution]
    seed: int = 0

    @model_validator(mode="after")
    def _check_parallel(self) -> SimulatedTask:
        n = len(self.prompts)
        if len(self.references) != n or len(self.regimes) != n:
            raise InvalidParameterError(
                "references",
                len(self.references),
                f"prompts, references and regimes must have the same length, got "
                f"{n}, {len(self.references)} and {len(self.regimes)}",
            )
        if len(set(self.prompts)) != n:
            raise InvalidParameterError(
                "prompts", self.prompts, "prompts contains duplicates; every prompt must be unique"
            )
        missing = [prompt for prompt in self.prompts if prompt not in self.distributions]
        if missing:
            raise InvalidParameterError(
                "distributions",
                missing[:3],
                f"{len(missing)} prompt(s) have no distribution, for example {missing[0]!r}; "
                "give every prompt a distribution",
            )
        return self

    def model(self, **kwargs: Any) -> SimulatedChatModel:
        """Build a `SimulatedChatModel` that answers this task's prompts.

        Keyword arguments go to the model's constructor. ``seed`` defaults to
        the task's seed.
        """
        # Imported here because simulated.py re-exports this module's names.
        from cpq_guard.models.simulated import SimulatedChatModel

        kwargs.setdefault("seed", self.seed)
        return SimulatedChatModel(distributions=self.distributions, **kwargs)


def make_simulated_task(
    n_prompts: int, *, seed: int, mix: dict[str, float] | None = None
) -> SimulatedTask:
    """Invent ``n_prompts`` arithmetic word problems with answer distributions.

    Each prompt is a word problem such as ``"Q0042: A shop sells 7 boxes of 12
    pencils. How many pencils does the shop sell?"`` with a non-negative
    integer reference answer. The number of prompts in each regime is
    ``mix[regime] * n_prompts`` rounded by the largest-remainder method, so
    the counts sum to ``n_prompts``. The regimes are then shuffled over the
    prompts. The result depends only on ``(n_prompts, seed, mix)``.

    Args:
        n_prompts: Number of prompts, at least 1.
        seed: Seed of every random choice, at least 0.
        mix: Fraction of prompts in each regime, summing to 1 within 1e-9.
            Keys are names in `REGIMES`. Defaults to `DEFAULT_MIX`.

    Raises:
        InvalidParameterError: an argument is out of range or ``mix`` names an
            unknown regime.
    """
    n_prompts = check_int(n_prompts, "n_prompts", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    mix = _check_mix(DEFAULT_MIX if mix is None else mix)
    rng = np.random.default_rng(seed)

    regimes = _assign_regimes(n_prompts, mix, rng)
    prompts: list[str] = []
    references: list[str] = []
    distributions: dict[str, AnswerDistribution] = {}
    for number, regime in enumerate(regimes):
        problem = _PROBLEMS[int(rng.integers(len(_PROBLEMS)))]
        question, answer = problem(rng)
        prompt = f"Q{number:04d}: {question}"
        reference = str(answer)

        prompts.append(prompt)
        references.append(reference)
        distributions[prompt] = REGIMES[regime](reference, rng)

    return SimulatedTask(
        prompts=prompts,
        references=references,
        regimes=regimes,
        distributions=distributions,
        seed=seed,
    )


def _check_mix(mix: dict[str, float]) -> dict[str, float]:
    unknown = sorted(set(mix) - set(REGIMES))
    if unknown:
        raise InvalidParameterError(
            "mix",
            unknown,
            f"mix names unknown regime(s) {unknown}; use the names {sorted(REGIMES)}",
        )

    for regime, fraction in mix.items():
        value = check_real(fraction, f"mix[{regime!r}]")
        if value < 0.0:
            raise InvalidParameterError(
                "mix", fraction, f"mix[{regime!r}]={fraction!r} is negative; fractions must be >= 0"
            )

    total = math.fsum(mix.values())
    if abs(total - 1.0) > _MIX_TOLERANCE:
        raise InvalidParameterError(
            "mix", total, f"the fractions in mix sum to {total!r}, not 1; make them sum to 1"
        )
    return mix


def _assign_regimes(n_prompts: int, mix: dict[str, float], rng: np.random.Generator) -> list[str]:
    # Largest-remainder rounding: floor every quota, then give the leftover
    # prompts to the regimes with the largest fractional parts (ties in the
    # order of ``mix``).
    names = list(mix)
    quotas = [mix[name] * n_prompts for name in names]
    counts = [math.floor(quota) for quota in quotas]
    by_remainder = sorted(range(len(names)), key=lambda i: counts[i] - quotas[i])
    for i in by_remainder[: n_prompts - sum(counts)]:
        counts[i] += 1

    regimes = [name for name, count in zip(names, counts, strict=True) for _ in range(count)]
    order = rng.permutation(len(regimes))
    return [regimes[int(i)] for i in order]


# --- word problems: each takes a generator and returns (question, answer) ---


def _boxes(rng: np.random.Generator) -> tuple[str, int]:
    boxes, per_box = int(rng.integers(2, 20)), int(rng.integers(2, 25))
    question = (
        f"A shop sells {boxes} boxes of {per_box} pencils. How many pencils does the shop sell?"
    )
    return question, boxes * per_box


def _train(rng: np.random.Generator) -> tuple[str, int]:
    riders, boarding = int(rng.integers(10, 200)), int(rng.integers(1, 80))
    question = (
        f"A train carries {riders} passengers and {boarding} more board at the next stop. "
        "How many passengers are on the train now?"
    )
    return question, riders + boarding


def _apples(rng: np.random.Generator) -> tuple[str, int]:
    given_away = int(rng.integers(1, 60))
    picked = given_away + int(rng.integers(1, 90))
    question = (
        f"A farmer picks {picked} apples and gives {given_away} of them to a neighbour. "
        "How many apples does the farmer have left?"
    )
    return question, picked - given_away


def _stickers(rng: np.random.Generator) -> tuple[str, int]:
    students, per_student = int(rng.integers(2, 15)), int(rng.integers(2, 20))
    question = (
        f"{students} students share {students * per_student} stickers equally. "
        "How many stickers does each student get?"
    )
    return question, per_student


def _library(rng: np.random.Generator) -> tuple[str, int]:
    shelves, per_shelf = int(rng.integers(3, 15)), int(rng.integers(10, 40))
    new_books = int(rng.integers(1, 50))
    question = (
        f"A library has {shelves} shelves with {per_shelf} books each and receives "
        f"{new_books} new books. How many books does the library have now?"
    )
    return question, shelves * per_shelf + new_books


def _savings(rng: np.random.Generator) -> tuple[str, int]:
    weeks, per_week = int(rng.integers(2, 12)), int(rng.integers(3, 30))
    spent = int(rng.integers(1, weeks * per_week))
    question = (
        f"Maya saves {per_week} dollars a week for {weeks} weeks and then spends {spent} "
        "dollars on a book. How many dollars does she have left?"
    )
    return question, weeks * per_week - spent


_PROBLEMS: tuple[Callable[[np.random.Generator], tuple[str, int]], ...] = (
    _boxes,
    _train,
    _apples,
    _stickers,
    _library,
    _savings,
)
