"""The frequency-score conformal baseline used by sampling-based methods for LLM APIs.

Methods that calibrate a black-box LLM from samples alone score an answer by
how often it was sampled. With ``K`` samples and relative frequency
``f(c) = n_c / K`` of cluster ``c``:

- nonconformity of a calibration prompt: ``1 - f(c)`` for the reference's
  cluster ``c``; ``+inf`` when the reference was not sampled, because no set
  built from the sampled answers can contain it;
- threshold ``q``: the ``ceil((n + 1)(1 - alpha))``-th smallest score, the same
  rank as CPQ (`cpq_guard.stats.conformal.conformal_rank`);
- set of a test prompt: every sampled cluster with ``1 - f(c) <= q``, that is
  ``f(c) >= 1 - q``. When ``q = +inf`` the set is every sampled cluster.

There is no missing-mass term and no abstention, so the set never covers a
reference that was not sampled. Coverage is then at most
``P(reference sampled in K draws)`` and falls below ``1 - alpha`` whenever
``alpha`` is smaller than the chance of missing the reference. Scores are
not jittered, so tied frequencies all enter the set (ties make the set
larger, which favours this baseline's informative coverage).

This lives under ``benchmarks/`` on purpose: it is a comparison point, not a
method the library offers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cpq_guard.histories import History
from cpq_guard.stats.conformal import conformal_rank


def frequency_score(history: History, queries: int) -> float:
    """Compute ``1 - f(c)`` of the reference's best cluster in the first ``queries`` samples.

    Returns:
        The score in ``[0, 1)``, or ``+inf`` when no reference cluster was sampled.
    """
    counts = np.bincount(history.labels[:queries])
    seen = [label for label in history.reference_labels if label < counts.size]
    if not seen:
        return float("inf")
    return 1.0 - float(counts[seen].max()) / queries


def frequency_threshold(scores: np.ndarray, alpha: float) -> float:
    """Return the ``ceil((n + 1)(1 - alpha))``-th smallest score, or ``+inf`` past the last."""
    rank = conformal_rank(scores.size, alpha)
    if rank > scores.size:
        return float("inf")
    return float(np.partition(scores, rank - 1)[rank - 1])


def frequency_metrics(
    histories: Sequence[History],
    calibration: np.ndarray,
    test: np.ndarray,
    queries: int,
    alphas: Sequence[float],
) -> list[dict[str, float]]:
    """Calibrate on ``calibration``, predict ``test``, and return one metrics dict per alpha.

    The keys are those of `cpq_guard.evaluation.METRIC_NAMES` plus ``tau``;
    ``abstention_rate`` is always 0 and ``informative_coverage`` equals ``coverage``.
    """
    scores = np.array([frequency_score(histories[index], queries) for index in calibration])

    test_frequencies = []
    for index in test:
        history = histories[index]
        counts = np.bincount(history.labels[:queries])
        test_frequencies.append((counts / queries, history.reference_labels))

    rows = []
    for alpha in alphas:
        q = frequency_threshold(scores, alpha)
        covered = np.zeros(test.size, dtype=bool)
        sizes = np.zeros(test.size)
        for position, (frequencies, references) in enumerate(test_frequencies):
            members = np.flatnonzero((1.0 - frequencies <= q) & (frequencies > 0))
            sizes[position] = members.size
            covered[position] = bool(set(members.tolist()).intersection(references))
        rows.append(
            {
                "coverage": float(covered.mean()),
                "abstention_rate": 0.0,
                "informative_coverage": float(covered.mean()),
                "mean_set_size": float(sizes.mean()),
                "mean_queries": float(queries),
                "tau": q,
            }
        )
    return rows
