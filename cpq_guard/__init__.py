"""cpq-guard: calibrated abstention for LangChain chat models.

The method is conformal prediction with a query oracle (CPQ): query a model
repeatedly up to an adaptive budget, estimate the missing mass of unseen
answers with Good-Turing estimators, and return a conformal answer set or an
abstention, so that ``P(reference answer in the set, or abstained) >= 1 - alpha``.

Source of the method: S. Noorani, S. Kiyani, G. Pappas, H. Hassani,
"Conformal Prediction Beyond the Seen: A Missing Mass Perspective for
Uncertainty Quantification in Generative Models", arXiv:2506.05497 (2025).
"""

from cpq_guard._version import __version__
from cpq_guard.answers import (
    Equivalence,
    ExactEquivalence,
    NormalizedEquivalence,
    NumericEquivalence,
    get_equivalence,
    normalize_answer,
)
from cpq_guard.banks import BankRecord, BankWriter, Sample, read_bank, write_bank
from cpq_guard.calibration import Calibration, calibrate_histories
from cpq_guard.errors import (
    Abstained,
    ArtifactError,
    BankFormatError,
    BudgetOutOfRangeError,
    CalibrationFormatError,
    CalibrationMismatchError,
    CPQGuardError,
    ExtractionError,
    InsufficientCalibrationError,
    InvalidParameterError,
    InvalidTypeError,
    ModelQueryError,
    SchemaVersionError,
    UnknownPromptError,
)
from cpq_guard.extractors import (
    AnswerExtractor,
    FinalAnswerExtractor,
    RegexExtractor,
    WholeTextExtractor,
)
from cpq_guard.guard import CPQGuard
from cpq_guard.live_calibration import acalibrate, calibrate
from cpq_guard.models import ReplayChatModel, SimulatedChatModel, make_simulated_task
from cpq_guard.paper import import_paper
from cpq_guard.recording import arecord_bank, record_bank
from cpq_guard.result import AnswerCluster, GuardResult, TokenUsage
from cpq_guard.retry import RetryPolicy
from cpq_guard.stats.policies import DerivativePolicy, FixedPolicy, MissingMassPolicy

__all__ = [
    "Abstained",
    "AnswerCluster",
    "AnswerExtractor",
    "ArtifactError",
    "BankFormatError",
    "BankRecord",
    "BankWriter",
    "BudgetOutOfRangeError",
    "CPQGuard",
    "CPQGuardError",
    "Calibration",
    "CalibrationFormatError",
    "CalibrationMismatchError",
    "DerivativePolicy",
    "Equivalence",
    "ExactEquivalence",
    "ExtractionError",
    "FinalAnswerExtractor",
    "FixedPolicy",
    "GuardResult",
    "InsufficientCalibrationError",
    "InvalidParameterError",
    "InvalidTypeError",
    "MissingMassPolicy",
    "ModelQueryError",
    "NormalizedEquivalence",
    "NumericEquivalence",
    "RegexExtractor",
    "ReplayChatModel",
    "RetryPolicy",
    "Sample",
    "SchemaVersionError",
    "SimulatedChatModel",
    "TokenUsage",
    "UnknownPromptError",
    "WholeTextExtractor",
    "__version__",
    "acalibrate",
    "arecord_bank",
    "calibrate",
    "calibrate_histories",
    "get_equivalence",
    "import_paper",
    "make_simulated_task",
    "normalize_answer",
    "read_bank",
    "record_bank",
    "write_bank",
]
