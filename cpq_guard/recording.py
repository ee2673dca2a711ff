"""Record a model's samples for a list of prompts into a sample bank.

Recording is the expensive step of calibration: every calibration prompt is
sent ``samples_per_prompt`` times. So it runs queries concurrently (bounded
by ``max_concurrency`` in flight in total), retries transient failures, and
appends each prompt to the bank as soon as all its samples are in, with a
flush and fsync. A crash loses at most the prompts still being sampled, and a
second run with the same bank resumes: prompts whose id is already in the
bank are not queried again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from langchain_core.callbacks import AsyncCallbackManager
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import ensure_config, patch_config
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cpq_guard._validation import check_int, check_timeout
from cpq_guard.banks import BankRecord, BankWriter, Sample, read_bank
from cpq_guard.errors import InvalidParameterError, InvalidTypeError
from cpq_guard.querying import QueryOutcome, aquery
from cpq_guard.retry import RetryPolicy

__all__ = ["arecord_bank", "prompt_id", "record_bank"]

logger = logging.getLogger("cpq_guard")


def prompt_id(prompt: str) -> str:
    """Derive a stable bank id from a prompt's text (``p-`` and 16 hex digits of SHA-256)."""
    return "p-" + hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:16]


def _check_inputs(
    prompts: Sequence[str],
    references: Sequence[Sequence[str] | str] | None,
    ids: Sequence[str] | None,
) -> tuple[list[str], list[list[str]], list[str]]:
    if isinstance(prompts, str) or not isinstance(prompts, Sequence):
        raise InvalidTypeError(f"prompts must be a list of strings, got {type(prompts).__name__}")
    for position, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise InvalidTypeError(
                f"prompts[{position}] must be a string, got {type(prompt).__name__}"
            )
    if not prompts:
        raise InvalidParameterError("prompts", [], "prompts is empty; pass at least one prompt")

    if references is None:
        reference_lists: list[list[str]] = [[] for _ in prompts]
    else:
        if len(references) != len(prompts):
            raise InvalidParameterError(
                "references",
                len(references),
                f"got {len(prompts)} prompts but {len(references)} references; "
                "pass one reference (or a list of references) per prompt",
            )
        reference_lists = [
            _reference_list(item, position) for position, item in enumerate(references)
        ]

    if ids is None:
        id_list = [prompt_id(prompt) for prompt in prompts]
    else:
        if len(ids) != len(prompts):
            raise InvalidParameterError(
                "ids", len(ids), f"got {len(prompts)} prompts but {len(ids)} ids; pass one id each"
            )
        id_list = list(ids)
        for position, identifier in enumerate(id_list):
            if not isinstance(identifier, str):
                raise InvalidTypeError(
                    f"ids[{position}] must be a string, got {type(identifier).__name__} "
                    f"{identifier!r}"
                )
            if not identifier:
                raise InvalidParameterError(
                    "ids", identifier, f"ids[{position}] is empty; give every prompt a non-empty id"
                )

    seen: dict[str, int] = {}
    for position, identifier in enumerate(id_list):
        if identifier in seen:
            raise InvalidParameterError(
                "prompts" if ids is None else "ids",
                identifier,
                f"prompts {seen[identifier]} and {position} have the same id {identifier!r}"
                + (" (the same text)" if ids is None else "")
                + "; remove the duplicate",
            )
        seen[identifier] = position
    return list(prompts), reference_lists, id_list


def _reference_list(item: object, position: int) -> list[str]:
    """Return one prompt's references as a list: a string, or a sequence of strings."""
    if isinstance(item, str):
        return [item]
    if isinstance(item, Sequence) and all(isinstance(reference, str) for reference in item):
        return list(item)
    raise InvalidTypeError(
        f"references[{position}] must be a string or a list of strings, got "
        f"{type(item).__name__} {item!r}"
    )


def _check_query_settings(model: object, retry: object, timeout: object) -> None:
    if not isinstance(model, Runnable):
        raise InvalidTypeError(
            f"model must be a LangChain chat model or Runnable, got {type(model).__name__}"
        )
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise InvalidTypeError(f"retry must be a RetryPolicy, got {type(retry).__name__}")
    check_timeout(timeout)


async def arecord_bank(
    model: Runnable,
    prompts: Sequence[str],
    references: Sequence[Sequence[str] | str] | None,
    path: str | Path,
    *,
    samples_per_prompt: int,
    ids: Sequence[str] | None = None,
    max_concurrency: int = 8,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
    progress: bool = False,
    config: RunnableConfig | None = None,
) -> list[BankRecord]:
    """Record ``samples_per_prompt`` samples of every prompt into the bank at ``path``.

    Args:
        model: The chat model (or Runnable returning a message or string).
        prompts: Prompt texts, sent as the model's input.
        references: Reference answer(s) of each prompt, stored in the bank.
        path: The bank file; prompts already in it are skipped.
        samples_per_prompt: Samples to draw per prompt.
        ids: Bank ids; default ids derive from the prompt text (`prompt_id`).
        max_concurrency: Model calls in flight at once, over all prompts.
        retry: How transient failures are retried.
        timeout: Seconds allowed per model call attempt.
        progress: Show a progress bar on the terminal.
        config: Runnable config (callbacks, tags) for the model calls.

    Returns:
        The records of ``prompts``, in their order, read back from the bank.

    Raises:
        ModelQueryError: If a query fails permanently; finished prompts stay saved.
        InvalidParameterError: If a prompt id is in the bank with another prompt text,
            ``prompts`` is empty, two prompts share an id, the lengths of ``prompts``,
            ``references`` and ``ids`` differ, or a number is out of range. Every
            argument is checked before the first model call.
        InvalidTypeError: If an argument has the wrong type.
        BankFormatError: If the existing bank has an invalid line.
    """
    _check_query_settings(model, retry, timeout)
    prompts, reference_lists, id_list = _check_inputs(prompts, references, ids)
    samples_per_prompt = check_int(samples_per_prompt, "samples_per_prompt", minimum=1)
    max_concurrency = check_int(max_concurrency, "max_concurrency", minimum=1)
    retry = retry or RetryPolicy()
    config = ensure_config(config)
    limiter = asyncio.Semaphore(max_concurrency)

    with BankWriter(path) as writer:
        _check_existing_prompts(path, prompts, id_list)
        todo = [position for position, identifier in enumerate(id_list) if identifier not in writer]
        if len(todo) < len(prompts):
            logger.info(
                "sample bank %s already has %d of %d prompts; recording the other %d",
                path,
                len(prompts) - len(todo),
                len(prompts),
                len(todo),
            )

        callback_manager = AsyncCallbackManager.configure(
            config.get("callbacks"), inheritable_tags=config.get("tags")
        )
        run_manager = await callback_manager.on_chain_start(
            None, {"prompts": len(todo)}, name="cpq-record"
        )

        async def one_query(prompt: str, index: int) -> QueryOutcome:
            async with limiter:
                return await aquery(
                    model,
                    prompt,
                    patch_config(config, callbacks=None),
                    run_manager,
                    index=index,
                    retry=retry,
                    timeout=timeout,
                )

        async def one_prompt(position: int) -> None:
            prompt = prompts[position]
            outcomes = await asyncio.gather(
                *(one_query(prompt, index) for index in range(samples_per_prompt))
            )
            record = BankRecord(
                id=id_list[position],
                prompt=prompt,
                references=reference_lists[position],
                samples=[_sample(outcome) for outcome in outcomes],
            )
            writer.append(record)

        with _progress_bar(progress, len(todo)) as advance:
            tasks = [asyncio.ensure_future(one_prompt(position)) for position in todo]
            try:
                for finished in asyncio.as_completed(tasks):
                    await finished
                    advance()
            except BaseException as exc:
                for pending in tasks:
                    pending.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await run_manager.on_chain_error(exc)
                raise
        await run_manager.on_chain_end({"recorded": len(todo)})

    return _records_in_order(path, id_list)


def record_bank(
    model: Runnable,
    prompts: Sequence[str],
    references: Sequence[Sequence[str] | str] | None,
    path: str | Path,
    **kwargs: Any,
) -> list[BankRecord]:
    """Record samples from synchronous code; see `arecord_bank` for the arguments.

    Raises:
        RuntimeError: If called from a running event loop; await `arecord_bank` there.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(arecord_bank(model, prompts, references, path, **kwargs))
    raise RuntimeError(
        "record_bank() was called from a running event loop; await arecord_bank() instead"
    )


def _sample(outcome: QueryOutcome) -> Sample:
    metadata: dict[str, Any] = {}
    usage = outcome.usage
    if not usage.responses_without_usage:
        metadata["usage"] = {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "total_tokens": usage.total_tokens,
        }
    return Sample(text=outcome.text, metadata=metadata)


def _check_existing_prompts(path: str | Path, prompts: list[str], id_list: list[str]) -> None:
    recorded = {record.id: record.prompt for record in read_bank(path, allow_empty=True)}
    for prompt, identifier in zip(prompts, id_list):
        if identifier in recorded and recorded[identifier] != prompt:
            raise InvalidParameterError(
                "ids",
                identifier,
                f"bank {path} has id {identifier!r} with another prompt text; "
                "use a new bank file or other ids",
            )


def _records_in_order(path: str | Path, id_list: list[str]) -> list[BankRecord]:
    by_id = {record.id: record for record in read_bank(path)}
    return [by_id[identifier] for identifier in id_list]


@contextlib.contextmanager
def _progress_bar(enabled: bool, total: int) -> Iterator[Callable[[], None]]:
    """Yield a function that advances a terminal progress bar by one prompt."""
    if not enabled:
        yield lambda: None
        return

    columns = (TextColumn("recording"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task("prompts", total=total)
        yield lambda: bar.advance(task)
