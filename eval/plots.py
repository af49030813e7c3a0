"""Figures for evaluation results: the language-pair heat map (PNG, matplotlib's Agg backend, no display)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from xlir.eval.errors import EvalError


def heatmap(
    values: Sequence[Sequence[float]],
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    path: str | Path,
    *,
    title: str = "",
    row_title: str = "queries",
    col_title: str = "documents",
    vmin: float = 0.0,
    vmax: float = 1.0,
    fmt: str = ".2f",
    dpi: int = 150,
) -> Path:
    """Write ``values`` (rows x columns) as an annotated heat map PNG at ``path`` and return the path.

    NaN cells are drawn blank with "n/a". Uses a bare :class:`matplotlib.figure.Figure` with the Agg canvas,
    so it works without a display and leaves pyplot's global state alone.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = [list(map(float, row)) for row in values]
    if not rows or not rows[0]:
        raise EvalError("the heat map has no cells; give at least one row and one column")
    if len(rows) != len(row_labels) or any(len(row) != len(col_labels) for row in rows):
        raise ValueError(
            f"heat map shape mismatch: {len(rows)} rows x {[len(row) for row in rows]} columns for "
            f"{len(row_labels)} row labels and {len(col_labels)} column labels"
        )
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise EvalError(f"the heat map is written as PNG; give a path ending in .png, not {path.name!r}")
    width = max(3.5, 1.0 + 0.7 * len(col_labels))
    height = max(2.8, 1.0 + 0.55 * len(row_labels))
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(rows, cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto")
    axes.set_xticks(range(len(col_labels)), labels=list(col_labels))
    axes.set_yticks(range(len(row_labels)), labels=list(row_labels))
    axes.set_xlabel(col_title)
    axes.set_ylabel(row_title)
    axes.xaxis.set_label_position("top")
    axes.xaxis.tick_top()
    middle = (vmin + vmax) / 2
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            text = "n/a" if math.isnan(value) else format(value, fmt)
            color = "black" if not math.isnan(value) and value > middle else "white"
            axes.text(j, i, text, ha="center", va="center", color=color, fontsize=8)
    figure.colorbar(image, ax=axes, shrink=0.8)
    if title:
        axes.set_title(title, fontsize=9, pad=18)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    return path
