"""Tests for the answer extractors and their coercion from names, parsers and functions."""

from __future__ import annotations

import re
from typing import Any

import pytest
from langchain_core.exceptions import OutputParserException
from langchain_core.output_parsers import StrOutputParser

from cpq_guard.errors import InvalidParameterError, InvalidTypeError
from cpq_guard.extractors import (
    AnswerExtractor,
    CallableExtractor,
    FinalAnswerExtractor,
    ParserExtractor,
    RegexExtractor,
    WholeTextExtractor,
    as_extractor,
    get_extractor,
)


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("#### 35", "35"),
        ("Janet has 16 eggs and eats 3.\n#### 13", "13"),
        ("The answer is 35.", "35"),
        ("the answer is: 12", "12"),
        ("Final answer: $1,000", "$1,000"),
        ("Final Answer = 42%", "42%"),
        ("The answer is 3.5.", "3.5"),
        ("\\boxed{42}", "42"),
        ("So x = 4, and \\boxed{4} is wrong; \\boxed{5}", "5"),
        ("Answer: 7", "7"),
        ("Reasoning first.\nanswer = 9\n", "9"),
        ("#### 1\nthen again\n#### 2", "2"),
        ("The answer is 8 but \\boxed{9}", "9"),
        ("I had 3 apples, then 5 more", "5"),
        ("Total: -4.25 degrees", "-4.25"),
        ("no number here", None),
        ("", None),
    ],
)
def test_final_answer(text: str, answer: str | None) -> None:
    assert FinalAnswerExtractor()(text) == answer


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("The answer is 35.", "35"),
        ("I had 3 apples, then 5 more", None),
        ("no number here", None),
    ],
)
def test_final_answer_strict(text: str, answer: str | None) -> None:
    assert FinalAnswerExtractor(fallback=None)(text) == answer


def test_final_answer_names() -> None:
    assert FinalAnswerExtractor().name == "final-answer"
    assert FinalAnswerExtractor(fallback=None).name == "final-answer:strict"


def test_final_answer_bad_fallback() -> None:
    with pytest.raises(InvalidParameterError, match="first-number"):
        FinalAnswerExtractor(fallback="first-number")


@pytest.mark.parametrize(
    ("pattern", "last", "text", "answer"),
    [
        (r"ANSWER\((?P<answer>\w+)\)", True, "ANSWER(a) then ANSWER(b)", "b"),
        (r"ANSWER\((?P<answer>\w+)\)", False, "ANSWER(a) then ANSWER(b)", "a"),
        (r"(\w+)=(\d+)", True, "x=1, y=2", "y"),
        (r"(?P<key>\w+)=(?P<answer>\d+)", True, "x=1, y=2", "2"),
        (r"\d+", True, "between 10 and 20", "20"),
        (r"\d+", False, "between 10 and 20", "10"),
        (r"\d+", True, "no digits", None),
        (r"ANSWER:(?P<answer>.*)", True, "ANSWER:   ", None),
        (r"A(?P<answer>\d)?", True, "A", None),
        (re.compile(r"(?i)yes|no"), True, "Yes, then NO", "NO"),
    ],
)
def test_regex(pattern: Any, last: bool, text: str, answer: str | None) -> None:
    assert RegexExtractor(pattern, last=last)(text) == answer


def test_regex_names() -> None:
    assert RegexExtractor(r"\d+").name == r"regex:\d+"
    assert RegexExtractor(r"\d+", last=False).name == r"regex:\d+:first"


def test_regex_invalid_pattern() -> None:
    with pytest.raises(InvalidParameterError, match=r"regex '\(unclosed' is invalid") as caught:
        RegexExtractor("(unclosed")

    assert caught.value.name == "pattern"


def test_whole_text() -> None:
    extractor = WholeTextExtractor()

    assert extractor("  Paris \n") == "Paris"
    assert extractor(" \n ") is None
    assert extractor.name == "text"


class RejectingParser:
    """A parser that rejects every text, as LangChain parsers do on malformed output."""

    def parse(self, text: str) -> str:
        raise OutputParserException(f"cannot parse {text!r}")


class NumberParser:
    def parse(self, text: str) -> int | None:
        digits = "".join(char for char in text if char.isdigit())
        return int(digits) if digits else None


class BrokenParser:
    def parse(self, text: str) -> str:
        raise RuntimeError("parser bug")


def test_parser_str_output() -> None:
    extractor = ParserExtractor(StrOutputParser())

    assert extractor("  42 ") == "42"
    assert extractor("   ") is None
    assert extractor.name.startswith("parser:")
    assert "StrOutputParser" in extractor.name


def test_parser_exception_no_answer() -> None:
    assert ParserExtractor(RejectingParser())("anything") is None


def test_parser_non_string_result() -> None:
    extractor = ParserExtractor(NumberParser(), name="numbers")

    assert extractor("a1b2") == "12"
    assert extractor("none") is None
    assert extractor.name == "numbers"


def test_parser_other_errors_propagate() -> None:
    with pytest.raises(RuntimeError, match="parser bug"):
        ParserExtractor(BrokenParser())("text")


def test_parser_needs_parse() -> None:
    with pytest.raises(InvalidTypeError, match="parse"):
        ParserExtractor(object())


def test_callable_strips() -> None:
    extractor = CallableExtractor(lambda text: f"  {text.upper()} ", name="upper")

    assert extractor("yes") == "YES"
    assert extractor.name == "upper"


def test_callable_blank_is_none() -> None:
    assert CallableExtractor(lambda text: "  ")("x") is None
    assert CallableExtractor(lambda text: None)("x") is None


def test_callable_non_string_rejected() -> None:
    extractor = CallableExtractor(lambda text: 42, name="number")

    with pytest.raises(InvalidTypeError, match="'number' returned int, expected str or None"):
        extractor("x")


def test_callable_default_name() -> None:
    def pick_last_word(text: str) -> str | None:
        return text.split()[-1] if text.split() else None

    extractor = CallableExtractor(pick_last_word)

    assert extractor.name.startswith("callable:")
    assert extractor.name.endswith("pick_last_word")


def test_callable_needs_callable() -> None:
    with pytest.raises(InvalidTypeError, match="callable"):
        CallableExtractor("not callable")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "kind", "probe", "answer"),
    [
        ("text", WholeTextExtractor, " Paris ", "Paris"),
        ("final-answer", FinalAnswerExtractor, "so 3 then 4", "4"),
        ("final-answer:strict", FinalAnswerExtractor, "so 3 then 4", None),
        (r"regex:\d+", RegexExtractor, "3 then 4", "4"),
        (r"regex:\d+:first", RegexExtractor, "3 then 4", "3"),
    ],
)
def test_get_extractor(name: str, kind: type, probe: str, answer: str | None) -> None:
    extractor = get_extractor(name)

    assert isinstance(extractor, kind)
    assert extractor.name == name
    assert extractor(probe) == answer


@pytest.mark.parametrize("name", ["callable:module.function", "parser:x.Y", "regexp:\\d", ""])
def test_get_extractor_unknown(name: str) -> None:
    with pytest.raises(InvalidParameterError, match="is not a built-in") as caught:
        get_extractor(name)

    assert caught.value.name == "extractor"


def test_as_extractor_coercions() -> None:
    final = FinalAnswerExtractor()

    assert isinstance(as_extractor(None), WholeTextExtractor)
    assert isinstance(as_extractor("final-answer"), FinalAnswerExtractor)
    assert as_extractor(final) is final
    assert isinstance(as_extractor(StrOutputParser()), ParserExtractor)
    assert isinstance(as_extractor(lambda text: text), CallableExtractor)
    assert isinstance(as_extractor(final), AnswerExtractor)


def test_as_extractor_rejects() -> None:
    with pytest.raises(InvalidTypeError, match="got int"):
        as_extractor(42)
