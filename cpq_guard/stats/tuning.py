"""Tune a policy's threshold so that it spends a target average budget.

The price ``lambda`` of the derivative policy (and ``epsilon`` of the
missing-mass policy) is not set by hand: it is chosen on recorded histories
so that the mean number of queries there equals the budget ``B``.

Each history's number of queries is a non-increasing step function of the
threshold that changes only at the values its trajectory takes. So the mean
is a step function too, and a bisection over the sorted distinct trajectory
values finds the exact breakpoint; there is no numerical tolerance. The result
is the smallest threshold whose mean number of queries is at most ``B``, moved
to the middle of its step so that rounding cannot change the outcome.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict

from cpq_guard._validation import check_real
from cpq_guard.errors import BudgetOutOfRangeError, InvalidParameterError
from cpq_guard.stats.policies import FixedPolicy, Policy, ThresholdPolicy, stopping_times

__all__ = ["TuningResult", "tune_fixed_queries", "tune_threshold"]


class TuningResult(BaseModel):
    """A tuned policy and the budget it achieves on the tuning histories."""

    model_config = ConfigDict(frozen=True)

    # The discriminated union, not the base class: a field typed ThresholdPolicy
    # would serialise only the base fields and lose the kind and the threshold.
    policy: Policy
    mean_queries: float
    target_budget: float
    num_histories: int


def tune_threshold(
    policy: ThresholdPolicy, trajectories: np.ndarray, average_budget: float
) -> TuningResult:
    """Find the threshold whose mean number of queries is the target budget.

    Args:
        policy: Template policy; only its threshold is replaced.
        trajectories: Stopping statistics of the tuning histories, from
            `ThresholdPolicy.trajectory` with this policy's limits and
            settings, shape ``(n, max_queries - min_queries + 1)``.
        average_budget: Target mean number of queries per prompt, in
            ``[min_queries, max_queries]``.

    Returns:
        The tuned policy with the mean number of queries it makes on the
        tuning histories, which is at most ``average_budget`` and as close as
        the step function allows.

    Raises:
        BudgetOutOfRangeError: If the budget is outside the policy's limits.
        InvalidParameterError: If there are no trajectories or their width
            does not match the policy's limits.
    """
    budget = check_real(average_budget, "average_budget")
    low, high = policy.min_queries, policy.max_queries
    if not low <= budget <= high:
        raise BudgetOutOfRangeError(budget, low, high)

    trajectories = np.asarray(trajectories, dtype=np.float64)
    width = high - low + 1
    if trajectories.ndim != 2 or trajectories.shape[0] == 0 or trajectories.shape[1] != width:
        raise InvalidParameterError(
            "trajectories",
            trajectories.shape,
            f"expected a non-empty array of shape (n, {width}) for queries {low}..{high}, "
            f"got shape {trajectories.shape}; compute trajectories with the same policy limits",
        )

    def mean_queries(threshold: float) -> float:
        return float(stopping_times(trajectories, threshold, low, high).mean())

    # Candidate thresholds: the distinct statistic values, increasing. The mean
    # at a candidate holds until the next one, and it is max_queries below all.
    candidates = np.unique(trajectories)
    if budget >= high:
        # Every threshold below the smallest candidate spends max_queries; a
        # statistic of exactly 0 (one unanimous answer) still stops early.
        threshold = max(float(candidates[0]) / 2.0, 0.0)
    else:
        first, last = 0, len(candidates) - 1
        while first < last:
            middle = (first + last) // 2
            if mean_queries(float(candidates[middle])) <= budget:
                last = middle
            else:
                first = middle + 1
        upper = float(candidates[first + 1]) if first + 1 < len(candidates) else None
        value = float(candidates[first])
        threshold = value if upper is None else (value + upper) / 2.0

    tuned = policy.with_threshold(threshold)
    return TuningResult(
        policy=tuned,
        mean_queries=mean_queries(threshold),
        target_budget=budget,
        num_histories=trajectories.shape[0],
    )


def tune_fixed_queries(average_budget: float, max_queries: int | None = None) -> TuningResult:
    """Choose the fixed number of queries for a budget: the largest ``K <= B``.

    Raises:
        BudgetOutOfRangeError: If ``B < 1`` or ``B`` exceeds ``max_queries``.
    """
    budget = check_real(average_budget, "average_budget")
    upper = max_queries if max_queries is not None else math.inf
    if not 1 <= budget <= upper:
        raise BudgetOutOfRangeError(budget, 1, max_queries)

    queries = math.floor(budget)
    return TuningResult(
        policy=FixedPolicy(queries=queries),
        mean_queries=float(queries),
        target_budget=budget,
        num_histories=0,
    )
