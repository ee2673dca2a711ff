"""Flags that choose a stopping policy, their checks, and the policies they build.

A method name selects the policy: ``cpq`` is `DerivativePolicy` with price
``--lambda``, ``fixed`` is `FixedPolicy` with ``--queries``, and
``missing-mass`` is `MissingMassPolicy` with ``--epsilon``. Every method
accepts ``--average-budget`` instead of its parameter. The policy is then a
template with threshold 0, and its threshold is tuned on calibration prompts
to spend that mean number of queries.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import get_args

from cpq_guard.cli import _arguments
from cpq_guard.cli._errors import UsageError
from cpq_guard.stats.missing_mass import MissingMassEstimator
from cpq_guard.stats.policies import (
    DerivativePolicy,
    FixedPolicy,
    MissingMassPolicy,
    ThresholdPolicy,
)

ESTIMATORS: tuple[str, ...] = get_args(MissingMassEstimator)


@dataclass(frozen=True)
class MethodParameter:
    """The flag that sets a method's threshold or query count.

    Attributes:
        method: Method name on the command line.
        flag: The flag, such as ``--lambda``.
        dest: Attribute name of the flag in the parsed namespace.
        example: What the flag means, with a typical value, for error messages.
    """

    method: str
    flag: str
    dest: str
    example: str


METHOD_PARAMETERS = (
    MethodParameter("cpq", "--lambda", "lambda_", "the price of one query, such as 0.0015"),
    MethodParameter(
        "fixed", "--queries", "queries", "the number of queries per prompt, such as 20"
    ),
    MethodParameter(
        "missing-mass", "--epsilon", "epsilon", "the missing-mass threshold, such as 0.1"
    ),
)
METHODS = tuple(parameter.method for parameter in METHOD_PARAMETERS)
_PARAMETER_BY_METHOD = {parameter.method: parameter for parameter in METHOD_PARAMETERS}


def add_method_parameter_arguments(
    container: argparse.ArgumentParser | argparse._ActionsContainer,
) -> None:
    """Add ``--lambda``, ``--queries``, ``--epsilon`` and ``--average-budget`` to ``container``.

    ``container`` may be a mutually exclusive group, as `calibrate` uses.
    """
    container.add_argument(
        "--lambda",
        dest="lambda_",
        type=_arguments.non_negative_float,
        metavar="L",
        help="price of one query for --method cpq: stop once the estimated missing-mass "
        "decrease per extra query is at most L",
    )
    container.add_argument(
        "--queries",
        type=_arguments.positive_int,
        metavar="K",
        help="number of queries per prompt for --method fixed",
    )
    container.add_argument(
        "--epsilon",
        type=_arguments.probability,
        metavar="E",
        help="missing-mass threshold in [0, 1] for --method missing-mass: stop once the "
        "estimated missing mass is at most E",
    )
    container.add_argument(
        "--average-budget",
        type=_arguments.query_budget,
        metavar="B",
        help="target mean number of queries per prompt; tunes each method's threshold on "
        "calibration prompts instead of --lambda, --queries or --epsilon",
    )


def add_policy_limit_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the query limits, the stopping-statistic options and ``--estimator``."""
    parser.add_argument(
        "--min-queries",
        type=_arguments.positive_int,
        default=10,
        metavar="N",
        help="queries before the first stop check of cpq and missing-mass (default: %(default)s)",
    )
    parser.add_argument(
        "--max-queries",
        type=_arguments.positive_int,
        default=50,
        metavar="N",
        help="queries after which cpq and missing-mass stop, and the largest fixed query "
        "count that --average-budget may choose; at most the samples per prompt in the bank "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--bootstrap",
        type=_arguments.non_negative_int,
        default=20,
        metavar="H",
        help="bootstrap resamples of the cpq stopping statistic; 0 uses the raw statistic "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--derivative",
        choices=("bootstrap", "expected"),
        default="bootstrap",
        help="cpq stopping statistic: the average of --bootstrap random resamples, as the "
        "reference code does, or its exact expectation, with no random draws "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--estimator",
        choices=ESTIMATORS,
        default="smoothed",
        help="missing-mass estimator for stopping, scores and sets (default: %(default)s)",
    )


def check_policy_arguments(methods: Sequence[str], args: argparse.Namespace) -> None:
    """Check that the method parameters, limits and budget fit the chosen methods.

    Raises:
        UsageError: If a method lacks both its parameter and ``--average-budget``,
            a parameter is given for a method that was not chosen, a parameter
            is combined with ``--average-budget``, ``--min-queries`` exceeds
            ``--max-queries``, or the budget lies outside the query limits.
    """
    given = [
        parameter for parameter in METHOD_PARAMETERS if getattr(args, parameter.dest) is not None
    ]

    for parameter in given:
        if parameter.method not in methods:
            chosen = ", ".join(methods)
            raise UsageError(
                f"{parameter.flag} applies only to --method {parameter.method}, but the "
                f"chosen method is {chosen}; add --method {parameter.method} or remove "
                f"{parameter.flag}"
            )

    if args.average_budget is not None and given:
        raise UsageError(
            f"--average-budget cannot be combined with {given[0].flag}, because the budget "
            f"tunes the threshold that {given[0].flag} sets; remove one of them"
        )

    if args.average_budget is None:
        for method in methods:
            parameter = _PARAMETER_BY_METHOD[method]
            if getattr(args, parameter.dest) is None:
                raise UsageError(
                    f"--method {method} needs {parameter.flag} ({parameter.example}) or "
                    "--average-budget B (a target mean number of queries per prompt); add one"
                )

    if args.min_queries > args.max_queries:
        raise UsageError(
            f"--min-queries {args.min_queries} is greater than --max-queries "
            f"{args.max_queries}; lower --min-queries or raise --max-queries"
        )

    budget = args.average_budget
    if budget is not None and budget > args.max_queries:
        raise UsageError(
            f"--average-budget {budget:g} is above --max-queries {args.max_queries}; "
            "lower the budget or raise --max-queries"
        )
    threshold_methods = [method for method in methods if method != "fixed"]
    if budget is not None and threshold_methods and budget < args.min_queries:
        raise UsageError(
            f"--average-budget {budget:g} is below --min-queries {args.min_queries}, the "
            f"minimum number of queries of --method {threshold_methods[0]}; raise the budget "
            "or lower --min-queries"
        )


def build_policy(method: str, args: argparse.Namespace) -> ThresholdPolicy | FixedPolicy:
    """Build the policy of ``method`` from checked arguments.

    With ``--average-budget`` the threshold is 0 and the fixed policy makes
    ``--max-queries`` queries, so that the replay covers every count the
    tuning may choose.
    """
    tuned = args.average_budget is not None

    if method == "fixed":
        return FixedPolicy(queries=args.max_queries if tuned else args.queries)
    if method == "cpq":
        return DerivativePolicy(
            lambda_=0.0 if tuned else args.lambda_,
            min_queries=args.min_queries,
            max_queries=args.max_queries,
            bootstrap=args.bootstrap,
            derivative=args.derivative,
        )
    if method == "missing-mass":
        return MissingMassPolicy(
            epsilon=0.0 if tuned else args.epsilon,
            min_queries=args.min_queries,
            max_queries=args.max_queries,
            estimator=args.estimator,
        )
    raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
