"""End-to-end runs of the command line on the GSM8K samples released with the CPQ paper.

The expected values are reference results for GSM8K at alpha = 0.1 over 10
splits: CPQ with lambda = 0.0015, and 20 fixed queries with the cumulative
mapping. The tolerances (0.03 for rates, 0.5 for mean queries) allow for
the noise of the random splits.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .helpers import CliRunner

PROTOCOL = (
    "--alpha", "0.1", "--splits", "10", "--seed", "42",
    "--min-queries", "10", "--max-queries", "50", "--bootstrap", "20",
    "--reference-match", "representative", "--json",
)  # fmt: skip


@pytest.fixture(scope="module")
def gsm8k_bank(paper_gsm8k: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cpq_guard.paper import import_paper_file

    bank = tmp_path_factory.mktemp("gsm8k") / "gsm8k.jsonl"
    import_paper_file(paper_gsm8k, bank, id_prefix="gsm8k")
    return bank


def _single_row(cli: CliRunner, bank: Path, *args: str) -> dict:
    result = cli("evaluate", "--bank", bank, *PROTOCOL, *args)
    assert result.code == 0, result.err
    (row,) = json.loads(result.out)
    return row


def test_cpq_matches_paper(cli: CliRunner, gsm8k_bank: Path) -> None:
    row = _single_row(cli, gsm8k_bank, "--method", "cpq", "--lambda", "0.0015")

    assert row["coverage"]["mean"] == pytest.approx(0.912, abs=0.03)
    assert row["abstention_rate"]["mean"] == pytest.approx(0.013, abs=0.03)
    assert row["informative_coverage"]["mean"] == pytest.approx(0.899, abs=0.03)
    assert row["mean_queries"]["mean"] == pytest.approx(20.7, abs=0.5)


def test_fixed_cumulative_matches_paper(cli: CliRunner, gsm8k_bank: Path) -> None:
    row = _single_row(
        cli, gsm8k_bank, "--method", "fixed", "--queries", "20", "--mapping", "cumulative"
    )

    assert row["coverage"]["mean"] == pytest.approx(0.892, abs=0.03)
    assert row["abstention_rate"]["mean"] == pytest.approx(0.097, abs=0.03)
    assert row["informative_coverage"]["mean"] == pytest.approx(0.795, abs=0.03)
    assert row["mean_queries"]["mean"] == 20.0


def test_full_sweep(cli: CliRunner, gsm8k_bank: Path) -> None:
    alphas = ("0.05", "0.1", "0.15", "0.2", "0.25", "0.3")

    result = cli(
        "evaluate", "--bank", gsm8k_bank, "--json", "--splits", "10",
        "--alpha", *alphas, "--method", "cpq", "fixed", "missing-mass",
        "--lambda", "0.0015", "--queries", "20", "--epsilon", "0.1",
    )  # fmt: skip

    assert result.code == 0, result.err
    rows = json.loads(result.out)
    assert len(rows) == 18
    for row in rows:
        # Coverage is guaranteed only on average over splits, so 0.05 allows for their noise.
        assert row["coverage"]["mean"] >= 1.0 - row["alpha"] - 0.05, row
