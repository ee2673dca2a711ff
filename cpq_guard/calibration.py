"""The calibration artifact and its computation from recorded histories.

A `Calibration` fixes everything a guard needs to keep the coverage guarantee
at test time: the stopping policy, the missing-mass estimator, the set mapping,
the tie-breaking jitter, the answer extractor and equivalence, and the
conformal threshold ``tau`` computed from calibration prompts under exactly
those settings. It is saved as JSON with a schema version and validated by
pydantic on load.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cpq_guard._atomic import atomic_write_text
from cpq_guard._validation import (
    check_alpha,
    check_choice,
    check_int,
    check_non_negative,
    check_real,
)
from cpq_guard._version import __version__
from cpq_guard.answers import Equivalence, get_equivalence
from cpq_guard.banks import BankRecord, bank_content_hash, read_bank
from cpq_guard.errors import (
    BudgetOutOfRangeError,
    CalibrationFormatError,
    InsufficientCalibrationError,
    InvalidParameterError,
    InvalidTypeError,
    SchemaVersionError,
)
from cpq_guard.evaluation import Mapping, PolicyReplay, nonconformity_score
from cpq_guard.extractors import as_extractor
from cpq_guard.histories import History, histories_from_records
from cpq_guard.stats.conformal import (
    DEFAULT_TIE_JITTER,
    jittered_conformal_quantile,
    required_calibration_size,
)
from cpq_guard.stats.missing_mass import MissingMassEstimator
from cpq_guard.stats.policies import FixedPolicy, Policy, ThresholdPolicy

__all__ = [
    "MAX_TIE_JITTER",
    "SCHEMA_VERSION",
    "Calibration",
    "calibrate_bank",
    "calibrate_histories",
    "check_calibration_settings",
]

SCHEMA_VERSION = 1
"""Version of the calibration file layout written by this release."""

SUPPORTED_SCHEMA_VERSIONS = (1,)

MAX_TIE_JITTER = 0.1
"""Largest tie-breaking noise width that a calibration accepts."""


class Calibration(BaseModel):
    """Settings and conformal threshold of a calibrated guard.

    Attributes:
        schema_version: File layout version.
        alpha: Target miscoverage; the guarantee is coverage ``>= 1 - alpha``.
        tau: Conformal threshold, in [0, 2 + tie_jitter] for the missing-mass
            mapping and [0, 1] for the cumulative mapping.
        mapping: How samples become a set.
        policy: Stopping policy, with its tuned threshold.
        estimator: Missing-mass estimator used for scores and sets.
        tie_jitter: Width of the uniform tie-breaking noise added to scores.
        equivalence: Name of the answer equivalence.
        extractor: Name of the answer extractor.
        num_calibration: Number of prompts whose scores set ``tau``.
        num_tuning: Number of prompts that tuned the policy (0 when given).
        target_budget: Requested mean queries per prompt, when tuned.
        tuning_mean_queries: Mean queries on the tuning prompts, when tuned.
        calibration_mean_queries: Mean queries on the calibration prompts.
        bank_hash: Content hash of the sample bank, when it came from one.
        library_version: cpq-guard version that wrote the file.
        created_at: Creation time, UTC.
    """

    # NaN and infinity are impossible values for every number in the file.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    schema_version: Literal[1] = SCHEMA_VERSION
    alpha: float = Field(gt=0.0, lt=1.0)
    tau: float = Field(ge=0.0)
    mapping: Mapping = "missing-mass"
    policy: Policy
    estimator: MissingMassEstimator = "smoothed"
    tie_jitter: float = Field(default=DEFAULT_TIE_JITTER, ge=0.0, le=MAX_TIE_JITTER)
    equivalence: str
    extractor: str
    num_calibration: int = Field(ge=1)
    num_tuning: int = Field(default=0, ge=0)
    target_budget: float | None = None
    tuning_mean_queries: float | None = None
    calibration_mean_queries: float = Field(ge=0.0)
    bank_hash: str | None = None
    library_version: str = __version__
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))

    @model_validator(mode="after")
    def _check_tau_range(self) -> Calibration:
        # Scores lie in [0, 2] for the missing-mass mapping and [0, 1] for the
        # cumulative one, plus at most tie_jitter of noise.
        ceiling = (1.0 if self.mapping == "cumulative" else 2.0) + self.tie_jitter
        if self.tau > ceiling:
            raise ValueError(
                f"tau={self.tau} is impossible for the {self.mapping} mapping "
                f"(scores lie in [0, {ceiling:g}])"
            )
        return self

    def settings(self) -> dict[str, Any]:
        """Return the settings a guard must share with this calibration, by name."""
        return {
            "policy": self.policy.model_dump(by_alias=True),
            "mapping": self.mapping,
            "estimator": self.estimator,
            "tie_jitter": self.tie_jitter,
            "equivalence": self.equivalence,
            "extractor": self.extractor,
        }

    def save(self, path: str | Path) -> None:
        """Write the calibration as indented JSON, atomically (temporary file, then rename)."""
        atomic_write_text(Path(path), self.model_dump_json(indent=2, by_alias=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        """Read and validate a calibration file.

        Raises:
            CalibrationFormatError: If the file is missing or unreadable, not
                UTF-8 JSON, has no ``schema_version``, or contains invalid or
                impossible values or unknown keys.
            SchemaVersionError: If it was written with an unknown schema version.
        """
        location = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise CalibrationFormatError(
                f"calibration file {location} not found; create one with "
                "'cpq-guard calibrate' or cpq_guard.calibrate()",
                path=location,
            ) from exc
        except UnicodeDecodeError as exc:
            raise CalibrationFormatError(
                f"calibration file {location} is not UTF-8 text: {exc}", path=location
            ) from exc
        except OSError as exc:
            raise CalibrationFormatError(
                f"cannot read calibration file {location}: {exc.strerror or exc}; check that "
                "the path is a readable file",
                path=location,
            ) from exc
        return cls.from_json(text, path=location)

    @classmethod
    def from_json(cls, text: str, *, path: str | None = None) -> Calibration:
        """Validate a calibration from its JSON text; see `load` for the errors."""
        where = path or "<string>"
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CalibrationFormatError(
                f"calibration file {where} is not valid JSON ({exc}); recreate it", path=path
            ) from exc
        if not isinstance(data, dict):
            raise CalibrationFormatError(
                f"calibration file {where} must contain a JSON object, got {type(data).__name__}",
                path=path,
            )

        if "schema_version" not in data:
            raise CalibrationFormatError(
                f"calibration file {where} has no schema_version field, so cpq-guard did not "
                "write it; pass the file that 'cpq-guard calibrate' or Calibration.save wrote",
                path=path,
            )
        version = data["schema_version"]
        if version not in SUPPORTED_SCHEMA_VERSIONS:
            raise SchemaVersionError(version, SUPPORTED_SCHEMA_VERSIONS, path=path)

        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, error['loc'])) or '<root>'}: {error['msg']}"
                for error in exc.errors()
            )
            raise CalibrationFormatError(
                f"calibration file {where} is invalid ({problems}); recreate it with this release",
                path=path,
            ) from exc


def check_calibration_settings(
    num_prompts: int,
    *,
    alpha: object,
    policy: object,
    average_budget: object,
    tuning_fraction: object,
    mapping: object,
    estimator: object,
    tie_jitter: object,
    seed: object,
) -> int:
    """Check the arguments of `calibrate_histories` for ``num_prompts`` prompts.

    `calibrate` runs the same checks before it queries a model, so that a
    setting that cannot work fails before any model call is paid for.

    Returns:
        The number of prompts that tune the policy: ``floor(num_prompts *
        tuning_fraction)`` with a budget, else 0.

    Raises:
        InvalidParameterError: If ``alpha``, ``tuning_fraction``, ``tie_jitter``
            or ``seed`` is out of range, ``mapping`` or ``estimator`` is not a
            known name, there are no prompts, or no prompt is left for tuning.
        InvalidTypeError: If ``policy`` is not a policy, or a number is not a number.
        BudgetOutOfRangeError: If the budget is outside the policy's limits.
        InsufficientCalibrationError: If too few prompts remain to set ``tau``.
    """
    alpha = check_alpha(alpha)
    check_int(seed, "seed", minimum=0)
    jitter = check_non_negative(tie_jitter, "tie_jitter")
    if jitter > MAX_TIE_JITTER:
        raise InvalidParameterError(
            "tie_jitter",
            tie_jitter,
            f"tie_jitter={tie_jitter!r} is invalid: it must be at most {MAX_TIE_JITTER}",
        )
    check_choice(mapping, "mapping", get_args(Mapping))
    check_choice(estimator, "estimator", get_args(MissingMassEstimator))
    if not isinstance(policy, (FixedPolicy, ThresholdPolicy)):
        raise InvalidTypeError(
            "policy must be a FixedPolicy, MissingMassPolicy or DerivativePolicy, "
            f"got {type(policy).__name__}"
        )
    if num_prompts == 0:
        raise InvalidParameterError(
            "histories", 0, "no calibration prompts were given; pass at least one"
        )

    num_tuning = 0
    if average_budget is not None:
        budget = check_real(average_budget, "average_budget")
        low = 1 if isinstance(policy, FixedPolicy) else policy.min_queries
        if not low <= budget <= policy.max_queries:
            raise BudgetOutOfRangeError(budget, low, policy.max_queries)
        fraction = check_real(tuning_fraction, "tuning_fraction")
        if not 0.0 < fraction < 1.0:
            raise InvalidParameterError(
                "tuning_fraction",
                tuning_fraction,
                f"tuning_fraction={tuning_fraction} must lie strictly between 0 and 1",
            )
        # A fixed policy's K = floor(B) is chosen without data, so every
        # prompt can set tau.
        num_tuning = 0 if isinstance(policy, FixedPolicy) else math.floor(num_prompts * fraction)
        if num_tuning == 0 and not isinstance(policy, FixedPolicy):
            raise InvalidParameterError(
                "tuning_fraction",
                tuning_fraction,
                f"tuning_fraction={tuning_fraction} leaves no prompt of {num_prompts} for "
                "tuning; raise it or add prompts",
            )

    required = required_calibration_size(alpha)
    num_conformal = num_prompts - num_tuning
    if num_conformal < required:
        raise InsufficientCalibrationError(num_conformal, alpha, required, num_tuning=num_tuning)
    return num_tuning


def calibrate_histories(
    histories: Sequence[History],
    *,
    alpha: float,
    policy: ThresholdPolicy | FixedPolicy,
    equivalence: str,
    extractor: str,
    average_budget: float | None = None,
    tuning_fraction: float = 0.5,
    mapping: Mapping = "missing-mass",
    estimator: MissingMassEstimator = "smoothed",
    tie_jitter: float = DEFAULT_TIE_JITTER,
    seed: int = 0,
    bank_hash: str | None = None,
) -> Calibration:
    """Calibrate a guard on recorded histories with reference answers.

    With ``average_budget``, the histories are shuffled (seeded) and the first
    ``floor(n * tuning_fraction)`` tune the policy's threshold; the others,
    disjoint from them, set ``tau``, so the policy is fixed before any score
    that sets ``tau`` is computed. A fixed policy takes ``K = floor(B)``
    without looking at data, so then every history sets ``tau``. Without a
    budget, ``policy`` is used as given and every history sets ``tau``.

    Args:
        histories: One per calibration prompt, each at least ``policy.max_queries`` long.
        alpha: Target miscoverage, in (0, 1).
        policy: Stopping policy; its threshold is replaced when a budget is given.
        equivalence: Name of the equivalence the histories were clustered with.
        extractor: Name of the extractor that produced the answers.
        average_budget: Target mean number of queries per prompt.
        tuning_fraction: Share of the histories used for tuning, in (0, 1).
        mapping: How samples become a set.
        estimator: Missing-mass estimator.
        tie_jitter: Width of the tie-breaking noise (missing-mass mapping only).
        seed: Seeds the tuning split, the policy's bootstrap and the jitter.
        bank_hash: Content hash of the sample bank, recorded in the artifact.

    Raises:
        InsufficientCalibrationError: If too few prompts remain to set ``tau``.
        BudgetOutOfRangeError: If the budget is outside the policy's limits.
        InvalidParameterError: If another argument is out of range (see
            `check_calibration_settings`), or a history is shorter than the
            policy's ``max_queries``.
    """
    n = len(histories)
    num_tuning = check_calibration_settings(
        n,
        alpha=alpha,
        policy=policy,
        average_budget=average_budget,
        tuning_fraction=tuning_fraction,
        mapping=mapping,
        estimator=estimator,
        tie_jitter=tie_jitter,
        seed=seed,
    )
    alpha = float(alpha)
    tie_jitter = float(tie_jitter)

    order = np.arange(n)
    tuning_mean = None
    if average_budget is not None:
        order = np.random.default_rng([seed, 0]).permutation(n)

    tuning = order[:num_tuning]
    conformal = order[num_tuning:]
    replay = PolicyReplay.compute(policy, histories, seed)
    if average_budget is not None:
        policy = replay.tune(tuning, average_budget)
        if tuning.size:
            tuning_mean = float(replay.stopping_times(tuning, policy).mean())

    times = replay.stopping_times(conformal, policy)
    estimates = [
        histories[index].estimate(int(time), estimator) for index, time in zip(conformal, times)
    ]
    scores = np.array([nonconformity_score(estimate, mapping) for estimate in estimates])
    jitter = tie_jitter if mapping == "missing-mass" else 0.0
    tau = jittered_conformal_quantile(scores, alpha, jitter, np.random.default_rng([seed, 1]))

    return Calibration(
        alpha=alpha,
        tau=tau,
        mapping=mapping,
        policy=policy,
        estimator=estimator,
        tie_jitter=jitter,
        equivalence=equivalence,
        extractor=extractor,
        num_calibration=int(conformal.size),
        num_tuning=num_tuning,
        target_budget=average_budget,
        tuning_mean_queries=tuning_mean,
        calibration_mean_queries=float(times.mean()),
        bank_hash=bank_hash,
    )


def calibrate_bank(
    bank: str | Path | Sequence[BankRecord],
    *,
    alpha: float,
    policy: ThresholdPolicy | FixedPolicy,
    extractor: Any = None,
    equivalence: Equivalence | str = "normalized",
    average_budget: float | None = None,
    tuning_fraction: float = 0.5,
    mapping: Mapping = "missing-mass",
    estimator: MissingMassEstimator = "smoothed",
    tie_jitter: float = DEFAULT_TIE_JITTER,
    seed: int = 0,
) -> Calibration:
    """Calibrate a guard on a sample bank's recorded samples, without querying a model.

    Every sample goes through ``extractor`` and is clustered with ``equivalence``,
    as the guard will do at test time, and the calibration records the names of
    both and the bank's content hash. See `calibrate_histories` for the other
    arguments and the errors.

    Args:
        bank: A bank file or its records; every record needs a reference answer.
        extractor: Answer extractor (a built-in name, an extractor, an output
            parser or a function); the whole text by default.
        equivalence: Answer equivalence, a built-in name or an `Equivalence`.

    Raises:
        BankFormatError: If the bank file is missing or invalid.
        InvalidParameterError: If a record has no reference answer.
        ExtractionError: If ``extractor`` raises on a sample.
    """
    if isinstance(bank, (str, os.PathLike)):
        records = read_bank(bank)
    elif isinstance(bank, Sequence) and all(isinstance(record, BankRecord) for record in bank):
        records = list(bank)
    else:
        raise InvalidTypeError(
            "bank must be the path of a sample bank or a list of BankRecord, got "
            f"{type(bank).__name__}"
        )
    unlabelled = [record.id for record in records if not record.references]
    if unlabelled:
        raise InvalidParameterError(
            "bank",
            unlabelled[:3],
            f"{len(unlabelled)} bank prompts have no reference answer (first ids: "
            f"{unlabelled[:3]}); calibration needs a reference for every prompt",
        )

    answer_extractor = as_extractor(extractor)
    answer_equivalence = (
        get_equivalence(equivalence) if isinstance(equivalence, str) else equivalence
    )
    histories = histories_from_records(records, answer_equivalence, extract=answer_extractor)
    return calibrate_histories(
        histories,
        alpha=alpha,
        policy=policy,
        equivalence=answer_equivalence.name,
        extractor=answer_extractor.name,
        average_budget=average_budget,
        tuning_fraction=tuning_fraction,
        mapping=mapping,
        estimator=estimator,
        tie_jitter=tie_jitter,
        seed=seed,
        bank_hash=bank_content_hash(records),
    )
