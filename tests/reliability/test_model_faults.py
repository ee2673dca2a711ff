"""Model faults while recording and calibrating: retries, hard failures, malformed responses.

The simulated model gives the k-th successful call for a prompt an answer
that depends only on ``(seed, prompt, k)``, and failed calls use no answer
index. So a recording whose failures were retried must contain the same
samples as a fault-free recording with the same seed. They come in the same
order when calls run one at a time, and as the same multiset per prompt when
calls overlap.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableLambda

from cpq_guard.answers import get_equivalence
from cpq_guard.banks import BankRecord, bank_content_hash, read_bank
from cpq_guard.errors import ModelQueryError
from cpq_guard.extractors import WholeTextExtractor
from cpq_guard.histories import histories_from_records
from cpq_guard.live_calibration import calibrate
from cpq_guard.querying import MalformedResponseError
from cpq_guard.recording import record_bank
from cpq_guard.retry import RetryPolicy

from .helpers import FAST_RETRY, PROMPTS, REFERENCES, make_model

SAMPLES = 6
COUNT = 10


def _texts(records: list[BankRecord]) -> dict[str, list[str]]:
    return {record.id: [sample.text for sample in record.samples] for record in records}


def _record(model: Any, path: Path, **kwargs: Any) -> list[BankRecord]:
    kwargs.setdefault("retry", FAST_RETRY)
    return record_bank(
        model, PROMPTS[:COUNT], REFERENCES[:COUNT], path, samples_per_prompt=SAMPLES, **kwargs
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> list[BankRecord]:
    """A fault-free recording, one call at a time."""
    path = tmp_path_factory.mktemp("reference") / "bank.jsonl"
    return _record(make_model(), path, max_concurrency=1)


# --- transient failures ---


def test_retried_failures_keep_samples(tmp_path: Path, reference: list[BankRecord]) -> None:
    model = make_model(failure_rate=0.3)

    records = _record(model, tmp_path / "bank.jsonl", max_concurrency=1)

    assert model.calls_failed > 0
    assert model.calls_succeeded == COUNT * SAMPLES
    assert _texts(records) == _texts(reference)
    assert bank_content_hash(read_bank(tmp_path / "bank.jsonl")) == bank_content_hash(reference)


@pytest.mark.parametrize("concurrency", [4, 16])
def test_concurrent_retries_keep_sample_sets(
    tmp_path: Path, reference: list[BankRecord], concurrency: int
) -> None:
    # Overlapping calls of one prompt may take its answer indices in another
    # order, so each prompt's samples are compared as a multiset.
    model = make_model(failure_rate=0.3, latency_jitter=0.002)

    records = _record(model, tmp_path / "bank.jsonl", max_concurrency=concurrency)

    assert model.calls_failed > 0
    assert model.max_in_flight <= concurrency
    assert {key: sorted(texts) for key, texts in _texts(records).items()} == {
        key: sorted(texts) for key, texts in _texts(reference).items()
    }


def test_hangs_time_out_and_keep_samples(tmp_path: Path, reference: list[BankRecord]) -> None:
    model = make_model(hang_rate=0.15, hang_seconds=30.0)

    records = _record(model, tmp_path / "bank.jsonl", max_concurrency=8, timeout=0.05)

    assert model.calls_cancelled > 0
    assert model.in_flight == 0
    assert {key: sorted(texts) for key, texts in _texts(records).items()} == {
        key: sorted(texts) for key, texts in _texts(reference).items()
    }


def test_calibrate_retries_match_fault_free(tmp_path: Path) -> None:
    settings: dict[str, Any] = {
        "alpha": 0.2,
        "average_budget": 4,
        "min_queries": 3,
        "max_queries": 6,
        "bootstrap": 5,
        "max_concurrency": 1,
        "retry": FAST_RETRY,
    }
    flaky = make_model(failure_rate=0.3)

    clean = calibrate(make_model(), PROMPTS, REFERENCES, bank=tmp_path / "clean.jsonl", **settings)
    retried = calibrate(flaky, PROMPTS, REFERENCES, bank=tmp_path / "flaky.jsonl", **settings)

    assert flaky.calls_failed > 0
    assert retried.model_dump(exclude={"created_at"}) == clean.model_dump(exclude={"created_at"})


# --- persistent failures ---


def _failing_on(prompt: str, model: Any) -> RunnableLambda:
    """Wrap ``model`` so that every call for ``prompt`` fails with a non-transient error."""

    async def respond(text: str) -> Any:
        if text == prompt:
            raise ValueError("the provider rejected the request")
        return await model.ainvoke(text)

    return RunnableLambda(respond)


def test_persistent_failure_keeps_finished_prompts(
    tmp_path: Path, reference: list[BankRecord]
) -> None:
    path = tmp_path / "bank.jsonl"
    failing = PROMPTS[5]

    with pytest.raises(ModelQueryError) as caught:
        _record(_failing_on(failing, make_model()), path, max_concurrency=1)

    assert caught.value.attempts == 1
    assert caught.value.samples_drawn == 0
    assert "ValueError: the provider rejected the request" in str(caught.value)
    assert isinstance(caught.value.__cause__, ValueError)

    # With one call at a time, prompts are sampled in order, so the first five
    # were finished and saved, each whole, before the sixth failed.
    saved = read_bank(path, allow_empty=True)
    expected = _texts(reference)
    assert [record.id for record in saved][:4] == [record.id for record in reference[:4]]
    assert failing not in {record.prompt for record in saved}
    for record in saved:
        assert [sample.text for sample in record.samples] == expected[record.id]

    # A rerun with a working model queries only the prompts that are missing.
    model = make_model()
    records = _record(model, path, max_concurrency=1)

    assert model.calls_started == (COUNT - len(saved)) * SAMPLES
    assert _texts(records) == expected
    assert len(read_bank(path)) == COUNT


def test_transient_failures_past_retries(tmp_path: Path) -> None:
    path = tmp_path / "bank.jsonl"
    retry = RetryPolicy(max_attempts=3, initial_wait=0.0, max_wait=0.0, jitter=0.0)

    with pytest.raises(ModelQueryError) as caught:
        _record(make_model(failure_rate=1.0), path, retry=retry, max_concurrency=2)

    assert caught.value.attempts == 3
    assert "SimulatedTransientError" in str(caught.value)
    assert "the error is transient: raise the retry limit" in str(caught.value)
    assert read_bank(path, allow_empty=True) == []


def test_calibrate_failure_keeps_bank(tmp_path: Path) -> None:
    bank = tmp_path / "bank.jsonl"
    settings: dict[str, Any] = {
        "alpha": 0.2,
        "lambda_": 0.002,
        "min_queries": 3,
        "max_queries": 6,
        "bootstrap": 5,
        "max_concurrency": 1,
        "retry": FAST_RETRY,
        "bank": bank,
    }

    with pytest.raises(ModelQueryError):
        calibrate(_failing_on(PROMPTS[20], make_model()), PROMPTS, REFERENCES, **settings)
    saved = len(read_bank(bank))
    model = make_model()
    resumed = calibrate(model, PROMPTS, REFERENCES, **settings)
    one_go = calibrate(make_model(), PROMPTS, REFERENCES, **{**settings, "bank": None})

    assert saved >= 18
    assert model.calls_started == (len(PROMPTS) - saved) * 6
    assert resumed.model_dump(exclude={"created_at"}) == one_go.model_dump(exclude={"created_at"})


# --- malformed responses ---


def _answering(message: Callable[[], Any]) -> RunnableLambda:
    return RunnableLambda(lambda text: message())


MALFORMED = [
    pytest.param(
        lambda: AIMessage(content="", tool_calls=[{"name": "lookup", "args": {}, "id": "1"}]),
        "the model answered with tool calls (lookup) instead of text",
        id="tool calls",
    ),
    pytest.param(
        lambda: AIMessage(content=[{"type": "image_url", "image_url": {"url": "x"}}]),
        "the model returned only non-text content blocks (image_url)",
        id="image block",
    ),
    pytest.param(
        lambda: {"answer": "4"},
        "the model returned dict, not a message or a string",
        id="not a message",
    ),
]


@pytest.mark.parametrize(("message", "fragment"), MALFORMED)
def test_malformed_response_not_recorded(
    tmp_path: Path, message: Callable[[], Any], fragment: str
) -> None:
    path = tmp_path / "bank.jsonl"

    with pytest.raises(ModelQueryError) as caught:
        _record(_answering(message), path)

    assert fragment in str(caught.value)
    assert isinstance(caught.value.__cause__, MalformedResponseError)
    assert caught.value.attempts == 1
    assert read_bank(path, allow_empty=True) == []


def test_empty_content_is_no_answer(tmp_path: Path) -> None:
    # An empty response is a sample without an answer, by design: it counts
    # towards the missing mass instead of being dropped or retried.
    records = _record(_answering(lambda: AIMessage(content="  ")), tmp_path / "bank.jsonl")

    assert all(sample.text == "  " for record in records for sample in record.samples)
    histories = histories_from_records(
        records, get_equivalence("normalized"), extract=WholeTextExtractor()
    )
    assert all(history.labels.tolist() == [0] * SAMPLES for history in histories)
    assert all(history.reference_labels == () for history in histories)
