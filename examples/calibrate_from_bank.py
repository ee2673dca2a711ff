"""Record a sample bank once, then calibrate and evaluate from it without new queries.

Recording is the expensive part of calibration: every calibration prompt is
sent ``max_queries`` times. A sample bank (a JSONL file, one prompt per line)
keeps those samples, so that:

1. an interrupted recording resumes where it stopped: `cpq_guard.calibrate`
   with ``bank=`` queries only the prompts the bank does not have yet;
2. a calibration can be recomputed from the bank alone, with
   `calibrate_histories`, for example at another alpha or budget;
3. a guard can be evaluated on recorded held-out prompts through
   `ReplayChatModel`, which returns the recorded samples in order.

The model is cpq-guard's simulated model, so this runs offline. If the
environment variable ``CPQ_PAPER_DATA`` names a folder with ``gsm8k_300.json``
(300 GSM8K questions with 50 recorded LLM samples each, released with the CPQ
paper, arXiv:2506.05497), the example also calibrates and evaluates a guard on
those real model samples. Run it with::

    python examples/calibrate_from_bank.py
"""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cpq_guard
from cpq_guard import (
    BankRecord,
    Calibration,
    CPQGuard,
    DerivativePolicy,
    GuardResult,
    ReplayChatModel,
    get_equivalence,
    import_paper,
    make_simulated_task,
    read_bank,
    record_bank,
)
from cpq_guard.banks import bank_content_hash
from cpq_guard.extractors import as_extractor
from cpq_guard.histories import histories_from_records

NUM_CALIBRATION = 80
NUM_HELD_OUT = 20
MAX_QUERIES = 20
ALPHA = 0.1
SEED = 7

PAPER_DATA_VARIABLE = "CPQ_PAPER_DATA"
"""Environment variable that names the folder of the CPQ paper's sample files."""


@dataclass(frozen=True)
class Evaluation:
    """A guard's results on recorded held-out prompts.

    Attributes:
        calibration: The calibration the guard used.
        results: One result per held-out prompt, in bank order.
        coverage: Share of held-out prompts with a reference answer in the set,
            or abstained on. The calibration targets at least ``1 - alpha``.
        abstention_rate: Share of held-out prompts abstained on.
    """

    calibration: Calibration
    results: list[GuardResult]
    coverage: float
    abstention_rate: float


@dataclass(frozen=True)
class BankOutput:
    """Call counts, calibrations and evaluations of the bank example.

    Attributes:
        calls_first_run: Model calls of the first, interrupted recording.
        calls_resumed: Model calls of `calibrate` when it resumed the bank.
        calls_from_bank: Model calls of the calibration from the bank alone (0).
        live: The calibration that `calibrate` returned.
        from_bank: The calibration computed from the bank with `calibrate_histories`.
        evaluation: The guard's results on the recorded held-out prompts.
        gsm8k: The same evaluation on the CPQ paper's GSM8K samples, when available.
    """

    calls_first_run: int
    calls_resumed: int
    calls_from_bank: int
    live: Calibration
    from_bank: Calibration
    evaluation: Evaluation
    gsm8k: Evaluation | None


def calibrate_records(
    records: Sequence[BankRecord],
    *,
    extractor: str,
    equivalence: str,
    average_budget: float,
    min_queries: int,
    max_queries: int,
) -> Calibration:
    """Calibrate from recorded samples only, the way `cpq_guard.calibrate` does after recording.

    Every record needs at least ``max_queries`` samples and a reference answer.
    """
    answer_extractor = as_extractor(extractor)
    answer_equivalence = get_equivalence(equivalence)

    # A history is one prompt's sequence of extracted answers, clustered, with
    # the cluster of its reference answer marked.
    histories = histories_from_records(records, answer_equivalence, extract=answer_extractor)

    # The policy's price per query (lambda_) is tuned to the budget on half of
    # the prompts, and the other half sets the conformal threshold tau.
    return cpq_guard.calibrate_histories(
        histories,
        alpha=ALPHA,
        policy=DerivativePolicy(lambda_=0.0, min_queries=min_queries, max_queries=max_queries),
        equivalence=answer_equivalence.name,
        extractor=answer_extractor.name,
        average_budget=average_budget,
        seed=SEED,
        bank_hash=bank_content_hash(records),
    )


def evaluate_records(calibration: Calibration, records: Sequence[BankRecord]) -> Evaluation:
    """Guard every recorded prompt through `ReplayChatModel` and measure coverage."""
    # In the default "ordered" mode, the k-th call for a prompt returns its
    # k-th recorded sample, so each prompt can be guarded once.
    guard = CPQGuard(ReplayChatModel(records=list(records)), calibration, seed=SEED)
    results = guard.batch([record.prompt for record in records])

    covered = 0
    for record, result in zip(records, results):
        in_set = any(
            cluster.representative is not None
            and any(
                guard.equivalence.equivalent(cluster.representative, reference)
                for reference in record.references
            )
            for cluster in result.answers
        )
        covered += result.abstained or in_set

    abstained = sum(result.abstained for result in results)
    return Evaluation(
        calibration=calibration,
        results=results,
        coverage=covered / len(records),
        abstention_rate=abstained / len(records),
    )


def run_simulated(scratch: Path) -> tuple[int, int, int, Calibration, Calibration, Evaluation]:
    """Record, resume, calibrate from the bank and evaluate, on the simulated model."""
    task = make_simulated_task(NUM_CALIBRATION + NUM_HELD_OUT, seed=SEED)
    model = task.model()
    prompts = task.prompts[:NUM_CALIBRATION]
    references = task.references[:NUM_CALIBRATION]
    bank = scratch / "calibration-bank.jsonl"
    settings = {
        "extractor": "final-answer",
        "equivalence": "numeric",
        "average_budget": 10,
        "min_queries": 5,
        "max_queries": MAX_QUERIES,
    }

    # A first recording run that stops after half of the prompts, as a crash
    # or a rate limit would stop it.
    half = NUM_CALIBRATION // 2
    record_bank(model, prompts[:half], references[:half], bank, samples_per_prompt=MAX_QUERIES)
    calls_first_run = model.calls_started
    print(f"recorded {half} prompts x {MAX_QUERIES} samples: {calls_first_run} model calls")

    # calibrate() with the same bank records only the prompts it is missing.
    live = cpq_guard.calibrate(
        model, prompts, references, bank=bank, alpha=ALPHA, seed=SEED, **settings
    )
    calls_resumed = model.calls_started - calls_first_run
    print(f"calibrate() resumed the bank: {calls_resumed} model calls for the other {half} prompts")

    # The bank alone is enough to calibrate again, here with the same settings.
    before = model.calls_started
    from_bank = calibrate_records(read_bank(bank), **settings)
    calls_from_bank = model.calls_started - before
    print(
        f"calibrate_histories() from the bank: {calls_from_bank} model calls, "
        f"tau={from_bank.tau:.3f} (calibrate() gave {live.tau:.3f})"
    )

    # Record the held-out prompts too, then replay them to the guard. The
    # guard then sees exactly the recorded samples, and every run gives the
    # same results.
    held_out = scratch / "held-out-bank.jsonl"
    held_out_records = record_bank(
        model,
        task.prompts[NUM_CALIBRATION:],
        task.references[NUM_CALIBRATION:],
        held_out,
        samples_per_prompt=MAX_QUERIES,
    )
    evaluation = evaluate_records(from_bank, held_out_records)
    report("simulated held-out prompts", evaluation)
    return calls_first_run, calls_resumed, calls_from_bank, live, from_bank, evaluation


def run_gsm8k(paper_file: Path) -> Evaluation:
    """Calibrate on a random half of the GSM8K questions, evaluate on the other half."""
    records = import_paper(paper_file)
    records = random.Random(SEED).sample(records, k=len(records))
    half = len(records) // 2

    # The samples are short answers such as "35" or "1.", so the whole text
    # is the answer. Answers are compared after the normalisation of the CPQ
    # paper's released code: lower case, without punctuation except "-" and
    # without the articles a, an and the.
    calibration = calibrate_records(
        records[:half],
        extractor="text",
        equivalence="normalized",
        average_budget=20,
        min_queries=10,
        max_queries=50,
    )
    evaluation = evaluate_records(calibration, records[half:])
    # NOTE: tau comes from only 75 scores here. So the coverage of one split
    # varies by several points around the target, and the guarantee holds on
    # average over calibration sets.
    report(f"GSM8K ({paper_file.name}), held-out half", evaluation)
    return evaluation


def report(title: str, evaluation: Evaluation) -> None:
    """Print coverage, abstention and mean queries of an evaluation."""
    results = evaluation.results
    mean_queries = sum(result.num_queries for result in results) / len(results)
    target = 1.0 - evaluation.calibration.alpha
    print(f"{title}: {len(results)} prompts")
    print(f"  coverage {evaluation.coverage:.2f} (target at least {target:.2f})")
    print(f"  abstained on {evaluation.abstention_rate:.2f}, {mean_queries:.1f} queries per prompt")


def find_paper_file() -> Path | None:
    """Return the GSM8K sample file under ``$CPQ_PAPER_DATA``, or None when it is not set up."""
    folder = os.environ.get(PAPER_DATA_VARIABLE)
    if not folder:
        return None
    path = Path(folder) / "gsm8k_300.json"
    if not path.is_file():
        print(f"{PAPER_DATA_VARIABLE} is set, but {path} was not found; skipping GSM8K")
        return None
    return path


def main(*, paper_file: Path | None = None) -> BankOutput:
    """Run the simulated bank example, and the GSM8K one when its data is available.

    Args:
        paper_file: The CPQ paper's ``gsm8k_300.json``. When omitted, it is
            looked up in the folder that ``$CPQ_PAPER_DATA`` names.
    """
    with tempfile.TemporaryDirectory(prefix="cpq-bank-") as scratch:
        calls_first_run, calls_resumed, calls_from_bank, live, from_bank, evaluation = (
            run_simulated(Path(scratch))
        )

    paper_file = paper_file or find_paper_file()
    gsm8k = None
    if paper_file is not None:
        print()
        gsm8k = run_gsm8k(paper_file)

    return BankOutput(
        calls_first_run=calls_first_run,
        calls_resumed=calls_resumed,
        calls_from_bank=calls_from_bank,
        live=live,
        from_bank=from_bank,
        evaluation=evaluation,
        gsm8k=gsm8k,
    )


if __name__ == "__main__":
    main()
