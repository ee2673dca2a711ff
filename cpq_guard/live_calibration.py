"""Calibrate a guard against a live model: record samples, tune, set ``tau``.

`calibrate` and `acalibrate` record ``max_queries`` samples of every
calibration prompt into a sample bank, then compute the calibration from the
bank exactly as ``cpq-guard calibrate --bank`` does. Keeping the bank means a
later recalibration (another alpha, budget or mapping) costs no queries: pass
the same ``bank`` path and the recorded prompts are not queried again.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig

from cpq_guard._validation import (
    check_alpha,
    check_int,
    check_non_negative,
    check_query_limits,
)
from cpq_guard.answers import Equivalence, get_equivalence
from cpq_guard.calibration import Calibration, calibrate_bank, check_calibration_settings
from cpq_guard.errors import InvalidParameterError, InvalidTypeError
from cpq_guard.evaluation import Mapping
from cpq_guard.extractors import as_extractor
from cpq_guard.recording import arecord_bank
from cpq_guard.retry import RetryPolicy
from cpq_guard.stats.conformal import DEFAULT_TIE_JITTER
from cpq_guard.stats.missing_mass import MissingMassEstimator
from cpq_guard.stats.policies import DerivativePolicy, FixedPolicy, MissingMassPolicy

__all__ = ["acalibrate", "calibrate"]


async def acalibrate(
    model: Runnable,
    prompts: Sequence[str],
    references: Sequence[Sequence[str] | str],
    *,
    alpha: float,
    average_budget: float | None = None,
    lambda_: float | None = None,
    policy: FixedPolicy | MissingMassPolicy | DerivativePolicy | None = None,
    min_queries: int = 10,
    max_queries: int = 50,
    bootstrap: int = 20,
    extractor: Any = None,
    equivalence: Equivalence | str = "normalized",
    mapping: Mapping = "missing-mass",
    estimator: MissingMassEstimator = "smoothed",
    tie_jitter: float = DEFAULT_TIE_JITTER,
    tuning_fraction: float = 0.5,
    bank: str | Path | None = None,
    ids: Sequence[str] | None = None,
    max_concurrency: int = 8,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
    seed: int = 0,
    progress: bool = False,
    config: RunnableConfig | None = None,
) -> Calibration:
    """Record a model's samples on labelled prompts and calibrate a guard.

    The policy is the derivative (CPQ) policy with ``min_queries``,
    ``max_queries`` and ``bootstrap``, and a price ``lambda_`` that is either
    given or tuned to ``average_budget`` on a random ``tuning_fraction`` of
    the prompts, disjoint from the prompts that set ``tau``. Pass ``policy``
    to use a fixed or missing-mass policy instead (with ``average_budget``,
    its threshold is tuned).

    Args:
        model: The chat model to guard.
        prompts: Calibration prompts, exchangeable with the prompts the guard will see.
        references: Reference answer(s) of each prompt.
        alpha: Target miscoverage, in (0, 1).
        average_budget: Target mean queries per prompt; tunes the policy.
        lambda_: Price of one query for the derivative policy, instead of a budget.
        policy: A policy to use instead of the derivative policy.
        min_queries: Fewest queries per prompt.
        max_queries: Most queries per prompt; also the samples recorded per prompt.
        bootstrap: Bootstrap resamples of the derivative estimate.
        extractor: Answer extractor (name, object, parser or function).
        equivalence: Answer equivalence (name or object).
        mapping: ``"missing-mass"`` (CPQ) or ``"cumulative"`` (baseline).
        estimator: Missing-mass estimator.
        tie_jitter: Width of the tie-breaking noise.
        tuning_fraction: Share of the prompts that tune the policy.
        bank: Sample bank file to record into and resume from; a temporary
            file when omitted.
        ids: Bank ids of the prompts; derived from the prompt text by default.
        max_concurrency: Model calls in flight at once while recording.
        retry: How transient model failures are retried.
        timeout: Seconds allowed per model call attempt.
        seed: Seeds the tuning split, the bootstrap and the jitter.
        progress: Show a progress bar while recording.
        config: Runnable config (callbacks, tags) for the model calls.

    Every argument is checked before the first model call, so a setting that
    cannot work costs no queries.

    Raises:
        InvalidParameterError: For invalid or conflicting arguments.
        InvalidTypeError: If an argument has the wrong type.
        InsufficientCalibrationError: If too few prompts remain to set ``tau``.
        BudgetOutOfRangeError: If the budget is outside ``[min_queries, max_queries]``.
        ModelQueryError: If a model query fails permanently; the prompts
            finished before it stay in ``bank``.
    """
    check_alpha(alpha)
    if references is None or len(prompts) != len(references):
        count = "no" if references is None else len(references)
        raise InvalidParameterError(
            "references",
            count,
            f"got {len(prompts)} prompts but {count} references; pass one per prompt",
        )
    chosen = _choose_policy(policy, lambda_, average_budget, min_queries, max_queries, bootstrap)
    answer_extractor = as_extractor(extractor)
    answer_equivalence = (
        get_equivalence(equivalence) if isinstance(equivalence, str) else equivalence
    )
    if not isinstance(answer_equivalence, Equivalence):
        raise InvalidTypeError(
            "equivalence must be a built-in name or an object with a 'name' attribute and "
            f"an 'equivalent(a, b)' method, got {type(equivalence).__name__}"
        )
    check_calibration_settings(
        len(prompts),
        alpha=alpha,
        policy=chosen,
        average_budget=average_budget,
        tuning_fraction=tuning_fraction,
        mapping=mapping,
        estimator=estimator,
        tie_jitter=tie_jitter,
        seed=seed,
    )
    with tempfile.TemporaryDirectory(prefix="cpq-guard-") as scratch:
        bank_path = Path(bank) if bank is not None else Path(scratch) / "bank.jsonl"
        records = await arecord_bank(
            model,
            prompts,
            references,
            bank_path,
            samples_per_prompt=chosen.max_queries,
            ids=ids,
            max_concurrency=max_concurrency,
            retry=retry,
            timeout=timeout,
            progress=progress,
            config=config,
        )

    return calibrate_bank(
        records,
        alpha=alpha,
        policy=chosen,
        extractor=answer_extractor,
        equivalence=answer_equivalence,
        average_budget=average_budget,
        tuning_fraction=tuning_fraction,
        mapping=mapping,
        estimator=estimator,
        tie_jitter=tie_jitter,
        seed=seed,
    )


def calibrate(
    model: Runnable,
    prompts: Sequence[str],
    references: Sequence[Sequence[str] | str],
    **kwargs: Any,
) -> Calibration:
    """Record and calibrate from synchronous code; see `acalibrate` for the arguments.

    Raises:
        RuntimeError: If called from a running event loop; await `acalibrate` there.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(acalibrate(model, prompts, references, **kwargs))
    raise RuntimeError("calibrate() was called from a running event loop; await acalibrate()")


def _choose_policy(
    policy: FixedPolicy | MissingMassPolicy | DerivativePolicy | None,
    lambda_: float | None,
    average_budget: float | None,
    min_queries: int,
    max_queries: int,
    bootstrap: int,
) -> FixedPolicy | MissingMassPolicy | DerivativePolicy:
    if policy is not None:
        if not isinstance(policy, (FixedPolicy, MissingMassPolicy, DerivativePolicy)):
            raise InvalidTypeError(
                "policy must be a FixedPolicy, MissingMassPolicy or DerivativePolicy, "
                f"got {type(policy).__name__}"
            )
        if lambda_ is not None:
            raise InvalidParameterError(
                "lambda_", lambda_, "pass either policy or lambda_, not both"
            )
        return policy

    if (lambda_ is None) == (average_budget is None):
        raise InvalidParameterError(
            "average_budget",
            average_budget,
            "pass exactly one of average_budget (to tune lambda) and lambda_ (to fix it)",
        )
    low, high = check_query_limits(min_queries, max_queries)
    resamples = check_int(bootstrap, "bootstrap", minimum=0)
    price = 0.0 if lambda_ is None else check_non_negative(lambda_, "lambda_")
    return DerivativePolicy(lambda_=price, min_queries=low, max_queries=high, bootstrap=resamples)
