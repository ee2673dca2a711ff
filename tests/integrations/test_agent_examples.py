"""Run the agent examples end to end and check what their ``main`` returns."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from integrations.escalation import PAYLOAD_KIND
from integrations.results import is_answered

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Import ``examples/<name>.py`` under a private module name, registered for this test.

    Dataclasses look their module up in ``sys.modules`` while the module runs.
    """
    module_name = f"_example_{name}"
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, module_name, module)
    spec.loader.exec_module(module)
    return module


def test_langgraph_escalation(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("langgraph")
    outcomes = load_example("langgraph_escalation", monkeypatch).main()

    assert len(outcomes) == 10
    assert {outcome.answered_by for outcome in outcomes} == {"model", "human"}
    for outcome in outcomes:
        single_answer = is_answered(outcome.result) and outcome.result.set_size == 1
        if outcome.answered_by == "model":
            assert single_answer
            assert outcome.escalation is None
            assert outcome.answer == outcome.result.best_answer
        else:
            assert not single_answer
            assert outcome.escalation["kind"] == PAYLOAD_KIND
            assert outcome.escalation["question"] == outcome.question
            assert outcome.answer == outcome.reference
    assert any(outcome.result.abstained for outcome in outcomes)
    assert "escalated to a human" in capsys.readouterr().out


def test_tool_calling_agent(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = load_example("tool_calling_agent", monkeypatch).main()

    assert len(runs) == 10
    assert {run.result.abstained for run in runs} == {True, False}
    for run in runs:
        kinds = [type(message).__name__ for message in run.messages]
        assert kinds == ["HumanMessage", "AIMessage", "ToolMessage", "AIMessage"]
        assert run.tool_output["abstained"] == run.result.abstained
        assert run.tool_output["num_queries"] == run.result.num_queries
        if is_answered(run.result):
            assert run.answer.startswith(f"The answer is {run.result.best_answer} ")
        else:
            assert run.answer.startswith("I am not sure")
    assert "tool:" in capsys.readouterr().out
