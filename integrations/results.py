"""A `GuardResult` as plain JSON data, for graph state, tool output and message metadata.

LangGraph checkpointers serialise state with msgpack, and they store a
pydantic model such as `GuardResult` by its class path. When
langgraph-checkpoint 4.3 reads one back, it logs a warning that such types
"will be blocked in a future version". With ``LANGGRAPH_STRICT_MSGPACK=true``
it returns a plain dict instead of the model. So the integrations store
``GuardResult.model_dump(mode="json")``, which contains only JSON types and
round-trips through every checkpointer unchanged, and `load_guard_result`
rebuilds the model from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from cpq_guard._validation import check_int
from cpq_guard.errors import InvalidParameterError, InvalidTypeError
from cpq_guard.result import AnswerCluster, GuardResult

__all__ = [
    "cluster_summary",
    "dump_guard_result",
    "is_answered",
    "load_guard_result",
    "summarize_result",
]

_DIGITS = 3
"""Decimal places of probabilities in summaries: enough to rank answers, short to read."""


def dump_guard_result(result: GuardResult, *, keep_responses: bool = True) -> dict[str, Any]:
    """Convert a result into a dict of JSON types that `load_guard_result` reads back.

    Args:
        result: The guard's result.
        keep_responses: Keep every sample's raw response text. Without them,
            each cluster's ``responses`` is empty, which keeps checkpoints and
            message metadata small when the responses are long.
    """
    if not isinstance(result, GuardResult):
        raise InvalidTypeError(f"result must be a GuardResult, got {type(result).__name__}")

    data = result.model_dump(mode="json")
    if not keep_responses:
        for cluster in [*data["answers"], *data["clusters"]]:
            cluster["responses"] = []
    return data


def load_guard_result(value: GuardResult | Mapping[str, Any]) -> GuardResult:
    """Rebuild a `GuardResult` from `dump_guard_result` output; a `GuardResult` passes through.

    Raises:
        InvalidTypeError: If ``value`` is neither a mapping nor a `GuardResult`.
        InvalidParameterError: If the mapping is not a valid dumped result.
    """
    if isinstance(value, GuardResult):
        return value
    if not isinstance(value, Mapping):
        raise InvalidTypeError(
            "a stored guard result must be a GuardResult or the dict from dump_guard_result, "
            f"got {type(value).__name__}"
        )

    try:
        return GuardResult.model_validate(dict(value))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, error['loc'])) or '<root>'}: {error['msg']}"
            for error in exc.errors()
        )
        raise InvalidParameterError(
            "value",
            value,
            f"the stored guard result is invalid ({problems}); store the output of "
            "dump_guard_result unchanged",
        ) from exc


def is_answered(result: GuardResult) -> bool:
    """Tell whether the result has an answer to act on.

    That is the case when the guard did not abstain and its set contains at
    least one real answer. A set that contains only the cluster of responses
    without an extractable answer counts as unanswered, because there is
    nothing to answer with.
    """
    return not result.abstained and result.best_answer is not None


def summarize_result(result: GuardResult, *, max_answers: int = 5) -> dict[str, Any]:
    """Summarise a result in a few JSON fields that a language model or a person can read.

    The fields are:

    - ``abstained``;
    - ``answers``: the calibrated set, most probable first, each entry with
      its answer (``None`` for the no-answer cluster), estimated probability
      and sample count. At most ``max_answers`` are listed, and
      ``answers_omitted`` counts the rest;
    - ``missing_mass``: the estimated probability of an answer not seen yet;
    - ``num_queries``;
    - ``coverage_target``: the calibrated ``1 - alpha``.

    Probabilities are rounded to 3 decimals.
    """
    max_answers = check_int(max_answers, "max_answers", minimum=1)

    summary: dict[str, Any] = {
        "abstained": result.abstained,
        "answers": [cluster_summary(cluster) for cluster in result.answers[:max_answers]],
    }
    omitted = len(result.answers) - max_answers
    if omitted > 0:
        summary["answers_omitted"] = omitted
    summary["missing_mass"] = round(result.missing_mass, _DIGITS)
    summary["num_queries"] = result.num_queries
    summary["coverage_target"] = round(result.coverage_target, _DIGITS)
    return summary


def cluster_summary(cluster: AnswerCluster) -> dict[str, Any]:
    """Summarise one cluster as its answer, rounded probability and sample count."""
    return {
        "answer": cluster.representative,
        "probability": round(cluster.probability, _DIGITS),
        "count": cluster.count,
    }
