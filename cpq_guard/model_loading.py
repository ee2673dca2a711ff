"""Build a LangChain chat model from a ``PROVIDER:MODEL`` string.

`load_chat_model` names models as LangChain's ``init_chat_model`` does
(``openai:gpt-4o-mini``, ``anthropic:claude-sonnet-4-5``, ``ollama:llama3.1``)
and adds one offline provider, ``replay:PATH``, which replays a recorded
sample bank. ``init_chat_model`` comes from the ``langchain`` package (the
``models`` extra), and each provider needs its own integration package, such
as ``langchain-openai``. Every failure to build a model raises
`ModelLoadError`, whose message names the spec and the fix.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from cpq_guard.errors import InvalidParameterError, InvalidTypeError

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

__all__ = ["REPLAY_PROVIDER", "ModelLoadError", "load_chat_model", "split_model_spec"]

logger = logging.getLogger("cpq_guard")

REPLAY_PROVIDER = "replay"
"""Provider name of the built-in offline model that replays a sample bank."""

_SPEC_FORMAT = (
    "write PROVIDER:MODEL, such as openai:gpt-4o-mini or anthropic:claude-sonnet-4-5, "
    "or replay:BANK.jsonl to replay a recorded sample bank"
)

# Integration packages whose name is not "langchain-" plus the provider name.
# They are used only when langchain itself is missing; otherwise the failed
# import names the package.
_PROVIDER_PACKAGES = {
    "anthropic_bedrock": "langchain-aws",
    "azure_ai": "langchain-azure-ai",
    "azure_openai": "langchain-openai",
    "bedrock": "langchain-aws",
    "bedrock_converse": "langchain-aws",
    "google_anthropic_vertex": "langchain-google-vertexai",
    "langsmith": "langchain-openai",
    "nvidia": "langchain-nvidia-ai-endpoints",
}


class ModelLoadError(InvalidParameterError):
    """A model spec cannot be turned into a chat model.

    The spec is malformed, names an unknown provider, needs a package that is
    not installed, or the provider's constructor failed (for example for a
    missing API key).

    Attributes:
        name: Always ``"spec"``.
        value: The spec as given.
        missing_package: The pip package to install when one is missing, else ``None``.
    """

    def __init__(self, spec: str, message: str, *, missing_package: str | None = None) -> None:
        super().__init__("spec", spec, message)
        self.missing_package = missing_package


def load_chat_model(spec: str, **kwargs: Any) -> BaseChatModel:
    """Build the chat model that ``spec`` names.

    ``spec`` is ``PROVIDER:MODEL``. The provider is one that LangChain's
    ``init_chat_model`` supports, and the rest (which may contain colons, as
    Ollama tags do) is the model name. ``kwargs`` go to the model's
    constructor, such as ``temperature=0.7`` or ``base_url=...``.

    ``replay:PATH`` builds a `ReplayChatModel` over the sample bank at
    ``PATH``, in ``"ordered"`` mode with ``on_exhausted="cycle"``:

    - Ordered: the i-th query of a prompt returns the prompt's i-th recorded
      sample. So a guard that queries a bank prompt receives the samples that
      a calibration on that bank used, in the same order, and the samples are
      reproducible without a seed.
    - Cycle: a prompt asked again after its samples ran out (a second call on
      the same model object, or one guarded call that needs more samples than
      were recorded) starts again from its first sample instead of raising.
      A repeated sample counts as a new one, though, so a guarded call that
      wraps around sees too few distinct answers and underestimates the
      missing mass. Record at least the policy's ``max_queries`` samples per
      prompt, or pass ``on_exhausted="raise"`` to fail instead.

    ``kwargs`` override these settings for ``replay:`` (``mode``,
    ``on_exhausted``, ``seed``, ``latency``).

    Only the spec and the model class are logged (at INFO), and the names of
    ``kwargs`` at DEBUG, never their values, since they may contain API keys.

    Raises:
        InvalidTypeError: If ``spec`` is not a string.
        ModelLoadError: If the spec has no ``PROVIDER:`` prefix or no model
            name, names an unknown provider, needs ``langchain`` or a provider
            package that is not installed, or the model's constructor fails.
        BankFormatError: If a ``replay:`` bank is missing or invalid.
    """
    if not isinstance(spec, str):
        raise InvalidTypeError(
            f"spec must be a string such as 'openai:gpt-4o-mini', got {type(spec).__name__}"
        )
    spec = spec.strip()
    provider, model_name = split_model_spec(spec)
    if kwargs:
        logger.debug("chat model %s gets the options %s", spec, ", ".join(sorted(kwargs)))

    if provider == REPLAY_PROVIDER:
        model = _load_replay(spec, model_name, kwargs)
    else:
        model = _init_langchain_model(spec, provider, model_name, kwargs)

    logger.info("loaded chat model %s (%s)", spec, type(model).__name__)
    return model


def split_model_spec(spec: str) -> tuple[str, str]:
    """Split ``PROVIDER:MODEL`` at the first colon into a provider and a model name.

    The provider is lowercased with ``-`` replaced by ``_``, as
    ``init_chat_model`` normalises it. Whether the provider exists is not
    checked here, so this needs no optional package.

    Raises:
        ModelLoadError: If the spec has no colon, no provider or no model name.
    """
    provider, colon, model_name = spec.partition(":")
    if not colon:
        raise ModelLoadError(spec, f"model spec {spec!r} has no provider; {_SPEC_FORMAT}")
    if not provider.strip():
        raise ModelLoadError(
            spec, f"model spec {spec!r} has no provider before ':'; {_SPEC_FORMAT}"
        )
    if not model_name.strip():
        raise ModelLoadError(spec, f"model spec {spec!r} has no model after ':'; {_SPEC_FORMAT}")

    # init_chat_model normalises provider names the same way.
    return provider.strip().replace("-", "_").lower(), model_name.strip()


def _load_replay(spec: str, path: str, kwargs: dict[str, Any]) -> BaseChatModel:
    from cpq_guard.models.replay import ReplayChatModel

    options = {"mode": "ordered", "on_exhausted": "cycle", **kwargs}
    try:
        return ReplayChatModel.from_bank(Path(path).expanduser(), **options)
    except ValidationError as error:
        raise ModelLoadError(
            spec,
            f"cannot create the replay model {spec!r}: {_describe_validation_error(error)}; "
            "fix the bank, or pass only ReplayChatModel fields (such as mode, on_exhausted "
            "and seed) as options",
        ) from error


def _init_langchain_model(
    spec: str, provider: str, model_name: str, kwargs: dict[str, Any]
) -> BaseChatModel:
    try:
        from langchain.chat_models import init_chat_model
    except ImportError as error:
        package = _PROVIDER_PACKAGES.get(provider, "langchain-" + provider.replace("_", "-"))
        raise ModelLoadError(
            spec,
            f"model {spec!r} needs LangChain's init_chat_model from the langchain package, "
            f'which is not installed; run: pip install "cpq-guard[models]" {package}',
            missing_package="langchain",
        ) from error

    known = _known_providers()
    if known is not None and provider not in known:
        names = ", ".join(sorted({*known, REPLAY_PROVIDER}))
        raise ModelLoadError(
            spec,
            f"unknown model provider {provider!r} in {spec!r}; use one of {names}",
        )

    try:
        return init_chat_model(model_name, model_provider=provider, **kwargs)
    except ImportError as error:
        package = _missing_package(error, provider)
        raise ModelLoadError(
            spec,
            f"model {spec!r} needs the {package} package, which is not installed; "
            f"run: pip install {package}",
            missing_package=package,
        ) from error
    except Exception as error:
        # Provider constructors raise their SDK's own error classes (for a
        # missing API key, for example), which cpq-guard does not import, so
        # any error here means that the model could not be built.
        raise ModelLoadError(
            spec,
            f"cannot create chat model {spec!r}: {_describe_error(error)}; check the model "
            "name, the model options and the provider's credentials (such as its API key "
            "environment variable)",
        ) from error


def _known_providers() -> frozenset[str] | None:
    """Return the provider names that ``init_chat_model`` accepts, if langchain exposes them.

    NOTE: ``_BUILTIN_PROVIDERS`` is private to langchain (checked with 1.5.2).
    Without it, an unknown provider still fails, in ``init_chat_model``, and
    its error is reported as a failed model construction.
    """
    try:
        from langchain.chat_models import base
    except ImportError:
        return None

    registry = getattr(base, "_BUILTIN_PROVIDERS", None)
    if not isinstance(registry, dict):
        return None
    return frozenset(registry)


def _missing_package(error: ImportError, provider: str) -> str:
    """Name the pip package whose import failed, from the innermost `ModuleNotFoundError`."""
    current: BaseException | None = error
    module = None
    while current is not None:
        if isinstance(current, ImportError) and current.name:
            module = current.name
        current = current.__cause__
    if module is None:
        return _PROVIDER_PACKAGES.get(provider, "langchain-" + provider.replace("_", "-"))
    return module.split(".", maxsplit=1)[0].replace("_", "-")


def _describe_error(error: Exception) -> str:
    """Describe ``error`` in one line, without the input values that pydantic would show."""
    if isinstance(error, ValidationError):
        return _describe_validation_error(error)
    lines = str(error).strip().splitlines()
    first_line = lines[0] if lines else ""
    return f"{type(error).__name__}: {first_line}" if first_line else type(error).__name__


def _describe_validation_error(error: ValidationError) -> str:
    # include_input=False keeps option values, which may be API keys, out of the message.
    details = error.errors(include_url=False, include_input=False)
    parts = []
    for detail in details[:3]:
        message = detail["msg"]
        cause = detail.get("ctx", {}).get("error")
        if detail["type"] == "value_error" and cause is not None:
            message = str(cause)
        location = ".".join(str(part) for part in detail["loc"])
        parts.append(f"{location}: {message}" if location else message)
    if len(details) > 3:
        parts.append(f"and {len(details) - 3} more")
    return "; ".join(parts)
