"""Good-Turing estimators of the missing mass.

The missing mass ``M_T`` is the probability that the next sample falls in a
cluster not seen in the first ``T`` samples. Its Good-Turing estimate is
``N_1 / T``, where ``N_1`` counts the clusters seen exactly once.

The smoothed variant fits ``log N_r = a + b log r`` by least squares over the
observed frequencies ``r`` and uses the fitted ``N_1 = exp(a)``, which is less
noisy when ``N_1`` is small. It follows the reference code released with
Noorani et al., "Conformal Prediction Beyond the Seen: A Missing Mass
Perspective for Uncertainty Quantification in Generative Models",
arXiv:2506.05497 (2025), with one change: where that code draws a random
``N_1`` (every cluster seen the same number of times ``r > 1``), this module
uses the mean of that draw, ``SINGLE_FREQUENCY_N1 = 0.025``, so the estimate
is deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

from cpq_guard.errors import InvalidParameterError

__all__ = [
    "SINGLE_FREQUENCY_N1",
    "MissingMassEstimator",
    "estimate_missing_mass",
    "good_turing_missing_mass",
    "smoothed_missing_mass",
]

MissingMassEstimator = Literal["good-turing", "smoothed"]
"""Name of a missing-mass estimator: plain ``N_1 / T`` or the log-log smoothed fit."""

SINGLE_FREQUENCY_N1 = 0.025
"""Smoothed ``N_1`` when every seen cluster has the same count ``r > 1``.

The reference code draws it from ``U(0, 0.05)``; this is that draw's mean.
"""


def good_turing_missing_mass(frequencies: Mapping[int, int], total: int) -> float:
    """Estimate the missing mass as ``N_1 / T``.

    Args:
        frequencies: Frequency of frequencies ``{r: N_r}``.
        total: Number of samples ``T``.

    Returns:
        The estimate in ``[0, 1]``; ``1.0`` when ``T = 0`` (nothing seen yet).
    """
    if total <= 0:
        return 1.0
    return _clip(frequencies.get(1, 0) / total)


def smoothed_missing_mass(frequencies: Mapping[int, int], total: int) -> float:
    """Estimate the missing mass with a log-log regression of ``N_r`` on ``r``.

    With at least two distinct observed ``r``, fit ``log N_r = a + b log r``
    by ordinary least squares and return ``exp(a) / T``. With one distinct
    ``r``: if ``r = 1`` every cluster is a singleton and the estimate is
    ``N_1 / T = 1``; if ``r > 1`` it is ``SINGLE_FREQUENCY_N1 / T``.

    NOTE: the fit extrapolates to ``r = 1`` from few points, so it can exceed
    the plain estimate by far: counts (7, 3, 3, 3) give 0.78 where ``N_1 / T``
    gives 0. Use the ``"good-turing"`` estimator where that matters.

    Returns:
        The estimate clipped to ``[0, 1]``; ``1.0`` when ``T = 0``.
    """
    if total <= 0:
        return 1.0

    observed = [(r, n) for r, n in frequencies.items() if n > 0]
    if len(observed) >= 2:
        intercept = _log_log_intercept(observed)
        return _clip(math.exp(intercept) / total)

    ((r, n),) = observed
    if r == 1:
        return _clip(n / total)
    return _clip(SINGLE_FREQUENCY_N1 / total)


def estimate_missing_mass(
    frequencies: Mapping[int, int], total: int, estimator: MissingMassEstimator
) -> float:
    """Estimate the missing mass with the named estimator."""
    if estimator == "smoothed":
        return smoothed_missing_mass(frequencies, total)
    if estimator == "good-turing":
        return good_turing_missing_mass(frequencies, total)
    raise InvalidParameterError(
        "estimator",
        estimator,
        f"missing-mass estimator {estimator!r} is unknown; use 'smoothed' or 'good-turing'",
    )


def _log_log_intercept(points: list[tuple[int, int]]) -> float:
    # Closed-form simple linear regression; np.polyfit gives the same values
    # but costs far more per call, and the policies call this once per sample.
    xs = [math.log(r) for r, _ in points]
    ys = [math.log(n) for _, n in points]
    count = len(xs)
    mean_x = sum(xs) / count
    mean_y = sum(ys) / count
    sxx = sum((x - mean_x) ** 2 for x in xs)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys))
    slope = sxy / sxx
    return mean_y - slope * mean_x


def _clip(value: float) -> float:
    return min(max(value, 0.0), 1.0)
