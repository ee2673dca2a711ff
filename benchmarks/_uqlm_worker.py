"""Score precomputed samples with uqlm's black-box scorers, inside the uqlm virtualenv.

`against_uqlm.py` runs this file with ``benchmarks/.venv-uqlm/bin/python``
because uqlm 0.6.7 pins ``numpy<2`` on Python 3.11 while cpq-guard's
environment has numpy 2. It reads a JSON list of jobs from the file named by
its first argument and writes the scores as JSON to the file named by the
second. Each job is ``{"responses": [str], "sampled_responses": [[str]]}``.

Scorers, all through uqlm's own scoring code and without calling an LLM:

- ``exact_match``: `BlackBoxUQ(scorers=["exact_match"]).score`, the share of
  sampled responses equal to the response;
- ``semantic_negentropy`` and ``semantic_sets_confidence``: `SemanticEntropy`
  with ``use_best=True``, which also replaces the response by the most
  frequent cluster's (``best_responses``). Its NLI model cannot be downloaded
  here, so `EqualityNLI` stands in for it: two responses entail each other
  when their strings are equal, and the caller passes normalised answers;
- ``exact_match_best``: uqlm's `MatchScorer` on the best response against the
  other responses, which is what `BlackBoxUQ` scores after the same swap.

Hugging Face downloads are switched off before uqlm is imported, so a scorer
that needs a model fails instead of reaching the network.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"


class EqualityNLI:
    """Stand-in for uqlm's NLI model: entailment means string equality."""

    def __init__(self) -> None:
        self.num_responses = 0
        self.probabilities: dict[tuple[str, str], Any] = {}

    def get_nli_results_batch(self, response_pairs: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """Return uqlm's NLI result dicts for each pair, 1 when equal and 0 otherwise."""
        results = []
        for first, second in response_pairs:
            same = first == second
            results.append(
                {
                    "noncontradiction_score": float(same),
                    "entailment": same,
                    "entailment_score": float(same),
                }
            )
        return results

    def get_nli_results(self, first: str, second: str) -> dict[str, Any]:
        """Return the NLI result dict of one pair."""
        return self.get_nli_results_batch([(first, second)])[0]


def score(job: dict[str, Any]) -> dict[str, Any]:
    """Run every offline scorer on one job."""
    from uqlm import BlackBoxUQ, SemanticEntropy
    from uqlm.black_box import MatchScorer

    responses = list(job["responses"])
    sampled = [list(candidates) for candidates in job["sampled_responses"]]

    exact = BlackBoxUQ(scorers=["exact_match"]).score(
        responses=list(responses),
        sampled_responses=[list(c) for c in sampled],
        show_progress_bars=False,
    )
    entropy = SemanticEntropy(nli=EqualityNLI(), use_best=True)
    semantic = entropy.score(
        responses=list(responses),
        sampled_responses=[list(c) for c in sampled],
        show_progress_bars=False,
    )
    best = [str(response) for response in semantic.data["responses"]]
    rest = [list(map(str, candidates)) for candidates in semantic.data["sampled_responses"]]
    exact_best = MatchScorer().evaluate(responses=best, sampled_responses=rest)

    return {
        "exact_match": [float(value) for value in exact.data["exact_match"]],
        "semantic_negentropy": [
            float(value) for value in semantic.data["discrete_confidence_scores"]
        ],
        "semantic_sets_confidence": [
            (len(candidates) + 1 - sets) / len(candidates)
            for candidates, sets in zip(sampled, semantic.data["num_semantic_sets"])
        ],
        "best_responses": best,
        "exact_match_best": [float(value) for value in exact_best],
    }


def main() -> None:
    source, target = sys.argv[1], sys.argv[2]
    with open(source, encoding="utf-8") as handle:
        jobs = json.load(handle)

    import uqlm

    scored = {"uqlm_version": uqlm.__version__, "results": [score(job) for job in jobs]}
    with open(target, "w", encoding="utf-8") as handle:
        json.dump(scored, handle)


if __name__ == "__main__":
    main()
