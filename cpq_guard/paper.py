"""Import of the sample files released with the CPQ paper.

The authors of "Conformal Prediction Beyond the Seen: A Missing Mass
Perspective for Uncertainty Quantification in Generative Models"
(arXiv:2506.05497) released their recorded model samples as JSON files. Each
file is a list with one object per question::

    {"question": "...", "true_answer": "35",
     "prediction_history": [{"response": "35", "log_prob": -5.7, "P_EE": 1.0, "n1": 1, "T": 1}],
     "clusters": {"0": {"representative": "35", "probability": 0, "num_members": 50},
                  "EE": {"representative": null, "probability": 0.0, "num_members": 0}},
     "semantic_probs": {"0": 1.0, "EE": 0.0}}

Some files spell the sample list ``prediction_hisotry``; both spellings are
read. Only ``response`` and ``log_prob`` of a sample are model output; the
other sample keys are the authors' running statistics and are dropped. The
cluster ``representative`` is a string in some files and an object
``{"text": ..., "log_prob": ...}`` in others, and is null for the unseen-mass
cluster ``"EE"``.

`import_paper` turns such a file into sample bank records (see
`cpq_guard.banks`). The authors' clusters and probabilities are kept in the
record metadata for reference; cpq-guard recomputes its own.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from cpq_guard.banks import (
    BankRecord,
    Sample,
    _json_type_name,
    _summarize_validation_error,
    write_bank,
)
from cpq_guard.errors import ArtifactError, InvalidParameterError, InvalidTypeError

__all__ = ["PAPER_SOURCE_FORMAT", "import_paper", "import_paper_file"]

logger = logging.getLogger("cpq_guard")

PAPER_SOURCE_FORMAT = "cpq-paper"
"""Value of ``metadata["source"]["format"]`` in records made by `import_paper`."""

_HISTORY_KEYS = ("prediction_history", "prediction_hisotry")


class _PaperRepresentative(BaseModel):
    model_config = ConfigDict(extra="allow")

    text: str
    log_prob: float | None = None


class _PaperCluster(BaseModel):
    model_config = ConfigDict(extra="allow")

    representative: str | _PaperRepresentative | None = None
    probability: float | None = None
    num_members: int | None = None


class _PaperSample(BaseModel):
    model_config = ConfigDict(extra="allow")

    response: str
    log_prob: float | None = None


class _PaperEntry(BaseModel):
    """One question of a release file; keys this module does not use are allowed."""

    model_config = ConfigDict(extra="allow")

    question: str
    true_answer: str
    prediction_history: list[_PaperSample] | None = None
    prediction_hisotry: list[_PaperSample] | None = None
    clusters: dict[str, _PaperCluster] = {}
    semantic_probs: dict[str, Any] = {}


def import_paper(path: str | os.PathLike[str], *, id_prefix: str | None = None) -> list[BankRecord]:
    """Read a CPQ paper release file as sample bank records.

    Each entry becomes one record: ``id`` is ``f"{id_prefix}-{index:04d}"``
    with the 0-based entry index, ``prompt`` is ``question``, ``references``
    is ``[true_answer]``, and each sample keeps its ``response`` as text and
    its ``log_prob`` (when present) in ``metadata["log_prob"]``. The record
    metadata contains ``source`` (format, file name and entry index),
    ``paper_clusters`` (the authors' clusters as a list of ``id``,
    ``representative``, ``representative_log_prob``, ``probability`` and
    ``num_members``) and ``paper_semantic_probs``.

    Args:
        path: The release JSON file.
        id_prefix: Prefix of the record ids; defaults to the file name
            without its extension.

    Returns:
        One record per entry, in file order.

    Raises:
        ArtifactError: If the file is missing, not UTF-8 JSON, not a non-empty
            list, or an entry is invalid. The message names the entry index.
        InvalidParameterError: If ``id_prefix`` is empty.
        InvalidTypeError: If ``id_prefix`` is not a string.
    """
    source = Path(path)
    prefix = _check_prefix(source.stem if id_prefix is None else id_prefix)
    entries = _load_entries(source)

    records = []
    for index, raw in enumerate(entries):
        entry = _validate_entry(raw, index, source)
        records.append(_to_record(entry, index, prefix, source))
    return records


def import_paper_file(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    id_prefix: str | None = None,
) -> int:
    """Convert a CPQ paper release file into a sample bank file.

    The bank is written atomically, replacing any file at ``out``.

    Args:
        src: The release JSON file.
        out: The JSONL sample bank to write.
        id_prefix: Prefix of the record ids; defaults to the stem of ``src``.

    Returns:
        The number of prompts written.

    Raises:
        ArtifactError: As `import_paper` does.
    """
    records = import_paper(src, id_prefix=id_prefix)
    write_bank(out, records)
    logger.info("imported %d prompts from %s into sample bank %s", len(records), src, out)
    return len(records)


def _check_prefix(prefix: object) -> str:
    if not isinstance(prefix, str):
        raise InvalidTypeError(
            f"id_prefix must be a string, got {type(prefix).__name__} {prefix!r}"
        )
    if not prefix:
        raise InvalidParameterError(
            "id_prefix", prefix, "id_prefix is empty; pass a non-empty prefix such as 'gsm8k'"
        )
    return prefix


def _load_entries(source: Path) -> list[Any]:
    try:
        data = source.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(
            f"CPQ paper file {source} not found; check the path", path=str(source)
        ) from None
    except OSError as error:
        raise ArtifactError(
            f"cannot read CPQ paper file {source}: {error.strerror or error}; "
            "check that the path is a readable file",
            path=str(source),
        ) from error

    try:
        text = data.decode("utf-8-sig")
        document = json.loads(text)
    except UnicodeDecodeError as error:
        raise ArtifactError(
            f"CPQ paper file {source} is not valid UTF-8 (invalid byte at offset "
            f"{error.start}); re-save it as UTF-8",
            path=str(source),
        ) from None
    except json.JSONDecodeError as error:
        raise ArtifactError(
            f"CPQ paper file {source} is not valid JSON ({error.msg} at line {error.lineno}, "
            f"column {error.colno}); use the release file unchanged",
            path=str(source),
        ) from None

    if not isinstance(document, list):
        raise ArtifactError(
            f"CPQ paper file {source} must hold a JSON list of question objects, "
            f"got a JSON {_json_type_name(document)}; check that this is a release file",
            path=str(source),
        )
    if not document:
        raise ArtifactError(
            f"CPQ paper file {source} contains no entries; use a release file with questions",
            path=str(source),
        )
    return document


def _validate_entry(raw: object, index: int, source: Path) -> _PaperEntry:
    where = f"CPQ paper file {source}, entry {index} (0-based)"

    if not isinstance(raw, dict):
        raise ArtifactError(
            f"{where}: expected a JSON object, got a JSON {_json_type_name(raw)}; "
            "each entry must be an object with question, true_answer and prediction_history",
            path=str(source),
        )
    try:
        entry = _PaperEntry.model_validate(raw)
    except ValidationError as error:
        raise ArtifactError(
            f"{where}: invalid entry ({_summarize_validation_error(error)}); each entry needs "
            "question and true_answer strings and a prediction_history list of "
            "{response, log_prob} objects",
            path=str(source),
        ) from None

    present = [key for key in _HISTORY_KEYS if getattr(entry, key) is not None]
    if not present:
        raise ArtifactError(
            f"{where}: no samples, because neither 'prediction_history' nor "
            "'prediction_hisotry' contains a list; add the sample list under one of them",
            path=str(source),
        )
    if len(present) == 2 and entry.prediction_history != entry.prediction_hisotry:
        raise ArtifactError(
            f"{where}: 'prediction_history' and 'prediction_hisotry' hold different samples; "
            "keep only the correct one",
            path=str(source),
        )
    if not getattr(entry, present[0]):
        raise ArtifactError(
            f"{where}: the sample list '{present[0]}' is empty; every question needs samples",
            path=str(source),
        )
    return entry


def _to_record(entry: _PaperEntry, index: int, prefix: str, source: Path) -> BankRecord:
    history = entry.prediction_history
    if history is None:
        history = entry.prediction_hisotry
    assert history is not None  # checked by _validate_entry

    samples = [
        Sample(
            text=sample.response,
            metadata={} if sample.log_prob is None else {"log_prob": sample.log_prob},
        )
        for sample in history
    ]
    metadata = {
        "source": {"format": PAPER_SOURCE_FORMAT, "file": source.name, "index": index},
        "paper_clusters": [
            _cluster_metadata(cluster_id, cluster) for cluster_id, cluster in entry.clusters.items()
        ],
        "paper_semantic_probs": dict(entry.semantic_probs),
    }
    return BankRecord(
        id=f"{prefix}-{index:04d}",
        prompt=entry.question,
        references=[entry.true_answer],
        samples=samples,
        metadata=metadata,
    )


def _cluster_metadata(cluster_id: str, cluster: _PaperCluster) -> dict[str, Any]:
    """Return one cluster with its representative as text and an optional log prob."""
    representative = cluster.representative
    if isinstance(representative, _PaperRepresentative):
        text: str | None = representative.text
        log_prob = representative.log_prob
    else:
        text = representative
        log_prob = None

    return {
        "id": cluster_id,
        "representative": text,
        "representative_log_prob": log_prob,
        "probability": cluster.probability,
        "num_members": cluster.num_members,
    }
