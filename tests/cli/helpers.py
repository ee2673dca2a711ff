"""Runner types and a sample bank builder shared by the command-line tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cpq_guard.banks import BankRecord, Sample

SMALL_BANK_PROMPTS = 40
SMALL_BANK_SAMPLES = 20


@dataclass(frozen=True)
class CliResult:
    """Exit status and captured output of one `main` call."""

    code: int
    out: str
    err: str


CliRunner = Callable[..., CliResult]


def make_records(prompts: int, samples: int, seed: int = 7) -> list[BankRecord]:
    """Build records whose samples are the reference with a per-prompt probability.

    The other samples are two recurring wrong answers and one-off answers,
    so the missing mass and the set sizes vary across prompts.
    """
    rng = np.random.default_rng(seed)
    records = []
    for index in range(prompts):
        reference = str(index)
        correct = (0.9, 0.7, 0.5, 0.3)[index % 4]
        texts = []
        for draw in range(samples):
            roll = rng.random()
            if roll < correct:
                texts.append(reference)
            elif roll < correct + (1 - correct) * 0.6:
                texts.append(str(index + 1000 + int(rng.integers(2))))
            else:
                texts.append(f"{index}-{draw}-other")
        records.append(
            BankRecord(
                id=f"q{index:03d}",
                prompt=f"question {index}",
                references=[reference],
                samples=[Sample(text=text) for text in texts],
            )
        )
    return records
