"""Tests of ``cpq-guard demo``, the offline main job."""

from __future__ import annotations

import json
from pathlib import Path

from cpq_guard.banks import write_bank

from .helpers import CliRunner, make_records

SUMMARY_KEYS = {
    "coverage",
    "abstention_rate",
    "informative_coverage",
    "mean_set_size",
    "mean_queries",
    "tau",
    "num_test",
}


def test_simulated_demo_json(cli: CliRunner) -> None:
    result = cli("demo", "--prompts", 40, "--seed", 3, "--json")

    summary = json.loads(result.out)
    assert result.code == 0
    assert SUMMARY_KEYS <= summary.keys()
    assert summary["source"] == "simulated"
    assert summary["num_test"] == 40
    assert summary["target_coverage"] == 0.9
    assert 0.0 <= summary["coverage"] <= 1.0
    assert 10 <= summary["mean_queries"] <= 50


def test_bank_demo_table(cli: CliRunner, tmp_path: Path) -> None:
    bank = tmp_path / "bank.jsonl"
    write_bank(bank, make_records(prompts=60, samples=50))

    result = cli("demo", "--bank", bank, "--average-budget", 15)

    assert result.code == 0
    assert "held-out prompts" in result.out
    assert "coverage (in set or abstained)" in result.out
    assert "mean queries" in result.out


def test_bank_demo_json_counts(cli: CliRunner, tmp_path: Path) -> None:
    bank = tmp_path / "bank.jsonl"
    write_bank(bank, make_records(prompts=60, samples=50))

    summary = json.loads(cli("demo", "--bank", bank, "--json").out)

    assert summary["num_test"] == 30
    assert summary["num_calibration"] + summary["num_tuning"] == 30
    assert summary["source"] == str(bank)


def test_too_few_prompts_rejected(cli: CliRunner) -> None:
    result = cli("demo", "--prompts", 5)

    assert result.code == 2
    assert "at least 40 prompts" in result.err
    assert result.err.count("\n") == 1
