"""Tests for make_simulated_task and SimulatedTask."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from pydantic import ValidationError

from cpq_guard.errors import InvalidParameterError
from cpq_guard.models import AnswerDistribution, SimulatedChatModel
from cpq_guard.models.tasks import DEFAULT_MIX, SimulatedTask, make_simulated_task

# Each word problem, with the arithmetic that gives its reference answer.
PROBLEMS = [
    (r"sells (\d+) boxes of (\d+) pencils", lambda a, b: a * b),
    (r"carries (\d+) passengers and (\d+) more board", lambda a, b: a + b),
    (r"picks (\d+) apples and gives (\d+) of them", lambda a, b: a - b),
    (r"(\d+) students share (\d+) stickers", lambda a, b: b // a),
    (
        r"has (\d+) shelves with (\d+) books each and receives (\d+) new",
        lambda a, b, c: a * b + c,
    ),
    (
        r"saves (\d+) dollars a week for (\d+) weeks and then spends (\d+)",
        lambda a, b, c: a * b - c,
    ),
]


def solve(prompt: str) -> int:
    for pattern, formula in PROBLEMS:
        match = re.search(pattern, prompt)
        if match:
            return formula(*map(int, match.groups()))
    raise AssertionError(f"no known problem in {prompt!r}")


def test_task_shape() -> None:
    task = make_simulated_task(60, seed=3)

    assert len(task.prompts) == 60
    assert len(task.references) == 60
    assert len(task.regimes) == 60
    assert set(task.distributions) == set(task.prompts)
    assert task.prompts[42].startswith("Q0042: ")
    assert task.seed == 3


def test_references_solve_problems() -> None:
    task = make_simulated_task(120, seed=4)

    for prompt, reference in zip(task.prompts, task.references, strict=True):
        assert reference == str(solve(prompt)), prompt
        assert int(reference) >= 0


def test_every_problem_used() -> None:
    task = make_simulated_task(120, seed=4)

    used = {
        pattern for prompt in task.prompts for pattern, _ in PROBLEMS if re.search(pattern, prompt)
    }

    assert len(used) == len(PROBLEMS)


def test_default_mix_counts() -> None:
    task = make_simulated_task(200, seed=5)

    assert Counter(task.regimes) == {
        name: round(share * 200) for name, share in DEFAULT_MIX.items()
    }


def test_mix_rounds_largest_remainder() -> None:
    # Quotas 3.5, 1.4, 1.05, 1.05: floors sum to 6, and the leftover prompt
    # goes to the largest fractional part (peaked).
    task = make_simulated_task(7, seed=5)

    assert Counter(task.regimes) == {
        "peaked": 4,
        "spread": 1,
        "confidently_wrong": 1,
        "long_tailed": 1,
    }


def test_custom_mix() -> None:
    task = make_simulated_task(10, seed=1, mix={"long_tailed": 0.3, "peaked": 0.7})

    assert Counter(task.regimes) == {"long_tailed": 3, "peaked": 7}


def test_regimes_shuffled() -> None:
    task = make_simulated_task(100, seed=6)

    assert task.regimes != sorted(task.regimes, key=list(DEFAULT_MIX).index)


def test_regime_matches_distribution() -> None:
    task = make_simulated_task(80, seed=7)

    for prompt, reference, regime in zip(task.prompts, task.references, task.regimes, strict=True):
        dist = task.distributions[prompt]
        top = max(dist.answers, key=dist.answers.__getitem__)
        if regime == "peaked":
            assert dist.answers[reference] == pytest.approx(0.9)
        elif regime == "confidently_wrong":
            assert top != reference
            assert dist.answers[reference] == pytest.approx(0.05)
        elif regime == "long_tailed":
            assert dist.answers[reference] == pytest.approx(0.03)
        else:
            assert reference in dist.answers
            assert len(dist.answers) == 4


def test_task_is_seeded() -> None:
    first = make_simulated_task(30, seed=8)
    second = make_simulated_task(30, seed=8)
    other = make_simulated_task(30, seed=9)

    assert first == second
    assert first.model_dump() == second.model_dump()
    assert first.prompts != other.prompts


def test_task_json_round_trip() -> None:
    task = make_simulated_task(5, seed=1)

    assert SimulatedTask.model_validate_json(task.model_dump_json()) == task


@pytest.mark.parametrize(
    ("mix", "fragment"),
    [
        ({"peaked": 0.5, "bimodal": 0.5}, "unknown regime"),
        ({"peaked": 1.2, "spread": -0.2}, "negative"),
        ({"peaked": 0.5, "spread": 0.4}, "sum to"),
    ],
)
def test_invalid_mix_rejected(mix: dict[str, float], fragment: str) -> None:
    with pytest.raises(InvalidParameterError, match=fragment):
        make_simulated_task(10, seed=1, mix=mix)


@pytest.mark.parametrize(("n_prompts", "seed"), [(0, 1), (5, -1)])
def test_invalid_sizes_rejected(n_prompts: int, seed: int) -> None:
    with pytest.raises(InvalidParameterError):
        make_simulated_task(n_prompts, seed=seed)


def test_task_model_answers_prompts() -> None:
    task = make_simulated_task(5, seed=2)

    model = task.model()

    assert isinstance(model, SimulatedChatModel)
    assert model.seed == 2
    for prompt in task.prompts:
        model.invoke(prompt)

    assert model.calls_succeeded == 5


def test_task_model_kwargs_override() -> None:
    task = make_simulated_task(5, seed=2)

    model = task.model(seed=11, failure_rate=0.5)

    assert model.seed == 11
    assert model.failure_rate == 0.5


def test_task_rejects_mismatched_lists() -> None:
    dist = AnswerDistribution(answers={"1": 1.0})

    with pytest.raises(ValidationError, match="same length"):
        SimulatedTask(prompts=["a"], references=[], regimes=["peaked"], distributions={"a": dist})


def test_task_rejects_missing_distribution() -> None:
    with pytest.raises(ValidationError, match="no distribution"):
        SimulatedTask(prompts=["a"], references=["1"], regimes=["peaked"], distributions={})
