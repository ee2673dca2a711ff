"""Tests for importing the CPQ paper's released sample files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cpq_guard.banks import bank_content_hash, read_bank
from cpq_guard.errors import ArtifactError, InvalidParameterError, InvalidTypeError
from cpq_guard.paper import PAPER_SOURCE_FORMAT, import_paper, import_paper_file

SMALL = Path(__file__).resolve().parent / "data" / "paper_small.json"


def _entry(**fields: object) -> dict[str, object]:
    entry: dict[str, object] = {
        "question": "q?",
        "true_answer": "1",
        "prediction_history": [{"response": "1", "log_prob": -0.5}],
    }
    entry.update(fields)
    return entry


def _write(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "release.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def test_real_file(paper_gsm8k: Path) -> None:
    records = import_paper(paper_gsm8k)

    assert len(records) == 300
    assert all(len(record.samples) == 50 for record in records)
    assert records[0].id == "gsm8k_300-0000"
    assert records[-1].id == "gsm8k_300-0299"
    assert records[0].references == ["35"]
    assert records[0].prompt.startswith("A school bus traveled for 42 minutes")
    assert records[0].samples[0].text == "35"
    assert set(records[0].samples[0].metadata) == {"log_prob"}
    assert records[0].metadata["source"] == {
        "format": PAPER_SOURCE_FORMAT,
        "file": "gsm8k_300.json",
        "index": 0,
    }


def test_real_file_clusters(paper_gsm8k: Path) -> None:
    record = import_paper(paper_gsm8k)[0]

    assert record.metadata["paper_clusters"] == [
        {
            "id": "0",
            "representative": "35",
            "representative_log_prob": None,
            "probability": 0.0,
            "num_members": 50,
        },
        {
            "id": "EE",
            "representative": None,
            "representative_log_prob": None,
            "probability": 0.0,
            "num_members": 0,
        },
    ]
    assert record.metadata["paper_semantic_probs"] == {"0": 1.0, "EE": 0.0}


def test_real_file_to_bank(paper_gsm8k: Path, tmp_path: Path) -> None:
    out = tmp_path / "banks" / "gsm8k.jsonl"

    count = import_paper_file(paper_gsm8k, out)

    assert count == 300
    bank = read_bank(out)
    assert bank == import_paper(paper_gsm8k)
    # Pinned so that a change to the importer or the hash scheme is noticed.
    assert bank_content_hash(bank) == (
        "sha256:535223074c6c13a9aae90d3540511851588ca0cc4b8664c4ab3fb9de1bda2373"
    )
    assert [entry.name for entry in out.parent.iterdir()] == ["gsm8k.jsonl"]


def test_small_fixture() -> None:
    records = import_paper(SMALL)

    assert [record.id for record in records] == ["paper_small-0000", "paper_small-0001"]
    assert [record.references for record in records] == [["7"], ["2.5"]]
    assert [sample.text for sample in records[0].samples] == ["7", "7.", "12"]
    assert records[0].samples[1].metadata == {"log_prob": -1.5}
    assert records[1].samples[1].metadata == {}
    assert records[1].metadata["source"]["index"] == 1


def test_small_fixture_representatives() -> None:
    first, second = import_paper(SMALL)

    clusters = {cluster["id"]: cluster for cluster in first.metadata["paper_clusters"]}
    assert clusters["0"]["representative"] == "7"
    assert clusters["0"]["representative_log_prob"] == -0.25
    assert clusters["1"]["num_members"] == 1
    assert clusters["EE"]["representative"] is None

    clusters = {cluster["id"]: cluster for cluster in second.metadata["paper_clusters"]}
    assert clusters["0"]["representative"] == "2.5"
    assert clusters["0"]["representative_log_prob"] is None
    assert clusters["1"]["representative"] == "Dos y medio"


def test_id_prefix() -> None:
    records = import_paper(SMALL, id_prefix="toy")

    assert [record.id for record in records] == ["toy-0000", "toy-0001"]


def test_id_prefix_invalid() -> None:
    with pytest.raises(InvalidParameterError, match="id_prefix is empty"):
        import_paper(SMALL, id_prefix="")
    with pytest.raises(InvalidTypeError, match="id_prefix must be a string"):
        import_paper(SMALL, id_prefix=3)  # type: ignore[arg-type]


def test_misspelt_history_key(tmp_path: Path) -> None:
    history = [{"response": "2", "log_prob": -1.0, "P_EE": 1.0, "n1": 1, "T": 1}]
    path = _write(tmp_path, [{"question": "q?", "true_answer": "2", "prediction_hisotry": history}])

    (record,) = import_paper(path)

    assert [sample.text for sample in record.samples] == ["2"]
    assert record.metadata["paper_clusters"] == []


def test_both_history_keys_agree(tmp_path: Path) -> None:
    history = [{"response": "2", "log_prob": -1.0}]
    path = _write(tmp_path, [_entry(prediction_history=history, prediction_hisotry=history)])

    (record,) = import_paper(path)

    assert record.samples[0].text == "2"


def test_import_file_small(tmp_path: Path) -> None:
    out = tmp_path / "small.jsonl"

    assert import_paper_file(SMALL, out) == 2
    assert read_bank(out) == import_paper(SMALL)


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        ({"question": "q?"}, "must hold a JSON list of question objects, got a JSON object"),
        ([], "contains no entries"),
        ([_entry(), "text"], "entry 1 (0-based): expected a JSON object, got a JSON string"),
        ([{"true_answer": "1", "prediction_history": []}], "entry 0 (0-based): invalid entry"),
        ([_entry(true_answer=35)], "true_answer: Input should be a valid string"),
        ([_entry(prediction_history=[{"log_prob": -1.0}])], "prediction_history.0.response"),
        ([_entry(prediction_history=None)], "neither 'prediction_history' nor"),
        (
            [_entry(prediction_hisotry=[{"response": "2"}])],
            "'prediction_history' and 'prediction_hisotry' hold different samples",
        ),
        ([_entry(prediction_history=[])], "the sample list 'prediction_history' is empty"),
        ([_entry(clusters={"0": {"representative": 5}})], "clusters.0.representative"),
    ],
)
def test_import_errors(tmp_path: Path, document: object, fragment: str) -> None:
    path = _write(tmp_path, document)

    with pytest.raises(ArtifactError) as info:
        import_paper(path)

    assert fragment in str(info.value)
    assert str(path) in str(info.value)
    assert info.value.path == str(path)


def test_import_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="not found"):
        import_paper(tmp_path / "absent.json")


def test_import_invalid_json(tmp_path: Path) -> None:
    path = tmp_path / "release.json"
    path.write_text('[{"question": "q?",\n oops]', encoding="utf-8")

    with pytest.raises(ArtifactError, match=r"not valid JSON .* at line 2, column 2"):
        import_paper(path)


def test_import_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "release.json"
    path.write_bytes(b'[{"question": "\xff"}]')

    with pytest.raises(ArtifactError, match="not valid UTF-8"):
        import_paper(path)


def test_import_file_error_keeps_output(tmp_path: Path) -> None:
    out = tmp_path / "bank.jsonl"
    out.write_text("previous\n", encoding="utf-8")

    with pytest.raises(ArtifactError):
        import_paper_file(_write(tmp_path, []), out)

    assert out.read_text(encoding="utf-8") == "previous\n"
