"""``cpq-guard calibrate``: compute a guard's conformal threshold from recorded samples.

The samples come from a sample bank (``--bank``). The flag sits in a
required mutually exclusive group, so that another source of records, such as
sampling a live model first, can be added to the group as a flag of its own.
"""

from __future__ import annotations

import argparse
import logging
from typing import get_args

from cpq_guard.banks import BankRecord
from cpq_guard.calibration import Calibration, calibrate_bank
from cpq_guard.cli import _arguments
from cpq_guard.cli._errors import EXIT_OK
from cpq_guard.cli._paths import check_distinct_paths, check_output_path
from cpq_guard.cli._policy_options import (
    METHOD_PARAMETERS,
    METHODS,
    add_method_parameter_arguments,
    add_policy_limit_arguments,
    build_policy,
    check_policy_arguments,
)
from cpq_guard.cli._records import (
    add_answer_arguments,
    check_answer_arguments,
    read_records,
)
from cpq_guard.evaluation import Mapping
from cpq_guard.stats.conformal import DEFAULT_TIE_JITTER
from cpq_guard.stats.policies import FixedPolicy

logger = logging.getLogger("cpq_guard")

MAPPINGS: tuple[str, ...] = get_args(Mapping)
MAX_TIE_JITTER = 0.1
"""Largest tie-breaking noise that a `Calibration` file accepts."""


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``calibrate`` parser to ``subparsers``."""
    parser = subparsers.add_parser(
        "calibrate",
        help="compute a calibration file for a guard from a sample bank",
        description="Calibrate a guard: replay the stopping policy on every prompt of a "
        "sample bank, compute the nonconformity scores of the reference answers and save "
        "their conformal quantile tau with the settings that produced it. With "
        "--average-budget, --tuning-fraction of the prompts first tune the policy's "
        "threshold and the others set tau.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--bank", metavar="BANK", help="sample bank (JSONL) of calibration prompts with references"
    )

    parser.add_argument(
        "--alpha",
        required=True,
        type=_arguments.miscoverage,
        metavar="A",
        help="target miscoverage level in (0, 1); coverage is at least 1 - A",
    )
    parameter = parser.add_mutually_exclusive_group(required=True)
    add_method_parameter_arguments(parameter)
    parser.add_argument(
        "--method",
        choices=METHODS,
        help="stopping policy (default: the one whose parameter is given: --lambda for cpq, "
        "--queries for fixed, --epsilon for missing-mass, and cpq with --average-budget)",
    )
    parser.add_argument(
        "--mapping",
        choices=MAPPINGS,
        default="missing-mass",
        help="how samples become an answer set (default: %(default)s)",
    )
    add_policy_limit_arguments(parser)
    parser.add_argument(
        "--tuning-fraction",
        type=_arguments.fraction,
        default=0.5,
        metavar="F",
        help="share of the prompts that tune the threshold with --average-budget "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=_arguments.non_negative_int,
        default=0,
        metavar="S",
        help="seed of the tuning split, the cpq bootstrap and the tie-breaking noise "
        "(default: %(default)s)",
    )
    add_answer_arguments(parser)
    parser.add_argument(
        "--tie-jitter",
        type=_tie_jitter,
        default=DEFAULT_TIE_JITTER,
        metavar="W",
        help="width of the uniform noise that breaks ties between scores of the "
        f"missing-mass mapping, in [0, {MAX_TIE_JITTER}] (default: %(default)s)",
    )
    parser.add_argument(
        "--out", required=True, metavar="FILE", help="calibration file (JSON) to write or replace"
    )
    parser.set_defaults(run=run)
    return parser


def _tie_jitter(text: str) -> float:
    value = _arguments.non_negative_float(text)
    if value > MAX_TIE_JITTER:
        raise argparse.ArgumentTypeError(
            f"invalid value {text!r}: it must be at most {MAX_TIE_JITTER}"
        )
    return value


def _choose_method(args: argparse.Namespace) -> str:
    """Return ``--method``, or the method whose parameter flag was given."""
    if args.method is not None:
        return args.method
    for parameter in METHOD_PARAMETERS:
        if getattr(args, parameter.dest) is not None:
            return parameter.method
    return "cpq"


def _load_records(args: argparse.Namespace) -> list[BankRecord]:
    """Return the calibration records from the source flag that was given.

    A new source flag in the ``source`` group of `register` gets its branch here.
    """
    return read_records(args.bank)


def run(args: argparse.Namespace) -> int:
    """Calibrate on the bank, save the calibration and print its summary."""
    method = _choose_method(args)
    check_policy_arguments([method], args)
    check_answer_arguments(args)
    policy = build_policy(method, args)
    out = check_output_path(args.out, "--out")
    if args.bank is not None:
        check_distinct_paths(args.bank, "--bank", out, "--out")

    records = _load_records(args)
    calibration = calibrate_bank(
        records,
        alpha=args.alpha,
        policy=policy,
        extractor=args.extractor,
        equivalence=args.equivalence,
        average_budget=args.average_budget,
        tuning_fraction=args.tuning_fraction,
        mapping=args.mapping,
        estimator=args.estimator,
        tie_jitter=args.tie_jitter,
        seed=args.seed,
    )
    calibration.save(out)
    logger.info("wrote calibration %s", out)

    _print_summary(calibration, method, str(out))
    return EXIT_OK


def _describe_policy(calibration: Calibration, method: str) -> str:
    policy = calibration.policy
    if isinstance(policy, FixedPolicy):
        setting = f"queries = {policy.queries}"
    else:
        setting = f"{policy.threshold_name} = {policy.threshold:.6g}"
    if calibration.target_budget is not None:
        setting += f", tuned for an average budget of {calibration.target_budget:g} queries"
    return f"{method}: {setting}"


def _print_summary(calibration: Calibration, method: str, path: str) -> None:
    """Print tau, the prompt counts, the policy threshold and the mean queries."""
    lines = [
        ("alpha", f"{calibration.alpha:g}"),
        ("tau", f"{calibration.tau:.6g}"),
        ("calibration prompts (n)", str(calibration.num_calibration)),
    ]
    if calibration.num_tuning:
        lines.append(("tuning prompts", str(calibration.num_tuning)))
    lines.append(("policy", _describe_policy(calibration, method)))
    lines.append(("mapping", calibration.mapping))
    queries = f"{calibration.calibration_mean_queries:.2f} on the calibration prompts"
    if calibration.tuning_mean_queries is not None:
        queries += f", {calibration.tuning_mean_queries:.2f} on the tuning prompts"
    lines.append(("mean queries", queries))

    width = max(len(label) for label, _ in lines) + 2
    print(f"wrote calibration {path}")
    for label, value in lines:
        print(f"  {label:<{width}}{value}")
