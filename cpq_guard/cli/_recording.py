"""Record the prompts of a prompts file into a sample bank, resuming an existing bank.

``record`` and ``calibrate --model`` both call `inspect_bank` before any
model call, to report what the bank already has and to catch a bank that
does not fit the prompts file, and then `record_prompts`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cpq_guard.banks import BankRecord, BankWriter, read_bank
from cpq_guard.cli._errors import CommandError
from cpq_guard.cli._progress import stderr_progress
from cpq_guard.cli._prompts import PromptEntry
from cpq_guard.cli._query_options import QuerySettings

if TYPE_CHECKING:
    from langchain_core.runnables import Runnable

logger = logging.getLogger("cpq_guard")


@dataclass(frozen=True)
class BankState:
    """The prompts of a prompts file that a sample bank already contains.

    Attributes:
        recorded: Ids of the prompts that are in the bank, which are not queried again.
        short: Ids of those recorded with fewer samples than requested.
        other_references: Ids of those whose references differ from the prompts file's.
    """

    recorded: set[str] = field(default_factory=set)
    short: list[str] = field(default_factory=list)
    other_references: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class UsageTotals:
    """Token counts summed over recorded samples.

    Attributes:
        input_tokens: Prompt tokens.
        output_tokens: Response tokens.
        total_tokens: Tokens as the provider totals them.
        samples_without_usage: Samples whose response reported no usage.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    samples_without_usage: int = 0


def inspect_bank(
    path: Path, entries: Sequence[PromptEntry], samples: int, prompts_path: str
) -> BankState:
    """Find which prompts ``path`` already has, and check that they are the same prompts.

    A bank that does not exist yet has none. A cut-off last line, left by a
    crash, is removed first, as the recording would remove it.

    Raises:
        CommandError: If the bank has one of the ids with another prompt text.
        BankFormatError: If the bank has an invalid line.
        SchemaVersionError: If the bank has an unknown format tag.
    """
    if not path.exists():
        return BankState()

    BankWriter(path).close()
    existing = {record.id: record for record in read_bank(path, allow_empty=True)}

    state = BankState()
    for entry in entries:
        record = existing.get(entry.id)
        if record is None:
            continue
        if record.prompt != entry.prompt:
            raise CommandError(
                f"sample bank {path} has id {entry.id!r} with another prompt text than "
                f"{prompts_path}, line {entry.line}; use a new bank file, or give the prompt "
                "another id"
            )
        state.recorded.add(entry.id)
        if len(record.samples) < samples:
            state.short.append(entry.id)
        if record.references != entry.references:
            state.other_references.append(entry.id)
    return state


def record_prompts(
    model: Runnable,
    entries: Sequence[PromptEntry],
    path: Path,
    *,
    samples: int,
    settings: QuerySettings,
    state: BankState,
) -> list[BankRecord]:
    """Record ``samples`` samples of every prompt not yet in the bank at ``path``.

    ``state`` is what `inspect_bank` found in the bank; it sizes the progress bar.

    Shows a progress bar of the model calls on stderr when stderr is a
    terminal. Every prompt is appended to the bank as soon as all its
    samples are in, so an interrupted run loses at most the prompts still
    being sampled, and a rerun resumes.

    Returns:
        The bank's records of ``entries``, in their order.

    Raises:
        ModelQueryError: If a model call fails permanently; finished prompts stay saved.
    """
    from langchain_core.callbacks import BaseCallbackHandler

    from cpq_guard.recording import record_bank

    todo = sum(1 for entry in entries if entry.id not in state.recorded)
    progress = stderr_progress("recording samples")

    class _CountCalls(BaseCallbackHandler):
        """Advance the progress bar once per model call that returned."""

        # Run in the event loop's thread, not in an executor, since the
        # handler only updates a counter.
        run_inline = True

        def on_llm_end(self, response: Any, **kwargs: Any) -> None:
            progress.advance(task)

    with progress:
        task = progress.add_task("recording", total=todo * samples)
        return record_bank(
            model,
            [entry.prompt for entry in entries],
            [entry.references for entry in entries],
            path,
            samples_per_prompt=samples,
            ids=[entry.id for entry in entries],
            max_concurrency=settings.max_concurrency,
            retry=settings.retry_policy(),
            timeout=settings.timeout,
            config={"callbacks": [_CountCalls()]},
        )


def sum_usage(records: Sequence[BankRecord]) -> UsageTotals:
    """Sum the token usage that `record_bank` stored in each sample's metadata."""
    input_tokens = output_tokens = total_tokens = without = 0
    for record in records:
        for sample in record.samples:
            usage = sample.metadata.get("usage")
            if not isinstance(usage, dict):
                without += 1
                continue
            input_tokens += int(usage.get("input_tokens", 0))
            output_tokens += int(usage.get("output_tokens", 0))
            total_tokens += int(usage.get("total_tokens", 0))
    return UsageTotals(input_tokens, output_tokens, total_tokens, without)


def describe_tokens(
    input_tokens: int, output_tokens: int, total_tokens: int, responses_without_usage: int
) -> str:
    """Describe token counts in one line, or state that the model reported none."""
    if not (input_tokens or output_tokens or total_tokens) and responses_without_usage:
        return "not reported by the model"
    text = f"{input_tokens} input, {output_tokens} output, {total_tokens} total"
    if responses_without_usage:
        text += f" ({responses_without_usage} responses reported no usage)"
    return text


def describe_usage(usage: UsageTotals) -> str:
    """Describe the token counts of recorded samples in one line."""
    return describe_tokens(
        usage.input_tokens, usage.output_tokens, usage.total_tokens, usage.samples_without_usage
    )


def print_resume_line(out: Path, total: int, state: BankState) -> None:
    """Print how many of the ``total`` prompts the bank already has, if any."""
    present = len(state.recorded)
    if present == total:
        print(f"sample bank {out} already has all {present} prompts; nothing to record")
    elif present:
        print(
            f"sample bank {out} already has {present} of {total} prompts; "
            f"recording the other {total - present}"
        )
