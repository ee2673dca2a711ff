"""The statistics of CPQ: pure numpy, no LangChain.

Modules, in the order a guarded call uses them:

- `frequencies`: counts per cluster and the frequency of frequencies ``N_r``;
- `missing_mass`: Good-Turing estimates of the probability of an unseen answer;
- `derivative`: the estimated missing-mass decrease per extra query;
- `probabilities`: Good-Turing probabilities of the seen clusters;
- `policies`: when to stop querying;
- `tuning`: the threshold that spends a target average budget;
- `conformal`: nonconformity scores, the conformal threshold and the set;
- `cumulative`: the cumulative mapping, a baseline.
"""

from cpq_guard.stats.conformal import (
    DEFAULT_TIE_JITTER,
    conformal_quantile,
    conformal_rank,
    jittered_conformal_quantile,
    missing_mass_score,
    missing_mass_set,
    required_calibration_size,
)
from cpq_guard.stats.cumulative import cumulative_score, cumulative_set
from cpq_guard.stats.derivative import (
    bootstrap_derivative,
    expected_bootstrap_derivative,
    raw_derivative,
)
from cpq_guard.stats.frequencies import FrequencyCounter, frequencies_of_counts
from cpq_guard.stats.missing_mass import (
    SINGLE_FREQUENCY_N1,
    MissingMassEstimator,
    estimate_missing_mass,
    good_turing_missing_mass,
    smoothed_missing_mass,
)
from cpq_guard.stats.policies import (
    DerivativePolicy,
    FixedPolicy,
    MissingMassPolicy,
    Policy,
    StopReason,
    ThresholdPolicy,
    stopping_times,
)
from cpq_guard.stats.probabilities import cluster_probabilities, estimate_from_counts
from cpq_guard.stats.tuning import TuningResult, tune_fixed_queries, tune_threshold

__all__ = [
    "DEFAULT_TIE_JITTER",
    "SINGLE_FREQUENCY_N1",
    "DerivativePolicy",
    "FixedPolicy",
    "FrequencyCounter",
    "MissingMassEstimator",
    "MissingMassPolicy",
    "Policy",
    "StopReason",
    "ThresholdPolicy",
    "TuningResult",
    "bootstrap_derivative",
    "cluster_probabilities",
    "conformal_quantile",
    "conformal_rank",
    "cumulative_score",
    "cumulative_set",
    "estimate_from_counts",
    "estimate_missing_mass",
    "expected_bootstrap_derivative",
    "frequencies_of_counts",
    "good_turing_missing_mass",
    "jittered_conformal_quantile",
    "missing_mass_score",
    "missing_mass_set",
    "raw_derivative",
    "required_calibration_size",
    "smoothed_missing_mass",
    "stopping_times",
    "tune_fixed_queries",
    "tune_threshold",
]
