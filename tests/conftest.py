"""Shared fixtures for the cpq-guard test suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def paper_data_dir() -> Path:
    """Directory with the CPQ paper's released sample files.

    The CPQ_PAPER_DATA environment variable names it, and without it the
    directory ``shared/data/cpq-paper`` next to the repository is used. The
    files are not redistributed with the project, so tests that need them
    skip when the directory is absent.
    """
    configured = os.environ.get("CPQ_PAPER_DATA")
    directory = (
        Path(configured) if configured else REPO_ROOT.parent / "shared" / "data" / "cpq-paper"
    )
    if not directory.is_dir():
        pytest.skip(f"CPQ paper data not found at {directory}; set CPQ_PAPER_DATA to its directory")
    return directory


@pytest.fixture(scope="session")
def paper_gsm8k(paper_data_dir: Path) -> Path:
    """The released GSM8K file: 300 questions with 50 samples each."""
    path = paper_data_dir / "gsm8k_300.json"
    if not path.is_file():
        pytest.skip(f"CPQ paper file {path} not found")
    return path
