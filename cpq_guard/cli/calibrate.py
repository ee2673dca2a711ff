"""``cpq-guard calibrate``: compute a guard's conformal threshold from recorded samples.

The samples come from a sample bank (``--bank``), or from a chat model
(``--model``) that is first sampled on a prompts file into a bank
(``--record-to``). Both flags sit in a required mutually exclusive group,
and `_load_records` has one branch per flag. Either way the calibration is
computed from the bank's records by `calibrate_bank`, so a calibration with
``--model`` equals one with ``--bank`` on the bank it recorded.
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path
from typing import get_args

from cpq_guard.banks import BankRecord
from cpq_guard.calibration import Calibration, calibrate_bank
from cpq_guard.cli import _arguments
from cpq_guard.cli._errors import EXIT_OK, CommandError, UsageError
from cpq_guard.cli._paths import check_distinct_paths, check_output_path
from cpq_guard.cli._policy_options import (
    METHOD_PARAMETERS,
    METHODS,
    add_method_parameter_arguments,
    add_policy_limit_arguments,
    build_policy,
    check_policy_arguments,
)
from cpq_guard.cli._prompts import PROMPTS_HELP, PromptEntry, read_prompts
from cpq_guard.cli._query_options import (
    add_model_argument,
    add_query_arguments,
    given_query_flags,
    query_settings,
)
from cpq_guard.cli._recording import (
    describe_usage,
    inspect_bank,
    print_resume_line,
    record_prompts,
    sum_usage,
)
from cpq_guard.cli._records import (
    add_answer_arguments,
    check_answer_arguments,
    read_records,
)
from cpq_guard.errors import InsufficientCalibrationError
from cpq_guard.evaluation import Mapping
from cpq_guard.model_loading import load_chat_model
from cpq_guard.stats.conformal import DEFAULT_TIE_JITTER, required_calibration_size
from cpq_guard.stats.policies import FixedPolicy, ThresholdPolicy

logger = logging.getLogger("cpq_guard")

MAPPINGS: tuple[str, ...] = get_args(Mapping)
MAX_TIE_JITTER = 0.1
"""Largest tie-breaking noise that a `Calibration` file accepts."""
DEFAULT_CONCURRENCY = 8
_MODEL_ONLY_FLAGS = (("--prompts", "prompts"), ("--record-to", "record_to"))


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``calibrate`` parser to ``subparsers``."""
    parser = subparsers.add_parser(
        "calibrate",
        help="compute a calibration file for a guard from a sample bank or a chat model",
        description="Calibrate a guard: replay the stopping policy on every prompt of a "
        "sample bank, compute the nonconformity scores of the reference answers and save "
        "their conformal quantile tau with the settings that produced it. With "
        "--average-budget, --tuning-fraction of the prompts first tune the policy's "
        "threshold and the others set tau. With --model instead of --bank, every prompt of "
        "--prompts is first sampled into the sample bank --record-to, as many times as the "
        "policy may query (--max-queries, or --queries for --method fixed). A rerun resumes "
        "that bank without new model calls, and the calibration then runs on it as with "
        "--bank.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--bank", metavar="BANK", help="sample bank (JSONL) of calibration prompts with references"
    )
    add_model_argument(source, required=False)
    parser.add_argument(
        "--prompts",
        metavar="PROMPTS",
        help=f"with --model: the calibration prompts; {PROMPTS_HELP}. Every prompt needs "
        "a reference answer",
    )
    parser.add_argument(
        "--record-to",
        metavar="BANK",
        help="with --model: sample bank (JSONL) to record into, or to resume when it exists "
        "(default: OUT_STEM.bank.jsonl next to --out)",
    )
    add_query_arguments(
        parser,
        default_concurrency=DEFAULT_CONCURRENCY,
        concurrency_help="with --model: model calls in flight at once, over all prompts",
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


def _check_source_arguments(args: argparse.Namespace, out: Path) -> Path | None:
    """Check the flags of the record source and return the bank to record into, if any.

    Raises:
        UsageError: If a ``--model`` flag comes with ``--bank``, or ``--model``
            lacks ``--prompts``, or two of the files are the same.
        CommandError: If the recording bank cannot be written.
    """
    if args.model is None:
        model_flags = [flag for flag, dest in _MODEL_ONLY_FLAGS if getattr(args, dest) is not None]
        model_flags += given_query_flags(args)
        if model_flags:
            raise UsageError(
                f"{model_flags[0]} applies only with --model, which samples a model; remove it, "
                "or use --model instead of --bank"
            )
        check_distinct_paths(args.bank, "--bank", out, "--out")
        return None

    if args.prompts is None:
        raise UsageError(
            "--model needs --prompts PROMPTS.jsonl, the labelled prompts to sample the model on"
        )
    if args.record_to is None:
        record_to = check_output_path(out.with_name(f"{out.stem}.bank.jsonl"), "--record-to")
    else:
        record_to = check_output_path(args.record_to, "--record-to")
    check_distinct_paths(args.prompts, "--prompts", out, "--out")
    check_distinct_paths(args.prompts, "--prompts", record_to, "--record-to")
    check_distinct_paths(record_to, "--record-to", out, "--out")
    return record_to


def _check_prompt_count(count: int, args: argparse.Namespace) -> None:
    """Fail before any model call if ``count`` prompts cannot give a finite tau at alpha.

    With ``--average-budget``, ``floor(count * tuning fraction)`` of the
    prompts tune the policy and the others set tau, as `calibrate_bank` splits them.

    Raises:
        CommandError: If no prompt is left to tune the policy.
        InsufficientCalibrationError: If too few prompts are left to set tau.
    """
    num_calibration = count
    if args.average_budget is not None:
        num_tuning = math.floor(count * args.tuning_fraction)
        if num_tuning == 0:
            raise CommandError(
                f"--tuning-fraction {args.tuning_fraction:g} of {count} prompts leaves none to "
                "tune the policy for --average-budget; raise --tuning-fraction or add prompts"
            )
        num_calibration = count - num_tuning
    required = required_calibration_size(args.alpha)
    if num_calibration < required:
        raise InsufficientCalibrationError(num_calibration, args.alpha, required)


def _record_model_samples(
    args: argparse.Namespace,
    policy: ThresholdPolicy | FixedPolicy,
    record_to: Path,
) -> list[BankRecord]:
    """Sample the model on the prompts into ``record_to`` and return their records.

    Each prompt gets the policy's ``max_queries`` samples, the most that the
    policy uses. The references of the records come from the prompts file, so
    a bank recorded before its prompts were labelled can still calibrate.

    Raises:
        CommandError: If a prompt has no reference answer, or the bank already
            has a prompt with fewer samples than the policy may use.
        ModelLoadError: If the model cannot be built.
        ModelQueryError: If a model call fails permanently.
    """
    entries = read_prompts(args.prompts)
    _check_references(entries, args.prompts)
    _check_prompt_count(len(entries), args)
    settings = query_settings(args, default_concurrency=DEFAULT_CONCURRENCY)
    model = load_chat_model(args.model)

    samples = policy.max_queries
    state = inspect_bank(record_to, entries, samples, args.prompts)
    if state.short:
        raise CommandError(
            f"--record-to {record_to} has {len(state.short)} of the prompts with fewer than "
            f"{samples} samples, the most queries that the policy may make (first: id "
            f"{state.short[0]!r}); choose a new --record-to file, or a policy with fewer "
            "queries (--max-queries, or --queries for --method fixed)"
        )
    print_resume_line(record_to, len(entries), state)

    records = record_prompts(
        model, entries, record_to, samples=samples, settings=settings, state=state
    )
    new_records = [record for record in records if record.id not in state.recorded]
    if new_records:
        print(
            f"recorded {len(new_records)} prompts into sample bank {record_to} "
            f"(tokens: {describe_usage(sum_usage(new_records))})"
        )
    if state.other_references:
        logger.warning(
            "%d prompt(s) in %s have other references than %s (first: id %r); "
            "calibrating with those of %s",
            len(state.other_references),
            record_to,
            args.prompts,
            state.other_references[0],
            args.prompts,
        )
    return [
        record.model_copy(update={"references": entry.references})
        for record, entry in zip(records, entries)
    ]


def _check_references(entries: list[PromptEntry], prompts_path: str) -> None:
    unlabelled = [entry for entry in entries if not entry.references]
    if unlabelled:
        lines = ", ".join(str(entry.line) for entry in unlabelled[:5])
        raise CommandError(
            f"{len(unlabelled)} of {len(entries)} prompts in {prompts_path} have no reference "
            f"answer (lines {lines}); calibration needs one for every prompt, so add "
            '"references": [...] to those lines or remove them'
        )


def _load_records(
    args: argparse.Namespace,
    policy: ThresholdPolicy | FixedPolicy,
    record_to: Path | None,
) -> list[BankRecord]:
    """Return the calibration records from the source flag that was given.

    A new source flag in the ``source`` group of `register` gets its branch here.
    """
    if record_to is not None:
        return _record_model_samples(args, policy, record_to)
    return read_records(args.bank)


def run(args: argparse.Namespace) -> int:
    """Calibrate on the bank or the model's samples, save the calibration, print its summary."""
    method = _choose_method(args)
    check_policy_arguments([method], args)
    check_answer_arguments(args)
    policy = build_policy(method, args)
    out = check_output_path(args.out, "--out")
    record_to = _check_source_arguments(args, out)

    records = _load_records(args, policy, record_to)
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
