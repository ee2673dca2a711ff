"""Every public entry point rejects invalid input with a specific error.

Each table row is one invalid value at one entry point, with the exception
class and a part of the message that names the value and the fix. Entry
points that query a model must fail before the first model call, so those
rows also check that the model was never called and no bank was written.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from cpq_guard.answers import get_equivalence
from cpq_guard.banks import BankWriter, read_bank, write_bank
from cpq_guard.calibration import Calibration, calibrate_bank, calibrate_histories
from cpq_guard.errors import (
    BankFormatError,
    BudgetOutOfRangeError,
    CalibrationFormatError,
    CalibrationMismatchError,
    CPQGuardError,
    ExtractionError,
    InsufficientCalibrationError,
    InvalidParameterError,
    InvalidTypeError,
    SchemaVersionError,
)
from cpq_guard.guard import CPQGuard
from cpq_guard.histories import histories_from_records
from cpq_guard.live_calibration import calibrate
from cpq_guard.model_loading import ModelLoadError, load_chat_model
from cpq_guard.models import ReplayChatModel
from cpq_guard.recording import record_bank
from cpq_guard.stats import (
    DerivativePolicy,
    FixedPolicy,
    FrequencyCounter,
    MissingMassPolicy,
    bootstrap_derivative,
    conformal_quantile,
    estimate_missing_mass,
    raw_derivative,
    required_calibration_size,
    tune_fixed_queries,
)

from .helpers import (
    FAST_RETRY,
    PROMPTS,
    REFERENCES,
    SMALL_POLICY,
    make_calibration,
    make_model,
    make_records,
)

NAN = float("nan")


def _histories() -> list[Any]:
    return histories_from_records(make_records(), get_equivalence("normalized"))


# --- alpha at every entry point that takes it ---

ALPHA_ENTRY_POINTS: dict[str, Callable[[Any], Any]] = {
    "calibrate_histories": lambda alpha: calibrate_histories(
        _histories(),
        alpha=alpha,
        policy=FixedPolicy(queries=4),
        equivalence="normalized",
        extractor="text",
    ),
    "calibrate_bank": lambda alpha: calibrate_bank(
        make_records(), alpha=alpha, policy=FixedPolicy(queries=4)
    ),
    "calibrate": lambda alpha: calibrate(
        make_model(), PROMPTS, REFERENCES, alpha=alpha, lambda_=0.01, min_queries=3, max_queries=6
    ),
    "conformal_quantile": lambda alpha: conformal_quantile([0.1, 0.2, 0.3], alpha),
    "required_calibration_size": required_calibration_size,
}

BAD_ALPHAS = [
    pytest.param(0, InvalidParameterError, "alpha=0 is invalid: the miscoverage level", id="0"),
    pytest.param(1, InvalidParameterError, "alpha=1 is invalid", id="1"),
    pytest.param(-0.1, InvalidParameterError, "alpha=-0.1 is invalid", id="-0.1"),
    pytest.param(1.5, InvalidParameterError, "alpha=1.5 is invalid", id="1.5"),
    pytest.param(NAN, InvalidParameterError, "alpha=nan is invalid: it must be finite", id="nan"),
    pytest.param(
        "0.1", InvalidTypeError, "alpha must be a real number, got str '0.1'", id="string"
    ),
    pytest.param(True, InvalidTypeError, "alpha must be a real number, got bool True", id="bool"),
]


@pytest.mark.parametrize("entry", sorted(ALPHA_ENTRY_POINTS))
@pytest.mark.parametrize(("alpha", "error", "fragment"), BAD_ALPHAS)
def test_alpha_rejected(entry: str, alpha: Any, error: type, fragment: str) -> None:
    with pytest.raises(error) as caught:
        ALPHA_ENTRY_POINTS[entry](alpha)

    assert isinstance(caught.value, CPQGuardError)
    assert fragment in str(caught.value)
    if isinstance(caught.value, InvalidParameterError) and not math.isnan(alpha):
        assert caught.value.name == "alpha"
        assert caught.value.value == alpha
        assert "strictly between 0 and 1" in str(caught.value)


# --- calibrate(): every setting is checked before the first model call ---

CALIBRATE_DEFAULTS: dict[str, Any] = {
    "alpha": 0.1,
    "lambda_": 0.01,
    "min_queries": 3,
    "max_queries": 6,
    "bootstrap": 5,
    "retry": FAST_RETRY,
}

CALIBRATE_ERRORS = [
    pytest.param(
        {"alpha": 0.01},
        InsufficientCalibrationError,
        "alpha=0.01 needs at least 99 calibration prompts for a finite conformal threshold, "
        "but 30 were given",
        id="too few prompts",
    ),
    pytest.param(
        {"alpha": 0.05, "lambda_": None, "average_budget": 4},
        InsufficientCalibrationError,
        "needs at least 19 calibration prompts for a finite conformal threshold, but 15 were "
        "given (another 15 tuned the stopping policy)",
        id="too few prompts after tuning",
    ),
    pytest.param(
        {"lambda_": None, "average_budget": 7},
        BudgetOutOfRangeError,
        "average budget 7.0 is outside [min_queries, max_queries] = [3, 6]",
        id="budget above max",
    ),
    pytest.param(
        {"lambda_": None, "average_budget": 2.5},
        BudgetOutOfRangeError,
        "average budget 2.5 is outside [min_queries, max_queries] = [3, 6]",
        id="budget below min",
    ),
    pytest.param(
        {"lambda_": None, "policy": FixedPolicy(queries=6), "average_budget": 6.5},
        BudgetOutOfRangeError,
        "average budget 6.5 is outside [min_queries, max_queries] = [1, 6]",
        id="budget above fixed queries",
    ),
    pytest.param(
        {"min_queries": 7},
        InvalidParameterError,
        "min_queries=7 is greater than max_queries=6; lower min_queries or raise max_queries",
        id="min above max",
    ),
    pytest.param(
        {"min_queries": 0}, InvalidParameterError, "min_queries=0 is invalid", id="min zero"
    ),
    pytest.param(
        {"bootstrap": -1},
        InvalidParameterError,
        "bootstrap=-1 is invalid: it must be at least 0",
        id="negative bootstrap",
    ),
    pytest.param(
        {"lambda_": -0.5},
        InvalidParameterError,
        "lambda_=-0.5 is invalid: it must be zero or positive",
        id="negative lambda",
    ),
    pytest.param(
        {"average_budget": 4},
        InvalidParameterError,
        "pass exactly one of average_budget (to tune lambda) and lambda_ (to fix it)",
        id="budget and lambda",
    ),
    pytest.param(
        {"lambda_": None, "average_budget": 4, "tuning_fraction": 1.0},
        InvalidParameterError,
        "tuning_fraction=1.0 must lie strictly between 0 and 1",
        id="tuning fraction one",
    ),
    pytest.param(
        {"lambda_": None, "average_budget": 4, "tuning_fraction": 0.01},
        InvalidParameterError,
        "tuning_fraction=0.01 leaves no prompt of 30 for tuning",
        id="tuning fraction too small",
    ),
    pytest.param(
        {"mapping": "sets"},
        InvalidParameterError,
        "mapping='sets' is invalid: use one of 'missing-mass', 'cumulative'",
        id="unknown mapping",
    ),
    pytest.param(
        {"estimator": "turing"},
        InvalidParameterError,
        "estimator='turing' is invalid: use one of 'good-turing', 'smoothed'",
        id="unknown estimator",
    ),
    pytest.param(
        {"tie_jitter": 0.5},
        InvalidParameterError,
        "tie_jitter=0.5 is invalid: it must be at most 0.1",
        id="tie jitter too wide",
    ),
    pytest.param(
        {"tie_jitter": -0.001},
        InvalidParameterError,
        "tie_jitter=-0.001 is invalid: it must be zero or positive",
        id="negative tie jitter",
    ),
    pytest.param(
        {"seed": -1}, InvalidParameterError, "seed=-1 is invalid: it must be at least 0", id="seed"
    ),
    pytest.param(
        {"extractor": "boxed"},
        InvalidParameterError,
        "extractor 'boxed' is not a built-in; use 'text', 'final-answer'",
        id="unknown extractor",
    ),
    pytest.param(
        {"extractor": 42},
        InvalidTypeError,
        "extractor must be a name, an extractor, an output parser or a callable, got int",
        id="extractor type",
    ),
    pytest.param(
        {"equivalence": "fuzzy"},
        InvalidParameterError,
        "unknown equivalence 'fuzzy'; use one of 'exact', 'normalized', 'numeric'",
        id="unknown equivalence",
    ),
    pytest.param(
        {"equivalence": 42},
        InvalidTypeError,
        "equivalence must be a built-in name or an object with a 'name' attribute",
        id="equivalence type",
    ),
    pytest.param(
        {"lambda_": None, "policy": "cpq"},
        InvalidTypeError,
        "policy must be a FixedPolicy, MissingMassPolicy or DerivativePolicy, got str",
        id="policy type",
    ),
    pytest.param(
        {"timeout": 0},
        InvalidParameterError,
        "timeout=0 is invalid: give positive seconds, or None for no limit",
        id="zero timeout",
    ),
    pytest.param(
        {"retry": {"max_attempts": 2}},
        InvalidTypeError,
        "retry must be a RetryPolicy, got dict",
        id="retry type",
    ),
    pytest.param(
        {"max_concurrency": 0},
        InvalidParameterError,
        "max_concurrency=0 is invalid: it must be at least 1",
        id="zero concurrency",
    ),
    pytest.param(
        {"ids": ["same"] * 30},
        InvalidParameterError,
        "prompts 0 and 1 have the same id 'same'; remove the duplicate",
        id="duplicate ids",
    ),
]


@pytest.mark.parametrize(("overrides", "error", "fragment"), CALIBRATE_ERRORS)
def test_calibrate_fails_before_querying(
    tmp_path: Path, overrides: dict[str, Any], error: type, fragment: str
) -> None:
    model = make_model()
    bank = tmp_path / "bank.jsonl"
    kwargs = {**CALIBRATE_DEFAULTS, "bank": bank, **overrides}

    with pytest.raises(error) as caught:
        calibrate(model, PROMPTS, REFERENCES, **kwargs)

    assert fragment in str(caught.value)
    assert model.calls_started == 0
    assert not bank.exists()


def test_calibrate_names_required_size() -> None:
    with pytest.raises(InsufficientCalibrationError) as caught:
        calibrate(make_model(), PROMPTS, REFERENCES, **{**CALIBRATE_DEFAULTS, "alpha": 0.02})

    assert caught.value.required == 49
    assert caught.value.n == 30
    assert caught.value.alpha == 0.02


def test_calibrate_references_length() -> None:
    model = make_model()

    with pytest.raises(InvalidParameterError, match="got 30 prompts but 29 references"):
        calibrate(model, PROMPTS, REFERENCES[:29], **CALIBRATE_DEFAULTS)

    assert model.calls_started == 0


def test_zero_bootstrap_is_raw_derivative() -> None:
    # bootstrap=0 is valid by design: the policy uses the raw 2 N_2 / T^2.
    counts = np.array([3, 2, 2, 1])
    policy = DerivativePolicy(lambda_=0.0, bootstrap=0)
    counter = FrequencyCounter(label for label, count in enumerate(counts) for _ in range(count))

    assert bootstrap_derivative(counts, 0, np.random.default_rng(0)) == raw_derivative(counts)
    assert policy.statistic(counter, np.random.default_rng(0)) == raw_derivative(counts)

    calibration = calibrate(
        make_model(), PROMPTS, REFERENCES, **{**CALIBRATE_DEFAULTS, "bootstrap": 0}
    )
    assert isinstance(calibration.policy, DerivativePolicy)
    assert calibration.policy.bootstrap == 0


# --- record_bank(): every argument is checked before the first model call ---

RECORD_ERRORS = [
    pytest.param(
        {"references": REFERENCES[:3]},
        InvalidParameterError,
        "got 30 prompts but 3 references; pass one reference (or a list of references) per prompt",
        id="references length",
    ),
    pytest.param(
        {"prompts": ["a", "b", "a"], "references": None},
        InvalidParameterError,
        "prompts 0 and 2 have the same id",
        id="duplicate prompt text",
    ),
    pytest.param(
        {"ids": ["x"] * 30},
        InvalidParameterError,
        "prompts 0 and 1 have the same id 'x'; remove the duplicate",
        id="duplicate ids",
    ),
    pytest.param(
        {"ids": ["x"] * 29},
        InvalidParameterError,
        "got 30 prompts but 29 ids; pass one id each",
        id="ids length",
    ),
    pytest.param(
        {"ids": [f"q{index}" for index in range(29)] + [""]},
        InvalidParameterError,
        "ids[29] is empty; give every prompt a non-empty id",
        id="empty id",
    ),
    pytest.param(
        {"ids": list(range(30))},
        InvalidTypeError,
        "ids[0] must be a string, got int 0",
        id="id type",
    ),
    pytest.param(
        {"references": [42] * 30},
        InvalidTypeError,
        "references[0] must be a string or a list of strings, got int 42",
        id="reference type",
    ),
    pytest.param(
        {"references": [["2", 3]] * 30},
        InvalidTypeError,
        "references[0] must be a string or a list of strings, got list ['2', 3]",
        id="reference list item type",
    ),
    pytest.param(
        {"prompts": [], "references": None},
        InvalidParameterError,
        "prompts is empty; pass at least one prompt",
        id="no prompts",
    ),
    pytest.param(
        {"prompts": "one prompt", "references": None},
        InvalidTypeError,
        "prompts must be a list of strings, got str",
        id="prompts string",
    ),
    pytest.param(
        {"prompts": ["a", 7], "references": None},
        InvalidTypeError,
        "prompts[1] must be a string, got int",
        id="prompt type",
    ),
    pytest.param(
        {"samples_per_prompt": 0},
        InvalidParameterError,
        "samples_per_prompt=0 is invalid: it must be at least 1",
        id="zero samples",
    ),
    pytest.param(
        {"max_concurrency": 0},
        InvalidParameterError,
        "max_concurrency=0 is invalid: it must be at least 1",
        id="zero concurrency",
    ),
    pytest.param(
        {"timeout": -1},
        InvalidParameterError,
        "timeout=-1 is invalid: give positive seconds, or None for no limit",
        id="negative timeout",
    ),
    pytest.param(
        {"timeout": "5"},
        InvalidTypeError,
        "timeout must be a real number, got str '5'",
        id="timeout type",
    ),
    pytest.param(
        {"retry": 3}, InvalidTypeError, "retry must be a RetryPolicy, got int", id="retry type"
    ),
]


@pytest.mark.parametrize(("overrides", "error", "fragment"), RECORD_ERRORS)
def test_record_bank_fails_before_querying(
    tmp_path: Path, overrides: dict[str, Any], error: type, fragment: str
) -> None:
    model = make_model()
    bank = tmp_path / "bank.jsonl"
    kwargs: dict[str, Any] = {
        "prompts": PROMPTS,
        "references": REFERENCES,
        "samples_per_prompt": 2,
        "retry": FAST_RETRY,
        **overrides,
    }

    with pytest.raises(error) as caught:
        record_bank(model, kwargs.pop("prompts"), kwargs.pop("references"), bank, **kwargs)

    assert fragment in str(caught.value)
    assert model.calls_started == 0
    assert not bank.exists()


def test_record_bank_rejects_non_model(tmp_path: Path) -> None:
    with pytest.raises(InvalidTypeError, match="model must be a LangChain chat model or Runnable"):
        record_bank(
            "openai:gpt-4o-mini", PROMPTS, REFERENCES, tmp_path / "b.jsonl", samples_per_prompt=2
        )

    assert not (tmp_path / "b.jsonl").exists()


# --- statistics and policies ---

STATS_ERRORS = [
    pytest.param(
        lambda: DerivativePolicy(lambda_=0.0, min_queries=20, max_queries=10),
        ValidationError,
        "min_queries=20 is greater than max_queries=10; lower min_queries or raise max_queries",
        id="derivative policy min above max",
    ),
    pytest.param(
        lambda: MissingMassPolicy(epsilon=0.1, min_queries=8, max_queries=5),
        ValidationError,
        "min_queries=8 is greater than max_queries=5",
        id="missing-mass policy min above max",
    ),
    pytest.param(
        lambda: DerivativePolicy(lambda_=0.0, bootstrap=-1),
        ValidationError,
        "bootstrap\n  Input should be greater than or equal to 0",
        id="policy negative bootstrap",
    ),
    pytest.param(
        lambda: bootstrap_derivative(np.array([2, 1]), -1, np.random.default_rng(0)),
        InvalidParameterError,
        "resamples=-1 is invalid: it must be at least 0",
        id="bootstrap_derivative negative",
    ),
    pytest.param(
        lambda: estimate_missing_mass({1: 2}, 2, "turing"),  # type: ignore[arg-type]
        InvalidParameterError,
        "missing-mass estimator 'turing' is unknown; use 'smoothed' or 'good-turing'",
        id="unknown estimator",
    ),
    pytest.param(
        lambda: conformal_quantile([0.1] * 5, 0.1),
        InsufficientCalibrationError,
        "alpha=0.1 needs at least 9 calibration prompts for a finite conformal threshold, "
        "but 5 were given; add calibration prompts or raise alpha to at least 0.1667",
        id="too few scores",
    ),
    pytest.param(
        lambda: conformal_quantile([0.1, NAN, 0.3], 0.5),
        InvalidParameterError,
        "scores contain NaN or infinite values",
        id="nan score",
    ),
    pytest.param(
        lambda: conformal_quantile([[0.1, 0.2]], 0.5),
        InvalidParameterError,
        "scores must be one-dimensional, got shape (1, 2)",
        id="scores shape",
    ),
    pytest.param(
        lambda: tune_fixed_queries(0.5),
        BudgetOutOfRangeError,
        "average budget 0.5 is below min_queries = 1; choose a budget of at least 1",
        id="fixed budget below one",
    ),
    pytest.param(
        lambda: FrequencyCounter().add(1),
        InvalidParameterError,
        "cluster label 1 is invalid: labels must be 0..0",
        id="label skips ahead",
    ),
    pytest.param(
        lambda: calibrate_histories(
            _histories(),
            alpha=0.1,
            policy=SMALL_POLICY,
            average_budget=10,
            equivalence="normalized",
            extractor="text",
        ),
        BudgetOutOfRangeError,
        "average budget 10.0 is outside [min_queries, max_queries] = [3, 6]",
        id="calibrate_histories budget",
    ),
    pytest.param(
        lambda: calibrate_histories(
            [], alpha=0.1, policy=SMALL_POLICY, equivalence="normalized", extractor="text"
        ),
        InvalidParameterError,
        "no calibration prompts were given; pass at least one",
        id="no histories",
    ),
    pytest.param(
        lambda: calibrate_histories(
            _histories(),
            alpha=0.1,
            policy=DerivativePolicy(lambda_=0.0, min_queries=3, max_queries=8),
            equivalence="normalized",
            extractor="text",
        ),
        InvalidParameterError,
        "has 6 recorded samples, fewer than max_queries=8; lower max_queries",
        id="histories shorter than max_queries",
    ),
]


@pytest.mark.parametrize(("call", "error", "fragment"), STATS_ERRORS)
def test_statistics_reject(call: Callable[[], Any], error: type, fragment: str) -> None:
    with pytest.raises(error) as caught:
        call()

    assert fragment in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_budget_error_attributes() -> None:
    with pytest.raises(BudgetOutOfRangeError) as caught:
        calibrate_histories(
            _histories(),
            alpha=0.1,
            policy=SMALL_POLICY,
            average_budget=2,
            equivalence="normalized",
            extractor="text",
        )

    assert (caught.value.budget, caught.value.min_queries, caught.value.max_queries) == (2, 3, 6)
    assert caught.value.name == "average_budget"


# --- banks: each defect is reported alike by every reader ---

GOOD_LINE = json.dumps({"id": "q00", "prompt": PROMPTS[0], "samples": [{"text": "2"}]}) + "\n"

BANK_DEFECTS = [
    pytest.param(
        GOOD_LINE.encode() + b"{oops\n",
        BankFormatError,
        2,
        "line 2: invalid JSON (Expecting property name",
        id="not json",
    ),
    pytest.param(
        b'{"id": "q00", "prompt": "p"}\n',
        BankFormatError,
        1,
        "line 1: invalid record (samples: Field required)",
        id="missing field",
    ),
    pytest.param(
        b'{"id": "q00", "prompt": "p", "samples": [{"text": 35}]}\n',
        BankFormatError,
        1,
        "samples.0.text: Input should be a valid string",
        id="wrong type",
    ),
    pytest.param(
        b'{"id": "q00", "prompt": "\xff", "samples": []}\n',
        BankFormatError,
        1,
        "line 1: invalid UTF-8 (byte 0xff at column 26)",
        id="not utf-8",
    ),
    pytest.param(
        (GOOD_LINE + GOOD_LINE).encode(),
        BankFormatError,
        2,
        "line 2: duplicate id 'q00', first used on line 1",
        id="duplicate id",
    ),
    pytest.param(
        json.dumps({"format": "cpq-guard.bank/2", "id": "q00", "prompt": "p", "samples": []})
        .encode()
        .__add__(b"\n"),
        SchemaVersionError,
        None,
        "unsupported schema version 'cpq-guard.bank/2'",
        id="other schema version",
    ),
]

# A cut-off last line or an empty file stops readers; writers repair or accept them.
TRUNCATED = GOOD_LINE.encode() + b'{"id": "q01", "prompt": "Q01'
EMPTY = b""

READERS: dict[str, Callable[[Path], Any]] = {
    "read_bank": read_bank,
    "calibrate_bank": lambda path: calibrate_bank(path, alpha=0.5, policy=FixedPolicy(queries=1)),
    "ReplayChatModel.from_bank": ReplayChatModel.from_bank,
    "load_chat_model replay": lambda path: load_chat_model(f"replay:{path}"),
}

WRITERS: dict[str, Callable[[Path], Any]] = {
    "BankWriter": lambda path: BankWriter(path).close(),
    "record_bank": lambda path: record_bank(
        make_model(), PROMPTS[:2], REFERENCES[:2], path, samples_per_prompt=1, retry=FAST_RETRY
    ),
}


@pytest.mark.parametrize("entry", sorted({**READERS, **WRITERS}))
@pytest.mark.parametrize(("content", "error", "line", "fragment"), BANK_DEFECTS)
def test_bank_defect_reported(
    tmp_path: Path,
    entry: str,
    content: bytes,
    error: type,
    line: int | None,
    fragment: str,
) -> None:
    path = tmp_path / "bank.jsonl"
    path.write_bytes(content)

    with pytest.raises(error) as caught:
        {**READERS, **WRITERS}[entry](path)

    assert fragment in str(caught.value)
    assert str(path) in str(caught.value)
    assert caught.value.path == str(path)
    if line is not None:
        assert caught.value.line == line
    assert path.read_bytes() == content


@pytest.mark.parametrize("entry", sorted(READERS))
@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        pytest.param(TRUNCATED, "line 2: the last line is incomplete", id="truncated"),
        pytest.param(EMPTY, "contains no records; record some prompts into it", id="empty"),
    ],
)
def test_bank_reader_rejects(tmp_path: Path, entry: str, content: bytes, fragment: str) -> None:
    path = tmp_path / "bank.jsonl"
    path.write_bytes(content)

    with pytest.raises(BankFormatError) as caught:
        READERS[entry](path)

    assert fragment in str(caught.value)


@pytest.mark.parametrize("entry", sorted(WRITERS))
@pytest.mark.parametrize("content", [TRUNCATED, EMPTY], ids=["truncated", "empty"])
def test_bank_writer_repairs(tmp_path: Path, entry: str, content: bytes) -> None:
    path = tmp_path / "bank.jsonl"
    path.write_bytes(content)

    WRITERS[entry](path)

    records = read_bank(path, allow_empty=True)
    assert len({record.id for record in records}) == len(records)
    if content:
        assert records[0].id == "q00"


def test_missing_bank_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.jsonl"

    for reader in READERS.values():
        with pytest.raises(BankFormatError, match="not found; check the path, or record a bank"):
            reader(path)


def test_write_bank_duplicate_id(tmp_path: Path) -> None:
    records = make_records(2)
    twin = records[0].model_copy(update={"prompt": "another prompt"})

    with pytest.raises(InvalidParameterError, match="duplicate record id 'q00'"):
        write_bank(tmp_path / "bank.jsonl", [*records, twin])
    with BankWriter(tmp_path / "appended.jsonl") as writer:
        writer.append(records[0])
        with pytest.raises(InvalidParameterError, match="already has a record with id 'q00'"):
            writer.append(twin)

    assert not (tmp_path / "bank.jsonl").exists()
    assert len(read_bank(tmp_path / "appended.jsonl")) == 1


def test_empty_record_list_rejected() -> None:
    with pytest.raises(InvalidParameterError, match="no calibration prompts were given"):
        calibrate_bank([], alpha=0.1, policy=FixedPolicy(queries=1))


# --- calibration files ---


def _calibration_document() -> dict[str, Any]:
    return json.loads(make_calibration().model_dump_json(by_alias=True))


def _with(**changes: Any) -> str:
    return json.dumps({**_calibration_document(), **changes})


def _without(key: str) -> str:
    document = _calibration_document()
    del document[key]
    return json.dumps(document)


CALIBRATION_DEFECTS = [
    pytest.param(
        _with(schema_version=2),
        SchemaVersionError,
        "unsupported schema version 2 in {path}; this cpq-guard release reads version(s) 1",
        id="schema version 2",
    ),
    pytest.param(
        _without("schema_version"),
        CalibrationFormatError,
        "has no schema_version field, so cpq-guard did not write it",
        id="no schema version",
    ),
    pytest.param(
        _with(tau=2.5),
        CalibrationFormatError,
        "tau=2.5 is impossible for the missing-mass mapping (scores lie in [0, 2.001])",
        id="tau above missing-mass range",
    ),
    pytest.param(
        _with(tau=1.5, mapping="cumulative", tie_jitter=0.0),
        CalibrationFormatError,
        "tau=1.5 is impossible for the cumulative mapping (scores lie in [0, 1])",
        id="tau above cumulative range",
    ),
    pytest.param(
        _with(tau=-0.1),
        CalibrationFormatError,
        "tau: Input should be greater than or equal to 0",
        id="negative tau",
    ),
    pytest.param(
        _with(alpha=0),
        CalibrationFormatError,
        "alpha: Input should be greater than 0",
        id="alpha 0",
    ),
    pytest.param(
        _with(alpha=1.0), CalibrationFormatError, "alpha: Input should be less than 1", id="alpha 1"
    ),
    pytest.param(
        _with(num_calibration=-3),
        CalibrationFormatError,
        "num_calibration: Input should be greater than or equal to 1",
        id="negative calibration count",
    ),
    pytest.param(
        _with(num_tuning=-1),
        CalibrationFormatError,
        "num_tuning: Input should be greater than or equal to 0",
        id="negative tuning count",
    ),
    pytest.param(
        _with(calibration_mean_queries=-2.0),
        CalibrationFormatError,
        "calibration_mean_queries: Input should be greater than or equal to 0",
        id="negative mean queries",
    ),
    pytest.param(
        _with(tie_jitter=0.5),
        CalibrationFormatError,
        "tie_jitter: Input should be less than or equal to 0.1",
        id="tie jitter too wide",
    ),
    pytest.param(
        _with(target_budget=10.0)[:-1] + ', "tuning_mean_queries": NaN}',
        CalibrationFormatError,
        "tuning_mean_queries: Input should be a finite number",
        id="nan",
    ),
    pytest.param(
        _with(policy={"kind": "derivative", "lambda": 0.1, "min_queries": 9, "max_queries": 3}),
        CalibrationFormatError,
        "min_queries=9 is greater than max_queries=3",
        id="policy limits",
    ),
    pytest.param(
        _with(policy={"kind": "oracle"}),
        CalibrationFormatError,
        "policy: Input tag 'oracle' found using 'kind' does not match any of the expected tags",
        id="unknown policy kind",
    ),
    pytest.param(
        "[1, 2]",
        CalibrationFormatError,
        "must contain a JSON object, got list",
        id="json array",
    ),
    pytest.param(
        _with()[:40],
        CalibrationFormatError,
        "is not valid JSON (Unterminated string",
        id="truncated",
    ),
    pytest.param(
        b'{"alpha": "\xff"}',
        CalibrationFormatError,
        "is not UTF-8 text",
        id="not utf-8",
    ),
]


def _calibration_loaders(model: Any) -> dict[str, Callable[[Path], Any]]:
    loaders: dict[str, Callable[[Path], Any]] = {
        "Calibration.load": Calibration.load,
        "CPQGuard": lambda path: CPQGuard(model, path),
    }
    try:
        from integrations.agent_middleware import GuardedAnswerMiddleware
    except ImportError:  # the langgraph extra is not installed
        return loaders
    loaders["GuardedAnswerMiddleware"] = GuardedAnswerMiddleware
    return loaders


@pytest.mark.parametrize("loader", ["Calibration.load", "CPQGuard", "GuardedAnswerMiddleware"])
@pytest.mark.parametrize(("content", "error", "fragment"), CALIBRATION_DEFECTS)
def test_calibration_file_rejected(
    tmp_path: Path, loader: str, content: str | bytes, error: type, fragment: str
) -> None:
    loaders = _calibration_loaders(make_model())
    if loader not in loaders:
        pytest.skip("integrations need the langgraph extra")
    path = tmp_path / "calibration.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")

    with pytest.raises(error) as caught:
        loaders[loader](path)

    assert fragment.format(path=path) in str(caught.value)
    assert caught.value.path == str(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_calibration_path_unreadable(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "missing.json" if kind == "missing" else tmp_path
    expected = (
        "not found; create one with 'cpq-guard calibrate' or cpq_guard.calibrate()"
        if kind == "missing"
        else "cannot read calibration file"
    )

    for load in _calibration_loaders(make_model()).values():
        with pytest.raises(CalibrationFormatError, match=re.escape(expected)) as caught:
            load(path)
        assert caught.value.path == str(path)


# --- a calibration made with other settings than the guard ---


@pytest.fixture(scope="module")
def numeric_calibration() -> Calibration:
    return calibrate_bank(
        make_records(),
        alpha=0.2,
        policy=FixedPolicy(queries=4),
        extractor="final-answer",
        equivalence="numeric",
    )


MISMATCHES = [
    pytest.param(
        {"extractor": "text"},
        {"extractor": ("final-answer", "text")},
        "extractor: calibration has 'final-answer', guard has 'text'",
        id="extractor",
    ),
    pytest.param(
        {"equivalence": "normalized"},
        {"equivalence": ("numeric", "normalized")},
        "equivalence: calibration has 'numeric', guard has 'normalized'",
        id="equivalence",
    ),
    pytest.param(
        {"extractor": "regex:(\\d+)", "equivalence": "exact"},
        {"extractor": ("final-answer", "regex:(\\d+)"), "equivalence": ("numeric", "exact")},
        "extractor: calibration has 'final-answer', guard has 'regex:(\\\\d+)'; equivalence: "
        "calibration has 'numeric', guard has 'exact'",
        id="extractor and equivalence",
    ),
    pytest.param(
        {"policy": FixedPolicy(queries=5)},
        {"policy": ({"kind": "fixed", "queries": 4}, {"kind": "fixed", "queries": 5})},
        "policy: calibration has {'kind': 'fixed', 'queries': 4}, guard has {'kind': 'fixed', "
        "'queries': 5}",
        id="policy",
    ),
]


@pytest.mark.parametrize(("kwargs", "differences", "fragment"), MISMATCHES)
def test_guard_rejects_other_settings(
    numeric_calibration: Calibration,
    kwargs: dict[str, Any],
    differences: dict[str, tuple[Any, Any]],
    fragment: str,
) -> None:
    model = make_model()

    with pytest.raises(CalibrationMismatchError) as caught:
        CPQGuard(model, numeric_calibration, **kwargs)

    assert caught.value.differences == differences
    assert fragment in str(caught.value)
    assert "recalibrate with the guard's settings or build the guard from the calibration" in str(
        caught.value
    )
    assert model.calls_started == 0


def test_middleware_rejects_other_settings(numeric_calibration: Calibration) -> None:
    middleware = pytest.importorskip("integrations.agent_middleware")

    with pytest.raises(CalibrationMismatchError) as caught:
        middleware.GuardedAnswerMiddleware(numeric_calibration, equivalence="exact")

    assert caught.value.differences == {"equivalence": ("numeric", "exact")}


# --- the guard's other constructor arguments ---

GUARD_ERRORS = [
    pytest.param(
        {"equivalence": 42},
        InvalidTypeError,
        "equivalence must be a built-in name or an object with a 'name' attribute and an "
        "'equivalent(a, b)' method, got int",
        id="equivalence type",
    ),
    pytest.param(
        {"equivalence": "fuzzy"},
        InvalidParameterError,
        "unknown equivalence 'fuzzy'",
        id="unknown equivalence",
    ),
    pytest.param(
        {"extractor": 42},
        InvalidTypeError,
        "extractor must be a name, an extractor, an output parser or a callable, got int",
        id="extractor type",
    ),
    pytest.param(
        {"extractor": "boxed"},
        InvalidParameterError,
        "extractor 'boxed' is not a built-in",
        id="unknown extractor",
    ),
    pytest.param(
        {"policy": "fixed"},
        InvalidTypeError,
        "policy must be a FixedPolicy, MissingMassPolicy or DerivativePolicy, got str",
        id="policy type",
    ),
    pytest.param(
        {"timeout": "5"},
        InvalidTypeError,
        "timeout must be a real number, got str '5'",
        id="timeout type",
    ),
    pytest.param(
        {"timeout": NAN},
        InvalidParameterError,
        "timeout=nan is invalid: it must be finite",
        id="timeout nan",
    ),
    pytest.param(
        {"max_concurrency": True},
        InvalidTypeError,
        "max_concurrency must be an integer, got bool True",
        id="concurrency bool",
    ),
    pytest.param(
        {"max_concurrency": 0},
        InvalidParameterError,
        "max_concurrency=0 is invalid: it must be at least 1",
        id="zero concurrency",
    ),
]


@pytest.mark.parametrize(("kwargs", "error", "fragment"), GUARD_ERRORS)
def test_guard_arguments_rejected(kwargs: dict[str, Any], error: type, fragment: str) -> None:
    with pytest.raises(error) as caught:
        CPQGuard(make_model(), make_calibration(), **kwargs)

    assert fragment in str(caught.value)


# --- extractors that raise or return the wrong type ---


def _raising_extractor(text: str) -> str | None:
    raise KeyError("answer")


def _number_extractor(text: str) -> Any:
    return 42


@pytest.mark.parametrize(
    ("extractor", "cause"),
    [(_raising_extractor, KeyError), (_number_extractor, InvalidTypeError)],
    ids=["raises", "returns int"],
)
def test_calibrate_bank_wraps_extractor_errors(extractor: Any, cause: type) -> None:
    with pytest.raises(ExtractionError) as caught:
        calibrate_bank(
            make_records(), alpha=0.2, policy=FixedPolicy(queries=4), extractor=extractor
        )

    message = str(caught.value)
    assert "on sample 1 of prompt 'q00'" in message
    assert "make it return None for responses without an answer" in message
    assert isinstance(caught.value.__cause__, cause)


@pytest.mark.parametrize("path", ["invoke", "ainvoke"])
async def test_guard_wraps_wrong_extractor_type(path: str) -> None:
    from cpq_guard.extractors import CallableExtractor

    extractor = CallableExtractor(_number_extractor, name="number")
    guard = CPQGuard(make_model(), make_calibration(extractor="number"), extractor=extractor)

    with pytest.raises(ExtractionError) as caught:
        await guard.ainvoke(PROMPTS[0]) if path == "ainvoke" else guard.invoke(PROMPTS[0])

    assert "extractor 'number' returned int, expected str or None" in str(caught.value)
    assert isinstance(caught.value.__cause__, InvalidTypeError)


def test_calibrate_bank_rejects_bank_type() -> None:
    with pytest.raises(InvalidTypeError, match="bank must be the path of a sample bank or a list"):
        calibrate_bank({"q00": "2"}, alpha=0.2, policy=FixedPolicy(queries=4))  # type: ignore[arg-type]


def test_calibrate_bank_needs_references() -> None:
    records = [record.model_copy(update={"references": []}) for record in make_records(3)]

    with pytest.raises(InvalidParameterError, match="3 bank prompts have no reference answer"):
        calibrate_bank(records, alpha=0.2, policy=FixedPolicy(queries=4))


# --- model specs ---


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("gpt-4o-mini", "model spec 'gpt-4o-mini' has no provider; write PROVIDER:MODEL"),
        (":gpt-4o-mini", "has no provider before ':'"),
        ("openai:", "has no model after ':'"),
        ("nosuch:model", "unknown model provider 'nosuch' in 'nosuch:model'; use one of"),
    ],
)
def test_model_spec_rejected(spec: str, fragment: str) -> None:
    if spec.startswith("nosuch"):
        pytest.importorskip("langchain.chat_models")

    with pytest.raises(ModelLoadError) as caught:
        load_chat_model(spec)

    assert fragment in str(caught.value)
    assert caught.value.value == spec


# --- integrations ---


def _integration_cases() -> list[Any]:
    langgraph = pytest.importorskip("integrations.langgraph")
    tools = pytest.importorskip("integrations.tools")
    middleware = pytest.importorskip("integrations.agent_middleware")
    guard = CPQGuard(make_model(), make_calibration())
    return [
        (
            lambda: langgraph.guard_node(guard, input_key=""),
            InvalidTypeError,
            "input_key must be a non-empty string, got ''",
        ),
        (
            lambda: langgraph.route_on_abstention(max_set_size=0),
            InvalidParameterError,
            "max_set_size=0 is invalid: it must be at least 1",
        ),
        (
            lambda: langgraph.answer_node(answer_key=7),
            InvalidTypeError,
            "answer_key must be a non-empty string, got 7",
        ),
        (
            lambda: langgraph.human_review_node(max_clusters=0),
            InvalidParameterError,
            "max_clusters=0 is invalid: it must be at least 1",
        ),
        (
            lambda: tools.guard_as_tool(guard, max_answers=-1),
            InvalidParameterError,
            "max_answers=-1 is invalid: it must be at least 1",
        ),
        (
            lambda: middleware.GuardedAnswerMiddleware(42),
            InvalidTypeError,
            "calibration must be a Calibration or the path of a calibration file, got int",
        ),
        (
            lambda: middleware.GuardedAnswerMiddleware(make_calibration(), timeout=0),
            InvalidParameterError,
            "timeout=0 is invalid",
        ),
        (
            lambda: middleware.GuardedAnswerMiddleware(make_calibration(), on_abstain="ignore"),
            InvalidParameterError,
            "on_abstain='ignore' is invalid; use one of ['message', 'raise', 'interrupt']",
        ),
    ]


def test_integrations_reject_at_construction() -> None:
    for call, error, fragment in _integration_cases():
        with pytest.raises(error) as caught:
            call()
        assert fragment in str(caught.value), fragment
