"""Message helpers shared by the offline chat models.

Both offline models key their answers on the text of the last human message,
build the same kind of `AIMessage`, and split a response into a few stream
chunks. Keeping these steps here makes the simulated and the replayed model
treat the same input the same way.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGenerationChunk

from cpq_guard.errors import InvalidParameterError

__all__ = [
    "build_message",
    "build_stream_chunks",
    "count_words",
    "prompt_text",
    "split_text",
    "stable_hash",
    "word_count_usage",
]

_STREAM_PIECES = 4
"""Number of chunks a streamed response is split into, at most."""


def prompt_text(messages: Sequence[BaseMessage]) -> str:
    """Return the text of the last human message, which the offline models use as prompt key.

    String content is returned unchanged. For list content, the text blocks are
    joined without a separator and other blocks (images, tool calls) are
    dropped, as `BaseMessage.text` does in langchain-core 1.x.

    Raises:
        InvalidParameterError: ``messages`` contains no `HumanMessage`.
    """
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return str(message.text)

    kinds = [message.type for message in messages]
    raise InvalidParameterError(
        "messages",
        kinds,
        f"the input messages (types {kinds}) contain no human message, but the offline "
        "chat models look up their answers by the text of the last human message; "
        "add a HumanMessage or pass the prompt as a string",
    )


def stable_hash(text: str) -> int:
    """Return a 64-bit hash of ``text`` that is the same in every process.

    The built-in `hash` of a string changes between interpreter runs, so it
    cannot seed reproducible random streams. This takes the first 8 bytes of
    the SHA-256 digest of the UTF-8 text.
    """
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def count_words(text: str) -> int:
    """Count the whitespace-separated words in ``text``."""
    return len(text.split())


def word_count_usage(messages: Sequence[BaseMessage], response: str) -> UsageMetadata:
    """Estimate token usage as word counts.

    Input tokens are the words in the text of all input messages, because a
    hosted model bills the whole conversation. Output tokens are the words in
    the response. The counts are a stand-in for a tokenizer, used so that code
    which sums usage has nonzero numbers to sum.
    """
    input_tokens = sum(count_words(str(message.text)) for message in messages)
    output_tokens = count_words(response)
    return UsageMetadata(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=input_tokens + output_tokens,
    )


def build_message(
    text: str, usage: UsageMetadata | None, response_metadata: dict[str, Any]
) -> AIMessage:
    """Build the `AIMessage` of a non-streamed response."""
    return AIMessage(
        content=text,
        usage_metadata=usage,
        response_metadata=dict(response_metadata),
    )


def split_text(text: str, pieces: int = _STREAM_PIECES) -> list[str]:
    """Split ``text`` at whitespace into at most ``pieces`` non-empty parts.

    The parts concatenate back to ``text`` exactly, whitespace included. An
    empty text gives one empty part, so a stream always has a chunk.
    """
    # Each token is a word with the whitespace that follows it.
    tokens = re.findall(r"\S+\s*|\s+", text)
    if not tokens:
        return [text]

    size = -(-len(tokens) // pieces)
    return ["".join(tokens[start : start + size]) for start in range(0, len(tokens), size)]


def build_stream_chunks(
    text: str, usage: UsageMetadata | None, response_metadata: dict[str, Any]
) -> list[ChatGenerationChunk]:
    """Split a response into stream chunks whose sum is the non-streamed message.

    Usage metadata and response metadata go on the last chunk only: adding
    `AIMessageChunk` objects sums usage and concatenates string metadata
    values, so repeating them on every chunk would inflate both.
    """
    parts = split_text(text)
    chunks = [ChatGenerationChunk(message=AIMessageChunk(content=part)) for part in parts[:-1]]
    last = AIMessageChunk(
        content=parts[-1],
        usage_metadata=usage,
        response_metadata=dict(response_metadata),
        chunk_position="last",
    )
    chunks.append(ChatGenerationChunk(message=last))
    return chunks
