"""Crashes leave consistent files: killed recordings resume, and outputs are replaced whole.

A recording appends each finished prompt to its bank with one write,
flushed and synced, and a rerun skips the prompts already there. The kill
test runs ``cpq-guard record`` in a fresh process, kills it with SIGKILL at
seeded random points, reruns it each time, and compares the final bank with
one recorded in one go. Every other output (calibration files, banks written
whole, plots) goes to a temporary file that is renamed over the target, so a
failure during the write leaves the old file as it was.
"""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cpq_guard import _atomic
from cpq_guard.banks import BankRecord, Sample, read_bank, write_bank
from cpq_guard.calibration import Calibration
from cpq_guard.cli import main
from cpq_guard.model_loading import load_chat_model
from cpq_guard.paper import import_paper_file
from cpq_guard.recording import record_bank

from .helpers import make_calibration, make_records

REPO_ROOT = Path(__file__).resolve().parents[2]
PAPER_FILE = REPO_ROOT / "tests" / "data" / "paper_small.json"

PROMPTS = 80
SAMPLES = 20
KILL_SEED = 20240611
RUN_TIMEOUT = 60.0

CLI = [sys.executable, "-c", "import sys; from cpq_guard.cli import main; sys.exit(main())"]


def _source_records() -> list[BankRecord]:
    """Records whose sample texts name their prompt and position, so none repeats."""
    return [
        BankRecord(
            id=f"p{index:03d}",
            prompt=f"prompt {index}: what is {index} + 1?",
            references=[str(index + 1)],
            samples=[Sample(text=f"p{index}-s{draw}") for draw in range(SAMPLES)],
        )
        for index in range(PROMPTS)
    ]


def _complete_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _check_after_crash(path: Path) -> int:
    """Check that every complete line of the bank is a whole record; return how many there are.

    A kill may cut short the line being written, and only the last line can
    be such a fragment; the next run removes it.
    """
    if not path.exists():
        return 0
    *complete, _ = path.read_bytes().split(b"\n")
    ids = set()
    for line in complete:
        document = json.loads(line)
        document.pop("format")
        record = BankRecord.model_validate(document)
        assert len(record.samples) == SAMPLES, record.id
        assert record.id not in ids
        ids.add(record.id)
    return len(complete)


class Recording:
    """Runs ``cpq-guard record`` from a prompts file into one bank, in a new process each time."""

    def __init__(self, directory: Path) -> None:
        self.source = directory / "source.jsonl"
        self.prompts = directory / "prompts.jsonl"
        self.bank = directory / "bank.jsonl"
        records = _source_records()
        write_bank(self.source, records)
        self.prompts.write_text(
            "".join(
                json.dumps(
                    {"prompt": record.prompt, "references": record.references, "id": record.id}
                )
                + "\n"
                for record in records
            ),
            encoding="utf-8",
        )

    def start(self) -> subprocess.Popen[bytes]:
        arguments = [
            *CLI, "record", "--model", f"replay:{self.source}", "--prompts", str(self.prompts),
            "--out", str(self.bank), "--samples", str(SAMPLES), "--max-concurrency", "8",
        ]  # fmt: skip
        return subprocess.Popen(
            arguments, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )

    def kill_after_lines(self, lines: int) -> None:
        """Start a run and kill it once the bank has ``lines`` complete lines."""
        process = self.start()
        deadline = time.monotonic() + RUN_TIMEOUT
        while _complete_lines(self.bank) < lines:
            assert process.poll() is None, process.communicate()[1].decode()
            assert time.monotonic() < deadline, "the recording made no progress"
            time.sleep(0.001)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=RUN_TIMEOUT)
        assert process.returncode == -signal.SIGKILL

    def kill_after_seconds(self, seconds: float) -> None:
        """Start a run and kill it after ``seconds``, which may be before recording starts."""
        process = self.start()
        time.sleep(seconds)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=RUN_TIMEOUT)
        assert process.returncode == -signal.SIGKILL, "the run ended before the kill"

    def finish(self) -> str:
        """Run to the end and return what the run printed."""
        process = self.start()
        out, err = process.communicate(timeout=RUN_TIMEOUT)
        assert process.returncode == 0, err.decode()
        return out.decode()


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_killed_recording_resumes(tmp_path: Path) -> None:
    recording = Recording(tmp_path)
    rng = random.Random(KILL_SEED)

    # Killed during start-up, before or just as the first prompts are appended.
    recording.kill_after_seconds(rng.uniform(0.0, 0.5))
    done = _check_after_crash(recording.bank)

    # Killed mid-recording, at random numbers of saved prompts.
    for _ in range(3):
        target = done + rng.randint(1, (PROMPTS - done) // 3)
        recording.kill_after_lines(target)
        done = _check_after_crash(recording.bank)
        assert target <= done < PROMPTS

    # A write cut short by a power loss leaves half a line; the rerun removes it.
    half_line = (json.dumps({"id": "p999", "prompt": "torn", "samples": []})[:30]).encode()
    with recording.bank.open("ab") as handle:
        handle.write(half_line)

    printed = recording.finish()

    assert f"already has {done} of {PROMPTS} prompts; recording the other" in printed
    assert f"{PROMPTS} ({PROMPTS - done} recorded now, {done} already there)" in printed
    final = read_bank(recording.bank)
    assert sorted(record.id for record in final) == [f"p{index:03d}" for index in range(PROMPTS)]

    one_go = record_bank(
        load_chat_model(f"replay:{recording.source}"),
        [record.prompt for record in _source_records()],
        [record.references for record in _source_records()],
        tmp_path / "one-go.jsonl",
        ids=[record.id for record in _source_records()],
        samples_per_prompt=SAMPLES,
    )
    by_id = {record.id: record for record in final}
    for expected in one_go:
        record = by_id[expected.id]
        assert record.prompt == expected.prompt
        assert record.references == expected.references
        # Overlapping calls of one prompt may take the replayed samples in
        # another order, so the samples are compared as multisets.
        assert sorted(sample.text for sample in record.samples) == sorted(
            sample.text for sample in expected.samples
        )


# --- atomic replacement of outputs ---


def _write_plot(path: Path) -> None:
    plot = pytest.importorskip("cpq_guard.cli._plot")
    from cpq_guard.evaluation import EvaluationRow, MetricSummary

    summary = MetricSummary(mean=0.5, std=0.1)
    row = EvaluationRow(
        alpha=0.1,
        method="cpq",
        mapping="missing-mass",
        coverage=summary,
        abstention_rate=summary,
        informative_coverage=summary,
        mean_set_size=summary,
        mean_queries=summary,
        tau=summary,
        splits=1,
    )
    plot.write_plot([row], path, title="test")


WRITERS: dict[str, tuple[str, Callable[[Path], None]]] = {
    "Calibration.save": ("calibration.json", lambda path: make_calibration(tau=0.7).save(path)),
    "write_bank": ("bank.jsonl", lambda path: write_bank(path, make_records(3))),
    "import_paper_file": ("bank.jsonl", lambda path: import_paper_file(PAPER_FILE, path)),
    "write_plot": ("plot.png", _write_plot),
}


def _fail_fsync(descriptor: int) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def _fail_replace(source: object, target: object) -> None:
    raise OSError(errno.EIO, "Input/output error")


class _Interrupted(BaseException):
    """Stands for a signal that ends the process while the file is written."""


def _interrupt(descriptor: int) -> None:
    raise _Interrupted


FAULTS = {
    "disk full": ("fsync", _fail_fsync, OSError),
    "rename fails": ("replace", _fail_replace, OSError),
    "interrupted": ("fsync", _interrupt, _Interrupted),
}


@pytest.mark.parametrize("writer", sorted(WRITERS))
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_failed_write_keeps_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: str, fault: str
) -> None:
    name, write = WRITERS[writer]
    path = tmp_path / name
    path.write_bytes(b"old content\n")
    function, replacement, error = FAULTS[fault]
    monkeypatch.setattr(_atomic.os, function, replacement)

    with pytest.raises(error):
        write(path)

    assert path.read_bytes() == b"old content\n"
    assert [entry.name for entry in tmp_path.iterdir()] == [name]


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_write_renames_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: str
) -> None:
    name, write = WRITERS[writer]
    path = tmp_path / name
    path.write_bytes(b"old content\n")
    renames: list[tuple[Path, Path]] = []
    real_replace = os.replace

    def spy(source: Any, target: Any) -> None:
        renames.append((Path(source), Path(target)))
        assert path.read_bytes() == b"old content\n"
        real_replace(source, target)

    monkeypatch.setattr(_atomic.os, "replace", spy)

    write(path)

    assert len(renames) == 1
    temporary, target = renames[0]
    assert target == path
    assert temporary.parent == path.parent
    assert temporary.name.startswith(f".{name}.")
    assert temporary.name.endswith(".tmp")
    assert path.read_bytes() != b"old content\n"


def test_cli_write_failure_keeps_calibration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bank = tmp_path / "bank.jsonl"
    write_bank(bank, make_records())
    out = tmp_path / "calibration.json"
    make_calibration().save(out)
    before = out.read_bytes()
    monkeypatch.setattr(_atomic.os, "fsync", _fail_fsync)

    code = main(
        [
            "calibrate", "--bank", str(bank), "--alpha", "0.2", "--lambda", "0.001",
            "--min-queries", "2", "--max-queries", "4", "--out", str(out),
        ]
    )  # fmt: skip

    err = capsys.readouterr().err
    assert code == 1
    assert err == "cpq-guard: error: No space left on device\n"
    assert out.read_bytes() == before
    assert Calibration.load(out).tau == make_calibration().tau
