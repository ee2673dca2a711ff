"""``cpq-guard evaluate``: split-conformal evaluation of stopping policies on a sample bank.

Each method's policy is replayed over the bank once (`PolicyReplay.compute`),
and that replay then serves every alpha and mapping, so a sweep over many
alphas costs about as much as one alpha.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, get_args

from rich.console import Console
from rich.table import Table

from cpq_guard.cli import _arguments, _plot
from cpq_guard.cli._errors import EXIT_OK
from cpq_guard.cli._paths import check_output_path
from cpq_guard.cli._policy_options import (
    METHODS,
    add_method_parameter_arguments,
    add_policy_limit_arguments,
    build_policy,
    check_policy_arguments,
)
from cpq_guard.cli._progress import stderr_progress
from cpq_guard.cli._records import (
    REFERENCE_MATCHES,
    add_answer_arguments,
    build_histories,
    check_answer_arguments,
    read_records,
)
from cpq_guard.evaluation import METRIC_NAMES, EvaluationRow, Mapping, PolicyReplay, evaluate
from cpq_guard.histories import History
from cpq_guard.stats.policies import FixedPolicy, ThresholdPolicy

logger = logging.getLogger("cpq_guard")

MAPPINGS: tuple[str, ...] = get_args(Mapping)

_COLUMN_TITLES = {
    "coverage": "coverage",
    "abstention_rate": "abstention",
    "informative_coverage": "informative\ncoverage",
    "mean_set_size": "set size",
    "mean_queries": "queries",
}
_COUNT_METRICS = ("mean_set_size", "mean_queries")


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``evaluate`` parser to ``subparsers``."""
    parser = subparsers.add_parser(
        "evaluate",
        help="measure coverage, abstention, set size and queries of policies on a sample bank",
        description="Evaluate stopping policies with the split-conformal protocol: in each "
        "of --splits random splits, --calibration-fraction of the prompts set the conformal "
        "threshold and the rest are predicted and scored. Reports each metric as mean and "
        "standard deviation over splits. --alpha, --method and --mapping take one or more "
        "values, and every combination is evaluated.",
    )
    parser.add_argument(
        "--bank", required=True, metavar="BANK", help="sample bank (JSONL) with reference answers"
    )
    parser.add_argument(
        "--alpha",
        required=True,
        action="extend",
        nargs="+",
        type=_arguments.miscoverage,
        metavar="A",
        help="target miscoverage level in (0, 1); coverage is at least 1 - A",
    )
    parser.add_argument(
        "--method",
        required=True,
        action="extend",
        nargs="+",
        choices=METHODS,
        help="stopping policy: cpq (needs --lambda), fixed (needs --queries) or "
        "missing-mass (needs --epsilon), or any of them with --average-budget",
    )
    parser.add_argument(
        "--mapping",
        action="extend",
        nargs="+",
        choices=MAPPINGS,
        help="how samples become an answer set: missing-mass (CPQ) or the cumulative "
        "baseline (default: missing-mass)",
    )
    add_method_parameter_arguments(parser)
    add_policy_limit_arguments(parser)
    parser.add_argument(
        "--splits",
        type=_arguments.positive_int,
        default=10,
        metavar="N",
        help="number of random calibration/test splits (default: %(default)s)",
    )
    parser.add_argument(
        "--calibration-fraction",
        type=_arguments.fraction,
        default=0.5,
        metavar="F",
        help="share of the prompts that calibrate in each split; with --average-budget, "
        "half of them tune the threshold (default: %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=_arguments.non_negative_int,
        default=42,
        metavar="S",
        help="seed of the splits, the cpq bootstrap and the tie-breaking noise "
        "(default: %(default)s)",
    )
    add_answer_arguments(parser)
    parser.add_argument(
        "--reference-match",
        choices=REFERENCE_MATCHES,
        default="equivalence",
        help="how a reference answer finds its cluster: every equivalent cluster, or only a "
        "cluster whose first answer equals it after strip(), as the CPQ paper's code does "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print a JSON list with one object per alpha, method and mapping instead of a table",
    )
    parser.add_argument(
        "--plot",
        metavar="FILE",
        help="also plot the metrics against 1 - alpha into FILE (.png, .pdf or .svg); "
        'needs matplotlib: pip install "cpq-guard[plot]"',
    )
    parser.set_defaults(run=run)
    return parser


def _unique(values: Iterable[Any]) -> list[Any]:
    """Drop repeated values, keeping the first occurrence of each."""
    return list(dict.fromkeys(values))


def run(args: argparse.Namespace) -> int:
    """Evaluate every combination of alpha, method and mapping, and print the results."""
    alphas = _unique(args.alpha)
    methods = _unique(args.method)
    mappings = _unique(args.mapping or ["missing-mass"])

    check_policy_arguments(methods, args)
    check_answer_arguments(args)
    policies = {method: build_policy(method, args) for method in methods}
    plot_path = None
    if args.plot is not None:
        plot_path = check_output_path(args.plot, "--plot")
        _plot.check_plot_format(plot_path)

    records = read_records(args.bank)
    histories = build_histories(
        records,
        equivalence=args.equivalence,
        extractor=args.extractor,
        reference_match=args.reference_match,
    )

    rows = _evaluate_all(histories, alphas, policies, mappings, args)
    rows.sort(
        key=lambda row: (
            alphas.index(row.alpha),
            methods.index(row.method),
            mappings.index(row.mapping),
        )
    )

    title = (
        f"{Path(args.bank).name}: {len(histories)} prompts, {args.splits} splits, "
        f"calibration fraction {args.calibration_fraction:g}"
    )
    if args.json:
        documents = [_row_document(row, policies[row.method], args) for row in rows]
        sys.stdout.write(json.dumps(documents, indent=2) + "\n")
    else:
        _print_table(rows, title, tuned=args.average_budget is not None)

    if plot_path is not None:
        _plot.write_plot(rows, plot_path, title=title)
        logger.info("wrote plot %s", plot_path)
    return EXIT_OK


def _evaluate_all(
    histories: Sequence[History],
    alphas: Sequence[float],
    policies: dict[str, ThresholdPolicy | FixedPolicy],
    mappings: Sequence[str],
    args: argparse.Namespace,
) -> list[EvaluationRow]:
    """Replay each policy once, then evaluate it for every mapping and all alphas."""
    progress = stderr_progress()

    rows: list[EvaluationRow] = []
    with progress:
        task = progress.add_task("evaluating", total=len(policies) * (1 + len(mappings)))
        for method, policy in policies.items():
            progress.update(task, description=f"{method}: replaying {len(histories)} prompts")
            started = time.perf_counter()
            replay = PolicyReplay.compute(policy, histories, args.seed)
            logger.info(
                "%s: replayed the policy on %d prompts in %.2f s",
                method,
                len(histories),
                time.perf_counter() - started,
            )
            progress.advance(task)

            for mapping in mappings:
                progress.update(task, description=f"{method}, {mapping} mapping")
                started = time.perf_counter()
                rows.extend(
                    evaluate(
                        histories,
                        alphas,
                        replay,
                        method=method,
                        mapping=mapping,
                        average_budget=args.average_budget,
                        splits=args.splits,
                        calibration_fraction=args.calibration_fraction,
                        seed=args.seed,
                        estimator=args.estimator,
                    )
                )
                logger.info(
                    "%s, %s mapping: evaluated %d alphas over %d splits in %.2f s",
                    method,
                    mapping,
                    len(alphas),
                    args.splits,
                    time.perf_counter() - started,
                )
                progress.advance(task)
    return rows


def _row_document(
    row: EvaluationRow, policy: ThresholdPolicy | FixedPolicy, args: argparse.Namespace
) -> dict[str, Any]:
    """Return a row as JSON data, with the policy and budget it was evaluated with.

    With ``--average-budget`` the policy's threshold is the template's 0;
    ``policy_threshold`` contains the mean of the thresholds tuned per split.
    """
    document = row.model_dump(mode="json")
    document["policy"] = policy.model_dump(mode="json", by_alias=True)
    document["average_budget"] = args.average_budget
    return document


def _format_summary(name: str, mean: float, std: float) -> str:
    digits = 2 if name in _COUNT_METRICS else 3
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _print_table(rows: Sequence[EvaluationRow], title: str, *, tuned: bool) -> None:
    """Print one table row per result, with a section per alpha."""
    table = Table(
        title=title,
        caption="mean ± std over splits; an abstention counts as covered and as set size 0",
    )
    table.add_column("alpha", justify="right")
    table.add_column("method")
    table.add_column("mapping")
    for name in METRIC_NAMES:
        table.add_column(_COLUMN_TITLES[name], justify="right")
    table.add_column("tau", justify="right")
    if tuned:
        table.add_column("tuned\nthreshold", justify="right")

    previous_alpha = None
    for row in rows:
        if previous_alpha is not None and row.alpha != previous_alpha:
            table.add_section()
        previous_alpha = row.alpha

        cells = [f"{row.alpha:g}", row.method, row.mapping]
        for name in METRIC_NAMES:
            summary = getattr(row, name)
            cells.append(_format_summary(name, summary.mean, summary.std))
        cells.append(_format_summary("tau", row.tau.mean, row.tau.std))
        if tuned:
            threshold = row.policy_threshold
            cells.append("-" if threshold is None else f"{threshold.mean:.4g}")
        table.add_row(*cells)

    # A table wider than 80 columns is cut to fit a pipe's default width, so
    # give output that is not a terminal room for the whole row.
    console = Console() if sys.stdout.isatty() else Console(width=200)
    console.print(table)
