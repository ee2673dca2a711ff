"""Evaluate CPQ and its baselines on recorded sample histories.

Protocol: for each of ``splits`` seeded random splits, a fraction of the
prompts calibrates and the rest tests. In a split, the policy decides how many
of each prompt's recorded samples are used, the calibration part sets the
conformal threshold, and the test part is predicted and scored.

When a target average budget is given, the threshold of the policy must be
fixed before the conformal scores are computed, or the coverage guarantee is
no longer exact. So, for a threshold policy, the calibration part is divided
at random into two halves: the first ``floor(n_cal / 2)`` of a shuffled order
tune the policy and the rest set ``tau``. The test part is untouched. A fixed
policy takes ``K = floor(B)`` without data, so its whole calibration part
sets ``tau``.

Each prompt's samples are replayed through a policy once per policy setting,
not once per split: the stopping statistic of every sample count is stored, and
a threshold then gives every prompt's stopping point by a vectorised search.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from cpq_guard._validation import check_alpha, check_int, check_real
from cpq_guard.errors import InvalidParameterError
from cpq_guard.histories import History, StopEstimate
from cpq_guard.stats.conformal import (
    DEFAULT_TIE_JITTER,
    jittered_conformal_quantile,
    missing_mass_score,
    missing_mass_set,
)
from cpq_guard.stats.cumulative import cumulative_score, cumulative_set
from cpq_guard.stats.missing_mass import MissingMassEstimator
from cpq_guard.stats.policies import FixedPolicy, ThresholdPolicy, stopping_times
from cpq_guard.stats.tuning import tune_fixed_queries, tune_threshold

__all__ = [
    "METRIC_NAMES",
    "EvaluationRow",
    "Mapping",
    "MetricSummary",
    "PolicyReplay",
    "evaluate",
    "nonconformity_score",
    "split_metrics",
]

Mapping = Literal["missing-mass", "cumulative"]
"""How samples become a set: CPQ's missing-mass scores, or the cumulative baseline."""

METRIC_NAMES = (
    "coverage",
    "abstention_rate",
    "informative_coverage",
    "mean_set_size",
    "mean_queries",
)


class MetricSummary(BaseModel):
    """Mean and standard deviation of one metric over splits."""

    model_config = ConfigDict(frozen=True)

    mean: float
    std: float


class EvaluationRow(BaseModel):
    """Metrics of one (alpha, method, mapping) over all splits.

    Set size counts an abstention as size 0; coverage counts it as covered.
    ``policy_threshold`` is the mean tuned threshold when a budget was tuned.
    """

    model_config = ConfigDict(frozen=True)

    alpha: float
    method: str
    mapping: Mapping
    coverage: MetricSummary
    abstention_rate: MetricSummary
    informative_coverage: MetricSummary
    mean_set_size: MetricSummary
    mean_queries: MetricSummary
    tau: MetricSummary
    policy_threshold: MetricSummary | None = None
    splits: int = Field(ge=1)


@dataclass
class PolicyReplay:
    """A policy's stopping statistics on every history, computed once.

    Attributes:
        policy: The template policy (its threshold is replaced when tuning).
        trajectories: For threshold policies, shape ``(n, max - min + 1)``;
            ``None`` for a fixed policy.
    """

    policy: ThresholdPolicy | FixedPolicy
    trajectories: np.ndarray | None

    @classmethod
    def compute(
        cls, policy: ThresholdPolicy | FixedPolicy, histories: Sequence[History], seed: int
    ) -> PolicyReplay:
        """Replay every history through ``policy``; history ``i`` uses generator ``[seed, i]``."""
        _check_history_lengths(histories, policy.max_queries)
        if isinstance(policy, FixedPolicy):
            return cls(policy, None)

        rows = [
            policy.trajectory(history.labels, np.random.default_rng([seed, index]))
            for index, history in enumerate(histories)
        ]
        return cls(policy, np.vstack(rows))

    def stopping_times(
        self, indices: np.ndarray, policy: ThresholdPolicy | FixedPolicy
    ) -> np.ndarray:
        """Return the number of queries ``policy`` makes on the histories at ``indices``."""
        if isinstance(policy, FixedPolicy):
            return np.full(indices.size, policy.queries, dtype=np.int64)
        assert self.trajectories is not None
        return stopping_times(
            self.trajectories[indices], policy.threshold, policy.min_queries, policy.max_queries
        )

    def tune(self, indices: np.ndarray, average_budget: float) -> ThresholdPolicy | FixedPolicy:
        """Tune the policy's threshold on the histories at ``indices``."""
        if isinstance(self.policy, FixedPolicy):
            return tune_fixed_queries(average_budget, self.policy.max_queries).policy
        assert self.trajectories is not None
        return tune_threshold(self.policy, self.trajectories[indices], average_budget).policy


def _check_history_lengths(histories: Sequence[History], max_queries: int) -> None:
    if not histories:
        raise InvalidParameterError("histories", 0, "no histories to evaluate; the bank is empty")
    shortest = min(range(len(histories)), key=lambda index: len(histories[index]))
    if len(histories[shortest]) < max_queries:
        history = histories[shortest]
        raise InvalidParameterError(
            "max_queries",
            max_queries,
            f"prompt {history.prompt_id or shortest!r} has {len(history)} recorded samples, "
            f"fewer than max_queries={max_queries}; lower max_queries (or queries) to at most "
            f"{len(history)} or record more samples",
        )


def nonconformity_score(estimate: StopEstimate, mapping: Mapping) -> float:
    """Compute the nonconformity score of a calibration prompt under a mapping, before jitter."""
    if mapping == "cumulative":
        return cumulative_score(
            estimate.probabilities, estimate.missing_mass, estimate.reference_clusters
        )
    return missing_mass_score(
        estimate.probabilities, estimate.missing_mass, estimate.reference_clusters
    )


def split_metrics(
    test_estimates: Sequence[StopEstimate],
    tau: float,
    mapping: Mapping,
    rng: np.random.Generator,
    jitter: float,
) -> dict[str, float]:
    """Predict every test prompt at threshold ``tau`` and average the metrics."""
    covered = np.zeros(len(test_estimates), dtype=bool)
    abstained = np.zeros(len(test_estimates), dtype=bool)
    sizes = np.zeros(len(test_estimates))
    for position, estimate in enumerate(test_estimates):
        if mapping == "cumulative":
            abstain, members = cumulative_set(estimate.probabilities, estimate.missing_mass, tau)
        else:
            abstain, members = missing_mass_set(
                estimate.probabilities, estimate.missing_mass, tau, rng, jitter
            )
        abstained[position] = abstain
        sizes[position] = 0 if abstain else members.size
        covered[position] = abstain or bool(
            set(members.tolist()).intersection(estimate.reference_clusters)
        )

    return {
        "coverage": float(covered.mean()),
        "abstention_rate": float(abstained.mean()),
        "informative_coverage": float((covered & ~abstained).mean()),
        "mean_set_size": float(sizes.mean()),
        "mean_queries": float(np.mean([estimate.num_queries for estimate in test_estimates])),
    }


def evaluate(
    histories: Sequence[History],
    alphas: Sequence[float],
    replay: PolicyReplay,
    *,
    method: str,
    mapping: Mapping = "missing-mass",
    average_budget: float | None = None,
    splits: int = 10,
    calibration_fraction: float = 0.5,
    seed: int = 42,
    estimator: MissingMassEstimator = "smoothed",
    jitter: float = DEFAULT_TIE_JITTER,
) -> list[EvaluationRow]:
    """Run the split-conformal protocol for one policy and mapping over several alphas.

    Args:
        histories: Recorded histories, each at least ``max_queries`` long.
        alphas: Miscoverage levels, each in (0, 1).
        replay: The policy's precomputed statistics on ``histories``.
        method: Name reported in the rows (``"cpq"``, ``"fixed"``, ...).
        mapping: How samples become a set.
        average_budget: If given, tune the policy's threshold in every split
            on half of the calibration part, as the module docstring describes.
        splits: Number of random calibration/test splits.
        calibration_fraction: Fraction of prompts in the calibration part.
        seed: Seeds the splits and the tie-breaking noise.
        estimator: Missing-mass estimator used for scores and sets.
        jitter: Width of the tie-breaking noise of the missing-mass mapping.

    Returns:
        One row per alpha, in the order given.
    """
    alphas = [check_alpha(alpha) for alpha in alphas]
    splits = check_int(splits, "splits", minimum=1)
    fraction = check_real(calibration_fraction, "calibration_fraction")
    if not 0.0 < fraction < 1.0:
        raise InvalidParameterError(
            "calibration_fraction",
            calibration_fraction,
            f"calibration_fraction={calibration_fraction} must lie strictly between 0 and 1",
        )

    n = len(histories)
    n_calibration = round(fraction * n)
    if not 0 < n_calibration < n:
        raise InvalidParameterError(
            "calibration_fraction",
            calibration_fraction,
            f"calibration_fraction={calibration_fraction} leaves an empty calibration or "
            f"test part for {n} prompts; use more prompts or another fraction",
        )

    per_alpha: list[list[dict[str, float]]] = [[] for _ in alphas]
    for split in range(splits):
        order = np.random.default_rng([seed, split]).permutation(n)
        calibration, test = order[:n_calibration], order[n_calibration:]

        policy = replay.policy
        if average_budget is not None and isinstance(policy, FixedPolicy):
            # K = floor(B) needs no tuning prompts, so the whole part sets tau.
            policy = replay.tune(calibration[:0], average_budget)
        elif average_budget is not None:
            tuning = calibration[: n_calibration // 2]
            calibration = calibration[n_calibration // 2 :]
            policy = replay.tune(tuning, average_budget)

        calibration_estimates = _estimates(histories, replay, calibration, policy, estimator)
        test_estimates = _estimates(histories, replay, test, policy, estimator)
        scores = np.array(
            [nonconformity_score(estimate, mapping) for estimate in calibration_estimates]
        )

        for position, alpha in enumerate(alphas):
            rng = np.random.default_rng([seed, split, position, 1])
            jitter_used = jitter if mapping == "missing-mass" else 0.0
            tau = jittered_conformal_quantile(scores, alpha, jitter_used, rng)
            metrics = split_metrics(test_estimates, tau, mapping, rng, jitter_used)
            metrics["tau"] = tau
            if isinstance(policy, ThresholdPolicy):
                metrics["policy_threshold"] = policy.threshold
            per_alpha[position].append(metrics)

    return [
        _summarise(alpha, method, mapping, rows, splits) for alpha, rows in zip(alphas, per_alpha)
    ]


def _estimates(
    histories: Sequence[History],
    replay: PolicyReplay,
    indices: np.ndarray,
    policy: ThresholdPolicy | FixedPolicy,
    estimator: MissingMassEstimator,
) -> list[StopEstimate]:
    times = replay.stopping_times(indices, policy)
    return [histories[index].estimate(int(time), estimator) for index, time in zip(indices, times)]


def _summarise(
    alpha: float, method: str, mapping: Mapping, rows: list[dict[str, float]], splits: int
) -> EvaluationRow:
    def summary(name: str) -> MetricSummary:
        values = np.array([row[name] for row in rows])
        return MetricSummary(mean=float(values.mean()), std=float(values.std()))

    threshold = summary("policy_threshold") if "policy_threshold" in rows[0] else None
    return EvaluationRow(
        alpha=alpha,
        method=method,
        mapping=mapping,
        **{name: summary(name) for name in METRIC_NAMES},
        tau=summary("tau"),
        policy_threshold=threshold,
        splits=splits,
    )
