"""Tests for ReplayChatModel: ordered and resampled replay, errors, usage and paths."""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage
from pydantic import ValidationError

from cpq_guard.banks import BankRecord, Sample, write_bank
from cpq_guard.errors import CPQGuardError, UnknownPromptError
from cpq_guard.models import ReplayChatModel, ReplayExhaustedError

SIGMAS = 4.5

TEXTS = ["The answer is 35.", "I get 36.", "  35\n\nso 35 ", "The answer is 40."]

RECORDS = [
    BankRecord(
        id="q1",
        prompt="How many legs do 7 spiders and 1 bird have?",
        references=["58"],
        samples=[
            Sample(text=text, metadata={"usage": {"input_tokens": 12, "output_tokens": i + 3}})
            for i, text in enumerate(TEXTS)
        ],
    ),
    BankRecord(
        id="q2",
        prompt="What is 6 times 7?",
        references=["42"],
        samples=[Sample(text="42"), Sample(text="The answer is 42.")],
    ),
    BankRecord(id="q3", prompt="Unrecorded question", samples=[]),
]
Q1 = RECORDS[0].prompt
Q2 = RECORDS[1].prompt


def make_model(**kwargs: object) -> ReplayChatModel:
    return ReplayChatModel(records=RECORDS, **kwargs)


def texts(model: ReplayChatModel, prompt: str, n: int) -> list[str]:
    return [str(model.invoke(prompt).content) for _ in range(n)]


def streamed_message(model: ReplayChatModel, prompt: str) -> AIMessageChunk:
    chunks = list(model.stream(prompt))
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    return total


# --- ordered mode ---


def test_ordered_returns_samples_in_order() -> None:
    model = make_model()

    assert texts(model, Q1, 4) == TEXTS


def test_ordered_prompts_have_own_cursors() -> None:
    model = make_model()

    observed = [model.invoke(prompt).content for prompt in [Q1, Q2, Q1, Q2, Q1]]

    assert observed == [TEXTS[0], "42", TEXTS[1], "The answer is 42.", TEXTS[2]]


def test_ordered_exhaustion_raises() -> None:
    model = make_model()
    texts(model, Q1, 4)

    with pytest.raises(ReplayExhaustedError) as info:
        model.invoke(Q1)

    error = info.value
    assert isinstance(error, CPQGuardError)
    assert isinstance(error, IndexError)
    assert error.prompt == Q1
    assert error.available == 4
    assert "4 sample(s)" in str(error)
    assert "on_exhausted='cycle'" in str(error)
    assert "mode='resample'" in str(error)
    assert "reset()" in str(error)
    assert model.calls_failed == 1
    assert model.calls_succeeded == 4


def test_ordered_cycle_wraps() -> None:
    model = make_model(on_exhausted="cycle")

    assert texts(model, Q1, 9) == TEXTS + TEXTS + TEXTS[:1]


def test_reset_restarts_cursors() -> None:
    model = make_model()
    texts(model, Q1, 4)

    model.reset()

    assert texts(model, Q1, 4) == TEXTS


def test_sample_index_in_metadata() -> None:
    model = make_model()

    indices = [model.invoke(Q2).response_metadata["sample_index"] for _ in range(2)]

    assert indices == [0, 1]
    assert model.invoke(Q1).response_metadata["record_id"] == "q1"


# --- resample mode ---


def test_resample_is_seeded() -> None:
    first = texts(make_model(mode="resample", seed=3), Q1, 40)
    second = texts(make_model(mode="resample", seed=3), Q1, 40)
    other = texts(make_model(mode="resample", seed=4), Q1, 40)

    assert first == second
    assert first != other


def test_resample_never_exhausts() -> None:
    model = make_model(mode="resample")

    observed = texts(model, Q2, 30)

    assert set(observed) <= {"42", "The answer is 42."}
    assert model.calls_failed == 0


def test_resample_uniform() -> None:
    model = make_model(mode="resample", seed=5)
    n = 1_200

    counts = Counter(model.invoke(Q1).response_metadata["sample_index"] for _ in range(n))

    tolerance = SIGMAS * math.sqrt(n * 0.25 * 0.75) + 1.0
    for index in range(4):
        assert abs(counts[index] - n / 4) <= tolerance, counts


def test_resample_reset_repeats() -> None:
    model = make_model(mode="resample", seed=6)
    first = texts(model, Q1, 20)

    model.reset()

    assert texts(model, Q1, 20) == first


# --- errors ---


def test_unknown_prompt_raises() -> None:
    model = make_model()

    with pytest.raises(UnknownPromptError) as info:
        model.invoke("What is 2 + 2?")

    assert isinstance(info.value, KeyError)
    assert info.value.prompt == "What is 2 + 2?"
    assert "3 prompts" in str(info.value)
    assert model.calls_started == 0


@pytest.mark.parametrize("mode", ["ordered", "resample"])
def test_empty_record_raises(mode: str) -> None:
    model = make_model(mode=mode, on_exhausted="cycle")

    with pytest.raises(ReplayExhaustedError, match="no samples") as info:
        model.invoke("Unrecorded question")

    assert info.value.available == 0


def test_duplicate_prompts_rejected() -> None:
    twin = BankRecord(id="q9", prompt=Q2, samples=[Sample(text="41")])

    with pytest.raises(ValidationError, match="'q2' and 'q9' have the same prompt"):
        ReplayChatModel(records=[*RECORDS, twin])


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"mode": "shuffled"}, "mode"),
        ({"on_exhausted": "wrap"}, "on_exhausted"),
        ({"seed": -2}, "seed"),
        ({"latency": -1.0}, "latency"),
        ({"recrods": []}, "recrods"),
    ],
)
def test_invalid_settings_rejected(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        make_model(**kwargs)


# --- usage metadata ---


def test_usage_from_sample_metadata() -> None:
    model = make_model()

    usages = [model.invoke(Q1).usage_metadata for _ in range(2)]

    assert usages == [
        {"input_tokens": 12, "output_tokens": 3, "total_tokens": 15},
        {"input_tokens": 12, "output_tokens": 4, "total_tokens": 16},
    ]


def test_usage_keeps_recorded_total() -> None:
    usage = {"input_tokens": 5, "output_tokens": 2, "total_tokens": 9}
    record = BankRecord(id="r", prompt="p", samples=[Sample(text="x", metadata={"usage": usage})])

    message = ReplayChatModel(records=[record]).invoke("p")

    assert message.usage_metadata == usage


def test_usage_absent_without_metadata() -> None:
    assert make_model().invoke(Q2).usage_metadata is None


def test_malformed_usage_ignored(caplog: pytest.LogCaptureFixture) -> None:
    bad = {"usage": {"prompt_tokens": 5, "completion_tokens": 2}}
    record = BankRecord(id="r", prompt="p", samples=[Sample(text="x", metadata=bad)])

    with caplog.at_level(logging.WARNING, logger="cpq_guard"):
        model = ReplayChatModel(records=[record])

    assert model.invoke("p").usage_metadata is None
    assert "1 replayed sample(s)" in caplog.text


# --- prompt key, bank files, paths ---


def test_prompt_key_is_last_human_message() -> None:
    model = make_model()
    messages = [SystemMessage("Be brief."), HumanMessage(Q1), AIMessage("58"), HumanMessage(Q2)]

    assert model.invoke(messages).content == "42"


def test_from_bank_reads_file(tmp_path: Path) -> None:
    path = tmp_path / "bank.jsonl"
    write_bank(path, RECORDS)

    model = ReplayChatModel.from_bank(path, on_exhausted="cycle")

    assert model.records == RECORDS
    assert model.on_exhausted == "cycle"
    assert texts(model, Q1, 4) == TEXTS


async def test_ainvoke_matches_invoke() -> None:
    model = make_model(mode="resample", seed=7)
    expected = texts(make_model(mode="resample", seed=7), Q1, 10)

    observed = [str((await model.ainvoke(Q1)).content) for _ in range(10)]

    assert observed == expected


def test_stream_returns_text_verbatim() -> None:
    model = make_model()
    texts(model, Q1, 2)

    message = streamed_message(model, Q1)

    assert message.content == TEXTS[2]
    assert message.usage_metadata == {"input_tokens": 12, "output_tokens": 5, "total_tokens": 17}
    assert message.response_metadata["sample_index"] == 2


async def test_astream_returns_samples_in_order() -> None:
    model = make_model()
    observed = []

    for _ in range(4):
        chunks = [chunk async for chunk in model.astream(Q1)]
        observed.append("".join(str(chunk.content) for chunk in chunks))

    assert observed == TEXTS


def test_stream_empty_text() -> None:
    record = BankRecord(id="r", prompt="p", samples=[Sample(text="")])

    message = streamed_message(ReplayChatModel(records=[record]), "p")

    assert message.content == ""


async def test_max_in_flight_under_gather() -> None:
    model = make_model(latency=0.05, on_exhausted="cycle")

    results = await asyncio.gather(*(model.ainvoke(Q1) for _ in range(6)))

    assert model.max_in_flight == 6
    assert Counter(str(message.content) for message in results) == Counter(TEXTS + TEXTS[:2])


def test_identifying_params() -> None:
    params = make_model(mode="resample", seed=2)._identifying_params

    assert params["mode"] == "resample"
    assert params["seed"] == 2
    assert params["prompts"] == 3
    assert make_model()._llm_type == "cpq-replay"
