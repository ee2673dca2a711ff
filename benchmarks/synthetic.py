"""Recorded histories drawn straight from known answer distributions.

Going through `SimulatedChatModel` costs a LangChain call per sample. The
informativeness benchmark needs only the cluster labels, so this module takes
the prompts, references and answer distributions of `make_simulated_task` and
draws each prompt's samples with one vectorised numpy call. The samples are
i.i.d. from the same distributions the simulated model uses; they are not the
same draws, because the model seeds each call separately.
"""

from __future__ import annotations

import numpy as np

from cpq_guard.answers import ExactEquivalence
from cpq_guard.histories import History
from cpq_guard.models import DEFAULT_MIX, make_simulated_task

REGIME_MIXES: dict[str, dict[str, float]] = {
    "peaked": {"peaked": 1.0},
    "spread": {"spread": 1.0},
    "long_tailed": {"long_tailed": 1.0},
    "mixed": dict(DEFAULT_MIX),
}
"""Simulated datasets by name: the fraction of prompts in each regime of `REGIMES`.

``mixed`` is the library's default mix (half peaked, a fifth spread, and
confidently wrong and long-tailed prompts), where prompts differ in difficulty.
"""


def regime_answers(
    mix: dict[str, float], *, prompts: int, samples: int, seed: int
) -> tuple[list[list[str]], list[str]]:
    """Draw ``samples`` answers for each of ``prompts`` simulated prompts.

    Args:
        mix: Fraction of prompts per regime, as `make_simulated_task` takes it.
        prompts: Number of prompts.
        samples: Samples per prompt.
        seed: Seeds the task (prompts, references, distributions) and the draws;
            prompt ``i`` draws from ``numpy.random.default_rng([seed, i])``.

    Returns:
        ``(answers, references)``: the sampled answers of each prompt in order,
        and each prompt's reference answer.
    """
    task = make_simulated_task(prompts, seed=seed, mix=mix)
    answers = []
    for index, prompt in enumerate(task.prompts):
        distribution = task.distributions[prompt]
        support = list(distribution.answers)
        probabilities = np.array([distribution.answers[answer] for answer in support])
        rng = np.random.default_rng([seed, index])
        draws = rng.choice(len(support), size=samples, p=probabilities / probabilities.sum())
        answers.append([support[draw] for draw in draws])
    return answers, list(task.references)


def regime_histories(
    mix: dict[str, float], *, prompts: int, samples: int, seed: int
) -> list[History]:
    """Draw answers with `regime_answers` and cluster them into histories.

    Returns:
        One history per prompt, with the reference matched by exact string equality.
    """
    answers, references = regime_answers(mix, prompts=prompts, samples=samples, seed=seed)
    equivalence = ExactEquivalence()
    return [
        History.from_answers(drawn, [reference], equivalence, prompt_id=f"sim-{index:04d}")
        for index, (drawn, reference) in enumerate(zip(answers, references))
    ]
