"""Peak memory of ``CPQGuard.abatch`` over 1,000 prompts.

Each configuration runs in its own subprocess (this script with ``--worker``),
so one configuration's peak cannot hide in another's. A worker imports the
library, builds a simulated task, its model (10 ms latency per call, so calls
overlap as they would against a hosted model) and the guard, then reads its
peak resident set size (``resource.getrusage(...).ru_maxrss``) before and
after one ``abatch`` over all prompts. For one configuration a second
subprocess traces Python allocations with `tracemalloc` instead, which reports
the peak of memory allocated during ``abatch`` and what the results still hold
after it. Tracing slows the run about threefold and adds memory of its own,
so the two runs are kept apart.

``abatch`` gets ``config={"max_concurrency": N}`` to limit how many prompts are
guarded at once; without it LangChain starts every prompt at once.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import resource
import subprocess
import sys
import time
import tracemalloc
from typing import Any

import _common

logger = logging.getLogger("cpq_guard.benchmarks")

PROMPTS = 1000
LATENCY = 0.01

CONFIGURATIONS: list[dict[str, Any]] = [
    {
        "name": "fixed K = 20, c = 5, all prompts at once",
        "policy": "fixed",
        "queries": 20,
        "concurrency": 5,
        "batch_concurrency": None,
        "trace": False,
    },
    {
        "name": "fixed K = 20, c = 5, 50 prompts at once",
        "policy": "fixed",
        "queries": 20,
        "concurrency": 5,
        "batch_concurrency": 50,
        "trace": True,
    },
    {
        "name": "derivative λ = 0.0015 (10 to 50 queries), c = 5, 50 prompts at once",
        "policy": "derivative",
        "queries": 50,
        "concurrency": 5,
        "batch_concurrency": 50,
        "trace": False,
    },
]
"""Configurations, one subprocess each. ``trace`` adds a second, traced run (about 3x slower)."""


def worker(configuration: dict[str, Any], prompts: int, mode: str) -> dict[str, Any]:
    """Run one ``abatch`` and measure it. ``mode`` is ``"rss"`` or ``"tracemalloc"``."""
    from cpq_guard import CPQGuard
    from cpq_guard.calibration import Calibration
    from cpq_guard.models import make_simulated_task
    from cpq_guard.stats.policies import DerivativePolicy, FixedPolicy

    task = make_simulated_task(prompts, seed=5)
    model = task.model(latency=LATENCY)
    if configuration["policy"] == "fixed":
        policy: FixedPolicy | DerivativePolicy = FixedPolicy(queries=configuration["queries"])
    else:
        policy = DerivativePolicy(lambda_=0.0015, min_queries=10, max_queries=50)
    calibration = Calibration(
        alpha=0.1,
        tau=0.9,
        policy=policy,
        equivalence="numeric",
        extractor="final-answer",
        num_calibration=100,
        calibration_mean_queries=20.0,
    )
    guard = CPQGuard(model, calibration, max_concurrency=configuration["concurrency"], seed=0)
    config = (
        {}
        if configuration["batch_concurrency"] is None
        else {"max_concurrency": configuration["batch_concurrency"]}
    )

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if mode == "tracemalloc":
        tracemalloc.start()
    started = time.perf_counter()
    results = asyncio.run(guard.abatch(task.prompts, config=config))
    elapsed = time.perf_counter() - started
    measured: dict[str, Any] = {"seconds": elapsed}
    if mode == "tracemalloc":
        _, peak = tracemalloc.get_traced_memory()
        # Collect cycles first, so "held" counts what the results keep alive, not garbage.
        gc.collect()
        current, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        measured.update({"traced_peak_kib": peak / 1024, "traced_after_kib": current / 1024})
    else:
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        measured.update({"rss_before_kib": before, "rss_peak_kib": after})
    measured["queries"] = sum(result.num_queries for result in results)
    measured["max_in_flight"] = model.max_in_flight
    return measured


def run_worker(configuration: dict[str, Any], prompts: int, mode: str) -> dict[str, Any]:
    """Run `worker` in a fresh interpreter and return its measurements."""
    command = [
        sys.executable,
        __file__,
        "--worker",
        json.dumps(configuration),
        "--prompts",
        str(prompts),
        "--mode",
        mode,
    ]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"worker failed ({configuration['name']}, {mode}):\n{completed.stderr}")
    return json.loads(completed.stdout)


def mib(kib: float) -> str:
    """Format KiB as MiB with one decimal."""
    return f"{kib / 1024:.1f}"


def main() -> None:
    parser = _common.parser(__doc__.splitlines()[0])
    # --worker and --mode are internal: main() passes them to its subprocesses.
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument(
        "--mode", choices=("rss", "tracemalloc"), default="rss", help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--prompts",
        type=int,
        default=PROMPTS,
        metavar="N",
        help=f"prompts per abatch call (default: {PROMPTS}; 100 with --quick)",
    )
    args = parser.parse_args()
    if args.worker is not None:
        print(json.dumps(worker(json.loads(args.worker), args.prompts, args.mode)))
        return

    _common.configure_logging()
    folder = _common.output_dir(args)
    prompts = 100 if args.quick else args.prompts
    configurations = CONFIGURATIONS

    rows = []
    for configuration in configurations:
        rss = run_worker(configuration, prompts, "rss")
        traced = (
            run_worker(configuration, prompts, "tracemalloc") if configuration["trace"] else None
        )
        logger.info("%s: %s %s", configuration["name"], rss, traced)
        rows.append({"configuration": configuration, "rss": rss, "tracemalloc": traced})

    info = _common.machine()
    table = _common.markdown_table(
        [
            "configuration",
            "queries",
            "max calls in flight",
            "RSS before, MiB",
            "peak RSS, MiB",
            "peak − before, MiB",
            "traced peak, MiB",
            "held by results, MiB",
            "wall s (untraced)",
        ],
        [
            [
                row["configuration"]["name"],
                row["rss"]["queries"],
                row["rss"]["max_in_flight"],
                mib(row["rss"]["rss_before_kib"]),
                mib(row["rss"]["rss_peak_kib"]),
                mib(row["rss"]["rss_peak_kib"] - row["rss"]["rss_before_kib"]),
                "-" if row["tracemalloc"] is None else mib(row["tracemalloc"]["traced_peak_kib"]),
                "-" if row["tracemalloc"] is None else mib(row["tracemalloc"]["traced_after_kib"]),
                f"{row['rss']['seconds']:.1f}",
            ]
            for row in rows
        ],
    )
    block = "\n".join(
        [
            f"`abatch` over {prompts} prompts, {LATENCY * 1e3:.0f} ms model latency, one "
            f"subprocess per cell. {_common.machine_line(info)}",
            "",
            table,
        ]
    )
    print(block)
    _common.write_results(folder, "memory", {"machine": info, "rows": rows}, block)
    if _common.updates_readme(args, folder):
        _common.update_readme("memory", block)


if __name__ == "__main__":
    main()
