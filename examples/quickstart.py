"""Quickstart: calibrate a guard, save and load the calibration, guard new prompts.

The model is cpq-guard's `SimulatedChatModel` on an invented task of
arithmetic word problems, so this runs offline in a few seconds. For a hosted
model, pass any LangChain chat model and your own labelled prompts instead.

Run it with::

    python examples/quickstart.py
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import cpq_guard
from cpq_guard import Calibration, CPQGuard, GuardResult, make_simulated_task

NUM_CALIBRATION = 100
"""Labelled calibration prompts. Half tune the stopping policy, the other half set ``tau``."""

NUM_HELD_OUT = 8
"""New prompts to guard after calibration."""

SEED = 7


@dataclass(frozen=True)
class QuickstartOutput:
    """Results of the quickstart, for a caller or a test to check.

    Attributes:
        calibration: The calibration as `calibrate` returned it.
        loaded: The same calibration after a save and load through a JSON file.
        prompts: The held-out prompts that were guarded.
        references: The reference answer of each held-out prompt.
        results: The guard's result for each held-out prompt.
    """

    calibration: Calibration
    loaded: Calibration
    prompts: list[str]
    references: list[str]
    results: list[GuardResult]


def main() -> QuickstartOutput:
    """Calibrate on simulated prompts, round-trip the calibration and guard held-out prompts."""
    # A seeded task: prompts, their reference answers and a chat model whose
    # answers are right, spread, confidently wrong or long-tailed by prompt.
    task = make_simulated_task(NUM_CALIBRATION + NUM_HELD_OUT, seed=SEED)
    model = task.model()
    calibration_prompts = task.prompts[:NUM_CALIBRATION]
    calibration_references = task.references[:NUM_CALIBRATION]

    # Calibration sends every calibration prompt max_queries times (here
    # 100 x 30 = 3000 calls), tunes the stopping policy to use 12 queries per
    # prompt on average, and sets the conformal threshold for 90% coverage.
    # The extractor reads "The answer is 35." as "35", and the numeric
    # equivalence treats "35", "35.0" and "$35" as one answer.
    calibration = cpq_guard.calibrate(
        model,
        calibration_prompts,
        calibration_references,
        alpha=0.1,
        average_budget=12,
        min_queries=5,
        max_queries=30,
        extractor="final-answer",
        equivalence="numeric",
        seed=SEED,
    )
    print(
        f"calibrated on {NUM_CALIBRATION} prompts: alpha={calibration.alpha}, "
        f"tau={calibration.tau:.3f}, {calibration.calibration_mean_queries:.1f} queries "
        "per prompt on average"
    )

    # The calibration is a JSON file, so make it once and ship it with the application.
    with tempfile.TemporaryDirectory(prefix="cpq-quickstart-") as scratch:
        path = Path(scratch) / "calibration.json"
        calibration.save(path)
        loaded = Calibration.load(path)
        print(f"saved and reloaded {path.name} ({path.stat().st_size} bytes)")

    # The guard takes the extractor and equivalence from the calibration, and
    # the seed makes its sampling decisions reproducible.
    guard = CPQGuard(model, loaded, seed=SEED)

    prompts = task.prompts[NUM_CALIBRATION:]
    references = task.references[NUM_CALIBRATION:]
    results = [guard.invoke(prompt) for prompt in prompts]

    print()
    for prompt, reference, result in zip(prompts, references, results):
        print(prompt)
        print(f"  reference {reference}: {describe(result)}")
    return QuickstartOutput(calibration, loaded, prompts, references, results)


def describe(result: GuardResult) -> str:
    """Summarise a guard result on one line: the answer set or the abstention."""
    if result.abstained:
        return (
            f"abstained after {result.num_queries} queries "
            f"(estimated missing mass {result.missing_mass:.2f})"
        )
    # A set can contain the cluster of responses without an extractable answer.
    answers = ", ".join(
        f"{cluster.representative or '<no answer>'} ({cluster.probability:.2f})"
        for cluster in result.answers
    )
    return f"answer set {{{answers}}} after {result.num_queries} queries"


if __name__ == "__main__":
    main()
