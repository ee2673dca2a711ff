"""Safe handling of data: no code execution from data, strict artifacts, no text in INFO logs.

Static checks parse every module of ``cpq_guard`` and ``integrations``. No
module may import a serialiser that can run code on load (pickle and its
relatives) or call ``eval`` or ``exec``. Files are written only through the
atomic writer and the bank appender. Artifacts are JSON validated by pydantic models that
reject unknown keys. Prompt and response texts may appear in log records at
DEBUG level only.
"""

from __future__ import annotations

import ast
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cpq_guard.banks import read_bank
from cpq_guard.calibration import Calibration
from cpq_guard.cli import main
from cpq_guard.errors import BankFormatError, CalibrationFormatError
from cpq_guard.guard import CPQGuard
from cpq_guard.live_calibration import calibrate
from cpq_guard.models import AnswerDistribution, SimulatedChatModel
from cpq_guard.recording import arecord_bank

from .helpers import FAST_RETRY, make_calibration

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("cpq_guard", "integrations")

UNSAFE_MODULES = frozenset(
    {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle", "joblib"}
)
UNSAFE_CALLS = frozenset({"eval", "exec"})
UNSAFE_ATTRIBUTES = frozenset({"read_pickle", "to_pickle", "unsafe_load"})

# Modules allowed to open files for writing, and why.
FILE_WRITERS = {
    "cpq_guard/_atomic.py": "writes a temporary file and renames it over the target",
    "cpq_guard/banks.py": "BankWriter appends synced lines and cuts a torn last line",
    "cpq_guard/cli/_app.py": "points stdout at os.devnull after a broken pipe",
}
WRITE_MODE_LETTERS = frozenset("wax+")


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            relative = path.relative_to(REPO_ROOT).as_posix()
            yield relative, ast.parse(path.read_text(encoding="utf-8"), filename=relative)


def _call_name(node: ast.Call) -> str | None:
    if isinstance(node.func, ast.Name):
        return node.func.id
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    return None


def _string_argument(node: ast.Call, position: int, keyword: str) -> str | None:
    for item in node.keywords:
        if item.arg == keyword and isinstance(item.value, ast.Constant):
            return str(item.value.value)
    if len(node.args) > position and isinstance(node.args[position], ast.Constant):
        return str(node.args[position].value)
    return None


def _unsafe_uses(tree: ast.Module) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [
                alias.name for alias in node.names if alias.name.split(".")[0] in UNSAFE_MODULES
            ]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in UNSAFE_MODULES:
                found.append(f"from {node.module}")
            found += [
                f"import {alias.name}" for alias in node.names if alias.name in UNSAFE_MODULES
            ]
        elif isinstance(node, ast.Call):
            name = _call_name(node)
            if name in UNSAFE_CALLS or name in UNSAFE_ATTRIBUTES:
                found.append(f"{name}() on line {node.lineno}")
            for item in node.keywords:
                if item.arg == "allow_pickle" and not (
                    isinstance(item.value, ast.Constant) and item.value.value is False
                ):
                    found.append(f"allow_pickle on line {node.lineno}")
    return found


def _file_writes(tree: ast.Module) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _call_name(node)
        if name in ("write_text", "write_bytes", "fdopen") or (
            name == "open"
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "os"
        ):
            found.append(f"{name}() on line {node.lineno}")
        elif name == "open":
            position = 1 if isinstance(node.func, ast.Name) else 0
            mode = _string_argument(node, position, "mode") or "r"
            if WRITE_MODE_LETTERS.intersection(mode):
                found.append(f"open(mode={mode!r}) on line {node.lineno}")
    return found


def test_scan_covers_packages() -> None:
    names = [name for name, _ in _modules()]

    assert "cpq_guard/calibration.py" in names
    assert "integrations/langgraph.py" in names
    assert len(names) > 40


def test_scan_finds_unsafe_code() -> None:
    # The checks below pass only if they can fail: each line here must be caught.
    sample = ast.parse(
        "import pickle\nfrom marshal import loads\nimport shelve as s\neval('1')\n"
        "builtins.exec('x')\nnp.load('f', allow_pickle=True)\n"
        "open('f', 'w')\nPath('f').write_text('x')\nos.open('f', 1)\npath.open(mode='ab')\n"
    )

    assert len(_unsafe_uses(sample)) == 6
    assert len(_file_writes(sample)) == 4


def test_no_code_execution_from_data() -> None:
    offenders = {name: found for name, tree in _modules() if (found := _unsafe_uses(tree))}

    assert offenders == {}


def test_files_written_atomically() -> None:
    offenders = {
        name: found
        for name, tree in _modules()
        if name not in FILE_WRITERS and (found := _file_writes(tree))
    }

    assert offenders == {}


# --- artifacts are validated JSON ---


def _calibration_document() -> dict[str, Any]:
    return json.loads(make_calibration().model_dump_json(by_alias=True))


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"notes": "extra"}, "notes: Extra inputs are not permitted"),
        ({"py/object": "os.system"}, "py/object: Extra inputs are not permitted"),
        (
            {"policy": {"kind": "fixed", "queries": 4, "hook": "x"}},
            "policy.fixed.hook: Extra inputs are not permitted",
        ),
        (
            {"policy": {"kind": "fixed", "queries": "__import__('os')"}},
            "policy.fixed.queries: Input should be a valid integer",
        ),
    ],
    ids=["top-level key", "object hook key", "policy key", "code as value"],
)
def test_calibration_unknown_keys_rejected(
    tmp_path: Path, change: dict[str, Any], fragment: str
) -> None:
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps({**_calibration_document(), **change}), encoding="utf-8")

    with pytest.raises(CalibrationFormatError) as caught:
        Calibration.load(path)

    assert fragment in str(caught.value)


def test_bank_unknown_keys_rejected(tmp_path: Path) -> None:
    path = tmp_path / "bank.jsonl"
    line = {"id": "q1", "prompt": "p", "samples": [{"text": "1", "py/object": "x"}], "hook": 1}
    path.write_text(json.dumps(line) + "\n", encoding="utf-8")

    with pytest.raises(BankFormatError) as caught:
        read_bank(path)

    assert "samples.0.py/object: unknown field (misspelt?)" in str(caught.value)
    assert "hook: unknown field (misspelt?)" in str(caught.value)


def test_saved_calibration_is_plain_json(tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    make_calibration().save(path)

    document = json.loads(path.read_text(encoding="utf-8"))

    assert document["schema_version"] == 1
    assert Calibration.model_validate(document) == Calibration.load(path)


# --- prompts and responses stay out of INFO logs ---

PROMPT = "ZEPHYR-7f3a: how many quokkas sit on the bench?"
RESPONSE_MARK = "QUOKKA-91c2"
SECRETS = (PROMPT, "ZEPHYR-7f3a", RESPONSE_MARK)


def _model(**kwargs: Any) -> SimulatedChatModel:
    return SimulatedChatModel(
        distributions={PROMPT: AnswerDistribution(answers={"4": 0.6, "5": 0.4})},
        response_template=RESPONSE_MARK + " I count them: the answer is {answer}.",
        seed=5,
        **kwargs,
    )


def _check_levels(records: list[logging.LogRecord]) -> int:
    """Assert that records with prompt or response text are DEBUG; return how many there are."""
    revealing = 0
    for record in records:
        message = record.getMessage()
        if any(secret in message for secret in SECRETS):
            assert record.levelno == logging.DEBUG, (record.levelname, message)
            revealing += 1
    return revealing


async def test_record_and_guard_logs_keep_text_at_debug(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    guard = CPQGuard(
        _model(failure_rate=0.3), make_calibration(), retry=FAST_RETRY, max_concurrency=2
    )

    await arecord_bank(
        _model(failure_rate=0.3), [PROMPT], ["4"], tmp_path / "b.jsonl",
        samples_per_prompt=5, retry=FAST_RETRY,
    )  # fmt: skip
    guard.invoke(PROMPT)
    await guard.ainvoke(PROMPT)

    messages = [record.getMessage() for record in caplog.records]
    assert any("retrying" in message for message in messages)
    assert any("guard stopped after" in message for message in messages)
    assert _check_levels(caplog.records) > 0, "the DEBUG records should name the prompt"


def test_calibrate_logs_keep_text_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    prompts = [f"{PROMPT} variant {index}" for index in range(4)]
    model = SimulatedChatModel(
        default=AnswerDistribution(answers={"4": 0.6, "5": 0.4}),
        response_template=RESPONSE_MARK + " the answer is {answer}.",
        failure_rate=0.3,
    )

    calibrate(
        model, prompts, ["4"] * 4, alpha=0.5, lambda_=0.01, min_queries=2, max_queries=4,
        bootstrap=2, retry=FAST_RETRY,
    )  # fmt: skip

    assert any(record.levelno == logging.INFO for record in caplog.records)
    assert _check_levels(caplog.records) > 0


@pytest.fixture
def cli_files(tmp_path: Path) -> dict[str, Path]:
    from cpq_guard.banks import BankRecord, Sample, write_bank

    bank = tmp_path / "source.jsonl"
    texts = [f"{RESPONSE_MARK} the answer is {n % 2 + 4}." for n in range(6)]
    write_bank(
        bank,
        [
            BankRecord(
                id=f"z{index}",
                prompt=f"{PROMPT} #{index}",
                references=["4"],
                samples=[Sample(text=text) for text in texts],
            )
            for index in range(6)
        ],
    )
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(
            json.dumps({"prompt": f"{PROMPT} #{index}", "references": ["4"], "id": f"z{index}"})
            + "\n"
            for index in range(6)
        ),
        encoding="utf-8",
    )
    calibration = tmp_path / "calibration.json"
    make_calibration(extractor="final-answer", equivalence="numeric").save(calibration)
    return {"bank": bank, "prompts": prompts, "calibration": calibration, "tmp": tmp_path}


@pytest.mark.parametrize("verbosity", ["-v", "-vv"])
def test_cli_logs_keep_text_at_debug(
    cli_files: dict[str, Path], capsys: pytest.CaptureFixture[str], verbosity: str
) -> None:
    model = f"replay:{cli_files['bank']}"
    tmp = cli_files["tmp"]
    commands = [
        ["record", "--model", model, "--prompts", cli_files["prompts"], "--out", tmp / "r.jsonl",
         "--samples", "4"],
        ["calibrate", "--model", model, "--prompts", cli_files["prompts"], "--alpha", "0.5",
         "--queries", "4", "--extractor", "final-answer", "--equivalence", "numeric",
         "--out", tmp / "c.json"],
        ["ask", f"{PROMPT} #0", "--model", model, "--calibration", cli_files["calibration"]],
    ]  # fmt: skip

    for command in commands:
        code = main([verbosity, *map(str, command)])
        err = capsys.readouterr().err
        assert code == 0, err

        assert "cpq-guard: info:" in err
        for line in err.splitlines():
            if any(secret in line for secret in SECRETS):
                assert line.startswith("cpq-guard: debug:"), line
        if verbosity == "-v":
            assert not any(secret in err for secret in SECRETS), err
