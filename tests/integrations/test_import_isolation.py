"""Tests that the core package stays free of the agent integrations and their dependencies."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def read_pyproject() -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def requirement_name(requirement: str) -> str:
    """Return the normalised project name of a requirement string such as ``"a-b[x]>=1"``."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, f"unparsable requirement {requirement!r}"
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def test_core_import_skips_integrations() -> None:
    code = (
        "import sys, cpq_guard\n"
        "loaded = sorted(name for name in sys.modules "
        "if name.split('.')[0] in ('integrations', 'langgraph', 'langchain'))\n"
        "assert not loaded, loaded\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120
    )

    assert completed.returncode == 0, completed.stderr


def test_core_dependencies_exclude_agents() -> None:
    names = {requirement_name(item) for item in read_pyproject()["project"]["dependencies"]}

    assert "langchain-core" in names
    assert "langgraph" not in names
    assert "langchain" not in names


def test_langgraph_extra_lists_integrations() -> None:
    extra = read_pyproject()["project"]["optional-dependencies"]["langgraph"]
    names = {requirement_name(item) for item in extra}

    assert {"langgraph", "langchain"} <= names


def test_package_find_includes_integrations() -> None:
    include = read_pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]

    assert "integrations*" in include
