"""Shared plumbing of the benchmark scripts: paths, options, tables and result files.

Every script under ``benchmarks/`` runs on its own (``python benchmarks/NAME.py``)
and accepts ``--quick`` for a smoke run. A full run writes its tables to
``benchmarks/results/NAME.md`` and ``NAME.json``, its plots next to
``benchmarks/README.md``, and replaces the block between
``<!-- BEGIN NAME -->`` and ``<!-- END NAME -->`` in that README. A quick run
writes into a temporary folder (or ``--out``) and leaves the README alone, so
smoke runs never overwrite committed results.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

BENCHMARKS_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCHMARKS_DIR.parent
README = BENCHMARKS_DIR / "README.md"
GSM8K_FILE = "gsm8k_300.json"

logger = logging.getLogger("cpq_guard.benchmarks")


def default_data_dir() -> Path:
    """Return the folder of the authors' released samples: ``$CPQ_PAPER_DATA`` or the default.

    The default is ``../shared/data/cpq-paper`` relative to the repository root,
    the same rule as the test suite's fixture.
    """
    configured = os.environ.get("CPQ_PAPER_DATA")
    if configured:
        return Path(configured)
    return REPO_ROOT.parent / "shared" / "data" / "cpq-paper"


def gsm8k_path(data_dir: Path) -> Path:
    """Return the GSM8K release file in ``data_dir``, or exit with a message if it is missing."""
    path = data_dir / GSM8K_FILE
    if not path.is_file():
        sys.exit(
            f"{path} not found; pass --data DIR or set CPQ_PAPER_DATA to the folder "
            f"that contains {GSM8K_FILE}"
        )
    return path


def parser(description: str, *, data: bool = False) -> argparse.ArgumentParser:
    """Build the argument parser that every benchmark script shares.

    Args:
        description: The script's ``--help`` text.
        data: Add ``--data`` for scripts that read the released GSM8K samples.
    """
    result = argparse.ArgumentParser(description=description)
    result.add_argument(
        "--quick",
        action="store_true",
        help="smoke run with small sizes; writes into a temporary folder, not benchmarks/",
    )
    result.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="folder for tables and plots (default: benchmarks/, or a temporary "
        "folder with --quick); the README is updated only for a full run into benchmarks/",
    )
    if data:
        result.add_argument(
            "--data",
            type=Path,
            default=None,
            metavar="DIR",
            help=f"folder that contains {GSM8K_FILE} (default: $CPQ_PAPER_DATA, "
            "else ../shared/data/cpq-paper next to the repository)",
        )
    return result


def output_dir(args: argparse.Namespace) -> Path:
    """Return the folder a run writes to, creating it."""
    if args.out is not None:
        folder = args.out
    elif args.quick:
        folder = Path(tempfile.mkdtemp(prefix="cpq-bench-"))
    else:
        folder = BENCHMARKS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results").mkdir(exist_ok=True)
    return folder


def updates_readme(args: argparse.Namespace, folder: Path) -> bool:
    """Tell whether this run owns the committed results: full size, written to benchmarks/."""
    return not args.quick and folder.resolve() == BENCHMARKS_DIR


def configure_logging() -> None:
    """Log the benchmarks' progress to stderr at INFO and keep the library at WARNING."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    logger.setLevel(logging.INFO)


def machine() -> dict[str, Any]:
    """Describe the machine a result was measured on."""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        lscpu = ""
    match = re.search(r"^Model name:\s*(.+)$", lscpu, flags=re.MULTILINE)

    import cpq_guard

    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": match.group(1).strip() if match else platform.processor() or "unknown",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpq_guard": cpq_guard.__version__,
        "platform": platform.platform(),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Return the mean and the population standard deviation of ``values``."""
    array = np.asarray(list(values), dtype=np.float64)
    return float(array.mean()), float(array.std())


def pm(mean: float, std: float, digits: int = 3) -> str:
    """Format a mean and standard deviation as ``mean ± std``."""
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def ratio(numerator: float, denominator: float, digits: int = 2) -> str:
    """Format ``numerator / denominator``, or ``inf`` when only the denominator is 0."""
    if denominator == 0.0:
        return "n/a" if numerator == 0.0 else "inf"
    return f"{numerator / denominator:.{digits}f}"


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Render a GitHub-flavoured markdown table."""
    lines = [
        "| " + " | ".join(headers) + " |",
        "| " + " | ".join("---" for _ in headers) + " |",
    ]
    lines.extend("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows)
    return "\n".join(lines)


def write_results(folder: Path, name: str, data: Any, markdown: str) -> None:
    """Write ``results/NAME.json`` and ``results/NAME.md`` under ``folder``."""
    results = folder / "results"
    (results / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    (results / f"{name}.md").write_text(markdown.rstrip() + "\n", encoding="utf-8")
    logger.info("wrote %s and %s", results / f"{name}.json", results / f"{name}.md")


def update_readme(name: str, markdown: str) -> None:
    """Replace the text between ``<!-- BEGIN name -->`` and ``<!-- END name -->`` in the README.

    Raises:
        SystemExit: If the README lacks the markers, so a renamed block fails loudly.
    """
    text = README.read_text(encoding="utf-8")
    pattern = re.compile(
        rf"(<!-- BEGIN {re.escape(name)} -->\n).*?(<!-- END {re.escape(name)} -->)", re.DOTALL
    )
    if not pattern.search(text):
        sys.exit(f"{README} has no '<!-- BEGIN {name} -->' ... '<!-- END {name} -->' block")
    replaced = pattern.sub(
        lambda match: match.group(1) + markdown.rstrip() + "\n" + match.group(2), text
    )
    README.write_text(replaced, encoding="utf-8")
    logger.info("updated the %s block of %s", name, README)


def machine_line(info: dict[str, Any]) -> str:
    """Describe the machine in one markdown line for a results block."""
    return (
        f"Measured on {info['nproc']} cores ({info['cpu_model']}), Python {info['python']}, "
        f"numpy {info['numpy']}, cpq-guard {info['cpq_guard']}; 1-minute load average "
        f"{info['load_average_1min']} when the run ended."
    )
