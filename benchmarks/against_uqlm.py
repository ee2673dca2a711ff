"""CPQ against uqlm's black-box scorers on the same samples, at equal samples per prompt.

uqlm (https://github.com/cvs-health/uqlm, version 0.6.7) is the closest
LangChain-based library: it samples a model several times and turns the
agreement between samples into a confidence score for one response. It
returns no set and no abstention rule, so this script adds the decision:
answer with uqlm's response when its confidence is above a threshold, else
abstain. The threshold is chosen on the calibration part of each split to
reach the same target as CPQ, ``P(correct answer, or abstained) >= 1 - alpha``,
with the split-conformal rule: a calibration prompt's score is its confidence
when uqlm's response is wrong and ``-inf`` when it is right, the threshold
``q`` is the ``ceil((n + 1)(1 - alpha))``-th smallest score, and a test
prompt is answered when its confidence is above ``q``.

With ``K`` samples per prompt, uqlm's response is the first sample and the
other ``K - 1`` are its sampled responses; CPQ spends ``K`` queries on average
(its derivative policy tuned to budget ``K``), and ``fixed-mm`` exactly ``K``.
uqlm's scores come from `_uqlm_worker.py`, run in ``benchmarks/.venv-uqlm``
because uqlm pins ``numpy<2``. uqlm sees each sample as its normalised answer
(`cpq_guard.answers.normalize_answer` for GSM8K; the simulated answers are
integers already), so both methods compare the same answers.
"""

from __future__ import annotations

import json
import logging
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import _common
import numpy as np
from informativeness import (
    ALPHAS,
    BOOTSTRAP,
    CALIBRATION_FRACTION,
    MAX_QUERIES,
    REPLAY_SEED,
    min_queries,
    per_split_rows,
    simulated_seed,
)
from synthetic import REGIME_MIXES, regime_answers

from cpq_guard.answers import ExactEquivalence, get_equivalence, normalize_answer
from cpq_guard.evaluation import METRIC_NAMES, PolicyReplay
from cpq_guard.histories import History
from cpq_guard.paper import import_paper
from cpq_guard.stats.conformal import conformal_rank
from cpq_guard.stats.policies import DerivativePolicy, FixedPolicy

logger = logging.getLogger("cpq_guard.benchmarks")

UQLM_PYTHON = _common.BENCHMARKS_DIR / ".venv-uqlm" / "bin" / "python"
WORKER = _common.BENCHMARKS_DIR / "_uqlm_worker.py"
SAMPLES = (10, 20, 30)
SUMMARY_ALPHAS = (0.05, 0.1, 0.2)

UQLM_VARIANTS = {
    "uqlm exact_match": ("exact_match", "first"),
    "uqlm exact_match, best response": ("exact_match_best", "best"),
    "uqlm semantic_negentropy": ("semantic_negentropy", "best"),
    "uqlm semantic_sets_confidence": ("semantic_sets_confidence", "best"),
}
"""Method name: (uqlm score, which response it answers with: first sample or best)."""


class Dataset:
    """A dataset's normalised answers, reference and histories."""

    def __init__(self, name: str, answers: list[list[str]], references: list[str]) -> None:
        self.name = name
        self.answers = answers
        self.references = references
        equivalence = ExactEquivalence()
        self.histories = [
            History.from_answers(drawn, [reference], equivalence, prompt_id=f"{name}-{i:04d}")
            for i, (drawn, reference) in enumerate(zip(answers, references))
        ]


def load(args: Any) -> list[Dataset]:
    """Load GSM8K (normalised answers) and the simulated ``mixed`` dataset."""
    data_dir = args.data if args.data is not None else _common.default_data_dir()
    records = import_paper(_common.gsm8k_path(data_dir))
    normalized = get_equivalence("normalized")
    gsm8k = Dataset(
        "gsm8k",
        [[normalized.key(sample.text) for sample in record.samples] for record in records],
        [normalize_answer(record.references[0]) for record in records],
    )
    prompts = 120 if args.quick else 400
    answers, references = regime_answers(
        REGIME_MIXES["mixed"], prompts=prompts, samples=MAX_QUERIES, seed=simulated_seed("mixed")
    )
    return [gsm8k, Dataset("mixed", answers, references)]


def uqlm_scores(datasets: list[Dataset], sample_counts: tuple[int, ...]) -> dict[str, Any]:
    """Score every dataset at every sample count with uqlm, in one worker run."""
    if not UQLM_PYTHON.exists():
        raise SystemExit(
            f"{UQLM_PYTHON} not found. Create the uqlm environment first:\n"
            "  python3 -m venv benchmarks/.venv-uqlm\n"
            '  benchmarks/.venv-uqlm/bin/pip install uqlm==0.6.7 "pyarrow<22"'
        )

    jobs = []
    for dataset in datasets:
        for count in sample_counts:
            jobs.append(
                {
                    "responses": [answers[0] for answers in dataset.answers],
                    "sampled_responses": [answers[1:count] for answers in dataset.answers],
                }
            )

    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "jobs.json", Path(folder) / "scores.json"
        source.write_text(json.dumps(jobs), encoding="utf-8")
        started = time.perf_counter()
        completed = subprocess.run(
            [str(UQLM_PYTHON), str(WORKER), str(source), str(target)],
            capture_output=True,
            text=True,
            check=False,
        )
        if completed.returncode != 0:
            raise SystemExit(f"the uqlm worker failed:\n{completed.stderr}")
        scored = json.loads(target.read_text(encoding="utf-8"))
    logger.info("uqlm scored %d jobs in %.1f s", len(jobs), time.perf_counter() - started)

    results: dict[str, Any] = {"uqlm_version": scored["uqlm_version"]}
    iterator = iter(scored["results"])
    for dataset in datasets:
        for count in sample_counts:
            results[(dataset.name, count)] = next(iterator)
    return results


def abstention_threshold(confidence: np.ndarray, correct: np.ndarray, alpha: float) -> float:
    """Return ``q``: answer a test prompt when its confidence is above it.

    ``+inf`` (always abstain) when the calibration part is too small for ``alpha``.
    """
    scores = np.where(correct, -np.inf, confidence)
    rank = conformal_rank(scores.size, alpha)
    if rank > scores.size:
        return float("inf")
    return float(np.partition(scores, rank - 1)[rank - 1])


def uqlm_rows(
    confidence: np.ndarray, correct: np.ndarray, count: int, splits: int
) -> dict[float, dict[str, list[float]]]:
    """Evaluate the thresholded uqlm decision on the same partitions as `evaluate`."""
    n = confidence.size
    n_calibration = round(CALIBRATION_FRACTION * n)
    collected: dict[float, dict[str, list[float]]] = {
        alpha: {name: [] for name in METRIC_NAMES} for alpha in ALPHAS
    }
    for split in range(splits):
        order = np.random.default_rng([split, 0]).permutation(n)
        calibration, test = order[:n_calibration], order[n_calibration:]
        for alpha in ALPHAS:
            q = abstention_threshold(confidence[calibration], correct[calibration], alpha)
            answered = confidence[test] > q
            right = answered & correct[test]
            values = collected[alpha]
            values["coverage"].append(float((right | ~answered).mean()))
            values["abstention_rate"].append(float((~answered).mean()))
            values["informative_coverage"].append(float(right.mean()))
            values["mean_set_size"].append(float(answered.mean()))
            values["mean_queries"].append(float(count))
    return collected


def run(
    datasets: list[Dataset], sample_counts: tuple[int, ...], splits: int
) -> tuple[dict[str, Any], str]:
    """Evaluate CPQ and every uqlm variant, and return per-split results and the uqlm version."""
    scores = uqlm_scores(datasets, sample_counts)
    results: dict[str, Any] = {}
    for dataset in datasets:
        histories = dataset.histories
        for count in sample_counts:
            lower = min_queries(count)
            cpq = PolicyReplay.compute(
                DerivativePolicy(
                    lambda_=0.0, min_queries=lower, max_queries=MAX_QUERIES, bootstrap=BOOTSTRAP
                ),
                histories,
                REPLAY_SEED,
            )
            fixed = PolicyReplay.compute(FixedPolicy(queries=count), histories, REPLAY_SEED)
            methods = {
                "cpq": per_split_rows(
                    histories,
                    ALPHAS,
                    cpq,
                    mapping="missing-mass",
                    average_budget=count,
                    splits=splits,
                ),
                "fixed-mm": per_split_rows(
                    histories,
                    ALPHAS,
                    fixed,
                    mapping="missing-mass",
                    average_budget=None,
                    splits=splits,
                ),
            }
            scored = scores[(dataset.name, count)]
            for method, (score_name, response) in UQLM_VARIANTS.items():
                chosen = (
                    [answers[0] for answers in dataset.answers]
                    if response == "first"
                    else scored["best_responses"]
                )
                correct = np.array(
                    [answer == reference for answer, reference in zip(chosen, dataset.references)]
                )
                methods[method] = uqlm_rows(np.array(scored[score_name]), correct, count, splits)
            results[(dataset.name, count)] = methods
    return results, scores["uqlm_version"]


def table(results: dict[str, Any], alphas: tuple[float, ...]) -> tuple[str, list[dict]]:
    """Render one row per dataset, K, alpha and method, with CPQ's informative-coverage ratio."""
    headers = [
        "dataset",
        "K",
        "α",
        "method",
        "coverage",
        "informative coverage",
        "abstention",
        "set size",
        "queries",
        "CPQ / method",
    ]
    rows, records = [], []
    for (dataset, count), methods in results.items():
        for alpha in alphas:
            cpq = np.mean(methods["cpq"][alpha]["informative_coverage"])
            for method, by_alpha in methods.items():
                values = by_alpha[alpha]
                summary = {name: _common.mean_std(values[name]) for name in METRIC_NAMES}
                informative = summary["informative_coverage"][0]
                rows.append(
                    [
                        dataset,
                        count,
                        f"{alpha:g}",
                        method,
                        _common.pm(*summary["coverage"]),
                        _common.pm(*summary["informative_coverage"]),
                        _common.pm(*summary["abstention_rate"]),
                        _common.pm(*summary["mean_set_size"], 2),
                        _common.pm(*summary["mean_queries"], 2),
                        "-" if method == "cpq" else _common.ratio(float(cpq), informative),
                    ]
                )
                records.append(
                    {
                        "dataset": dataset,
                        "samples": count,
                        "alpha": alpha,
                        "method": method,
                        **summary,
                    }
                )
    return _common.markdown_table(headers, rows), records


def pivot_table(results: dict[str, Any], alphas: tuple[float, ...]) -> str:
    """Render informative coverage (abstention rate) of every method, one row per setting."""
    methods = ["cpq", "fixed-mm", *UQLM_VARIANTS]
    headers = ["dataset", "K", "α", *methods, "CPQ / best uqlm"]
    rows = []
    for (dataset, count), by_method in results.items():
        for alpha in alphas:
            cells: list[Any] = [dataset, count, f"{alpha:g}"]
            for method in methods:
                values = by_method[method][alpha]
                mean, std = _common.mean_std(values["informative_coverage"])
                abstention = float(np.mean(values["abstention_rate"]))
                cells.append(f"{mean:.3f} ± {std:.3f} ({abstention:.2f})")
            cpq = float(np.mean(by_method["cpq"][alpha]["informative_coverage"]))
            best = max(
                float(np.mean(by_method[method][alpha]["informative_coverage"]))
                for method in UQLM_VARIANTS
            )
            cells.append(_common.ratio(cpq, best))
            rows.append(cells)
    return _common.markdown_table(headers, rows)


def main() -> None:
    args = _common.parser(__doc__.splitlines()[0], data=True).parse_args()
    _common.configure_logging()
    folder = _common.output_dir(args)
    splits = 3 if args.quick else 20
    sample_counts = (10, 20) if args.quick else SAMPLES

    started = time.perf_counter()
    datasets = load(args)
    results, version = run(datasets, sample_counts, splits)
    elapsed = time.perf_counter() - started
    info = _common.machine()

    full, records = table(results, ALPHAS)
    summary = pivot_table(results, SUMMARY_ALPHAS)
    header = (
        f"uqlm {version}; mean ± std over {splits} splits. {_common.machine_line(info)} "
        f"Run time {elapsed:.0f} s."
    )
    print(header)
    print(summary)
    _common.write_results(
        folder,
        "against_uqlm",
        {"machine": info, "uqlm_version": version, "splits": splits, "rows": records},
        "# CPQ against uqlm: all results\n\nGenerated by `benchmarks/against_uqlm.py`. "
        + header
        + "\n\n"
        + full,
    )
    if _common.updates_readme(args, folder):
        _common.update_readme(
            "against_uqlm",
            f"{header}\n\nInformative coverage mean ± std (abstention rate), at α in "
            f"{', '.join(f'{alpha:g}' for alpha in SUMMARY_ALPHAS)}:\n\n{summary}",
        )


if __name__ == "__main__":
    main()
