"""`CPQGuard`: a LangChain Runnable that answers with a calibrated set or abstains.

The guard queries the wrapped model for the same input until its calibrated
stopping policy stops, groups the answers, and returns a `GuardResult`: the
answers whose estimated probability clears the conformal threshold, or an
abstention when the estimated missing mass is too large. Over prompts drawn
like the calibration prompts, the correct answer is in the set, or the guard
abstains, with probability at least ``1 - alpha``.

It follows the Runnable contract: ``invoke``, ``ainvoke``, ``batch``,
``abatch``, ``stream``, ``astream`` and ``astream_events`` all work, the
caller's config (callbacks, tags, metadata, run name) propagates, and every
model call is a child run of the guard's run.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.callbacks import AsyncCallbackManagerForChainRun, CallbackManagerForChainRun
from langchain_core.language_models import BaseLanguageModel, LanguageModelInput
from langchain_core.messages import BaseMessage
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import ensure_config
from pydantic import BaseModel
from typing_extensions import override

from cpq_guard._validation import check_int, check_timeout
from cpq_guard.answers import Equivalence, get_equivalence
from cpq_guard.calibration import Calibration
from cpq_guard.errors import (
    Abstained,
    CalibrationMismatchError,
    InvalidTypeError,
)
from cpq_guard.extractors import AnswerExtractor, as_extractor
from cpq_guard.querying import QueryOutcome, aquery, query
from cpq_guard.result import GuardResult, TokenUsage
from cpq_guard.retry import RetryPolicy
from cpq_guard.sampling import SamplingSession
from cpq_guard.stats.policies import DerivativePolicy, FixedPolicy, MissingMassPolicy

__all__ = ["CPQGuard"]

logger = logging.getLogger("cpq_guard")


class CPQGuard(Runnable[LanguageModelInput, GuardResult]):
    """Guard a chat model with CPQ: a calibrated answer set, or an abstention.

    Args:
        model: Any chat model, or any Runnable whose output is a message or a string.
        calibration: A `Calibration`, or the path of a saved one.
        extractor: Turns a response into an answer: a built-in name (``"text"``,
            ``"final-answer"``, ``"regex:..."``), an extractor, a LangChain output
            parser or a function. Defaults to the calibration's extractor.
        equivalence: Groups answers: a built-in name or an `Equivalence`.
            Defaults to the calibration's equivalence.
        policy: Optional stopping policy; it must equal the calibration's, and
            exists so that code can state the policy it expects.
        max_concurrency: Queries in flight at once per guarded input in the async
            path (``ainvoke``, ``abatch``); the sync path queries one at a time.
            At most ``max_concurrency - 1`` queries run past the stopping point,
            to be discarded or cancelled.
        retry: How transient model failures are retried.
        timeout: Seconds allowed per model call attempt; ``None`` for no limit.
        seed: Makes sampling decisions reproducible: with a seed, the bootstrap and
            the tie-breaking noise for an input depend only on the seed and the input.
        raise_on_abstain: Raise `Abstained` instead of returning an abstaining result,
            for use with ``with_fallbacks(..., exceptions_to_handle=(Abstained,))``.

    Raises:
        CalibrationMismatchError: If the extractor, equivalence or policy differ
            from those the calibration was made with.
        InvalidTypeError: If an argument has the wrong type.
        InvalidParameterError: If ``max_concurrency`` is below 1, ``timeout`` is
            not positive, ``seed`` is negative, or an extractor or equivalence
            name is unknown.
        CalibrationFormatError: If a calibration path is missing or invalid.
        SchemaVersionError: If a calibration file has an unknown schema version.
    """

    def __init__(
        self,
        model: Runnable,
        calibration: Calibration | str | Path,
        *,
        extractor: Any = None,
        equivalence: Equivalence | str | None = None,
        policy: FixedPolicy | MissingMassPolicy | DerivativePolicy | None = None,
        max_concurrency: int = 1,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        seed: int | None = None,
        raise_on_abstain: bool = False,
    ) -> None:
        if not isinstance(model, Runnable):
            raise InvalidTypeError(
                f"model must be a LangChain chat model or Runnable, got {type(model).__name__}"
            )
        if isinstance(calibration, (str, Path)):
            calibration = Calibration.load(calibration)
        elif not isinstance(calibration, Calibration):
            raise InvalidTypeError(
                "calibration must be a Calibration or the path of a calibration file, "
                f"got {type(calibration).__name__}"
            )

        self.model = model
        self.calibration = calibration
        self.extractor: AnswerExtractor = as_extractor(
            calibration.extractor if extractor is None else extractor
        )
        self.equivalence: Equivalence = (
            get_equivalence(equivalence or calibration.equivalence)
            if equivalence is None or isinstance(equivalence, str)
            else equivalence
        )
        if not isinstance(self.equivalence, Equivalence):
            raise InvalidTypeError(
                "equivalence must be a built-in name or an object with a 'name' attribute and "
                f"an 'equivalent(a, b)' method, got {type(equivalence).__name__}"
            )
        if policy is not None and not isinstance(
            policy, (FixedPolicy, MissingMassPolicy, DerivativePolicy)
        ):
            raise InvalidTypeError(
                "policy must be a FixedPolicy, MissingMassPolicy or DerivativePolicy, "
                f"got {type(policy).__name__}; or leave it out to use the calibration's"
            )
        self.max_concurrency = check_int(max_concurrency, "max_concurrency", minimum=1)
        self.retry = retry if retry is not None else RetryPolicy()
        if not isinstance(self.retry, RetryPolicy):
            raise InvalidTypeError(f"retry must be a RetryPolicy, got {type(retry).__name__}")
        self.timeout = check_timeout(timeout)
        self.seed = None if seed is None else check_int(seed, "seed", minimum=0)
        self.raise_on_abstain = bool(raise_on_abstain)

        self._check_calibration(policy)

    def _check_calibration(self, policy: BaseModel | None) -> None:
        expected = self.calibration
        differences: dict[str, tuple[Any, Any]] = {}
        if self.extractor.name != expected.extractor:
            differences["extractor"] = (expected.extractor, self.extractor.name)
        name = getattr(self.equivalence, "name", None)
        if name != expected.equivalence:
            differences["equivalence"] = (expected.equivalence, name)
        if policy is not None and policy != expected.policy:
            differences["policy"] = (
                expected.policy.model_dump(by_alias=True),
                policy.model_dump(by_alias=True),
            )
        if differences:
            raise CalibrationMismatchError(differences)

    # -- Runnable contract -------------------------------------------------

    @property
    @override
    def InputType(self) -> Any:
        return self.model.InputType

    @property
    @override
    def OutputType(self) -> type[GuardResult]:
        return GuardResult

    @override
    def get_input_schema(self, config: RunnableConfig | None = None) -> type[BaseModel]:
        return self.model.get_input_schema(config)

    @override
    def get_name(self, suffix: str | None = None, *, name: str | None = None) -> str:
        return super().get_name(suffix, name=name or "CPQGuard")

    @override
    def invoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> GuardResult:
        return self._call_with_config(self._invoke, input, ensure_config(config), **kwargs)

    @override
    async def ainvoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> GuardResult:
        return await self._acall_with_config(self._ainvoke, input, ensure_config(config), **kwargs)

    def __repr__(self) -> str:
        return (
            f"CPQGuard(model={type(self.model).__name__}, alpha={self.calibration.alpha}, "
            f"tau={self.calibration.tau:.4f}, policy={self.calibration.policy.kind}, "
            f"extractor={self.extractor.name!r}, max_concurrency={self.max_concurrency})"
        )

    # -- sampling ----------------------------------------------------------

    def _check_input(self, input: object) -> None:
        # A language model would reject any other input on every query, and the
        # failure would surface as a ModelQueryError about the model. Other
        # Runnables define their own input, so only language models are checked.
        if not isinstance(self.model, BaseLanguageModel):
            return
        if isinstance(input, (str, PromptValue, BaseMessage)):
            return
        if isinstance(input, Sequence) and not isinstance(input, (bytes, bytearray)):
            return
        raise InvalidTypeError(
            f"guard input must be a string, a prompt value or a list of messages for "
            f"{type(self.model).__name__}, got {type(input).__name__} {input!r:.80}"
        )

    def _session(self, input: LanguageModelInput) -> SamplingSession:
        self._check_input(input)
        if self.seed is None:
            rng = np.random.default_rng()
        else:
            rng = np.random.default_rng([self.seed, _input_fingerprint(input)])
        return SamplingSession(self.calibration, self.extractor, self.equivalence, rng)

    def _invoke(
        self,
        input: LanguageModelInput,
        run_manager: CallbackManagerForChainRun,
        config: RunnableConfig,
    ) -> GuardResult:
        session = self._session(input)
        retries = 0
        while session.stop_reason is None:
            outcome = query(
                self.model,
                input,
                config,
                run_manager,
                index=session.num_samples,
                retry=self.retry,
                timeout=self.timeout,
            )
            retries += outcome.retries
            session.add(outcome.text, outcome.usage)

        return self._finish(session.result(retries=retries))

    async def _ainvoke(
        self,
        input: LanguageModelInput,
        run_manager: AsyncCallbackManagerForChainRun,
        config: RunnableConfig,
    ) -> GuardResult:
        session = self._session(input)
        window = _OrderedWindow()

        def launch(index: int) -> asyncio.Task[QueryOutcome]:
            return asyncio.ensure_future(
                aquery(
                    self.model,
                    input,
                    config,
                    run_manager,
                    index=index,
                    retry=self.retry,
                    timeout=self.timeout,
                )
            )

        try:
            while session.stop_reason is None:
                # Counting finished-but-unused queries too, not only those in
                # flight, keeps at most max_concurrency - 1 queries past the
                # stopping point when a slow query holds up later ones.
                while (
                    window.outstanding < self.max_concurrency
                    and window.launched < session.max_queries
                ):
                    window.add(launch(window.launched))
                for task in await window.next_in_order():
                    if session.stop_reason is not None:
                        window.discard(task)
                        continue
                    # A failed query raises here, after every earlier one was used.
                    outcome = task.result()
                    window.retries += outcome.retries
                    session.add(outcome.text, outcome.usage)
        finally:
            cancelled = await window.cancel_pending()
            window.retrieve_errors()

        extra, discarded = window.unused_outcomes()
        result = session.result(
            extra_usage=extra,
            discarded_queries=discarded,
            cancelled_queries=cancelled,
            retries=window.retries,
        )
        return self._finish(result)

    def _finish(self, result: GuardResult) -> GuardResult:
        logger.info(
            "guard stopped after %d queries (%s): %s, missing mass %.3f",
            result.num_queries,
            result.stop_reason,
            "abstained" if result.abstained else f"set of {result.set_size}",
            result.missing_mass,
        )
        if result.abstained and self.raise_on_abstain:
            raise Abstained(result)
        return result


class _OrderedWindow:
    """Concurrent queries whose results are handed out in launch order."""

    def __init__(self) -> None:
        self.tasks: dict[int, asyncio.Task[QueryOutcome]] = {}
        self.finished: dict[int, asyncio.Task[QueryOutcome]] = {}
        self.launched = 0
        self.next_index = 0
        self.retries = 0
        self.discarded: list[asyncio.Task[QueryOutcome]] = []
        self.all_tasks: list[asyncio.Task[QueryOutcome]] = []

    @property
    def outstanding(self) -> int:
        """Queries launched and not yet handed out: in flight, or finished out of order."""
        return self.launched - self.next_index

    def add(self, task: asyncio.Task[QueryOutcome]) -> None:
        self.tasks[self.launched] = task
        self.all_tasks.append(task)
        self.launched += 1

    async def next_in_order(self) -> list[asyncio.Task[QueryOutcome]]:
        """Wait for queries to finish and return the new run of finished ones in launch order."""
        while self.next_index not in self.finished:
            done, _ = await asyncio.wait(self.tasks.values(), return_when=asyncio.FIRST_COMPLETED)
            for index in [index for index, task in self.tasks.items() if task in done]:
                self.finished[index] = self.tasks.pop(index)

        ready = []
        while self.next_index in self.finished:
            ready.append(self.finished.pop(self.next_index))
            self.next_index += 1
        return ready

    def discard(self, task: asyncio.Task[QueryOutcome]) -> None:
        """Keep a finished query that came after the stopping point, for cost accounting."""
        self.discarded.append(task)

    async def cancel_pending(self) -> int:
        """Cancel the queries still in flight, wait for them, and count them."""
        pending = list(self.tasks.values())
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        self.tasks.clear()
        return len(pending)

    def retrieve_errors(self) -> None:
        """Mark the errors of all finished queries as retrieved.

        When a query error ends the call, later queries may have failed too,
        and asyncio would log "Task exception was never retrieved" for each.
        """
        for task in self.all_tasks:
            if task.done() and not task.cancelled():
                task.exception()

    def unused_outcomes(self) -> tuple[TokenUsage, int]:
        """Sum the usage of the successful queries that finished after the stopping point."""
        usage = TokenUsage()
        count = 0
        for task in [*self.discarded, *self.finished.values()]:
            if not task.cancelled() and task.exception() is None:
                usage = usage + task.result().usage
                count += 1
        return usage, count


def _input_fingerprint(input: LanguageModelInput) -> int:
    """Hash an input to 63 bits, stably across processes, for per-input seeding."""
    if isinstance(input, str):
        text = input
    elif isinstance(input, PromptValue):
        text = input.to_string()
    elif isinstance(input, BaseMessage):
        text = json.dumps([input.type, input.content], sort_keys=True, default=str)
    else:
        try:
            parts = [
                [item.type, item.content] if isinstance(item, BaseMessage) else item
                for item in input
            ]
            text = json.dumps(parts, sort_keys=True, default=str)
        except TypeError:
            text = repr(input)
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") >> 1
