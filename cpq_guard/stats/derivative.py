"""Estimators of how fast the missing mass falls with one more query.

The expected missing mass after ``T`` samples decreases by about
``2 N_2 / T^2`` per extra sample (Good-Turing applied to its derivative in
``T``), where ``N_2`` counts the clusters seen exactly twice. The raw value
jumps as ``N_2`` changes by one; averaging it over bootstrap resamples of the
``T`` seen samples (draw ``T`` with replacement, recount ``N_2``) gives a much
smoother stopping signal. Source: Noorani et al., arXiv:2506.05497 (2025),
which uses ``h = 20`` resamples.
"""

from __future__ import annotations

import numpy as np

from cpq_guard._validation import check_int

__all__ = ["bootstrap_derivative", "raw_derivative"]


def raw_derivative(counts: np.ndarray) -> float:
    """Estimate the missing-mass decrease per query as ``2 N_2 / T^2``.

    Args:
        counts: Samples per cluster, shape ``(m,)``.

    Returns:
        The estimate, a non-negative float; ``0.0`` when ``T = 0``.
    """
    counts = np.asarray(counts)
    total = int(counts.sum())
    if total == 0:
        return 0.0
    return 2.0 * int(np.count_nonzero(counts == 2)) / total**2


def bootstrap_derivative(counts: np.ndarray, resamples: int, rng: np.random.Generator) -> float:
    """Average ``2 N_2 / T^2`` over bootstrap resamples of the seen samples.

    Drawing ``T`` samples with replacement from the ``T`` seen ones and
    regrouping them is the same as one multinomial draw of ``T`` trials with
    cluster probabilities ``n_j / T``, which this function uses.

    Args:
        counts: Samples per cluster, shape ``(m,)``, summing to ``T``.
        resamples: Number of bootstrap resamples ``h``; ``0`` returns the
            raw estimate and draws nothing from ``rng``.
        rng: Source of the resampling; the caller seeds it.

    Returns:
        The bootstrap mean, a non-negative float; ``0.0`` when ``T = 0``.

    Raises:
        InvalidParameterError: If ``resamples`` is negative.
    """
    resamples = check_int(resamples, "resamples", minimum=0)
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if resamples == 0 or total == 0:
        return raw_derivative(counts)

    draws = rng.multinomial(total, counts / total, size=resamples)
    doubletons = np.count_nonzero(draws == 2, axis=1)
    return float(2.0 * doubletons.mean() / total**2)
