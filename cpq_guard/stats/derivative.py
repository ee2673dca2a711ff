"""Estimators of how fast the missing mass falls with one more query.

The expected missing mass after ``T`` samples decreases by about
``2 N_2 / T^2`` per extra sample (Good-Turing applied to its derivative in
``T``), where ``N_2`` counts the clusters seen exactly twice. The raw value
jumps as ``N_2`` changes by one; averaging it over bootstrap resamples of the
``T`` seen samples (draw ``T`` with replacement, recount ``N_2``) gives a much
smoother stopping signal. Source: Noorani et al., arXiv:2506.05497 (2025),
which uses ``h = 20`` resamples. `expected_bootstrap_derivative` computes the
limit of that average as ``h`` grows, exactly and without random draws.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from cpq_guard._validation import check_int

__all__ = ["bootstrap_derivative", "expected_bootstrap_derivative", "raw_derivative"]


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


def expected_bootstrap_derivative(frequencies: Mapping[int, int], total: int) -> float:
    """Compute the bootstrap mean of ``2 N_2 / T^2`` exactly: its limit as ``h`` grows.

    A resample of ``T`` draws from the seen samples puts ``Binomial(T, r / T)``
    samples in a cluster seen ``r`` times, so

    .. math::

        E[N_2^*] = \\binom{T}{2} \\sum_r N_r (r / T)^2 (1 - r / T)^{T - 2},

    a sum over the distinct counts ``r`` only. This removes the bootstrap's
    sampling noise and its random draws, and costs a few microseconds instead
    of ``h`` multinomial draws.

    Args:
        frequencies: Frequency of frequencies ``{r: N_r}``.
        total: Number of samples ``T``.

    Returns:
        The exact expectation, a non-negative float; ``0.0`` when ``T < 2``.
    """
    if total < 2:
        return 0.0  # no resample of fewer than two draws has a cluster seen twice

    expected_doubletons = 0.0
    for r, clusters in frequencies.items():
        share = r / total
        expected_doubletons += clusters * share * share * (1.0 - share) ** (total - 2)
    pairs = total * (total - 1) / 2.0
    return 2.0 * pairs * expected_doubletons / total**2
