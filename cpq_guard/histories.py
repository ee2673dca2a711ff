"""Recorded sample histories as cluster labels, and the estimates at a stopping point.

A `History` is one prompt's recorded samples reduced to what the statistics
read: the cluster label of each sample, in sampling order, and the labels of
the clusters that match a reference answer. Labels follow first appearance
(0, 1, 2, ...), so the clusters seen after ``T`` samples are exactly the
labels below ``labels[:T].max() + 1``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from cpq_guard.answers import Clusterer, Equivalence
from cpq_guard.errors import ExtractionError
from cpq_guard.stats.missing_mass import MissingMassEstimator
from cpq_guard.stats.probabilities import estimate_from_counts

if TYPE_CHECKING:
    from cpq_guard.banks import BankRecord

__all__ = ["History", "ReferenceMatch", "StopEstimate", "histories_from_records"]

ReferenceMatch = Literal["equivalence", "representative"]
"""How a reference answer is matched to a cluster.

``"equivalence"`` matches every cluster whose answers are equivalent to the
reference. ``"representative"`` matches only clusters whose first raw answer
equals the reference after ``strip()``; this reproduces the reference code of
Noorani et al. (arXiv:2506.05497), which misses references that differ from
the first answer of their cluster only by normalisation (``"1."`` and ``"1"``).
"""


@dataclass(frozen=True)
class StopEstimate:
    """Estimates after the first ``num_queries`` samples of a history.

    Attributes:
        num_queries: Number of samples ``T`` used.
        missing_mass: Estimated probability of an unseen answer.
        probabilities: Estimated probability of each seen cluster, indexed by label.
        reference_clusters: Labels of the seen clusters that match a reference.
    """

    num_queries: int
    missing_mass: float
    probabilities: np.ndarray
    reference_clusters: tuple[int, ...]


@dataclass(frozen=True)
class History:
    """One prompt's recorded samples as cluster labels.

    Attributes:
        labels: Cluster label of each sample, in sampling order, shape ``(T_max,)``.
        reference_labels: Labels of the clusters matching a reference answer
            anywhere in the history.
        prompt_id: Identifier of the prompt in its sample bank.
    """

    labels: np.ndarray
    reference_labels: tuple[int, ...]
    prompt_id: str = ""
    _cache: dict[tuple[int, str], StopEstimate] = field(
        default_factory=dict, repr=False, compare=False
    )

    @classmethod
    def from_answers(
        cls,
        answers: Sequence[str | None],
        references: Iterable[str],
        equivalence: Equivalence,
        prompt_id: str = "",
        reference_match: ReferenceMatch = "equivalence",
    ) -> History:
        """Cluster ``answers`` in order and locate the references among the clusters."""
        clusterer = Clusterer(equivalence)
        labels = np.fromiter((clusterer.add(answer) for answer in answers), dtype=np.int64)

        if reference_match == "representative":
            wanted = {reference.strip() for reference in references}
            matches = {
                label
                for label, representative in enumerate(clusterer.representatives)
                if representative is not None and representative.strip() in wanted
            }
        else:
            matches = {clusterer.find(reference) for reference in references}
        reference_labels = tuple(sorted(label for label in matches if label is not None))
        return cls(labels=labels, reference_labels=reference_labels, prompt_id=prompt_id)

    def __len__(self) -> int:
        return int(self.labels.size)

    def estimate(self, num_queries: int, estimator: MissingMassEstimator) -> StopEstimate:
        """Estimate the missing mass and cluster probabilities after ``num_queries`` samples.

        Results are cached per ``(num_queries, estimator)`` because evaluation needs
        the same stopping point in every split.
        """
        key = (num_queries, estimator)
        cached = self._cache.get(key)
        if cached is not None:
            return cached

        prefix = self.labels[:num_queries]
        counts = np.bincount(prefix)
        missing_mass, probabilities = estimate_from_counts(counts, estimator)
        seen = counts.size
        references = tuple(label for label in self.reference_labels if label < seen)
        estimate = StopEstimate(num_queries, missing_mass, probabilities, references)
        self._cache[key] = estimate
        return estimate


def histories_from_records(
    records: Sequence[BankRecord],
    equivalence: Equivalence,
    *,
    extract: Callable[[str], str | None] | None = None,
    reference_match: ReferenceMatch = "equivalence",
) -> list[History]:
    """Convert sample bank records into histories.

    Args:
        records: Sample bank records with their reference answers.
        equivalence: Groups answers into clusters.
        extract: Turns a sample's text into an answer (``None`` for no answer);
            the whole text is the answer when omitted.
        reference_match: How references are matched to clusters.

    Raises:
        ExtractionError: If ``extract`` raises on a sample.
    """
    histories = []
    for record in records:
        texts = [sample.text for sample in record.samples]
        if extract is None:
            answers: list[str | None] = list(texts)
        else:
            answers = [
                _extract(extract, text, record.id, number)
                for number, text in enumerate(texts, start=1)
            ]
        histories.append(
            History.from_answers(
                answers,
                record.references,
                equivalence,
                prompt_id=record.id,
                reference_match=reference_match,
            )
        )
    return histories


def _extract(
    extract: Callable[[str], str | None], text: str, record_id: str, number: int
) -> str | None:
    try:
        return extract(text)
    except Exception as exc:
        name = getattr(extract, "name", repr(extract))
        raise ExtractionError(
            f"answer extractor {name!r} raised {type(exc).__name__}: {exc} on sample {number} "
            f"of prompt {record_id!r}; make it return None for responses without an answer"
        ) from exc
