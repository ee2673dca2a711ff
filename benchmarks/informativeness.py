"""Informativeness of CPQ against its baselines at equal average budget.

For each dataset, average budget ``B`` and miscoverage ``alpha``, six methods
spend (about) ``B`` queries per prompt and are scored on the same test prompts:

- ``cpq``: the derivative policy with ``lambda`` tuned to ``B`` on half of the
  calibration part in every split (``evaluate(..., average_budget=B)``), and
  the missing-mass mapping;
- ``mm-policy``: the missing-mass policy (stop once ``M_hat <= epsilon``) with
  ``epsilon`` tuned the same way, and the missing-mass mapping;
- ``fixed-mm``: ``K = B`` queries and the missing-mass mapping;
- ``fixed-mm-half``: the same, but like the tuned policies it sets the
  threshold on half of the calibration part only (a threshold policy with
  ``min_queries = max_queries = B``, "tuned" by ``evaluate``), so that
  ``cpq`` against ``fixed-mm-half`` compares the stopping policies alone;
- ``fixed-cum``: ``K = B`` queries and the cumulative mapping;
- ``frequency``: ``K = B`` queries, nonconformity ``1 - relative frequency``,
  no missing-mass term and no abstention (`frequency_baseline`).

The fixed-``K`` methods need no tuning, so all of their calibration part sets
the threshold; the tuned policies give up half of it to tuning. Split ``s``
uses ``evaluate(..., splits=1, seed=s)``, whose calibration/test partition is
``default_rng([s, 0]).permutation(n)``, so every method sees the same test
prompts in a split and the differences between methods are paired.

Datasets: the authors' released GSM8K samples (300 prompts, 50 samples each)
and four simulated ones drawn from known distributions (`synthetic`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import _common
import numpy as np
from frequency_baseline import frequency_metrics
from synthetic import REGIME_MIXES, regime_histories

from cpq_guard.answers import get_equivalence
from cpq_guard.evaluation import METRIC_NAMES, Mapping, PolicyReplay, evaluate
from cpq_guard.histories import History, histories_from_records
from cpq_guard.paper import import_paper
from cpq_guard.stats.policies import DerivativePolicy, FixedPolicy, MissingMassPolicy

logger = logging.getLogger("cpq_guard.benchmarks")

ALPHAS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
BUDGETS = (10, 20, 30)
MAX_QUERIES = 50
BOOTSTRAP = 20
CALIBRATION_FRACTION = 0.5
REPLAY_SEED = 0
SIMULATED_PROMPTS = 400
SIMULATED_SEED = 11

METHODS = {
    "cpq": "CPQ: derivative policy, λ tuned to B",
    "mm-policy": "missing-mass policy, ε tuned to B",
    "fixed-mm": "K = B, missing-mass mapping",
    "fixed-mm-half": "K = B, missing-mass mapping, τ from half the calibration part",
    "fixed-cum": "K = B, cumulative mapping",
    "frequency": "K = B, frequency score, no abstention",
}
BASELINES = ("mm-policy", "fixed-mm", "fixed-mm-half", "fixed-cum", "frequency")
SUMMARY_ALPHAS = (0.05, 0.1, 0.2)
"""Miscoverage levels of the README table. results/informativeness.md has all of them."""


def min_queries(budget: int) -> int:
    """Return the tuned policies' lower limit: 10 as in the reference setting, at most ``B / 2``.

    With ``min_queries = B`` a policy tuned to budget ``B`` can only stop at
    ``B`` and equals the fixed policy, so ``B = 10`` uses 5.
    """
    return min(10, budget // 2)


def simulated_seed(name: str) -> int:
    """Return the seed of the simulated dataset ``name``, a key of `REGIME_MIXES`."""
    return SIMULATED_SEED + list(REGIME_MIXES).index(name)


def load_datasets(args: Any) -> dict[str, list[History]]:
    """Build the histories of every dataset, GSM8K first."""
    datasets: dict[str, list[History]] = {}
    data_dir = args.data if args.data is not None else _common.default_data_dir()
    records = import_paper(_common.gsm8k_path(data_dir))
    datasets["gsm8k"] = histories_from_records(records, get_equivalence("normalized"))

    prompts = 120 if args.quick else SIMULATED_PROMPTS
    for name, mix in REGIME_MIXES.items():
        datasets[name] = regime_histories(
            mix, prompts=prompts, samples=MAX_QUERIES, seed=simulated_seed(name)
        )
    return datasets


def per_split_rows(
    histories: Sequence[History],
    alphas: Sequence[float],
    replay: PolicyReplay,
    *,
    mapping: Mapping,
    average_budget: float | None,
    splits: int,
) -> dict[float, dict[str, list[float]]]:
    """Run `evaluate` once per split and collect each metric's per-split values by alpha."""
    collected: dict[float, dict[str, list[float]]] = {
        alpha: {name: [] for name in METRIC_NAMES} for alpha in alphas
    }
    for split in range(splits):
        rows = evaluate(
            histories,
            alphas,
            replay,
            method="benchmark",
            mapping=mapping,
            average_budget=average_budget,
            splits=1,
            calibration_fraction=CALIBRATION_FRACTION,
            seed=split,
        )
        for row in rows:
            for name in METRIC_NAMES:
                collected[row.alpha][name].append(getattr(row, name).mean)
    return collected


def frequency_rows(
    histories: Sequence[History], alphas: Sequence[float], queries: int, splits: int
) -> dict[float, dict[str, list[float]]]:
    """Run the frequency baseline on the same partitions as `evaluate`."""
    n = len(histories)
    n_calibration = round(CALIBRATION_FRACTION * n)
    collected: dict[float, dict[str, list[float]]] = {
        alpha: {name: [] for name in METRIC_NAMES} for alpha in alphas
    }
    for split in range(splits):
        order = np.random.default_rng([split, 0]).permutation(n)
        rows = frequency_metrics(
            histories, order[:n_calibration], order[n_calibration:], queries, alphas
        )
        for alpha, row in zip(alphas, rows):
            for name in METRIC_NAMES:
                collected[alpha][name].append(row[name])
    return collected


def run_dataset(
    histories: Sequence[History], budgets: Sequence[int], splits: int
) -> dict[int, dict[str, dict[float, dict[str, list[float]]]]]:
    """Evaluate every method at every budget on one dataset."""
    results: dict[int, dict[str, dict[float, dict[str, list[float]]]]] = {}
    replays: dict[tuple[str, int], PolicyReplay] = {}
    for budget in budgets:
        lower = min_queries(budget)
        for kind, template in (
            (
                "cpq",
                DerivativePolicy(
                    lambda_=0.0, min_queries=lower, max_queries=MAX_QUERIES, bootstrap=BOOTSTRAP
                ),
            ),
            (
                "mm-policy",
                MissingMassPolicy(epsilon=0.0, min_queries=lower, max_queries=MAX_QUERIES),
            ),
        ):
            if (kind, lower) not in replays:
                replays[(kind, lower)] = PolicyReplay.compute(template, histories, REPLAY_SEED)

        fixed = PolicyReplay.compute(FixedPolicy(queries=budget), histories, REPLAY_SEED)
        # A threshold policy with min_queries = max_queries = B stops at B whatever
        # its threshold, and `evaluate` halves the calibration part to "tune" it:
        # a fixed K = B with the calibration of the tuned policies.
        fixed_half = PolicyReplay.compute(
            DerivativePolicy(lambda_=0.0, min_queries=budget, max_queries=budget, bootstrap=0),
            histories,
            REPLAY_SEED,
        )
        results[budget] = {
            "cpq": per_split_rows(
                histories,
                ALPHAS,
                replays[("cpq", lower)],
                mapping="missing-mass",
                average_budget=budget,
                splits=splits,
            ),
            "mm-policy": per_split_rows(
                histories,
                ALPHAS,
                replays[("mm-policy", lower)],
                mapping="missing-mass",
                average_budget=budget,
                splits=splits,
            ),
            "fixed-mm": per_split_rows(
                histories, ALPHAS, fixed, mapping="missing-mass", average_budget=None, splits=splits
            ),
            "fixed-mm-half": per_split_rows(
                histories,
                ALPHAS,
                fixed_half,
                mapping="missing-mass",
                average_budget=budget,
                splits=splits,
            ),
            "fixed-cum": per_split_rows(
                histories, ALPHAS, fixed, mapping="cumulative", average_budget=None, splits=splits
            ),
            "frequency": frequency_rows(histories, ALPHAS, budget, splits),
        }
    return results


def summarise(
    results: dict[str, dict[int, dict[str, dict[float, dict[str, list[float]]]]]],
) -> list[dict[str, Any]]:
    """Flatten per-split results into rows with means, standard deviations and CPQ's ratios."""
    rows = []
    for dataset, by_budget in results.items():
        for budget, by_method in by_budget.items():
            for alpha in ALPHAS:
                cpq = np.array(by_method["cpq"][alpha]["informative_coverage"])
                for method, by_alpha in by_method.items():
                    values = by_alpha[alpha]
                    row: dict[str, Any] = {
                        "dataset": dataset,
                        "budget": budget,
                        "alpha": alpha,
                        "method": method,
                        "splits": len(values["coverage"]),
                    }
                    for name in METRIC_NAMES:
                        row[name] = _common.mean_std(values[name])
                    informative = np.array(values["informative_coverage"])
                    difference = cpq - informative
                    row["cpq_ratio"] = (
                        float(cpq.mean() / informative.mean()) if informative.mean() else None
                    )
                    row["cpq_minus"] = (float(difference.mean()), float(difference.std()))
                    rows.append(row)
    return rows


def _cell(row: dict[str, Any], name: str) -> str:
    mean, std = row[name]
    digits = 2 if name in ("mean_set_size", "mean_queries") else 3
    return _common.pm(mean, std, digits)


def full_tables(rows: list[dict[str, Any]], info: dict[str, Any], splits: int) -> str:
    """Render every metric of every row, one table per dataset."""
    parts = [
        "# Informativeness at equal average budget: all results",
        "",
        "Generated by `benchmarks/informativeness.py`; mean ± std over "
        f"{splits} calibration/test splits. Coverage counts an abstention as covered and "
        "set size counts it as 0. `CPQ / method` is the ratio of mean informative "
        "coverages and `CPQ − method` the paired difference per split (mean ± std).",
        "",
        _common.machine_line(info),
    ]
    headers = [
        "B",
        "α",
        "method",
        "coverage",
        "informative coverage",
        "abstention",
        "set size",
        "queries",
        "CPQ / method",
        "CPQ − method",
    ]
    for dataset in dict.fromkeys(row["dataset"] for row in rows):
        table_rows = [
            [
                row["budget"],
                f"{row['alpha']:g}",
                row["method"],
                _cell(row, "coverage"),
                _cell(row, "informative_coverage"),
                _cell(row, "abstention_rate"),
                _cell(row, "mean_set_size"),
                _cell(row, "mean_queries"),
                "-" if row["method"] == "cpq" else _ratio_text(row),
                "-" if row["method"] == "cpq" else _common.pm(*row["cpq_minus"]),
            ]
            for row in rows
            if row["dataset"] == dataset
        ]
        parts += ["", f"## {dataset}", "", _common.markdown_table(headers, table_rows)]
    return "\n".join(parts)


def _ratio_text(row: dict[str, Any]) -> str:
    ratio = row["cpq_ratio"]
    return "inf" if ratio is None else f"{ratio:.2f}"


def summary_table(rows: list[dict[str, Any]]) -> str:
    """Render informative coverage of every method and CPQ's ratios at `SUMMARY_ALPHAS`."""
    index = {(r["dataset"], r["budget"], r["alpha"], r["method"]): r for r in rows}
    headers = ["dataset", "B", "α", *METHODS, *(f"CPQ / {name}" for name in BASELINES)]
    table_rows = []
    for dataset, budget, alpha in dict.fromkeys(
        (r["dataset"], r["budget"], r["alpha"]) for r in rows
    ):
        if alpha not in SUMMARY_ALPHAS:
            continue
        cells = [dataset, budget, f"{alpha:g}"]
        cells += [
            _cell(index[(dataset, budget, alpha, m)], "informative_coverage") for m in METHODS
        ]
        cells += [_ratio_text(index[(dataset, budget, alpha, m)]) for m in BASELINES]
        table_rows.append(cells)
    return _common.markdown_table(headers, table_rows)


def overview_table(rows: list[dict[str, Any]]) -> str:
    """Count, per dataset and baseline, the cells where CPQ is significantly better or worse.

    A cell is one budget and alpha. CPQ wins it when the paired difference in
    informative coverage is above twice its standard error over splits, loses
    it when below minus twice that, and ties otherwise. The ratio column is
    the median over cells of CPQ's mean informative coverage over the baseline's.
    """
    headers = ["dataset", *(f"vs {name}: wins / ties / losses, median ratio" for name in BASELINES)]
    table_rows = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        cells: list[Any] = [dataset]
        for baseline in BASELINES:
            selected = [r for r in rows if r["dataset"] == dataset and r["method"] == baseline]
            wins = ties = losses = 0
            for row in selected:
                mean, std = row["cpq_minus"]
                error = std / np.sqrt(row["splits"])
                if mean > 2 * error:
                    wins += 1
                elif mean < -2 * error:
                    losses += 1
                else:
                    ties += 1
            ratios = [r["cpq_ratio"] for r in selected if r["cpq_ratio"] is not None]
            median = f"{np.median(ratios):.2f}" if ratios else "n/a"
            cells.append(f"{wins} / {ties} / {losses}, {median}")
        table_rows.append(cells)
    return _common.markdown_table(headers, table_rows)


def validity_table(rows: list[dict[str, Any]]) -> str:
    """Render the lowest coverage minus target of every method over all budgets and alphas."""
    headers = ["dataset", *METHODS]
    table_rows = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        cells = [dataset]
        for method in METHODS:
            gaps = [
                r["coverage"][0] - (1 - r["alpha"])
                for r in rows
                if r["dataset"] == dataset and r["method"] == method
            ]
            cells.append(f"{min(gaps):+.3f}")
        table_rows.append(cells)
    return _common.markdown_table(headers, table_rows)


def plot(rows: list[dict[str, Any]], metric: str, label: str, path: Path) -> None:
    """Plot ``metric`` against ``1 - alpha``: one panel per dataset and budget."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    budgets = list(dict.fromkeys(r["budget"] for r in rows))
    figure = Figure(figsize=(4 * len(budgets), 3 * len(datasets)), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(datasets), len(budgets), squeeze=False, sharex=True)
    for i, dataset in enumerate(datasets):
        for j, budget in enumerate(budgets):
            axis = axes[i][j]
            for method, description in METHODS.items():
                selected = [
                    r
                    for r in rows
                    if r["dataset"] == dataset and r["budget"] == budget and r["method"] == method
                ]
                targets = [1 - r["alpha"] for r in selected]
                means = [r[metric][0] for r in selected]
                stds = [r[metric][1] for r in selected]
                axis.errorbar(
                    targets,
                    means,
                    yerr=stds,
                    marker="o",
                    markersize=3,
                    capsize=2,
                    label=description,
                )
            if metric == "coverage":
                axis.plot([0.7, 0.95], [0.7, 0.95], color="black", linestyle=":", linewidth=1)
            axis.set_title(f"{dataset}, B = {budget}", fontsize=10)
            axis.grid(alpha=0.3)
            if j == 0:
                axis.set_ylabel(label)
            if i == len(datasets) - 1:
                axis.set_xlabel("target coverage 1 − α")
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=3, fontsize=9)
    figure.savefig(path, dpi=90)
    logger.info("wrote %s", path)


def main() -> None:
    args = _common.parser(__doc__.splitlines()[0], data=True).parse_args()
    _common.configure_logging()
    folder = _common.output_dir(args)
    splits = 3 if args.quick else 20
    budgets = (10, 20) if args.quick else BUDGETS

    started = time.perf_counter()
    datasets = load_datasets(args)
    results = {}
    for name, histories in datasets.items():
        logger.info("%s: %d prompts", name, len(histories))
        results[name] = run_dataset(histories, budgets, splits)
    rows = summarise(results)
    elapsed = time.perf_counter() - started

    info = _common.machine()
    full = full_tables(rows, info, splits)
    summary = summary_table(rows)
    overview = overview_table(rows)
    validity = validity_table(rows)
    print(overview)
    print()
    print(summary)
    print()
    print("Lowest coverage minus target over all budgets and alphas:")
    print(validity)
    print(f"\n{elapsed:.1f} s")

    plot(rows, "informative_coverage", "informative coverage", folder / "informativeness.png")
    plot(rows, "coverage", "coverage", folder / "informativeness_coverage.png")
    _common.write_results(
        folder,
        "informativeness",
        {"machine": info, "splits": splits, "seconds": elapsed, "rows": rows},
        full,
    )
    if _common.updates_readme(args, folder):
        block = "\n".join(
            [
                f"Mean ± std over {splits} splits. {_common.machine_line(info)} "
                f"Run time {elapsed:.0f} s.",
                "",
                f"CPQ against each baseline over all {len(ALPHAS)} alphas and "
                f"{len(budgets)} budgets of a dataset:",
                "",
                overview,
                "",
                "Informative coverage (reference in a set, no abstention):",
                "",
                summary,
                "",
                "Lowest coverage minus its target 1 − α, over all budgets and alphas "
                "(negative: the method under-covers somewhere):",
                "",
                validity,
            ]
        )
        _common.update_readme("informativeness", block)


if __name__ == "__main__":
    main()
