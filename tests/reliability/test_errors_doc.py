"""docs/errors.md describes the exception classes that the code defines."""

from __future__ import annotations

import re
from pathlib import Path

import cpq_guard.errors
from cpq_guard.errors import CPQGuardError
from cpq_guard.model_loading import ModelLoadError
from cpq_guard.models import ReplayExhaustedError, UnknownSimulatedPromptError

DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"

CLASSES: dict[str, type[BaseException]] = {
    name: getattr(cpq_guard.errors, name) for name in cpq_guard.errors.__all__
}
CLASSES.update(
    {
        "ModelLoadError": ModelLoadError,
        "ReplayExhaustedError": ReplayExhaustedError,
        "UnknownSimulatedPromptError": UnknownSimulatedPromptError,
    }
)

TREE_LINE = re.compile(r"^(?P<indent>[│├└─ ]*)(?P<name>\w+)(?: \((?P<builtin>\w+)\))?")


def _tree() -> list[tuple[int, str, str | None]]:
    """Return the (depth, class name, built-in parent) of each line of the documented tree."""
    text = DOC.read_text(encoding="utf-8")
    block = text.split("## The tree", 1)[1].split("```", 2)[1]
    entries = []
    for line in block.strip("\n").splitlines():
        if line.strip().startswith("..."):
            continue
        match = TREE_LINE.match(line)
        assert match is not None, line
        depth = len(match.group("indent")) // 4
        entries.append((depth, match.group("name"), match.group("builtin")))
    return entries


def test_tree_lists_every_class() -> None:
    documented = {name for _, name, _ in _tree()}

    assert documented == set(CLASSES)


def test_tree_matches_hierarchy() -> None:
    parents: list[str] = []
    for depth, name, builtin in _tree():
        parents = parents[:depth]
        cls = CLASSES[name]
        if parents:
            assert parents[-1] in {base.__name__ for base in cls.__bases__}, name
        else:
            assert cls is CPQGuardError
        if builtin is not None:
            assert builtin in {base.__name__ for base in cls.__mro__}, name
        parents.append(name)


def test_every_class_described() -> None:
    text = DOC.read_text(encoding="utf-8")

    for name in CLASSES:
        assert f"| `{name}` |" in text, name
