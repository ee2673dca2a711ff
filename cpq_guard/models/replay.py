"""A chat model that replays the recorded samples of a sample bank.

`ReplayChatModel` answers each prompt of a bank with that prompt's recorded
sample texts, so a calibration or an evaluation can rerun on recorded model
output without calling the model again. In ``"ordered"`` mode the i-th call
for a prompt returns its i-th sample. In ``"resample"`` mode every call draws
one of the prompt's samples uniformly with replacement, seeded.
"""

from __future__ import annotations

import logging
import os
from numbers import Integral
from typing import Any, Literal

from langchain_core.messages import BaseMessage
from langchain_core.messages.ai import UsageMetadata
from pydantic import PrivateAttr, model_validator

from cpq_guard.banks import BankRecord, read_bank
from cpq_guard.errors import CPQGuardError, InvalidParameterError, UnknownPromptError
from cpq_guard.models._offline import (
    STREAM_ANSWER,
    CallKey,
    CallPlan,
    OfflineChatModel,
    call_rng,
)

__all__ = ["ReplayChatModel", "ReplayExhaustedError"]

logger = logging.getLogger("cpq_guard")


class ReplayExhaustedError(CPQGuardError, IndexError):
    """An ordered replay received more calls for a prompt than the bank has samples for it.

    Also raised in any mode for a prompt whose record has no samples.

    Attributes:
        prompt: The prompt text.
        available: Number of samples the bank has for the prompt.
    """

    def __init__(self, prompt: str, available: int) -> None:
        preview = prompt if len(prompt) <= 80 else prompt[:77] + "..."
        if available == 0:
            message = (
                f"the sample bank has no samples for prompt {preview!r}; record samples "
                "for it or leave the prompt out"
            )
        else:
            message = (
                f"ordered replay of prompt {preview!r} is exhausted: the sample bank has "
                f"{available} sample(s) for it and all were returned; pass "
                "on_exhausted='cycle' to start again from the first sample, "
                "mode='resample' to draw with replacement, or call reset()"
            )
        super().__init__(message)
        self.prompt = prompt
        self.available = available


class ReplayChatModel(OfflineChatModel):
    """Chat model that returns the recorded samples of a bank's prompts.

    The prompt key is the text of the last human message, and it must equal a
    record's ``prompt`` exactly. Two records with the same prompt are rejected
    at construction, because a call could not tell which to replay. A call
    with a prompt that no record has raises `UnknownPromptError` and is not
    counted.

    The response text is the sample text verbatim. Usage metadata comes from
    the sample's ``metadata["usage"]`` when it has integer ``input_tokens``
    and ``output_tokens`` (``total_tokens`` defaults to their sum). Otherwise
    the response has no usage metadata. The response metadata holds the
    record id and the sample index.

    Modes, where k counts the earlier successful calls for the prompt:

    - ``"ordered"``: return sample k. Past the last sample, raise
      `ReplayExhaustedError` (``on_exhausted="raise"``) or return sample
      ``k % len(samples)`` (``on_exhausted="cycle"``).
    - ``"resample"``: return a sample drawn uniformly, a pure function of
      ``(seed, prompt, k)``. ``on_exhausted`` does not apply.

    A prompt whose record has no samples raises `ReplayExhaustedError` in
    both modes. `reset` restarts every prompt at k = 0.
    """

    model_name: str = "cpq-replay"

    records: list[BankRecord]
    """Records to replay, one per prompt."""

    mode: Literal["ordered", "resample"] = "ordered"
    """Replay order: the recorded order, or uniform draws with replacement."""

    on_exhausted: Literal["raise", "cycle"] = "raise"
    """Behaviour of an ordered replay past a prompt's last sample: raise or start again."""

    _records_by_prompt: dict[str, BankRecord] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _index_records(self) -> ReplayChatModel:
        by_prompt: dict[str, BankRecord] = {}
        for record in self.records:
            earlier = by_prompt.get(record.prompt)
            if earlier is not None:
                raise InvalidParameterError(
                    "records",
                    record.id,
                    f"records {earlier.id!r} and {record.id!r} have the same prompt, so a "
                    "replay could not tell which one to return; merge their samples into "
                    "one record or remove one",
                )
            by_prompt[record.prompt] = record
        self._records_by_prompt = by_prompt

        unreadable = sum(
            1
            for record in self.records
            for sample in record.samples
            if "usage" in sample.metadata and _usage_from_metadata(sample.metadata) is None
        )
        if unreadable:
            logger.warning(
                "%d replayed sample(s) have a 'usage' entry without integer input_tokens "
                "and output_tokens; their responses carry no usage metadata",
                unreadable,
            )
        return self

    @classmethod
    def from_bank(cls, path: str | os.PathLike[str], **kwargs: Any) -> ReplayChatModel:
        """Build a model that replays the bank file at ``path``.

        Keyword arguments go to the constructor.

        Raises:
            BankFormatError: the file is missing, unreadable or invalid.
            SchemaVersionError: the file has an unknown format tag.
        """
        return cls(records=read_bank(path), **kwargs)

    @property
    def _llm_type(self) -> str:
        return "cpq-replay"

    def _extra_identifying_params(self) -> dict[str, Any]:
        return {"prompts": len(self.records), "mode": self.mode, "on_exhausted": self.on_exhausted}

    def record_for(self, prompt: str) -> BankRecord:
        """Return the record whose samples calls with ``prompt`` replay.

        Raises:
            UnknownPromptError: no record has this prompt.
        """
        record = self._records_by_prompt.get(prompt)
        if record is None:
            raise UnknownPromptError(
                prompt,
                len(self._records_by_prompt),
                source="the sample bank",
                fix="replay only prompts that the bank recorded",
            )
        return record

    def _plan_call(self, key: CallKey, messages: list[BaseMessage]) -> CallPlan:
        record = self.record_for(key.prompt)
        available = len(record.samples)

        if available == 0:
            return CallPlan(error=ReplayExhaustedError(key.prompt, 0))
        if self.mode == "resample":
            rng = call_rng(self.seed, key.prompt_hash, key.answer_index, STREAM_ANSWER)
            index = int(rng.integers(available))
        elif key.answer_index < available:
            index = key.answer_index
        elif self.on_exhausted == "cycle":
            index = key.answer_index % available
        else:
            return CallPlan(error=ReplayExhaustedError(key.prompt, available))

        sample = record.samples[index]
        return CallPlan(
            text=sample.text,
            usage=_usage_from_metadata(sample.metadata),
            response_metadata={"record_id": record.id, "sample_index": index},
        )


def _usage_from_metadata(metadata: dict[str, Any]) -> UsageMetadata | None:
    usage = metadata.get("usage")
    if not isinstance(usage, dict):
        return None

    input_tokens = usage.get("input_tokens")
    output_tokens = usage.get("output_tokens")
    if not (_is_count(input_tokens) and _is_count(output_tokens)):
        return None

    total_tokens = usage.get("total_tokens")
    if not _is_count(total_tokens):
        total_tokens = int(input_tokens) + int(output_tokens)
    return UsageMetadata(
        input_tokens=int(input_tokens),
        output_tokens=int(output_tokens),
        total_tokens=int(total_tokens),
    )


def _is_count(value: object) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool) and int(value) >= 0
