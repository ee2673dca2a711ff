"""``cpq-guard demo``: calibrate a guard offline, guard held-out prompts, show the result.

Without ``--bank`` it uses the built-in simulated model on an invented task;
with ``--bank`` it replays a recorded sample bank. Either way it prints a few
guarded answers and abstentions, then the achieved coverage, abstention rate
and mean queries next to their targets.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from rich.console import Console
from rich.table import Table

from cpq_guard.cli import _arguments
from cpq_guard.cli._errors import EXIT_OK
from cpq_guard.demo import DemoExample, DemoReport, run_bank_demo, run_simulated_demo

_SHOWN_PER_KIND = 3
_PROMPT_WIDTH = 70
_MIN_DEMO_PROMPTS = 40


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``demo`` parser to ``subparsers``."""
    parser = subparsers.add_parser(
        "demo",
        help="calibrate a guard offline and show its answers, abstentions and coverage",
        description="Calibrate a CPQ guard on labelled prompts and guard held-out prompts, "
        "offline. By default the model is the built-in simulated model on an invented task of "
        "arithmetic questions; with --bank it replays a recorded sample bank.",
    )
    parser.add_argument(
        "--bank", metavar="BANK", help="replay this sample bank instead of the simulated model"
    )
    parser.add_argument(
        "--alpha",
        type=_arguments.miscoverage,
        default=0.1,
        metavar="A",
        help="target miscoverage in (0, 1) (default: 0.1)",
    )
    parser.add_argument(
        "--average-budget",
        type=_arguments.query_budget,
        default=20.0,
        metavar="B",
        help="target mean number of queries per prompt (default: 20)",
    )
    parser.add_argument(
        "--prompts",
        type=_demo_prompt_count,
        default=200,
        metavar="N",
        help="simulated task only: calibration prompts, and as many held-out ones "
        f"(at least {_MIN_DEMO_PROMPTS}; default: 200)",
    )
    parser.add_argument(
        "--extractor",
        default="text",
        help="bank only: answer extractor: text, final-answer, final-answer:strict or "
        "regex:PATTERN (default: text)",
    )
    parser.add_argument(
        "--equivalence",
        default="normalized",
        help="bank only: answer equivalence: exact, normalized or numeric (default: normalized)",
    )
    parser.add_argument(
        "--seed",
        type=_arguments.non_negative_int,
        default=0,
        help="seed of the task, the splits and the guard (default: 0)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the summary as JSON instead of tables"
    )
    parser.set_defaults(run=run)
    return parser


def _demo_prompt_count(text: str) -> int:
    """Parse ``--prompts``: enough calibration prompts for a tuning part and a tau part."""
    value = _arguments.positive_int(text)
    if value < _MIN_DEMO_PROMPTS:
        raise argparse.ArgumentTypeError(
            f"invalid value {text!r}: the demo needs at least {_MIN_DEMO_PROMPTS} prompts, so "
            "that both lambda and tau have calibration prompts at the default alpha"
        )
    return value


def run(args: argparse.Namespace) -> int:
    """Run the demo and print its report."""
    console = Console(stderr=True)
    with console.status("calibrating and guarding held-out prompts..."):
        if args.bank:
            report = asyncio.run(
                run_bank_demo(
                    args.bank,
                    alpha=args.alpha,
                    average_budget=args.average_budget,
                    extractor=args.extractor,
                    equivalence=args.equivalence,
                    seed=args.seed,
                )
            )
        else:
            report = asyncio.run(
                run_simulated_demo(
                    num_calibration=args.prompts,
                    num_test=args.prompts,
                    alpha=args.alpha,
                    average_budget=args.average_budget,
                    seed=args.seed,
                )
            )

    if args.json:
        print(json.dumps(_summary(report), indent=2))
    else:
        _print_report(report, Console())
    return EXIT_OK


def _summary(report: DemoReport) -> dict[str, object]:
    calibration = report.calibration
    return {
        "source": report.source,
        "alpha": calibration.alpha,
        "target_coverage": 1.0 - calibration.alpha,
        "target_budget": calibration.target_budget,
        "tau": calibration.tau,
        "policy": calibration.policy.model_dump(by_alias=True),
        "num_calibration": calibration.num_calibration,
        "num_tuning": calibration.num_tuning,
        "num_test": report.num_test,
        "coverage": report.coverage,
        "abstention_rate": report.abstention_rate,
        "informative_coverage": report.informative_coverage,
        "mean_set_size": report.mean_set_size,
        "mean_queries": report.mean_queries,
        "seconds_calibrating": report.seconds_calibrating,
        "seconds_guarding": report.seconds_guarding,
    }


def _shown_examples(examples: list[DemoExample]) -> list[DemoExample]:
    single = [example for example in examples if example.result.is_single_answer]
    several = [
        example
        for example in examples
        if not example.result.abstained and not example.result.is_single_answer
    ]
    abstained = [example for example in examples if example.result.abstained]
    return single[:_SHOWN_PER_KIND] + several[:_SHOWN_PER_KIND] + abstained[:_SHOWN_PER_KIND]


def _answer_text(example: DemoExample) -> str:
    result = example.result
    if result.abstained:
        seen = ", ".join(
            f"{cluster.representative or '<no answer>'} ({cluster.count})"
            for cluster in result.clusters[:4]
        )
        return f"[bold yellow]ABSTAIN[/] (seen: {seen})"
    if not result.answers:
        return "[dim]empty set[/]"
    return ", ".join(
        f"{cluster.representative or '<no answer>'} ({cluster.probability:.2f})"
        for cluster in result.answers
    )


def _print_report(report: DemoReport, console: Console) -> None:
    calibration = report.calibration
    table = Table(title=f"Guarded held-out prompts ({report.source})", show_lines=True)
    table.add_column("prompt", max_width=_PROMPT_WIDTH)
    table.add_column("reference")
    table.add_column("answer set (probability) or abstention")
    table.add_column("queries", justify="right")
    table.add_column("covered", justify="center")
    for example in _shown_examples(report.examples):
        prompt = example.prompt
        if len(prompt) > _PROMPT_WIDTH:
            prompt = prompt[: _PROMPT_WIDTH - 3] + "..."
        table.add_row(
            prompt,
            ", ".join(example.references),
            _answer_text(example),
            str(example.result.num_queries),
            "yes" if example.covered else "[red]no[/]",
        )
    console.print(table)

    summary = Table(title=f"{report.num_test} held-out prompts")
    summary.add_column("metric")
    summary.add_column("achieved", justify="right")
    summary.add_column("target", justify="right")
    target = 1.0 - calibration.alpha
    summary.add_row("coverage (in set or abstained)", f"{report.coverage:.3f}", f">= {target:.3f}")
    summary.add_row("abstention rate", f"{report.abstention_rate:.3f}", "")
    summary.add_row("informative coverage", f"{report.informative_coverage:.3f}", "")
    summary.add_row("mean set size", f"{report.mean_set_size:.2f}", "")
    budget = f"{calibration.target_budget:g}" if calibration.target_budget else ""
    summary.add_row("mean queries", f"{report.mean_queries:.1f}", budget)
    console.print(summary)
    console.print(
        f"calibrated on {calibration.num_calibration} prompts (policy tuned on "
        f"{calibration.num_tuning}): tau = {calibration.tau:.4f}, "
        f"lambda = {getattr(calibration.policy, 'lambda_', float('nan')):.5f}; "
        f"calibration {report.seconds_calibrating:.1f} s, "
        f"guarding {report.seconds_guarding:.1f} s. "
        "Coverage is guaranteed on average over prompts, so a sample of "
        f"{report.num_test} prompts can fall a few points short of the target."
    )
