"""One guarded call's samples, stopping decision and final set.

`SamplingSession` is the part of the guard that does not talk to a model: it
takes response texts in sampling order, extracts and clusters their answers,
updates the frequency counts, asks the calibrated policy whether to stop, and
finally builds the calibrated set. The sync and async paths of the guard feed
it the same way, so they decide alike on the same samples.
"""

from __future__ import annotations

import numpy as np

from cpq_guard.answers import Clusterer, Equivalence
from cpq_guard.calibration import Calibration
from cpq_guard.errors import ExtractionError
from cpq_guard.extractors import AnswerExtractor
from cpq_guard.result import AnswerCluster, GuardResult, TokenUsage
from cpq_guard.stats.conformal import missing_mass_set
from cpq_guard.stats.cumulative import cumulative_set
from cpq_guard.stats.frequencies import FrequencyCounter
from cpq_guard.stats.policies import StopReason
from cpq_guard.stats.probabilities import estimate_from_counts

__all__ = ["SamplingSession"]


class SamplingSession:
    """Samples of one guarded call, in order, and the decision they lead to.

    Args:
        calibration: Fixes the policy, estimator, mapping, jitter and ``tau``.
        extractor: Turns a response text into an answer.
        equivalence: Groups answers into clusters.
        rng: Drives the policy's bootstrap and the tie-breaking jitter.
    """

    def __init__(
        self,
        calibration: Calibration,
        extractor: AnswerExtractor,
        equivalence: Equivalence,
        rng: np.random.Generator,
    ) -> None:
        self.calibration = calibration
        self.policy = calibration.policy
        self.extractor = extractor
        self.rng = rng
        self._clusterer = Clusterer(equivalence)
        self._counter = FrequencyCounter()
        self._responses: list[str] = []
        self._usage = TokenUsage()
        self.stop_reason: StopReason | None = None

    @property
    def num_samples(self) -> int:
        """Samples added so far."""
        return self._counter.total

    @property
    def max_queries(self) -> int:
        """Most samples the policy will take."""
        return self.policy.max_queries

    def add(self, text: str, usage: TokenUsage) -> StopReason | None:
        """Add the next sample in order and return the stop reason once the policy stops.

        Raises:
            ExtractionError: If the extractor raises on ``text``.
            RuntimeError: If called after the policy has stopped.
        """
        if self.stop_reason is not None:
            raise RuntimeError("the sampling session has already stopped; start a new one")

        try:
            answer = self.extractor(text)
        except Exception as exc:
            raise ExtractionError(
                f"answer extractor {self.extractor.name!r} raised {type(exc).__name__}: {exc} "
                f"on sample {self.num_samples + 1}; make it return None for responses "
                "without an answer"
            ) from exc

        label = self._clusterer.add(answer)
        self._counter.add(label)
        self._responses.append(text)
        self._usage = self._usage + usage
        self.stop_reason = self.policy.should_stop(self._counter, self.rng)
        return self.stop_reason

    def result(
        self,
        *,
        extra_usage: TokenUsage | None = None,
        discarded_queries: int = 0,
        cancelled_queries: int = 0,
        retries: int = 0,
    ) -> GuardResult:
        """Build the calibrated set from the samples added so far.

        Args:
            extra_usage: Tokens of completed calls that the decision did not use.
            discarded_queries: Number of those calls.
            cancelled_queries: Calls cancelled while in flight.
            retries: Failed attempts that were retried.
        """
        if self.stop_reason is None:
            raise RuntimeError(
                f"the policy has not stopped after {self.num_samples} samples; add more samples"
            )

        calibration = self.calibration
        counts = self._counter.counts
        missing_mass, probabilities = estimate_from_counts(counts, calibration.estimator)
        if calibration.mapping == "cumulative":
            abstained, members = cumulative_set(probabilities, missing_mass, calibration.tau)
        else:
            abstained, members = missing_mass_set(
                probabilities, missing_mass, calibration.tau, self.rng, calibration.tie_jitter
            )

        clusters = self._clusters(probabilities)
        # Good-Turing can give clusters of different counts the same probability,
        # so the larger count ranks first among equals.
        ranked = sorted(
            range(len(clusters)), key=lambda label: (-probabilities[label], -clusters[label].count)
        )
        member_set = set(members.tolist())
        usage = self._usage + (extra_usage or TokenUsage())
        return GuardResult(
            answers=[clusters[label] for label in ranked if label in member_set],
            clusters=[clusters[label] for label in ranked],
            abstained=bool(abstained),
            missing_mass=float(missing_mass),
            num_queries=self.num_samples,
            stop_reason=self.stop_reason,
            alpha=calibration.alpha,
            threshold=calibration.tau,
            usage=usage,
            discarded_queries=discarded_queries,
            cancelled_queries=cancelled_queries,
            retries=retries,
        )

    def _clusters(self, probabilities: np.ndarray) -> list[AnswerCluster]:
        responses: list[list[str]] = [[] for _ in self._clusterer.representatives]
        for label, text in zip(self._clusterer.labels, self._responses):
            responses[label].append(text)
        return [
            AnswerCluster(
                representative=representative,
                probability=float(min(max(probabilities[label], 0.0), 1.0)),
                count=len(responses[label]),
                responses=responses[label],
            )
            for label, representative in enumerate(self._clusterer.representatives)
        ]
