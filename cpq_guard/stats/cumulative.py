"""The cumulative mapping: a simpler, valid but less informative baseline.

For a level ``c`` in [0, 1], the set abstains when ``M_hat >= 1 - c``;
otherwise it takes the seen clusters in order of decreasing probability while
the probability mass before each one is at most ``c``. The sets grow with
``c``, so the smallest ``c`` that covers a prompt is its nonconformity score,
and the split-conformal quantile of those scores gives a valid ``c``.

The reference code of Noorani et al., arXiv:2506.05497 (2025) instead scans
``c`` on a grid of step 0.001 and takes the first value whose empirical
calibration coverage reaches ``1 - alpha``. That is the ``ceil(n (1 - alpha))``
-th score rounded up to the grid, slightly below the finite-sample-valid
``ceil((n + 1)(1 - alpha))``-th score used here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["cumulative_score", "cumulative_set"]


def _ranked_mass_before(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-probabilities, kind="stable")
    before = np.concatenate(([0.0], np.cumsum(probabilities[order])[:-1]))
    return order, before


def cumulative_score(
    probabilities: np.ndarray, missing_mass: float, reference_clusters: Sequence[int]
) -> float:
    """Compute the smallest level ``c`` whose cumulative set covers the reference.

    Args:
        probabilities: Estimated probability of each seen cluster, shape ``(m,)``.
        missing_mass: Estimated probability of an unseen answer.
        reference_clusters: Indices of the seen clusters that match a reference answer.

    Returns:
        ``min(1 - M_hat, mass ranked before the best reference cluster)``, in [0, 1].
    """
    abstain_level = 1.0 - missing_mass
    if len(reference_clusters) == 0:
        return abstain_level

    probabilities = np.asarray(probabilities, dtype=np.float64)
    order, before = _ranked_mass_before(probabilities)
    position = np.empty_like(order)
    position[order] = np.arange(order.size)
    reference_level = float(np.min(before[position[list(reference_clusters)]]))
    return min(abstain_level, reference_level)


def cumulative_set(
    probabilities: np.ndarray, missing_mass: float, level: float
) -> tuple[bool, np.ndarray]:
    """Build the cumulative-mapping set of one test prompt at level ``c``.

    Returns:
        ``(abstained, members)``: whether the set abstains, and the indices of the
        seen clusters in it (empty when it abstains), in decreasing probability.
    """
    if 1.0 - missing_mass <= level:
        return True, np.empty(0, dtype=np.int64)

    probabilities = np.asarray(probabilities, dtype=np.float64)
    order, before = _ranked_mass_before(probabilities)
    return False, order[before <= level]
