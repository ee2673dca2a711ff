"""Tests of ``cpq-guard evaluate`` on a small hand-built sample bank."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from cpq_guard import evaluation
from cpq_guard.banks import Sample, read_bank, write_bank

from .helpers import CliRunner

LIMITS = ("--min-queries", "5", "--max-queries", "20", "--bootstrap", "5", "--splits", "4")
METRICS = (
    "coverage",
    "abstention_rate",
    "informative_coverage",
    "mean_set_size",
    "mean_queries",
)


def _evaluate_json(cli: CliRunner, bank: Path, *args: object) -> list[dict]:
    result = cli("evaluate", "--bank", bank, *LIMITS, "--json", *args)
    assert result.code == 0, result.err
    return json.loads(result.out)


def test_json_keys_and_shapes(cli: CliRunner, small_bank: Path) -> None:
    rows = _evaluate_json(
        cli,
        small_bank,
        "--alpha", "0.1", "0.2",
        "--method", "cpq", "fixed",
        "--lambda", "0.01", "--queries", "10",
    )  # fmt: skip

    assert [(row["alpha"], row["method"], row["mapping"]) for row in rows] == [
        (0.1, "cpq", "missing-mass"),
        (0.1, "fixed", "missing-mass"),
        (0.2, "cpq", "missing-mass"),
        (0.2, "fixed", "missing-mass"),
    ]
    for row in rows:
        for name in METRICS:
            assert set(row[name]) == {"mean", "std"}, name
            assert isinstance(row[name]["mean"], float), name
            assert row[name]["std"] >= 0.0, name
        assert 0.0 <= row["coverage"]["mean"] <= 1.0
        assert 0.0 <= row["abstention_rate"]["mean"] <= 1.0
        assert row["informative_coverage"]["mean"] <= row["coverage"]["mean"]
        assert 5.0 <= row["mean_queries"]["mean"] <= 20.0
        assert row["splits"] == 4
        assert "tau" in row
    assert rows[1]["mean_queries"] == {"mean": 10.0, "std": 0.0}
    assert rows[0]["policy"]["kind"] == "derivative"
    assert rows[0]["policy"]["lambda"] == 0.01


def test_repeated_flags_equal_lists(cli: CliRunner, small_bank: Path) -> None:
    common = ("--lambda", "0.01", "--epsilon", "0.2")
    repeated = _evaluate_json(
        cli,
        small_bank,
        "--alpha", "0.1", "--alpha", "0.3",
        "--method", "cpq", "--method", "missing-mass",
        "--mapping", "missing-mass", "--mapping", "cumulative",
        *common,
    )  # fmt: skip
    listed = _evaluate_json(
        cli,
        small_bank,
        "--alpha", "0.1", "0.3",
        "--method", "cpq", "missing-mass",
        "--mapping", "missing-mass", "cumulative",
        *common,
    )  # fmt: skip

    assert len(repeated) == 8
    assert repeated == listed
    assert {row["mapping"] for row in repeated} == {"missing-mass", "cumulative"}


def test_duplicate_values_dropped(cli: CliRunner, small_bank: Path) -> None:
    rows = _evaluate_json(
        cli, small_bank, "--alpha", "0.2", "0.2", "--method", "fixed", "fixed", "--queries", "10"
    )

    assert len(rows) == 1


def test_replay_computed_once_per_method(
    cli: CliRunner, small_bank: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    original = evaluation.PolicyReplay.compute.__func__

    def counting(cls, policy, histories, seed):
        calls.append(policy.kind)
        return original(cls, policy, histories, seed)

    monkeypatch.setattr(evaluation.PolicyReplay, "compute", classmethod(counting))
    rows = _evaluate_json(
        cli,
        small_bank,
        "--alpha", "0.1", "0.2", "0.3",
        "--method", "cpq", "fixed",
        "--mapping", "missing-mass", "cumulative",
        "--lambda", "0.01", "--queries", "10",
    )  # fmt: skip

    assert len(rows) == 12
    assert calls == ["derivative", "fixed"]


def test_average_budget_tunes_threshold(cli: CliRunner, small_bank: Path) -> None:
    small = _evaluate_json(
        cli, small_bank, "--alpha", "0.2", "--method", "cpq", "fixed", "--average-budget", "8"
    )
    large = _evaluate_json(
        cli, small_bank, "--alpha", "0.2", "--method", "cpq", "fixed", "--average-budget", "16"
    )

    cpq, fixed = small
    assert cpq["average_budget"] == 8.0
    assert cpq["policy_threshold"]["mean"] > large[0]["policy_threshold"]["mean"]
    assert cpq["mean_queries"]["mean"] < large[0]["mean_queries"]["mean"]
    assert fixed["policy_threshold"] is None
    assert fixed["mean_queries"] == {"mean": 8.0, "std": 0.0}
    assert large[1]["mean_queries"] == {"mean": 16.0, "std": 0.0}


def test_json_stdout_alone_when_verbose(cli: CliRunner, small_bank: Path) -> None:
    result = cli(
        "-v", "evaluate", "--bank", small_bank, *LIMITS, "--json",
        "--alpha", "0.2", "--method", "fixed", "--queries", "10",
    )  # fmt: skip

    assert result.code == 0
    assert len(json.loads(result.out)) == 1
    assert "cpq-guard: info:" in result.err


def test_table_output(cli: CliRunner, small_bank: Path) -> None:
    result = cli(
        "evaluate", "--bank", small_bank, *LIMITS,
        "--alpha", "0.1", "0.2", "--method", "cpq", "fixed", "--lambda", "0.01", "--queries", "10",
    )  # fmt: skip

    assert result.code == 0, result.err
    assert result.err == ""
    for heading in ("alpha", "method", "mapping", "coverage", "abstention", "set size", "tau"):
        assert heading in result.out, heading
    assert "small.jsonl: 40 prompts, 4 splits" in result.out
    lines = result.out.splitlines()
    assert len([line for line in lines if " cpq " in line]) == 2
    assert len([line for line in lines if " fixed " in line]) == 2
    assert "10.00 ± 0.00" in result.out


def test_table_tuned_threshold_column(cli: CliRunner, small_bank: Path) -> None:
    result = cli(
        "evaluate", "--bank", small_bank, *LIMITS,
        "--alpha", "0.2", "--method", "cpq", "--average-budget", "12",
    )  # fmt: skip

    assert result.code == 0, result.err
    assert "threshold" in result.out


def test_plot_writes_png(cli: CliRunner, small_bank: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    plot = tmp_path / "plots" / "sweep.png"
    plot.parent.mkdir()

    result = cli(
        "evaluate", "--bank", small_bank, *LIMITS, "--json", "--plot", plot,
        "--alpha", "0.1", "0.2", "0.3", "--method", "cpq", "fixed",
        "--mapping", "missing-mass", "cumulative", "--lambda", "0.01", "--queries", "10",
    )  # fmt: skip

    assert result.code == 0, result.err
    assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert sorted(path.name for path in plot.parent.iterdir()) == ["sweep.png"]
    assert len(json.loads(result.out)) == 12


def test_plot_without_matplotlib(
    cli: CliRunner, small_bank: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    plot = tmp_path / "plot.png"

    result = cli(
        "evaluate", "--bank", small_bank, *LIMITS, "--plot", plot,
        "--alpha", "0.2", "--method", "fixed", "--queries", "10",
    )  # fmt: skip

    assert result.code == 1
    assert 'pip install "cpq-guard[plot]"' in result.err
    assert result.err.count("\n") == 1
    assert result.out == ""
    assert not plot.exists()


def test_plot_unknown_extension(cli: CliRunner, small_bank: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")

    result = cli(
        "evaluate", "--bank", small_bank, *LIMITS, "--plot", tmp_path / "plot.txt",
        "--alpha", "0.2", "--method", "fixed", "--queries", "10",
    )  # fmt: skip

    assert result.code == 2
    assert "cannot tell the image format from the extension .txt" in result.err


FIXED = ("--method", "fixed", "--queries", "10")

# Arguments after "evaluate"; {bank}, {tmp} and {file} are replaced by the
# small bank, the test's directory and a regular file in it.
USAGE_ERRORS = [
    pytest.param(
        ["--bank", "{bank}", "--alpha", "0.1", "--method", "cpq"],
        2,
        "--method cpq needs --lambda",
        id="cpq without lambda",
    ),
    pytest.param(
        ["--bank", "{bank}", "--alpha", "0.1", "--method", "cpq", "missing-mass", "--lambda", "1"],
        2,
        "--method missing-mass needs --epsilon",
        id="missing-mass without epsilon",
    ),
    pytest.param(
        ["--bank", "{bank}", "--alpha", "1.5", *FIXED],
        2,
        "argument --alpha: invalid value '1.5'",
        id="alpha above one",
    ),
    pytest.param(
        ["--bank", "{bank}", "--alpha", "ten", *FIXED],
        2,
        "argument --alpha: invalid number 'ten'",
        id="alpha not a number",
    ),
    pytest.param(["--bank", "{bank}", *FIXED], 2, "required: --alpha", id="alpha missing"),
    pytest.param(
        ["--bank", "{tmp}/missing.jsonl", "--alpha", "0.1", *FIXED],
        1,
        "missing.jsonl not found",
        id="bank not found",
    ),
    pytest.param(
        ["--bank", "{bank}", "--alpha", "0.1", *FIXED, "--lambda", "0.01"],
        2,
        "--lambda applies only to --method cpq",
        id="lambda for fixed only",
    ),
    pytest.param(
        ["--bank", "{bank}", "--alpha", "0.1", "--method", "cpq", "--epsilon", "0.1"],
        2,
        "--epsilon applies only to --method missing-mass",
        id="epsilon for cpq only",
    ),
    pytest.param(
        [
            "--bank",
            "{bank}",
            "--alpha",
            "0.1",
            "--method",
            "cpq",
            "--lambda",
            "1",
            "--average-budget",
            "10",
        ],
        2,
        "--average-budget cannot be combined with --lambda",
        id="budget with lambda",
    ),
    pytest.param(
        [
            "--bank",
            "{bank}",
            "--alpha",
            "0.1",
            "--method",
            "cpq",
            "--average-budget",
            "30",
            "--max-queries",
            "20",
        ],
        2,
        "--average-budget 30 is above --max-queries 20",
        id="budget above max",
    ),
    pytest.param(
        [
            "--bank",
            "{bank}",
            "--alpha",
            "0.1",
            *FIXED,
            "--min-queries",
            "30",
            "--max-queries",
            "20",
        ],
        2,
        "--min-queries 30 is greater than --max-queries 20",
        id="min above max",
    ),
    pytest.param(
        ["--bank", "{bank}", "--alpha", "0.1", "--method", "best"],
        2,
        "invalid choice: 'best'",
        id="unknown method",
    ),
    pytest.param(
        ["--bank", "{bank}", "--alpha", "0.1", *FIXED, "--splits", "0"],
        2,
        "argument --splits: invalid value '0'",
        id="zero splits",
    ),
    pytest.param(
        ["--bank", "{bank}", "--alpha", "0.1", *FIXED, "--calibration-fraction", "1"],
        2,
        "argument --calibration-fraction: invalid value '1'",
        id="calibration fraction of one",
    ),
    pytest.param(
        ["--bank", "{bank}", "--alpha", "0.1", *FIXED, "--extractor", "magic"],
        2,
        "argument --extractor: extractor 'magic' is not a built-in",
        id="unknown extractor",
    ),
    pytest.param(
        [
            "--bank",
            "{bank}",
            "--alpha",
            "0.1",
            "--method",
            "cpq",
            "--lambda",
            "0.01",
            "--max-queries",
            "30",
        ],
        1,
        "has 20 recorded samples, fewer than max_queries=30",
        id="max queries above bank length",
    ),
    pytest.param(
        ["--bank", "{bank}", "--alpha", "0.1", "--method", "fixed", "--queries", "25"],
        1,
        "fewer than max_queries=25",
        id="queries above bank length",
    ),
    pytest.param(
        ["--bank", "{bank}", "--alpha", "0.01", *FIXED],
        1,
        "needs at least 99 calibration prompts",
        id="alpha too small for bank",
    ),
    pytest.param(
        ["--bank", "{bank}", "--alpha", "0.1", *FIXED, "--plot", "{tmp}/missing/plot.png"],
        1,
        "does not exist",
        id="plot directory missing",
    ),
    pytest.param(
        ["--bank", "{bank}", "--alpha", "0.1", *FIXED, "--plot", "{file}/plot.png"],
        1,
        "is not a directory",
        id="plot parent is a file",
    ),
    pytest.param(
        ["--bank", "{bank}", "--alpha", "0.1", *FIXED, "--plot", "{tmp}"],
        1,
        "is a directory",
        id="plot is a directory",
    ),
]


@pytest.mark.parametrize(("arguments", "code", "message"), USAGE_ERRORS)
def test_error_is_one_line(
    cli: CliRunner,
    small_bank: Path,
    tmp_path: Path,
    arguments: list[str],
    code: int,
    message: str,
) -> None:
    regular_file = tmp_path / "regular-file"
    regular_file.write_text("")
    filled = [
        argument.format(bank=small_bank, tmp=tmp_path, file=regular_file) for argument in arguments
    ]

    result = cli("evaluate", *LIMITS, *filled)

    assert result.code == code, result.err
    assert result.err.startswith("cpq-guard: error: ")
    assert result.err.count("\n") == 1
    assert message in result.err
    assert "Traceback" not in result.err
    assert result.out == ""


def test_extractor_applied_to_samples(cli: CliRunner, small_bank: Path, tmp_path: Path) -> None:
    wrapped = tmp_path / "wrapped.jsonl"
    records = [
        record.model_copy(
            update={
                "samples": [
                    Sample(text=f"Let me think.\nThe answer is {sample.text}.")
                    for sample in record.samples
                ]
            }
        )
        for record in read_bank(small_bank)
    ]
    write_bank(wrapped, records)
    arguments = ("--alpha", "0.2", "--method", "cpq", "--lambda", "0.01")

    plain = _evaluate_json(cli, small_bank, *arguments)
    extracted = _evaluate_json(cli, wrapped, *arguments, "--extractor", "final-answer")
    whole = _evaluate_json(cli, wrapped, *arguments)

    assert extracted == plain
    assert whole != plain
