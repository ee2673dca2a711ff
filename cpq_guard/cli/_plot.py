"""Plots of evaluation results for ``cpq-guard evaluate --plot``.

Matplotlib is an optional dependency (the ``plot`` extra), so it is imported
only when a plot is requested. The figure is drawn on an Agg canvas without
pyplot, so no global backend state changes.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cpq_guard._atomic import atomic_write_bytes
from cpq_guard.cli._errors import CommandError, UsageError
from cpq_guard.evaluation import EvaluationRow

_PANELS = (
    ("coverage", "coverage"),
    ("informative_coverage", "informative coverage"),
    ("abstention_rate", "abstention rate"),
    ("mean_set_size", "mean set size"),
)


def _import_matplotlib() -> tuple[Any, Any]:
    """Return matplotlib's `Figure` class and Agg canvas class.

    Raises:
        CommandError: If matplotlib is not installed.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise CommandError(
            '--plot needs matplotlib, which is not installed; run: pip install "cpq-guard[plot]"'
        ) from None
    return Figure, FigureCanvasAgg


def check_plot_format(path: Path) -> str:
    """Return the image format named by ``path``'s extension, such as ``"png"``.

    Raises:
        CommandError: If matplotlib is not installed.
        UsageError: If the extension is missing or not a format matplotlib writes.
    """
    _, canvas_class = _import_matplotlib()
    supported = canvas_class.get_supported_filetypes()
    image_format = path.suffix.lstrip(".").lower()
    if image_format not in supported:
        names = ", ".join(f".{name}" for name in sorted(supported))
        raise UsageError(
            f"--plot {path}: cannot tell the image format from the extension "
            f"{path.suffix or '(none)'}; use one of {names}"
        )
    return image_format


def write_plot(rows: Sequence[EvaluationRow], path: Path, *, title: str) -> None:
    """Plot four metrics against ``1 - alpha`` for each method and mapping, and save it.

    The panels are coverage (with the target line ``coverage = 1 - alpha``),
    informative coverage, abstention rate and mean set size, each as the mean
    over splits with the standard deviation as error bars. The image is
    rendered in memory and written atomically (temporary file, then rename).

    Raises:
        CommandError: If matplotlib is not installed.
        UsageError: If the extension of ``path`` is not an image format.
        OSError: If the file cannot be written.
    """
    image_format = check_plot_format(path)
    figure_class, canvas_class = _import_matplotlib()

    figure = figure_class(figsize=(11, 8), layout="constrained")
    canvas_class(figure)
    axes = figure.subplots(2, 2)
    figure.suptitle(title)

    series: dict[tuple[str, str], list[EvaluationRow]] = {}
    for row in rows:
        series.setdefault((row.method, row.mapping), []).append(row)

    for axis, (metric, label) in zip(axes.flat, _PANELS):
        for (method, mapping), points in series.items():
            points = sorted(points, key=lambda row: row.alpha, reverse=True)
            axis.errorbar(
                [1.0 - row.alpha for row in points],
                [getattr(row, metric).mean for row in points],
                yerr=[getattr(row, metric).std for row in points],
                marker="o",
                capsize=3,
                label=f"{method} ({mapping})",
            )
        if metric == "coverage":
            lowest = min(1.0 - row.alpha for row in rows)
            axis.axline(
                (lowest, lowest), slope=1.0, linestyle="--", color="black", label="1 - alpha"
            )
        axis.set_xlabel("1 - alpha")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    axes.flat[0].legend(fontsize="small")

    buffer = io.BytesIO()
    figure.savefig(buffer, format=image_format, dpi=150)
    atomic_write_bytes(path, buffer.getvalue())
