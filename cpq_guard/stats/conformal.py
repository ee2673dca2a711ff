"""Split-conformal calibration of the CPQ answer set with abstention.

Nonconformity score of a calibration prompt whose reference answer is ``a``:

- ``s = 1 - p_hat(c)`` if ``a`` is in a seen cluster ``c`` (``s`` in [0, 1]);
- ``s = 2 - M_hat`` if ``a`` is in no seen cluster (``s`` in [1, 2]).

With ``n`` calibration scores, the threshold ``tau`` is the
``k = ceil((n + 1)(1 - alpha))``-th smallest score. At a test prompt the
guard abstains when ``2 - M_hat <= tau`` (the set is "everything", which
covers by definition); otherwise the set is every seen cluster with
``1 - p_hat(c) <= tau``. Over exchangeable prompts,

.. math::

    P(\\text{reference in set, or abstained}) \\ge 1 - \\alpha .

Ties are broken by adding independent ``U(0, jitter)`` noise to every score,
at calibration and at test time alike, as the reference code of Noorani et al.,
arXiv:2506.05497 (2025) does with ``jitter = 0.001``; ``jitter = 0`` keeps the
guarantee but makes it conservative when many scores tie.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from cpq_guard._validation import check_alpha
from cpq_guard.errors import InsufficientCalibrationError, InvalidParameterError

__all__ = [
    "DEFAULT_TIE_JITTER",
    "conformal_quantile",
    "conformal_rank",
    "jittered_conformal_quantile",
    "missing_mass_score",
    "missing_mass_set",
    "required_calibration_size",
]

DEFAULT_TIE_JITTER = 1e-3
"""Width of the uniform noise added to scores to break ties."""

# (n + 1)(1 - alpha) is often an integer in exact arithmetic (n = 9, alpha = 0.1)
# but lands a few ulps above it in floating point; this slack keeps ceil() exact.
_RANK_SLACK = 1e-9


def conformal_rank(n: int, alpha: float) -> int:
    """Return ``ceil((n + 1)(1 - alpha))``, the rank of the conformal threshold."""
    return math.ceil((n + 1) * (1.0 - alpha) - _RANK_SLACK)


def required_calibration_size(alpha: float) -> int:
    """Return the smallest ``n`` with ``conformal_rank(n, alpha) <= n``."""
    alpha = check_alpha(alpha)
    n = max(math.ceil(1.0 / alpha - 1.0 - _RANK_SLACK), 1)
    while conformal_rank(n, alpha) > n:
        n += 1
    return n


def conformal_quantile(scores: Sequence[float] | np.ndarray, alpha: float) -> float:
    """Return the split-conformal threshold: the ``ceil((n+1)(1-alpha))``-th smallest score.

    Raises:
        InvalidParameterError: If ``alpha`` is outside (0, 1) or a score is not finite.
        InsufficientCalibrationError: If the rank exceeds ``n``, which means no
            finite threshold is valid; the error gives the ``n`` this ``alpha`` needs.
    """
    alpha = check_alpha(alpha)
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1:
        raise InvalidParameterError(
            "scores", values.shape, f"scores must be one-dimensional, got shape {values.shape}"
        )
    if not np.all(np.isfinite(values)):
        raise InvalidParameterError(
            "scores", values, "scores contain NaN or infinite values; check the inputs"
        )

    n = values.size
    rank = conformal_rank(n, alpha)
    if rank > n:
        raise InsufficientCalibrationError(n, alpha, required_calibration_size(alpha))
    return float(np.partition(values, rank - 1)[rank - 1])


def jittered_conformal_quantile(
    scores: Sequence[float] | np.ndarray,
    alpha: float,
    jitter: float,
    rng: np.random.Generator,
) -> float:
    """Add ``U(0, jitter)`` noise to every score, then take `conformal_quantile`.

    With ``jitter = 0`` nothing is drawn from ``rng``. The test-time sets must
    add noise of the same width for the guarantee to hold.
    """
    values = np.asarray(scores, dtype=np.float64)
    if jitter > 0.0:
        values = values + rng.uniform(0.0, jitter, size=values.size)
    return conformal_quantile(values, alpha)


def missing_mass_score(
    probabilities: np.ndarray, missing_mass: float, reference_clusters: Sequence[int]
) -> float:
    """Compute the CPQ nonconformity score of one calibration prompt, before jitter.

    Args:
        probabilities: Estimated probability of each seen cluster, shape ``(m,)``.
        missing_mass: Estimated probability of an unseen answer.
        reference_clusters: Indices of the seen clusters that match a reference
            answer; empty when no reference answer was seen.

    Returns:
        ``1 - max p_hat`` over the matching clusters, or ``2 - missing_mass``
        when there is none.
    """
    if len(reference_clusters) == 0:
        return 2.0 - missing_mass
    return 1.0 - float(np.max(probabilities[list(reference_clusters)]))


def missing_mass_set(
    probabilities: np.ndarray,
    missing_mass: float,
    tau: float,
    rng: np.random.Generator | None = None,
    jitter: float = 0.0,
) -> tuple[bool, np.ndarray]:
    """Build the CPQ prediction set of one test prompt.

    Args:
        probabilities: Estimated probability of each seen cluster, shape ``(m,)``.
        missing_mass: Estimated probability of an unseen answer.
        tau: Calibrated threshold.
        rng: Source of tie-breaking noise; required when ``jitter > 0``.
        jitter: Width of the uniform noise added to each score.

    Returns:
        ``(abstained, members)``: whether the guard abstains, and the indices of
        the seen clusters in the set (empty when it abstains), in index order.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    noise_unseen, noise_seen = 0.0, np.zeros(probabilities.size)
    if jitter > 0.0:
        if rng is None:
            raise InvalidParameterError(
                "rng", rng, "a random generator is required when jitter is positive"
            )
        noise = rng.uniform(0.0, jitter, size=probabilities.size + 1)
        noise_unseen, noise_seen = float(noise[0]), noise[1:]

    if 2.0 - missing_mass + noise_unseen <= tau:
        return True, np.empty(0, dtype=np.int64)
    members = np.flatnonzero(1.0 - probabilities + noise_seen <= tau)
    return False, members
