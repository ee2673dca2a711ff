"""Tests of the Calibration artifact and of calibrating on recorded histories."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cpq_guard.answers import NormalizedEquivalence
from cpq_guard.banks import BankRecord, Sample, bank_content_hash, write_bank
from cpq_guard.calibration import SCHEMA_VERSION, Calibration, calibrate_bank, calibrate_histories
from cpq_guard.errors import CalibrationFormatError, SchemaVersionError
from cpq_guard.evaluation import PolicyReplay, nonconformity_score
from cpq_guard.histories import History, histories_from_records
from cpq_guard.stats.conformal import conformal_rank
from cpq_guard.stats.policies import DerivativePolicy, FixedPolicy

MAX_QUERIES = 12
DERIVATIVE = DerivativePolicy(lambda_=0.0, bootstrap=5, min_queries=3, max_queries=MAX_QUERIES)


def make_records(count: int, seed: int) -> list[BankRecord]:
    """Draw answer texts from random categorical distributions; "a0" is the reference."""
    rng = np.random.default_rng(seed)
    records = []
    for index in range(count):
        categories = int(rng.integers(1, 6))
        probabilities = rng.dirichlet(np.full(categories, 0.8))
        draws = rng.choice(categories, size=MAX_QUERIES, p=probabilities)
        records.append(
            BankRecord(
                id=f"p{index}",
                prompt=f"question {index}",
                references=["a0"],
                samples=[Sample(text=f"a{value}") for value in draws],
            )
        )
    return records


@pytest.fixture(scope="module")
def records() -> list[BankRecord]:
    return make_records(80, seed=3)


@pytest.fixture(scope="module")
def histories(records: list[BankRecord]) -> list[History]:
    return histories_from_records(records, NormalizedEquivalence())


def calibrate(histories: list[History], **overrides: object) -> Calibration:
    arguments: dict[str, object] = {
        "alpha": 0.2,
        "policy": DERIVATIVE,
        "equivalence": "normalized",
        "extractor": "text",
        "seed": 7,
    }
    arguments.update(overrides)
    return calibrate_histories(histories, **arguments)  # type: ignore[arg-type]


def test_tau_is_conformal_order_statistic(histories: list[History]) -> None:
    policy = DERIVATIVE.with_threshold(0.01)
    calibration = calibrate(histories, policy=policy, tie_jitter=0.0)

    replay = PolicyReplay.compute(policy, histories, seed=7)
    times = replay.stopping_times(np.arange(len(histories)), policy)
    scores = sorted(
        nonconformity_score(history.estimate(int(time), "smoothed"), "missing-mass")
        for history, time in zip(histories, times)
    )
    rank = conformal_rank(len(histories), 0.2)

    assert calibration.tau == scores[rank - 1]
    assert calibration.num_calibration == len(histories)
    assert calibration.num_tuning == 0
    assert calibration.calibration_mean_queries == float(np.mean(times))


def test_budget_splits_tuning_part(histories: list[History]) -> None:
    calibration = calibrate(histories, average_budget=6.0, tuning_fraction=0.25)

    assert calibration.num_tuning == 20
    assert calibration.num_calibration == 60
    assert calibration.target_budget == 6.0
    assert calibration.tuning_mean_queries is not None
    assert calibration.tuning_mean_queries <= 6.0
    assert isinstance(calibration.policy, DerivativePolicy)
    assert calibration.policy.lambda_ > 0.0


def test_fixed_budget_uses_every_prompt(histories: list[History]) -> None:
    calibration = calibrate(histories, policy=FixedPolicy(queries=MAX_QUERIES), average_budget=7.5)

    assert calibration.policy == FixedPolicy(queries=7)
    assert calibration.num_tuning == 0
    assert calibration.num_calibration == len(histories)


def test_same_seed_same_calibration(histories: list[History]) -> None:
    first = calibrate(histories, average_budget=6.0)
    second = calibrate(histories, average_budget=6.0)
    other = calibrate(histories, average_budget=6.0, seed=8)

    assert first.model_dump(exclude={"created_at"}) == second.model_dump(exclude={"created_at"})
    assert other.tau != first.tau or other.policy != first.policy


def test_save_load_round_trip(histories: list[History], tmp_path: Path) -> None:
    calibration = calibrate(histories, average_budget=6.0, bank_hash="sha256:abc")
    path = tmp_path / "calibration.json"
    calibration.save(path)

    loaded = Calibration.load(path)
    stored = json.loads(path.read_text(encoding="utf-8"))

    assert loaded == calibration
    assert stored["schema_version"] == SCHEMA_VERSION
    assert stored["policy"]["lambda"] == calibration.policy.lambda_  # type: ignore[union-attr]
    assert list(tmp_path.iterdir()) == [path]


def test_unknown_schema_version_rejected(histories: list[History], tmp_path: Path) -> None:
    data = json.loads(calibrate(histories).model_dump_json(by_alias=True))
    data["schema_version"] = 99
    path = tmp_path / "future.json"
    path.write_text(json.dumps(data), encoding="utf-8")

    with pytest.raises(SchemaVersionError) as caught:
        Calibration.load(path)

    assert caught.value.found == 99
    assert "99" in str(caught.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [("tau", 2.5), ("tau", -0.1), ("alpha", 0.0), ("num_calibration", 0)],
)
def test_impossible_values_rejected(
    histories: list[History], tmp_path: Path, field: str, value: float
) -> None:
    data = json.loads(calibrate(histories).model_dump_json(by_alias=True))
    data[field] = value
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data), encoding="utf-8")

    with pytest.raises(CalibrationFormatError) as caught:
        Calibration.load(path)

    assert field in str(caught.value)


def test_settings_name_guard_inputs(histories: list[History]) -> None:
    settings = calibrate(histories).settings()

    assert settings["extractor"] == "text"
    assert settings["equivalence"] == "normalized"
    assert settings["policy"]["kind"] == "derivative"
    assert settings["mapping"] == "missing-mass"


def test_calibrate_bank_matches_histories(
    records: list[BankRecord], histories: list[History], tmp_path: Path
) -> None:
    path = tmp_path / "bank.jsonl"
    write_bank(path, records)

    from_bank = calibrate_bank(
        path, alpha=0.2, policy=DERIVATIVE, average_budget=6.0, seed=7, extractor="text"
    )
    direct = calibrate(histories, average_budget=6.0, bank_hash=bank_content_hash(records))

    assert from_bank.model_dump(exclude={"created_at"}) == direct.model_dump(exclude={"created_at"})
