"""Every command reports bad paths and values as one line, and re-raises with --debug.

The tables run the same failures against every command that has such an
argument: input files that are missing or are directories, output paths
whose directory is missing, is a file or cannot be written, and invalid
miscoverage levels. Each failure must exit non-zero with exactly one line
``cpq-guard: error: ...`` on stderr, nothing on stdout and no traceback, and
must leave no output file behind.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cpq_guard.banks import write_bank
from cpq_guard.cli import _paths, main
from cpq_guard.cli._errors import CommandError
from cpq_guard.errors import CPQGuardError

from .helpers import PROMPTS, make_calibration, make_records

PAPER_FILE = Path(__file__).resolve().parent.parent / "data" / "paper_small.json"


@dataclass(frozen=True)
class Files:
    """Valid inputs for every command, and a directory for outputs."""

    bank: Path
    demo_bank: Path
    prompts: Path
    calibration: Path
    paper: Path
    regular_file: Path
    out: Path


@pytest.fixture
def files(tmp_path: Path) -> Files:
    bank = tmp_path / "bank.jsonl"
    records = make_records()
    write_bank(bank, records)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(
            json.dumps({"prompt": record.prompt, "references": record.references, "id": record.id})
            + "\n"
            for record in records
        ),
        encoding="utf-8",
    )
    # The demo replays a bank with its own query limits of 10 to 50.
    demo_bank = tmp_path / "demo-bank.jsonl"
    write_bank(demo_bank, make_records(samples=50))
    calibration = tmp_path / "calibration.json"
    make_calibration().save(calibration)
    regular_file = tmp_path / "regular-file"
    regular_file.write_text("")
    out = tmp_path / "out"
    out.mkdir()
    return Files(bank, demo_bank, prompts, calibration, PAPER_FILE, regular_file, out)


POLICY = ["--lambda", "0.001", "--min-queries", "2", "--max-queries", "4"]
EVALUATE = ["evaluate", "--bank", "{bank}", "--alpha", "0.2", "--method", "cpq", *POLICY]

# A valid command line per command; "{bank}" and the like are filled from `Files`,
# and "{output}" is the output path under test.
COMMANDS = {
    "demo": ["demo", "--bank", "{demo_bank}"],
    "import-paper": ["import-paper", "{paper}", "--out", "{output}"],
    "record": [
        "record", "--model", "replay:{bank}", "--prompts", "{prompts}", "--out", "{output}",
        "--samples", "2",
    ],
    "evaluate": [*EVALUATE, "--splits", "2"],
    "evaluate --plot": [*EVALUATE, "--splits", "2", "--plot", "{output}"],
    "calibrate": ["calibrate", "--bank", "{bank}", "--alpha", "0.2", *POLICY, "--out", "{output}"],
    "calibrate --model": [
        "calibrate", "--model", "replay:{bank}", "--prompts", "{prompts}", "--alpha", "0.2",
        *POLICY, "--out", "{out}/c.json", "--record-to", "{output}",
    ],
    "ask": ["ask", PROMPTS[0], "--model", "replay:{bank}", "--calibration", "{calibration}"],
}  # fmt: skip

OUTPUT_NAMES = {
    "import-paper": ("--out", "bank.jsonl"),
    "record": ("--out", "bank.jsonl"),
    "evaluate --plot": ("--plot", "plot.png"),
    "calibrate": ("--out", "c.json"),
    "calibrate --model": ("--record-to", "recorded.jsonl"),
}


def _fill(arguments: list[str], files: Files, output: Path | None = None) -> list[str]:
    names = {**vars(files), "output": output if output is not None else files.out / "x"}
    return [argument.format(**names) for argument in arguments]


def _replace(arguments: list[str], old: str, new: str) -> list[str]:
    return [new if argument == old else argument for argument in arguments]


def _run(capsys: pytest.CaptureFixture[str], arguments: list[str]) -> tuple[int, str, str]:
    code = main(arguments)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _assert_one_line(code: int, out: str, err: str, expected_code: int, fragment: str) -> None:
    assert code == expected_code, err
    assert err.startswith("cpq-guard: error: "), err
    assert err.count("\n") == 1, err
    assert fragment in err, err
    assert "Traceback" not in err
    assert out == ""


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_valid_command_succeeds(
    capsys: pytest.CaptureFixture[str], files: Files, command: str
) -> None:
    # The base command lines must work, or the failure tables below test nothing.
    output = files.out / OUTPUT_NAMES.get(command, ("", "x"))[1]

    code, _, err = _run(capsys, _fill(COMMANDS[command], files, output))

    assert code == 0, err


# --- input files ---

# Each case: command, the placeholder of the input, the value that replaces it,
# and the expected message part.
INPUT_FAILURES = [
    ("demo", "{demo_bank}", "{out}/missing.jsonl", "sample bank {out}/missing.jsonl not found"),
    ("demo", "{demo_bank}", "{out}", "cannot read sample bank {out}: Is a directory"),
    ("evaluate", "{bank}", "{out}/missing.jsonl", "sample bank {out}/missing.jsonl not found"),
    ("evaluate", "{bank}", "{out}", "cannot read sample bank {out}: Is a directory"),
    ("calibrate", "{bank}", "{out}/missing.jsonl", "sample bank {out}/missing.jsonl not found"),
    ("calibrate", "{bank}", "{out}", "cannot read sample bank {out}: Is a directory"),
    (
        "record",
        "replay:{bank}",
        "replay:{out}/gone.jsonl",
        "sample bank {out}/gone.jsonl not found",
    ),
    (
        "record",
        "{prompts}",
        "{out}/missing.jsonl",
        "cannot access {out}/missing.jsonl: No such file",
    ),
    ("record", "{prompts}", "{out}", "cannot access {out}: Is a directory"),
    (
        "calibrate --model",
        "{prompts}",
        "{out}/missing.jsonl",
        "cannot access {out}/missing.jsonl: No such file",
    ),
    ("ask", "replay:{bank}", "replay:{out}/gone.jsonl", "sample bank {out}/gone.jsonl not found"),
    ("ask", "{calibration}", "{out}/missing.json", "calibration file {out}/missing.json not found"),
    ("ask", "{calibration}", "{out}", "cannot read calibration file {out}: Is a directory"),
    ("ask", "{calibration}", "{bank}", "calibration file {bank} is not valid JSON"),
    (
        "import-paper",
        "{paper}",
        "{out}/missing.json",
        "CPQ paper file {out}/missing.json not found",
    ),
    ("import-paper", "{paper}", "{out}", "cannot read CPQ paper file {out}: Is a directory"),
]


@pytest.mark.parametrize(("command", "placeholder", "value", "fragment"), INPUT_FAILURES)
def test_bad_input_path(
    capsys: pytest.CaptureFixture[str],
    files: Files,
    command: str,
    placeholder: str,
    value: str,
    fragment: str,
) -> None:
    output = files.out / "result"
    arguments = _fill(_replace(COMMANDS[command], placeholder, value), files, output)

    code, out, err = _run(capsys, arguments)

    _assert_one_line(code, out, err, 1, fragment.format(**vars(files)))
    assert not output.exists()

    with pytest.raises((CPQGuardError, OSError, CommandError)):
        main([*arguments, "--debug"])


# --- output paths ---


@pytest.fixture
def unwritable(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make every directory reject new files, as a read-only directory does for non-root users."""

    def reject(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(_paths.tempfile, "TemporaryFile", reject)
    yield
    assert _paths.tempfile is tempfile


OUTPUT_FAILURES = [
    pytest.param(
        "{out}/no/such/dir/{name}", "directory {out}/no/such/dir does not exist", id="no dir"
    ),
    pytest.param("{regular_file}/{name}", "{regular_file} is not a directory", id="parent is file"),
    pytest.param("{out}", "{flag} {out} is a directory; give a file path", id="is a directory"),
]


@pytest.mark.parametrize("command", sorted(OUTPUT_NAMES))
@pytest.mark.parametrize(("template", "fragment"), OUTPUT_FAILURES)
def test_bad_output_path(
    capsys: pytest.CaptureFixture[str], files: Files, command: str, template: str, fragment: str
) -> None:
    flag, name = OUTPUT_NAMES[command]
    names = {**vars(files), "name": name, "flag": flag}
    output = Path(template.format(**names))
    arguments = _fill(COMMANDS[command], files, output)

    code, out, err = _run(capsys, arguments)

    _assert_one_line(code, out, err, 1, fragment.format(**names))
    assert [path.name for path in files.out.iterdir()] == []

    with pytest.raises(CommandError):
        main([*arguments, "--debug"])


@pytest.mark.parametrize("command", sorted(OUTPUT_NAMES))
@pytest.mark.usefixtures("unwritable")
def test_unwritable_output_directory(
    capsys: pytest.CaptureFixture[str], files: Files, command: str
) -> None:
    flag, name = OUTPUT_NAMES[command]
    output = files.out / name

    code, out, err = _run(capsys, _fill(COMMANDS[command], files, output))

    # calibrate --model checks --out, in the same directory, before --record-to.
    checked_flag, checked = (
        ("--out", files.out / "c.json") if flag == "--record-to" else (flag, output)
    )
    _assert_one_line(
        code,
        out,
        err,
        1,
        f"cannot write {checked_flag} {checked}: directory {files.out} is not writable "
        "(Permission denied); choose another path",
    )
    assert not output.exists()


# --- values ---

ALPHA_COMMANDS = ["calibrate", "demo", "evaluate"]

BAD_ALPHAS = [
    ("0", "invalid value '0': the miscoverage level must lie strictly between 0 and 1"),
    ("1", "invalid value '1': the miscoverage level must lie strictly between 0 and 1"),
    ("-0.1", "invalid value '-0.1': the miscoverage level must lie strictly between 0 and 1"),
    ("1.5", "invalid value '1.5': the miscoverage level must lie strictly between 0 and 1"),
    ("nan", "invalid value 'nan': it must be a finite number"),
    ("0.1x", "invalid number '0.1x'"),
]


@pytest.mark.parametrize("command", ALPHA_COMMANDS)
@pytest.mark.parametrize(("alpha", "fragment"), BAD_ALPHAS)
def test_bad_alpha(
    capsys: pytest.CaptureFixture[str], files: Files, command: str, alpha: str, fragment: str
) -> None:
    arguments = _fill(COMMANDS[command], files, files.out / "c.json")
    if "--alpha" in arguments:
        arguments[arguments.index("--alpha") + 1] = alpha
    else:
        arguments += ["--alpha", alpha]

    code, out, err = _run(capsys, arguments)

    _assert_one_line(code, out, err, 2, f"argument --alpha: {fragment}")
    assert f"(see 'cpq-guard {command} --help')" in err


# Each case: command, flags appended to the valid command line, exit status, message part.
VALUE_FAILURES = [
    ("calibrate", ["--max-queries", "1"], 2, "--min-queries 2 is greater than --max-queries 1"),
    ("evaluate", ["--max-queries", "1"], 2, "--min-queries 2 is greater than --max-queries 1"),
    ("calibrate", ["--bootstrap", "-1"], 2, "argument --bootstrap: invalid value '-1'"),
    ("evaluate", ["--bootstrap", "-1"], 2, "argument --bootstrap: invalid value '-1'"),
    ("calibrate", ["--max-queries", "50"], 1, "fewer than max_queries=50"),
    ("calibrate", ["--alpha", "0.01"], 1, "needs at least 99 calibration prompts"),
    ("calibrate --model", ["--alpha", "0.01"], 1, "needs at least 99 calibration prompts"),
    ("evaluate", ["--alpha", "0.01"], 1, "needs at least 99 calibration prompts"),
    ("demo", ["--alpha", "0.01"], 1, "needs at least 99 calibration prompts"),
    ("calibrate", ["--extractor", "boxed"], 2, "argument --extractor: extractor 'boxed' is not"),
    ("evaluate", ["--extractor", "boxed"], 2, "argument --extractor: extractor 'boxed' is not"),
    ("demo", ["--extractor", "boxed"], 1, "extractor 'boxed' is not a built-in"),
    ("demo", ["--equivalence", "fuzzy"], 1, "unknown equivalence 'fuzzy'"),
    ("record", ["--timeout", "-1"], 2, "argument --timeout: invalid value '-1'"),
    ("ask", ["--max-attempts", "0"], 2, "argument --max-attempts: invalid value '0'"),
    ("ask", ["--seed", "-3"], 2, "argument --seed: invalid value '-3'"),
]


@pytest.mark.parametrize(("command", "flags", "code", "fragment"), VALUE_FAILURES)
def test_bad_value(
    capsys: pytest.CaptureFixture[str],
    files: Files,
    command: str,
    flags: list[str],
    code: int,
    fragment: str,
) -> None:
    output = files.out / "result"
    arguments = _fill(COMMANDS[command], files, output)
    for flag in flags[::2]:
        if flag in arguments:
            position = arguments.index(flag)
            del arguments[position : position + 2]

    result = _run(capsys, [*arguments, *flags])

    _assert_one_line(*result, code, fragment)
    assert not output.exists()
