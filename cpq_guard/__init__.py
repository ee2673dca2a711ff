"""cpq-guard: calibrated abstention for LangChain chat models.

The method is conformal prediction with a query oracle (CPQ): query a model
repeatedly up to an adaptive budget, estimate the missing mass of unseen
answers with Good-Turing estimators, and return a conformal answer set or an
abstention, so that ``P(reference answer in the set, or abstained) >= 1 - alpha``.

Source of the method: S. Noorani, S. Kiyani, G. Pappas, H. Hassani,
"Conformal Prediction Beyond the Seen: A Missing Mass Perspective for
Uncertainty Quantification in Generative Models", arXiv:2506.05497 (2025).
"""

from typing import TYPE_CHECKING, Any

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
from cpq_guard.calibration import Calibration, calibrate_bank, calibrate_histories
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
from cpq_guard.paper import import_paper
from cpq_guard.stats.policies import DerivativePolicy, FixedPolicy, MissingMassPolicy

if TYPE_CHECKING:
    from cpq_guard.extractors import (
        AnswerExtractor,
        FinalAnswerExtractor,
        RegexExtractor,
        WholeTextExtractor,
    )
    from cpq_guard.guard import CPQGuard
    from cpq_guard.live_calibration import acalibrate, calibrate
    from cpq_guard.model_loading import load_chat_model
    from cpq_guard.models import ReplayChatModel, SimulatedChatModel, make_simulated_task
    from cpq_guard.recording import arecord_bank, record_bank
    from cpq_guard.result import AnswerCluster, GuardResult, TokenUsage
    from cpq_guard.retry import RetryPolicy

# The names below import langchain-core and its tracing stack, which takes
# about a second. They load on first use, so that commands and code that need
# only the statistics, banks or calibrations start quickly.
_LAZY_IMPORTS = {
    "AnswerCluster": "cpq_guard.result",
    "AnswerExtractor": "cpq_guard.extractors",
    "CPQGuard": "cpq_guard.guard",
    "FinalAnswerExtractor": "cpq_guard.extractors",
    "GuardResult": "cpq_guard.result",
    "RegexExtractor": "cpq_guard.extractors",
    "ReplayChatModel": "cpq_guard.models",
    "RetryPolicy": "cpq_guard.retry",
    "SimulatedChatModel": "cpq_guard.models",
    "TokenUsage": "cpq_guard.result",
    "WholeTextExtractor": "cpq_guard.extractors",
    "acalibrate": "cpq_guard.live_calibration",
    "arecord_bank": "cpq_guard.recording",
    "calibrate": "cpq_guard.live_calibration",
    "load_chat_model": "cpq_guard.model_loading",
    "make_simulated_task": "cpq_guard.models",
    "record_bank": "cpq_guard.recording",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY_IMPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'cpq_guard' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


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
    "calibrate_bank",
    "calibrate_histories",
    "get_equivalence",
    "import_paper",
    "load_chat_model",
    "make_simulated_task",
    "normalize_answer",
    "read_bank",
    "record_bank",
    "write_bank",
]
