"""Good-Turing probability estimates of the seen clusters.

Each seen cluster with count ``r`` gets the adjusted count
``r* = (r + 1) N_{r+1} / N_r`` when ``N_{r+1} > 0`` and ``r* = r`` otherwise.
The adjusted counts are normalised to share the seen mass ``1 - M_hat``, and
the unseen part gets ``M_hat``, so all estimates sum to one. This is the rule
of the reference code of Noorani et al., arXiv:2506.05497 (2025).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from cpq_guard.stats.frequencies import frequencies_of_counts
from cpq_guard.stats.missing_mass import MissingMassEstimator, estimate_missing_mass

__all__ = ["cluster_probabilities", "estimate_from_counts"]


def cluster_probabilities(
    counts: np.ndarray, frequencies: Mapping[int, int], missing_mass: float
) -> np.ndarray:
    """Estimate the probability of each seen cluster.

    Args:
        counts: Samples per cluster, shape ``(m,)``, all positive.
        frequencies: Frequency of frequencies ``{r: N_r}`` of ``counts``.
        missing_mass: Estimated probability of an unseen cluster, in ``[0, 1]``.

    Returns:
        Probabilities, shape ``(m,)``, summing to ``1 - missing_mass``
        (an empty array when nothing has been seen).
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.size == 0:
        return counts

    adjusted = np.empty_like(counts)
    for r in np.unique(counts):
        r_int = int(r)
        following = frequencies.get(r_int + 1, 0)
        value = (r_int + 1) * following / frequencies[r_int] if following else r
        adjusted[counts == r] = value

    return adjusted / adjusted.sum() * (1.0 - missing_mass)


def estimate_from_counts(
    counts: np.ndarray, estimator: MissingMassEstimator
) -> tuple[float, np.ndarray]:
    """Estimate the missing mass and the seen clusters' probabilities from counts.

    Returns:
        ``(missing_mass, probabilities)``, where ``probabilities`` has one entry per
        cluster with a positive count, in the order of ``counts``.
    """
    counts = np.asarray(counts, dtype=np.int64)
    counts = counts[counts > 0]
    frequencies = frequencies_of_counts(counts)
    missing_mass = estimate_missing_mass(frequencies, int(counts.sum()), estimator)
    return missing_mass, cluster_probabilities(counts, frequencies, missing_mass)
