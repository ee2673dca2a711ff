"""Frequency-of-frequencies bookkeeping for a growing sample of cluster labels.

After ``T`` samples with cluster counts ``n_1..n_m``, the frequency of
frequencies is ``N_r = #{j : n_j = r}``. Good-Turing estimators read only
``N_r`` and ``T``, so `FrequencyCounter` keeps both up to date in O(1) per
new sample instead of recounting.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from cpq_guard.errors import InvalidParameterError

__all__ = ["FrequencyCounter", "frequencies_of_counts"]


class FrequencyCounter:
    """Cluster counts and their frequency of frequencies, updated per sample.

    Cluster labels are the integers ``0, 1, 2, ...`` in order of first
    appearance, as `cpq_guard.answers.Clusterer` assigns them. A label may
    skip ahead only to the next unused integer.
    """

    __slots__ = ("_counts", "_frequencies", "_total")

    def __init__(self, labels: Iterable[int] = ()) -> None:
        self._counts: list[int] = []
        self._frequencies: dict[int, int] = {}
        self._total = 0
        for label in labels:
            self.add(label)

    def add(self, label: int) -> None:
        """Record one sample in cluster ``label``.

        Raises:
            InvalidParameterError: If ``label`` is negative or skips an unused label.
        """
        if label == len(self._counts):
            self._counts.append(0)
        elif not 0 <= label < len(self._counts):
            raise InvalidParameterError(
                "label",
                label,
                f"cluster label {label} is invalid: labels must be 0..{len(self._counts)} "
                "(an existing cluster or the next new one)",
            )

        old = self._counts[label]
        if old:
            remaining = self._frequencies[old] - 1
            if remaining:
                self._frequencies[old] = remaining
            else:
                del self._frequencies[old]
        self._counts[label] = old + 1
        self._frequencies[old + 1] = self._frequencies.get(old + 1, 0) + 1
        self._total += 1

    @property
    def total(self) -> int:
        """Number of samples ``T``."""
        return self._total

    @property
    def num_clusters(self) -> int:
        """Number of distinct clusters seen."""
        return len(self._counts)

    @property
    def counts(self) -> np.ndarray:
        """Samples per cluster, indexed by label (a copy)."""
        return np.asarray(self._counts, dtype=np.int64)

    @property
    def frequencies(self) -> Mapping[int, int]:
        """Frequency of frequencies ``{r: N_r}`` for every ``r`` with ``N_r > 0``."""
        return dict(self._frequencies)

    def frequency(self, r: int) -> int:
        """Return ``N_r``, the number of clusters seen exactly ``r`` times."""
        return self._frequencies.get(r, 0)


def frequencies_of_counts(counts: Iterable[int]) -> dict[int, int]:
    """Compute ``{r: N_r}`` from cluster counts, ignoring zero counts."""
    values, multiplicity = np.unique(np.asarray(list(counts), dtype=np.int64), return_counts=True)
    return {int(r): int(n) for r, n in zip(values, multiplicity) if r > 0}
