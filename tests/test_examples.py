"""Run each script in examples/ through its main() and check what it returns.

The scripts are loaded by path, because examples/ is a folder of scripts and
not a package. Each script runs once per module, in a fixture, and the tests
check its output.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cpq_guard import Calibration, GuardResult

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` as a module named ``example_<name>``."""
    module_name = f"example_{name}"
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)

    # dataclasses resolves string annotations through sys.modules, so the
    # module must be registered before it runs.
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def quickstart() -> Any:
    return load_example("quickstart").main()


@pytest.fixture(scope="module")
def branching() -> Any:
    return load_example("branching").main()


@pytest.fixture(scope="module")
def async_batch_module() -> ModuleType:
    return load_example("async_batch")


@pytest.fixture(scope="module")
def async_batch(async_batch_module: ModuleType) -> Any:
    return async_batch_module.main()


@pytest.fixture(scope="module")
def bank_module() -> ModuleType:
    return load_example("calibrate_from_bank")


@pytest.fixture(scope="module")
def bank(bank_module: ModuleType) -> Any:
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(bank_module.PAPER_DATA_VARIABLE, raising=False)
        return bank_module.main()


# -- quickstart.py ---------------------------------------------------------


def test_quickstart_calibration_round_trips(quickstart: Any) -> None:
    assert isinstance(quickstart.loaded, Calibration)
    assert quickstart.loaded == quickstart.calibration


def test_quickstart_calibration_settings(quickstart: Any) -> None:
    calibration = quickstart.calibration
    assert calibration.alpha == 0.1
    assert calibration.extractor == "final-answer"
    assert calibration.equivalence == "numeric"
    assert calibration.policy.max_queries == 30
    assert calibration.target_budget == 12


def test_quickstart_guards_every_prompt(quickstart: Any) -> None:
    assert len(quickstart.results) == len(quickstart.prompts) == 8
    assert all(isinstance(result, GuardResult) for result in quickstart.results)


def test_quickstart_shows_sets_and_abstentions(quickstart: Any) -> None:
    abstained = [result for result in quickstart.results if result.abstained]
    answered = [result for result in quickstart.results if not result.abstained]
    assert abstained
    assert answered
    assert all(result.answers for result in answered)
    assert all(not result.answers for result in abstained)


# -- branching.py ----------------------------------------------------------


def test_branching_branch_takes_both_routes(branching: Any) -> None:
    routes = {reply.route for reply in branching.branch_replies}
    assert routes == {"answered", "escalated"}


def test_branching_fallbacks_take_both_routes(branching: Any) -> None:
    routes = {reply.route for reply in branching.fallback_replies}
    assert routes == {"answered", "fallback"}


def test_branching_routes_agree(branching: Any) -> None:
    # Both guards see the same samples, so they abstain on the same prompts
    # and give the same answer sets on the others.
    for first, second in zip(branching.branch_replies, branching.fallback_replies, strict=True):
        assert (first.route == "escalated") == (second.route == "fallback")
        if first.route == "answered":
            assert first.text == second.text


def test_branching_fallback_gives_number(branching: Any) -> None:
    fallbacks = [reply for reply in branching.fallback_replies if reply.route == "fallback"]
    assert fallbacks
    assert all(reply.text.isdigit() for reply in fallbacks)


def test_branching_escalation_reports_samples(branching: Any) -> None:
    escalations = [reply for reply in branching.branch_replies if reply.route == "escalated"]
    assert escalations
    assert all(reply.text.startswith("needs review: the model said") for reply in escalations)


# -- async_batch.py --------------------------------------------------------


def test_async_batch_returns_results(async_batch: Any, async_batch_module: ModuleType) -> None:
    assert len(async_batch.results) == async_batch_module.NUM_HELD_OUT
    assert all(isinstance(result, GuardResult) for result in async_batch.results)


def test_async_batch_respects_limits(async_batch: Any, async_batch_module: ModuleType) -> None:
    per_prompt = async_batch_module.QUERIES_IN_FLIGHT
    limit = async_batch_module.PROMPTS_IN_FLIGHT * per_prompt
    assert async_batch.max_in_flight <= limit
    # More calls in flight than one prompt may have: prompts ran concurrently.
    assert async_batch.max_in_flight > per_prompt


def test_async_batch_accounts_calls(async_batch: Any) -> None:
    results = async_batch.results
    used = sum(result.num_queries for result in results)
    discarded = sum(result.discarded_queries for result in results)
    cancelled = sum(result.cancelled_queries for result in results)

    # A query cancelled before it reached the model started no call.
    assert async_batch.model_calls >= used + discarded
    assert async_batch.model_calls <= used + discarded + cancelled


def test_async_batch_stops_within_limits(async_batch: Any) -> None:
    for result in async_batch.results:
        assert 5 <= result.num_queries <= 20


# -- calibrate_from_bank.py ------------------------------------------------


def test_bank_first_run_queries_half(bank: Any, bank_module: ModuleType) -> None:
    half = bank_module.NUM_CALIBRATION // 2
    assert bank.calls_first_run == half * bank_module.MAX_QUERIES


def test_bank_resume_queries_only_missing(bank: Any, bank_module: ModuleType) -> None:
    missing = bank_module.NUM_CALIBRATION - bank_module.NUM_CALIBRATION // 2
    assert bank.calls_resumed == missing * bank_module.MAX_QUERIES


def test_bank_calibration_needs_no_calls(bank: Any) -> None:
    assert bank.calls_from_bank == 0


def test_bank_calibrations_agree(bank: Any) -> None:
    assert bank.from_bank.tau == bank.live.tau
    assert bank.from_bank.policy == bank.live.policy
    assert bank.from_bank.bank_hash == bank.live.bank_hash
    assert bank.from_bank.bank_hash is not None


def test_bank_replay_guards_held_out(bank: Any, bank_module: ModuleType) -> None:
    evaluation = bank.evaluation
    assert len(evaluation.results) == bank_module.NUM_HELD_OUT
    assert all(isinstance(result, GuardResult) for result in evaluation.results)
    assert 0.0 <= evaluation.coverage <= 1.0
    assert evaluation.coverage >= evaluation.abstention_rate


def test_bank_skips_gsm8k_by_default(bank: Any) -> None:
    assert bank.gsm8k is None


def test_bank_gsm8k_evaluation(bank_module: ModuleType, paper_gsm8k: Path) -> None:
    evaluation = bank_module.run_gsm8k(paper_gsm8k)
    assert len(evaluation.results) == 150
    assert evaluation.calibration.extractor == "text"
    assert evaluation.calibration.equivalence == "normalized"
    # Loose: one split of 150 prompts varies by several points around 0.9.
    assert evaluation.coverage >= 0.75
