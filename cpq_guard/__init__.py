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

__all__ = [
    "Abstained",
    "ArtifactError",
    "BankFormatError",
    "BudgetOutOfRangeError",
    "CPQGuardError",
    "CalibrationFormatError",
    "CalibrationMismatchError",
    "ExtractionError",
    "InsufficientCalibrationError",
    "InvalidParameterError",
    "InvalidTypeError",
    "ModelQueryError",
    "SchemaVersionError",
    "UnknownPromptError",
    "__version__",
]
