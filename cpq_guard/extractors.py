"""Answer extractors: turn a model response into the answer that gets clustered.

An extractor is a callable ``(text) -> str | None`` with a ``name``. ``None``
means the response has no extractable answer; the guard then counts the
sample in its own "no answer" cluster rather than dropping it, because a model
that often fails to answer should lead to larger sets or abstention.

The ``name`` is saved in calibration files: a guard refuses a calibration made
with a different extractor, since the coverage guarantee assumes the same
answers at calibration and at test time.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from cpq_guard.errors import InvalidParameterError, InvalidTypeError

__all__ = [
    "AnswerExtractor",
    "CallableExtractor",
    "FinalAnswerExtractor",
    "ParserExtractor",
    "RegexExtractor",
    "WholeTextExtractor",
    "as_extractor",
    "get_extractor",
]


@runtime_checkable
class AnswerExtractor(Protocol):
    """Anything that maps a response text to an answer, with a stable name."""

    name: str

    def __call__(self, text: str) -> str | None: ...


class WholeTextExtractor:
    """Use the whole response, stripped of surrounding white space; empty means no answer."""

    name = "text"

    def __call__(self, text: str) -> str | None:
        stripped = text.strip()
        return stripped or None

    def __repr__(self) -> str:
        return "WholeTextExtractor()"


class RegexExtractor:
    """Use a regular expression's match in the response.

    The answer is the named group ``answer`` if the pattern has one, else group 1
    if it has groups, else the whole match. With ``last=True`` (the default) the
    last match wins, since models restate the final answer at the end.
    """

    def __init__(self, pattern: str | re.Pattern[str], *, last: bool = True) -> None:
        try:
            self.pattern = re.compile(pattern) if isinstance(pattern, str) else pattern
        except re.error as exc:
            raise InvalidParameterError(
                "pattern", pattern, f"regex {pattern!r} is invalid: {exc}; fix the pattern"
            ) from exc
        self.last = last
        self.name = f"regex:{self.pattern.pattern}" + ("" if last else ":first")

    def __call__(self, text: str) -> str | None:
        matches = list(self.pattern.finditer(text))
        if not matches:
            return None

        match = matches[-1] if self.last else matches[0]
        if "answer" in self.pattern.groupindex:
            value = match.group("answer")
        elif self.pattern.groups:
            value = match.group(1)
        else:
            value = match.group(0)
        if value is None:
            return None
        return value.strip() or None

    def __repr__(self) -> str:
        return f"RegexExtractor({self.pattern.pattern!r}, last={self.last})"


_NUMBER = r"[-+]?\$?\s?\d[\d,]*(?:\.\d+)?%?"

# Final-answer conventions, tried in order; the last occurrence of the first
# convention that matches is the answer.
_FINAL_ANSWER_PATTERNS = (
    re.compile(r"\\boxed\{(?P<answer>[^{}]+)\}"),
    re.compile(r"####\s*(?P<answer>[^\n]+)"),
    re.compile(
        r"(?:final answer|the answer)\s*(?:is|:|=)\s*[:\s]*(?P<answer>[^\n]+?)\s*\.?\s*(?:\n|$)",
        re.IGNORECASE,
    ),
    re.compile(r"^\s*answer\s*[:=]\s*(?P<answer>[^\n]+?)\s*\.?\s*$", re.IGNORECASE | re.MULTILINE),
)


class FinalAnswerExtractor:
    """Find a final answer written in a common convention.

    Recognised, first match wins: ``\\boxed{35}``, ``#### 35`` (GSM8K),
    ``The answer is 35`` / ``Final answer: 35``, and a line ``Answer: 35``. With
    ``fallback="last-number"`` (the default) a response with none of these
    yields its last number; with ``fallback=None`` it yields no answer.
    """

    def __init__(self, *, fallback: str | None = "last-number") -> None:
        if fallback not in ("last-number", None):
            raise InvalidParameterError(
                "fallback", fallback, f"fallback={fallback!r} is invalid; use 'last-number' or None"
            )
        self.fallback = fallback
        self.name = "final-answer" if fallback else "final-answer:strict"

    def __call__(self, text: str) -> str | None:
        for pattern in _FINAL_ANSWER_PATTERNS:
            matches = list(pattern.finditer(text))
            if matches:
                answer = matches[-1].group("answer").strip().rstrip(".").strip()
                if answer:
                    return answer

        if self.fallback == "last-number":
            numbers = re.findall(_NUMBER, text)
            if numbers:
                return numbers[-1].strip()
        return None

    def __repr__(self) -> str:
        return f"FinalAnswerExtractor(fallback={self.fallback!r})"


class ParserExtractor:
    """Use a LangChain output parser (anything with ``parse(text)``).

    A parser that raises ``OutputParserException`` means no answer; other
    errors propagate. A non-string result is converted with ``str``.
    """

    def __init__(self, parser: Any, *, name: str | None = None) -> None:
        if not callable(getattr(parser, "parse", None)):
            raise InvalidTypeError(
                f"parser must have a parse(text) method, got {type(parser).__name__}"
            )
        self.parser = parser
        self.name = name or f"parser:{type(parser).__module__}.{type(parser).__qualname__}"

    def __call__(self, text: str) -> str | None:
        from langchain_core.exceptions import OutputParserException

        try:
            value = self.parser.parse(text)
        except OutputParserException:
            return None
        if value is None:
            return None
        answer = value if isinstance(value, str) else str(value)
        return answer.strip() or None

    def __repr__(self) -> str:
        return f"ParserExtractor({self.parser!r}, name={self.name!r})"


class CallableExtractor:
    """Wrap a plain function ``(text) -> str | None`` as an extractor."""

    def __init__(self, function: Callable[[str], str | None], *, name: str | None = None) -> None:
        if not callable(function):
            raise InvalidTypeError(f"extractor must be callable, got {type(function).__name__}")
        self.function = function
        qualified = getattr(function, "__qualname__", type(function).__qualname__)
        self.name = name or f"callable:{getattr(function, '__module__', '?')}.{qualified}"

    def __call__(self, text: str) -> str | None:
        value = self.function(text)
        if value is None:
            return None
        if not isinstance(value, str):
            raise InvalidTypeError(
                f"extractor {self.name!r} returned {type(value).__name__}, expected str or None"
            )
        return value.strip() or None

    def __repr__(self) -> str:
        return f"CallableExtractor({self.function!r}, name={self.name!r})"


def get_extractor(name: str) -> AnswerExtractor:
    """Build a built-in extractor from its saved name.

    Names: ``text``, ``final-answer``, ``final-answer:strict``, ``regex:PATTERN``
    and ``regex:PATTERN:first``.

    Raises:
        InvalidParameterError: For any other name, such as a custom callable's.
    """
    if name == "text":
        return WholeTextExtractor()
    if name == "final-answer":
        return FinalAnswerExtractor()
    if name == "final-answer:strict":
        return FinalAnswerExtractor(fallback=None)
    if name.startswith("regex:"):
        pattern = name[len("regex:") :]
        if pattern.endswith(":first"):
            return RegexExtractor(pattern[: -len(":first")], last=False)
        return RegexExtractor(pattern)
    raise InvalidParameterError(
        "extractor",
        name,
        f"extractor {name!r} is not a built-in; use 'text', 'final-answer', "
        "'final-answer:strict' or 'regex:PATTERN', or pass the extractor object itself",
    )


def as_extractor(
    value: AnswerExtractor | Callable[[str], str | None] | str | Any | None,
) -> AnswerExtractor:
    """Coerce a user-supplied extractor: a name, an extractor, a parser or a function.

    ``None`` gives the whole-text extractor.
    """
    if value is None:
        return WholeTextExtractor()
    if isinstance(value, str):
        return get_extractor(value)
    if isinstance(value, AnswerExtractor):
        return value
    if callable(getattr(value, "parse", None)):
        return ParserExtractor(value)
    if callable(value):
        return CallableExtractor(value)
    raise InvalidTypeError(
        f"extractor must be a name, an extractor, an output parser or a callable, "
        f"got {type(value).__name__}"
    )
