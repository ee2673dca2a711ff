"""Exceptions raised by cpq-guard.

Every exception the library raises on purpose derives from `CPQGuardError`,
so a caller can catch the whole family with one clause. Where Python has an
idiomatic built-in for the same failure, the class also derives from it, so
``except ValueError`` keeps working for argument errors::

    CPQGuardError
    ├── InvalidParameterError (ValueError)     an argument value is out of range
    │   ├── InsufficientCalibrationError        too few calibration prompts for alpha
    │   └── BudgetOutOfRangeError               target budget outside the policy's limits
    ├── InvalidTypeError (TypeError)            an argument has the wrong type
    ├── ArtifactError (ValueError)              a file on disk is not what it should be
    │   ├── BankFormatError                     a sample bank line is invalid
    │   ├── CalibrationFormatError              a calibration file is invalid
    │   └── SchemaVersionError                  an artifact has an unknown schema version
    ├── CalibrationMismatchError (ValueError)   guard and calibration settings differ
    ├── UnknownPromptError (KeyError)           an offline model does not know a prompt
    ├── ModelQueryError (RuntimeError)          a model call failed after its retries
    ├── ExtractionError (ValueError)            an answer extractor raised
    └── Abstained                               the guard abstained with raise_on_abstain set

Each class carries the values a caller needs to act on it as attributes, not
only in its message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cpq_guard.result import GuardResult

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
]


class CPQGuardError(Exception):
    """Base class of every error that cpq-guard raises on purpose."""


class InvalidParameterError(CPQGuardError, ValueError):
    """An argument has a value outside its valid range.

    Attributes:
        name: The parameter's name as the caller spells it.
        value: The rejected value.
    """

    def __init__(self, name: str, value: Any, message: str) -> None:
        super().__init__(message)
        self.name = name
        self.value = value


class InvalidTypeError(CPQGuardError, TypeError):
    """An argument has a type the function cannot use."""


class InsufficientCalibrationError(InvalidParameterError):
    """The calibration set is too small for a finite conformal threshold.

    With ``n`` calibration scores, the split-conformal threshold is the
    ``ceil((n + 1)(1 - alpha))``-th smallest score, which exists only when
    that rank is at most ``n``, that is when ``n >= ceil(1 / alpha) - 1``.

    Attributes:
        n: Number of calibration prompts that set the threshold.
        alpha: Requested miscoverage level.
        required: Smallest number of calibration prompts that works for ``alpha``.
        num_tuning: Prompts set aside to tune the stopping policy, which do
            not count towards ``n``.
    """

    def __init__(self, n: int, alpha: float, required: int, *, num_tuning: int = 0) -> None:
        tuning = f" (another {num_tuning} tuned the stopping policy)" if num_tuning else ""
        message = (
            f"alpha={alpha} needs at least {required} calibration prompts for a finite "
            f"conformal threshold, but {n} were given{tuning}; add calibration prompts or "
            f"raise alpha to at least {1.0 / (n + 1):.4g}"
        )
        super().__init__("n", n, message)
        self.n = n
        self.alpha = alpha
        self.required = required
        self.num_tuning = num_tuning


class BudgetOutOfRangeError(InvalidParameterError):
    """A target average budget lies outside ``[min_queries, max_queries]``.

    Attributes:
        budget: The requested mean number of queries per prompt.
        min_queries: The policy's lower limit.
        max_queries: The policy's upper limit, or ``None`` when there is none.
    """

    def __init__(self, budget: float, min_queries: int, max_queries: int | None) -> None:
        if max_queries is None:
            message = (
                f"average budget {budget} is below min_queries = {min_queries}; "
                f"choose a budget of at least {min_queries}"
            )
        else:
            message = (
                f"average budget {budget} is outside [min_queries, max_queries] = "
                f"[{min_queries}, {max_queries}]; choose a budget in that range or change "
                "the limits"
            )
        super().__init__("average_budget", budget, message)
        self.budget = budget
        self.min_queries = min_queries
        self.max_queries = max_queries


class ArtifactError(CPQGuardError, ValueError):
    """A file that cpq-guard reads is missing, malformed or of another kind.

    Attributes:
        path: The file's path, when the data came from a file.
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class BankFormatError(ArtifactError):
    """A sample bank line is not valid JSON or not a valid record.

    Attributes:
        line: One-based line number of the first invalid line, if known.
    """

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        super().__init__(message, path=path)
        self.line = line


class CalibrationFormatError(ArtifactError):
    """A calibration file is not valid JSON or contains impossible values."""


class SchemaVersionError(ArtifactError):
    """An artifact was written with a schema version this release cannot read.

    Attributes:
        found: The version in the file.
        supported: The versions this release reads.
    """

    def __init__(
        self, found: object, supported: tuple[int, ...], *, path: str | None = None
    ) -> None:
        where = f" in {path}" if path else ""
        message = (
            f"unsupported schema version {found!r}{where}; this cpq-guard release reads "
            f"version(s) {', '.join(map(str, supported))}: recreate the file with this release"
        )
        super().__init__(message, path=path)
        self.found = found
        self.supported = supported


class CalibrationMismatchError(CPQGuardError, ValueError):
    """A calibration was made with other settings than the guard that uses it.

    The coverage guarantee holds only when the test-time policy, answer
    extractor and equivalence are the ones used at calibration time.

    Attributes:
        differences: Setting name mapped to ``(calibration value, guard value)``.
    """

    def __init__(self, differences: dict[str, tuple[Any, Any]]) -> None:
        parts = [
            f"{name}: calibration has {cal!r}, guard has {guard!r}"
            for name, (cal, guard) in differences.items()
        ]
        message = (
            "calibration settings differ from the guard's ("
            + "; ".join(parts)
            + "); recalibrate with the guard's settings or build the guard from the calibration"
        )
        super().__init__(message)
        self.differences = differences


class UnknownPromptError(CPQGuardError, KeyError):
    """An offline model was asked a prompt that it has no samples or answers for.

    `ReplayChatModel` raises it for a prompt that its sample bank did not
    record, and `SimulatedChatModel` raises the subclass
    `UnknownSimulatedPromptError` for a prompt without an answer distribution.

    Attributes:
        prompt: The prompt text that was not found.
        known_prompts: Number of prompts the model can answer.
    """

    def __init__(
        self,
        prompt: str,
        known_prompts: int,
        *,
        source: str = "this model's prompts",
        fix: str = "send only prompts that the model knows",
    ) -> None:
        preview = prompt if len(prompt) <= 80 else prompt[:77] + "..."
        message = f"prompt {preview!r} is not in {source} ({known_prompts} prompts); {fix}"
        super().__init__(message)
        self.prompt = prompt
        self.known_prompts = known_prompts

    def __str__(self) -> str:
        # KeyError's own __str__ would wrap the message in quotes.
        return str(self.args[0])


class ModelQueryError(CPQGuardError, RuntimeError):
    """A model call failed permanently, after any retries.

    Attributes:
        samples_drawn: Number of successful samples drawn before the failure.
        attempts: Attempts made for the failing query.
    """

    def __init__(self, message: str, *, samples_drawn: int, attempts: int) -> None:
        super().__init__(message)
        self.samples_drawn = samples_drawn
        self.attempts = attempts


class ExtractionError(CPQGuardError, ValueError):
    """An answer extractor raised while reading a model response."""


class Abstained(CPQGuardError):
    """The guard abstained and was built with ``raise_on_abstain=True``.

    Route it with ``guard.with_fallbacks([...], exceptions_to_handle=(Abstained,))``.

    Attributes:
        result: The full `GuardResult`, with the samples that led to abstention.
    """

    def __init__(self, result: GuardResult) -> None:
        message = (
            f"the guard abstained after {result.num_queries} queries "
            f"(estimated missing mass {result.missing_mass:.3f}, threshold {result.threshold:.3f})"
        )
        super().__init__(message)
        self.result = result
