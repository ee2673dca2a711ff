"""Tests for the message helpers shared by the offline chat models."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from cpq_guard.errors import InvalidParameterError
from cpq_guard.models._messages import (
    build_stream_chunks,
    prompt_text,
    split_text,
    stable_hash,
    word_count_usage,
)


@given(st.text())
def test_split_text_round_trips(text: str) -> None:
    parts = split_text(text)

    assert "".join(parts) == text
    assert 1 <= len(parts) <= 4
    if text:
        assert all(parts)


def test_split_text_keeps_whitespace() -> None:
    text = "  first line\nsecond line  \n\tthird "

    parts = split_text(text)

    assert "".join(parts) == text
    assert 1 < len(parts) <= 4


def test_split_empty_text() -> None:
    assert split_text("") == [""]


def test_stable_hash_fixed() -> None:
    # The first 8 bytes of SHA-256("abc"), big-endian.
    assert stable_hash("abc") == 0xBA7816BF8F01CFEA


def test_prompt_text_last_human() -> None:
    messages = [HumanMessage("one"), AIMessage("two"), HumanMessage("three"), AIMessage("four")]

    assert prompt_text(messages) == "three"


def test_prompt_text_no_human() -> None:
    with pytest.raises(InvalidParameterError, match=r"\['system', 'ai'\]"):
        prompt_text([SystemMessage("a"), AIMessage("b")])


def test_usage_counts_all_messages() -> None:
    usage = word_count_usage([SystemMessage("be brief"), HumanMessage("what is 2 + 2")], "4")

    assert usage == {"input_tokens": 7, "output_tokens": 1, "total_tokens": 8}


def test_stream_chunks_sum() -> None:
    usage = word_count_usage([HumanMessage("a b")], "one two three four five")

    chunks = build_stream_chunks("one two three four five", usage, {"model_name": "m"})
    total = chunks[0].message
    for chunk in chunks[1:]:
        total = total + chunk.message

    assert total.content == "one two three four five"
    assert total.usage_metadata == usage
    assert total.response_metadata == {"model_name": "m"}
    assert [chunk.message.usage_metadata for chunk in chunks[:-1]] == [None] * (len(chunks) - 1)
