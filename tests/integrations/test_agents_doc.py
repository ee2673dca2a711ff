"""Run the Python snippets of docs/agents.md in order, so the page matches the API."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "agents.md"

# Blocks fenced as exactly ```python run; ```python skip marks hosted-model code.
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def test_snippets_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("langchain.agents")
    blocks = BLOCK.findall(DOC.read_text(encoding="utf-8"))
    assert len(blocks) >= 7

    # The setup writes its sample bank to the working directory. The blocks
    # run in a registered module because LangGraph resolves the state's type
    # hints through sys.modules.
    monkeypatch.chdir(tmp_path)
    module = types.ModuleType("_agents_doc")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    for number, block in enumerate(blocks, start=1):
        code = compile(block, f"{DOC.name} python block {number}", "exec")
        exec(code, module.__dict__)

    assert (tmp_path / "agents-bank.jsonl").is_file()
