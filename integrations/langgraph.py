"""LangGraph nodes that guard a question, route on abstention and escalate to a human.

A guarded graph usually reads::

    guard ──(route_on_abstention)──> answer ──> END
                                 └─> escalate ──> END

with ``guard = guard_node(guard)``, ``answer = answer_node()`` and
``escalate = human_review_node()``. The guard node stores the `GuardResult`
as the JSON dict from `dump_guard_result`, because checkpointers round-trip
plain JSON unchanged but warn on (and, in strict mode, refuse to rebuild)
pydantic models; `read_guard_result` rebuilds it from the state.

State may be a dict (``TypedDict`` schemas), a pydantic model or a
dataclass: fields are read by key from mappings and by attribute otherwise,
and every node returns a dict of updates.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langgraph.types import interrupt

from cpq_guard._validation import check_int
from cpq_guard.errors import Abstained, InvalidParameterError, InvalidTypeError
from cpq_guard.result import GuardResult
from integrations.escalation import escalation_payload, read_human_answer
from integrations.results import dump_guard_result, is_answered, load_guard_result

__all__ = [
    "answer_node",
    "guard_node",
    "human_review_node",
    "read_guard_result",
    "route_on_abstention",
]


def guard_node(
    guard: Runnable[Any, GuardResult],
    *,
    input_key: str = "question",
    output_key: str = "guard_result",
    keep_responses: bool = True,
    name: str = "cpq_guard",
) -> RunnableLambda:
    """Build a node that runs the guard on one state field and stores the result in another.

    The node reads ``state[input_key]`` (a string, messages or a prompt value),
    calls ``guard.invoke`` from ``graph.invoke`` and ``guard.ainvoke`` from
    ``graph.ainvoke`` with the node's config, so callbacks and tracing reach
    the model calls, and returns ``{output_key: dump_guard_result(result)}``.
    A guard built with ``raise_on_abstain=True`` still has its abstention
    stored rather than raised, so the graph can route on it.

    Args:
        guard: A `CPQGuard`, or any Runnable that returns a `GuardResult`.
        input_key: State field with the question.
        output_key: State field that receives the result.
        keep_responses: Store every sample's raw response text; turn off to
            keep checkpoints small when responses are long.
        name: Run name of the node in traces.

    Raises:
        InvalidTypeError: If ``guard`` is not a Runnable, or at run time if it
            returns something other than a `GuardResult`.
        InvalidParameterError: At run time, if the state lacks ``input_key``.
    """
    if not isinstance(guard, Runnable):
        raise InvalidTypeError(
            f"guard must be a CPQGuard or a Runnable returning a GuardResult, "
            f"got {type(guard).__name__}"
        )
    _check_key(input_key, "input_key")
    _check_key(output_key, "output_key")

    def update(result: Any) -> dict[str, Any]:
        if not isinstance(result, GuardResult):
            raise InvalidTypeError(
                f"the guard returned {type(result).__name__}, not a GuardResult; "
                "pass a CPQGuard or a Runnable that ends in one"
            )
        return {output_key: dump_guard_result(result, keep_responses=keep_responses)}

    def run(state: Any, config: RunnableConfig) -> dict[str, Any]:
        question = state_field(state, input_key)
        try:
            result = guard.invoke(question, config)
        except Abstained as abstention:
            result = abstention.result
        return update(result)

    async def arun(state: Any, config: RunnableConfig) -> dict[str, Any]:
        question = state_field(state, input_key)
        try:
            result = await guard.ainvoke(question, config)
        except Abstained as abstention:
            result = abstention.result
        return update(result)

    return RunnableLambda(run, afunc=arun, name=name)


def route_on_abstention(
    *,
    answered: str = "answer",
    abstained: str = "escalate",
    output_key: str = "guard_result",
    max_set_size: int | None = None,
) -> Callable[[Any], str]:
    """Build a router for ``add_conditional_edges`` that branches on the stored result.

    The router returns ``answered`` when `is_answered` holds for the result in
    ``state[output_key]``, and ``abstained`` when the guard abstained or its
    set contains no real answer. With ``max_set_size``, a set of more answers
    than that also goes to ``abstained``, for example ``max_set_size=1`` to
    answer only when the set is a single answer. Pass ``[answered, abstained]``
    as the path map so that graph drawings show both edges.

    Raises:
        InvalidParameterError: At run time, if the state lacks ``output_key``.
    """
    _check_key(answered, "answered")
    _check_key(abstained, "abstained")
    _check_key(output_key, "output_key")
    if max_set_size is not None:
        max_set_size = check_int(max_set_size, "max_set_size", minimum=1)

    def route_on_abstention(state: Any) -> str:
        result = read_guard_result(state, output_key)
        if not is_answered(result):
            return abstained
        if max_set_size is not None and result.set_size > max_set_size:
            return abstained
        return answered

    return route_on_abstention


def answer_node(
    *, output_key: str = "guard_result", answer_key: str = "answer"
) -> Callable[[Any], dict[str, Any]]:
    """Build a node that writes the most probable answer of the set to ``state[answer_key]``.

    Place it on the ``answered`` branch of `route_on_abstention`; it raises
    when the result has no answer to write.

    Raises:
        InvalidParameterError: At run time, if the state lacks ``output_key``
            or the stored result has no answer.
    """
    _check_key(output_key, "output_key")
    _check_key(answer_key, "answer_key")

    def write_answer(state: Any) -> dict[str, Any]:
        result = read_guard_result(state, output_key)
        if not is_answered(result):
            raise InvalidParameterError(
                output_key,
                result.abstained,
                f"the guard result in state field {output_key!r} has no answer to write "
                f"(abstained={result.abstained}); route here only on the 'answered' branch "
                "of route_on_abstention",
            )
        return {answer_key: result.best_answer}

    return write_answer


def human_review_node(
    *,
    input_key: str = "question",
    output_key: str = "guard_result",
    answer_key: str = "answer",
    max_clusters: int = 10,
) -> Callable[[Any], dict[str, Any]]:
    """Build a node that asks a human for the answer through LangGraph's ``interrupt``.

    The node calls ``interrupt(escalation_payload(result, question))``: the
    graph stops, its caller finds the payload in ``__interrupt__`` (or in
    ``graph.get_state(config).interrupts``), and resumes with
    ``graph.invoke(Command(resume=<answer text>), config)``. The node then
    writes the reviewer's answer to ``state[answer_key]``. On resume
    LangGraph runs the node again from the start; the node only reads state
    before the interrupt, so that rerun has no side effect.

    The graph needs a checkpointer (for example ``InMemorySaver``) and a
    ``thread_id`` in the config for the interrupt to be resumable. The node is
    synchronous, so it works in ``graph.invoke`` and ``graph.ainvoke`` alike.

    Args:
        input_key: State field with the question shown to the reviewer.
        output_key: State field with the stored guard result.
        answer_key: State field that receives the reviewer's answer.
        max_clusters: Most seen clusters shown to the reviewer.

    Raises:
        InvalidParameterError: If ``max_clusters`` is below 1, and at run time
            if the state lacks a field or the reviewer's answer is empty.
        InvalidTypeError: At run time, if the resume value is neither a string
            nor ``{"answer": <text>}``.
    """
    _check_key(input_key, "input_key")
    _check_key(output_key, "output_key")
    _check_key(answer_key, "answer_key")
    max_clusters = check_int(max_clusters, "max_clusters", minimum=1)

    def ask_human(state: Any) -> dict[str, Any]:
        result = read_guard_result(state, output_key)
        question = state_field(state, input_key)
        reply = interrupt(escalation_payload(result, question, max_clusters=max_clusters))
        return {answer_key: read_human_answer(reply)}

    return ask_human


def read_guard_result(state: Any, output_key: str = "guard_result") -> GuardResult:
    """Rebuild the `GuardResult` that `guard_node` stored in ``state[output_key]``.

    Raises:
        InvalidParameterError: If the state lacks the field or contains an invalid result.
    """
    return load_guard_result(state_field(state, output_key))


def state_field(state: Any, key: str) -> Any:
    """Read a field from a dict state by key, or from a model or dataclass state by attribute.

    Raises:
        InvalidParameterError: If the field is missing or ``None``.
    """
    if isinstance(state, Mapping):
        value = state.get(key)
        available = sorted(map(str, state))
    else:
        value = getattr(state, key, None)
        fields = getattr(state, "__dict__", {})
        available = sorted(name for name in fields if not name.startswith("_"))

    if value is None:
        raise InvalidParameterError(
            key,
            None,
            f"the graph state has no value in field {key!r} (fields present: "
            f"{available}); set it in the graph input or in an earlier node, or pass the "
            "field's name as input_key/output_key",
        )
    return value


def _check_key(value: object, name: str) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidTypeError(f"{name} must be a non-empty string, got {value!r}")
