"""The guard's output: a calibrated answer set, or an abstention."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from cpq_guard.stats.policies import StopReason

__all__ = ["AnswerCluster", "GuardResult", "TokenUsage"]


class TokenUsage(BaseModel):
    """Token counts summed over model responses.

    Counts come from each response's ``usage_metadata``; responses without it add
    nothing, and ``responses_without_usage`` counts them.
    """

    model_config = ConfigDict(frozen=True)

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    responses_without_usage: int = 0

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
            responses_without_usage=self.responses_without_usage + other.responses_without_usage,
        )


class AnswerCluster(BaseModel):
    """One group of equivalent answers among the samples.

    Attributes:
        representative: The first answer seen in the cluster; ``None`` for the
            cluster of responses with no extractable answer.
        probability: Good-Turing estimate of the probability that the model
            answers in this cluster.
        count: Number of samples in the cluster.
        responses: The raw response texts of those samples, in sampling order.
    """

    model_config = ConfigDict(frozen=True)

    representative: str | None
    probability: float = Field(ge=0.0, le=1.0)
    count: int = Field(ge=1)
    responses: list[str]

    @property
    def is_no_answer(self) -> bool:
        """Whether this is the cluster of responses without an extractable answer."""
        return self.representative is None


class GuardResult(BaseModel):
    """The outcome of one guarded call.

    When ``abstained`` is false, ``answers`` is the calibrated set: over prompts
    like the calibration prompts, the correct answer is in it (or the guard
    abstains) with probability at least ``1 - alpha``. When ``abstained`` is
    true, the samples were too spread or too novel for any set to be trusted,
    and ``answers`` is empty, but ``clusters`` still lists the model's answers.

    Attributes:
        answers: Clusters in the set, most probable first.
        clusters: Every seen cluster, most probable first.
        abstained: Whether the guard abstained.
        missing_mass: Estimated probability of an answer not seen yet.
        num_queries: Samples the decision used.
        stop_reason: Why sampling stopped.
        alpha: Target miscoverage of the calibration.
        threshold: Calibrated conformal threshold ``tau``.
        usage: Tokens of every completed model call, used or not.
        discarded_queries: Calls that completed after the stopping point,
            concurrently with the decision; paid for but not used.
        cancelled_queries: Calls still in flight when sampling stopped, cancelled.
        retries: Failed attempts that were retried.
    """

    model_config = ConfigDict(frozen=True)

    answers: list[AnswerCluster]
    clusters: list[AnswerCluster]
    abstained: bool
    missing_mass: float = Field(ge=0.0, le=1.0)
    num_queries: int = Field(ge=0)
    stop_reason: StopReason
    alpha: float
    threshold: float
    usage: TokenUsage = Field(default_factory=TokenUsage)
    discarded_queries: int = 0
    cancelled_queries: int = 0
    retries: int = 0

    @property
    def best_answer(self) -> str | None:
        """The most probable answer in the set, or ``None`` when abstained or empty."""
        for cluster in self.answers:
            if cluster.representative is not None:
                return cluster.representative
        return None

    @property
    def is_single_answer(self) -> bool:
        """Whether the guard answered with exactly one answer."""
        return not self.abstained and len(self.answers) == 1

    @property
    def set_size(self) -> int:
        """Number of answers in the set; 0 when abstained."""
        return 0 if self.abstained else len(self.answers)

    @property
    def coverage_target(self) -> float:
        """The calibrated coverage level ``1 - alpha``."""
        return 1.0 - self.alpha
