"""Tests of `load_chat_model`: spec parsing, provider errors and the offline replay provider.

No test builds a hosted provider's model: the provider packages are not
installed, or ``init_chat_model`` is replaced by a fake.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from cpq_guard.banks import BankRecord, Sample, write_bank
from cpq_guard.errors import BankFormatError, InvalidParameterError, InvalidTypeError
from cpq_guard.model_loading import ModelLoadError, load_chat_model, split_model_spec
from cpq_guard.models import ReplayChatModel, ReplayExhaustedError


@pytest.fixture
def bank(tmp_path: Path) -> Path:
    """A bank with one prompt and two samples."""
    path = tmp_path / "bank.jsonl"
    record = BankRecord(
        id="q1", prompt="2 + 2?", references=["4"], samples=[Sample(text="4"), Sample(text="5")]
    )
    write_bank(path, [record])
    return path


@pytest.fixture
def fake_init(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Replace LangChain's init_chat_model by a fake that records its calls."""
    chat_models = pytest.importorskip("langchain.chat_models")
    calls: list[dict[str, Any]] = []

    def init_chat_model(model: str, **kwargs: Any) -> ReplayChatModel:
        calls.append({"model": model, **kwargs})
        return ReplayChatModel(records=[])

    monkeypatch.setattr(chat_models, "init_chat_model", init_chat_model)
    return calls


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("gpt-4o-mini", "has no provider;"),
        ("openai:", "has no model after ':'"),
        ("openai:  ", "has no model after ':'"),
        (":gpt-4o-mini", "has no provider before ':'"),
        ("", "has no provider;"),
    ],
)
def test_malformed_spec(spec: str, problem: str) -> None:
    with pytest.raises(ModelLoadError) as caught:
        load_chat_model(spec)

    message = str(caught.value)
    assert problem in message
    assert repr(spec.strip()) in message
    assert "PROVIDER:MODEL" in message
    assert "replay:BANK.jsonl" in message
    assert isinstance(caught.value, InvalidParameterError)
    assert caught.value.value == spec.strip()


def test_spec_must_be_string() -> None:
    with pytest.raises(InvalidTypeError, match="spec must be a string"):
        load_chat_model(42)  # type: ignore[arg-type]


def test_split_keeps_colons_in_model() -> None:
    assert split_model_spec("ollama:llama3.1:8b") == ("ollama", "llama3.1:8b")
    assert split_model_spec("Azure-OpenAI:gpt-4o") == ("azure_openai", "gpt-4o")


def test_unknown_provider() -> None:
    pytest.importorskip("langchain.chat_models")

    with pytest.raises(ModelLoadError) as caught:
        load_chat_model("nosuch:model-1")

    message = str(caught.value)
    assert "unknown model provider 'nosuch'" in message
    assert "'nosuch:model-1'" in message
    assert "openai" in message
    assert "replay" in message
    assert caught.value.missing_package is None


def test_missing_provider_package(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("langchain.chat_models")
    # A None entry makes the import fail even where langchain-openai is installed.
    monkeypatch.setitem(sys.modules, "langchain_openai", None)

    with pytest.raises(ModelLoadError) as caught:
        load_chat_model("openai:gpt-4o-mini")

    assert caught.value.missing_package == "langchain-openai"
    assert "pip install langchain-openai" in str(caught.value)
    assert "'openai:gpt-4o-mini'" in str(caught.value)
    assert isinstance(caught.value.__cause__, ImportError)


@pytest.mark.parametrize(
    ("spec", "package"),
    [
        ("openai:gpt-4o-mini", "langchain-openai"),
        ("google_genai:gemini-2.5-flash", "langchain-google-genai"),
        ("bedrock:anthropic.claude-3", "langchain-aws"),
    ],
)
def test_missing_langchain(monkeypatch: pytest.MonkeyPatch, spec: str, package: str) -> None:
    monkeypatch.setitem(sys.modules, "langchain.chat_models", None)

    with pytest.raises(ModelLoadError) as caught:
        load_chat_model(spec)

    message = str(caught.value)
    assert f'pip install "cpq-guard[models]" {package}' in message
    assert "langchain package" in message
    assert caught.value.missing_package == "langchain"


def test_missing_langchain_still_replays(monkeypatch: pytest.MonkeyPatch, bank: Path) -> None:
    monkeypatch.setitem(sys.modules, "langchain.chat_models", None)

    model = load_chat_model(f"replay:{bank}")

    assert isinstance(model, ReplayChatModel)


def test_passes_name_provider_options(fake_init: list[dict[str, Any]]) -> None:
    model = load_chat_model("openai:gpt-4o-mini", temperature=0.5)

    assert isinstance(model, ReplayChatModel)
    assert fake_init == [{"model": "gpt-4o-mini", "model_provider": "openai", "temperature": 0.5}]


def test_normalizes_provider(fake_init: list[dict[str, Any]]) -> None:
    load_chat_model(" Azure-OpenAI:gpt-4o ")
    load_chat_model("ollama:llama3.1:8b")

    assert fake_init[0]["model_provider"] == "azure_openai"
    assert fake_init[0]["model"] == "gpt-4o"
    assert fake_init[1] == {"model": "llama3.1:8b", "model_provider": "ollama"}


def test_constructor_error(monkeypatch: pytest.MonkeyPatch) -> None:
    chat_models = pytest.importorskip("langchain.chat_models")

    class OpenAIError(Exception):
        pass

    def init_chat_model(model: str, **kwargs: Any) -> None:
        raise OpenAIError("The api_key client option must be set\nmore detail")

    monkeypatch.setattr(chat_models, "init_chat_model", init_chat_model)

    with pytest.raises(ModelLoadError) as caught:
        load_chat_model("openai:gpt-4o-mini")

    message = str(caught.value)
    assert "cannot create chat model 'openai:gpt-4o-mini'" in message
    assert "OpenAIError: The api_key client option must be set;" in message
    assert "more detail" not in message
    assert "credentials" in message
    assert isinstance(caught.value.__cause__, OpenAIError)


def test_validation_error_hides_values(monkeypatch: pytest.MonkeyPatch) -> None:
    chat_models = pytest.importorskip("langchain.chat_models")

    class Options(BaseModel):
        api_key: int

    def init_chat_model(model: str, **kwargs: Any) -> None:
        Options(**kwargs)

    monkeypatch.setattr(chat_models, "init_chat_model", init_chat_model)

    with pytest.raises(ModelLoadError) as caught:
        load_chat_model("openai:gpt-4o-mini", api_key="sk-secret-value")

    assert "api_key:" in str(caught.value)
    assert "sk-secret-value" not in str(caught.value)


def test_logs_spec_not_option_values(
    fake_init: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="cpq_guard"):
        load_chat_model("openai:gpt-4o-mini", api_key="sk-secret-value")

    assert "sk-secret-value" not in caplog.text
    assert "api_key" in caplog.text
    info = [record for record in caplog.records if record.levelno == logging.INFO]
    assert any("openai:gpt-4o-mini" in record.getMessage() for record in info)


def test_replay_ordered_and_cycles(bank: Path) -> None:
    model = load_chat_model(f"replay:{bank}")

    assert isinstance(model, ReplayChatModel)
    assert model.mode == "ordered"
    assert model.on_exhausted == "cycle"
    texts = [model.invoke("2 + 2?").text for _ in range(5)]
    assert texts == ["4", "5", "4", "5", "4"]


def test_replay_options_override(bank: Path) -> None:
    model = load_chat_model(f"replay:{bank}", on_exhausted="raise")

    model.invoke("2 + 2?")
    model.invoke("2 + 2?")
    with pytest.raises(ReplayExhaustedError):
        model.invoke("2 + 2?")


def test_replay_unknown_option(bank: Path) -> None:
    with pytest.raises(ModelLoadError, match="foo: Extra inputs are not permitted"):
        load_chat_model(f"replay:{bank}", foo=1)


def test_replay_duplicate_prompts(tmp_path: Path) -> None:
    path = tmp_path / "duplicates.jsonl"
    samples = [Sample(text="4")]
    write_bank(
        path,
        [
            BankRecord(id="a", prompt="2 + 2?", samples=samples),
            BankRecord(id="b", prompt="2 + 2?", samples=samples),
        ],
    )

    with pytest.raises(ModelLoadError, match="records 'a' and 'b' have the same prompt"):
        load_chat_model(f"replay:{path}")


def test_replay_missing_bank(tmp_path: Path) -> None:
    with pytest.raises(BankFormatError, match=r"missing\.jsonl not found"):
        load_chat_model(f"replay:{tmp_path}/missing.jsonl")
