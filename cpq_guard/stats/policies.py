"""Stopping policies: when to stop querying a model for one prompt.

A policy looks at the samples drawn so far and says whether to draw another.
Three are offered:

- `FixedPolicy`: exactly ``K`` queries.
- `MissingMassPolicy`: stop once the estimated missing mass is at most ``epsilon``.
- `DerivativePolicy`: stop once the estimated decrease of the missing mass per
  extra query is at most the price ``lambda``. This is the CPQ policy of
  Noorani et al., arXiv:2506.05497 (2025): with an average budget of ``B``
  queries, it spends them on the prompts whose missing mass still falls fast.

The two threshold policies never stop before ``min_queries`` and always stop at
``max_queries``. Between the two they compute a *stopping statistic* after every
sample and stop as soon as it is at most their threshold. Online use (the guard)
and offline replay (evaluation, tuning) call the same `ThresholdPolicy.statistic`
in the same order with the same generator, so both stop at the same sample.

Policies are frozen pydantic models, saved inside calibration files. The
union type `Policy` reads any of them back by their ``kind`` field.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cpq_guard.errors import InvalidParameterError
from cpq_guard.stats.derivative import bootstrap_derivative, expected_bootstrap_derivative
from cpq_guard.stats.frequencies import FrequencyCounter
from cpq_guard.stats.missing_mass import MissingMassEstimator, estimate_missing_mass

__all__ = [
    "DerivativePolicy",
    "FixedPolicy",
    "MissingMassPolicy",
    "Policy",
    "StopReason",
    "ThresholdPolicy",
    "stopping_times",
]

StopReason = Literal["fixed_queries", "max_queries", "missing_mass", "derivative"]
"""Why sampling stopped: the fixed count, the upper limit, or the threshold of a policy."""


class _PolicyModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class FixedPolicy(_PolicyModel):
    """Draw exactly ``queries`` samples for every prompt."""

    kind: Literal["fixed"] = "fixed"
    queries: int = Field(ge=1, description="Number of queries per prompt.")

    @property
    def min_queries(self) -> int:
        """Fewest queries the policy makes (equal to ``queries``)."""
        return self.queries

    @property
    def max_queries(self) -> int:
        """Most queries the policy makes (equal to ``queries``)."""
        return self.queries

    def should_stop(self, counter: FrequencyCounter, rng: np.random.Generator) -> StopReason | None:
        """Return ``"fixed_queries"`` once ``queries`` samples are drawn, else ``None``."""
        del rng  # the fixed policy draws nothing
        return "fixed_queries" if counter.total >= self.queries else None


class ThresholdPolicy(_PolicyModel):
    """A policy that stops once a per-sample statistic is at most a threshold.

    Subclasses define `statistic` and name their threshold field.
    """

    min_queries: int = Field(default=10, ge=1, description="Queries before the first stop check.")
    max_queries: int = Field(default=50, ge=1, description="Queries after which sampling stops.")

    @model_validator(mode="after")
    def _check_limits(self) -> ThresholdPolicy:
        if self.min_queries > self.max_queries:
            raise InvalidParameterError(
                "min_queries",
                self.min_queries,
                f"min_queries={self.min_queries} is greater than max_queries={self.max_queries}; "
                "lower min_queries or raise max_queries",
            )
        return self

    @property
    def threshold(self) -> float:
        """The value the statistic is compared against."""
        raise NotImplementedError

    @property
    def threshold_name(self) -> str:
        """Name of the threshold field as it appears in files and on the command line."""
        raise NotImplementedError

    @property
    def stop_reason(self) -> StopReason:
        """Reason reported when the statistic reaches the threshold."""
        raise NotImplementedError

    def with_threshold(self, value: float) -> ThresholdPolicy:
        """Return a copy of this policy with another threshold."""
        return self.model_validate({**self.model_dump(by_alias=True), self.threshold_name: value})

    def statistic(self, counter: FrequencyCounter, rng: np.random.Generator) -> float:
        """Compute the stopping statistic after ``counter.total`` samples."""
        raise NotImplementedError

    def should_stop(self, counter: FrequencyCounter, rng: np.random.Generator) -> StopReason | None:
        """Decide whether to stop after the samples in ``counter``.

        Computes the statistic only from ``min_queries`` samples on, and at most
        once per sample count, which keeps ``rng`` in step with `trajectory`.
        """
        total = counter.total
        if total < self.min_queries:
            return None
        if self.statistic(counter, rng) <= self.threshold:
            return self.stop_reason
        if total >= self.max_queries:
            return "max_queries"
        return None

    def trajectory(
        self, labels: Sequence[int] | np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """Compute the statistic after each of ``min_queries .. max_queries`` samples.

        Args:
            labels: Cluster labels of a recorded history, in sampling order, at
                least ``max_queries`` long.
            rng: Generator for randomised statistics; seeded by the caller.

        Returns:
            Array of shape ``(max_queries - min_queries + 1,)``; entry ``i`` is the
            statistic after ``min_queries + i`` samples.

        Raises:
            InvalidParameterError: If the history is shorter than ``max_queries``.
        """
        if len(labels) < self.max_queries:
            raise InvalidParameterError(
                "max_queries",
                self.max_queries,
                f"a history has {len(labels)} samples but max_queries={self.max_queries}; "
                "record more samples per prompt or lower max_queries",
            )

        counter = FrequencyCounter()
        values = np.empty(self.max_queries - self.min_queries + 1)
        for position, label in enumerate(labels[: self.max_queries]):
            counter.add(int(label))
            if position + 1 >= self.min_queries:
                values[position + 1 - self.min_queries] = self.statistic(counter, rng)
        return values


class MissingMassPolicy(ThresholdPolicy):
    """Stop once the estimated missing mass is at most ``epsilon``."""

    kind: Literal["missing-mass"] = "missing-mass"
    epsilon: float = Field(ge=0.0, le=1.0, description="Missing-mass threshold.")
    estimator: MissingMassEstimator = "smoothed"

    @property
    def threshold(self) -> float:
        return self.epsilon

    @property
    def threshold_name(self) -> str:
        return "epsilon"

    @property
    def stop_reason(self) -> StopReason:
        return "missing_mass"

    def statistic(self, counter: FrequencyCounter, rng: np.random.Generator) -> float:
        del rng  # the missing-mass estimate is deterministic
        return estimate_missing_mass(counter.frequencies, counter.total, self.estimator)


class DerivativePolicy(ThresholdPolicy):
    """Stop once the estimated missing-mass decrease per query is at most ``lambda``.

    The statistic is ``2 N_2 / T^2`` averaged over ``bootstrap`` resamples
    (``bootstrap = 0`` uses the raw value), or with ``derivative="expected"``
    the exact expectation of that average, which needs no random draws and
    costs far less CPU per sample. In files and on the command line the
    threshold is spelled ``lambda``; in Python it is ``lambda_``.
    """

    kind: Literal["derivative"] = "derivative"
    lambda_: float = Field(alias="lambda", ge=0.0, description="Price of one query.")
    bootstrap: int = Field(default=20, ge=0, description="Bootstrap resamples h; 0 for raw.")
    derivative: Literal["bootstrap", "expected"] = Field(
        default="bootstrap",
        description="'bootstrap' averages h random resamples, as the reference code does; "
        "'expected' uses the exact limit of that average, with no random draws.",
    )

    @property
    def threshold(self) -> float:
        return self.lambda_

    @property
    def threshold_name(self) -> str:
        return "lambda"

    @property
    def stop_reason(self) -> StopReason:
        return "derivative"

    def statistic(self, counter: FrequencyCounter, rng: np.random.Generator) -> float:
        if self.derivative == "expected":
            return expected_bootstrap_derivative(counter.frequencies, counter.total)
        return bootstrap_derivative(counter.counts, self.bootstrap, rng)


Policy = Annotated[FixedPolicy | MissingMassPolicy | DerivativePolicy, Field(discriminator="kind")]
"""Any stopping policy, read back from JSON by its ``kind`` field."""


def stopping_times(
    trajectories: np.ndarray, threshold: float, min_queries: int, max_queries: int
) -> np.ndarray:
    """Compute how many queries a threshold policy makes on recorded histories.

    Args:
        trajectories: Statistics from `ThresholdPolicy.trajectory`, one row per
            history, shape ``(n, max_queries - min_queries + 1)``.
        threshold: The policy's threshold.
        min_queries: The policy's lower limit.
        max_queries: The policy's upper limit.

    Returns:
        Integer array of shape ``(n,)``: the first sample count at which the
        statistic is at most ``threshold``, or ``max_queries`` if none is.
    """
    below = trajectories <= threshold
    first = np.argmax(below, axis=1)
    return np.where(below.any(axis=1), min_queries + first, max_queries).astype(np.int64)
