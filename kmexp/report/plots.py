"""PNG plots of a sweep, drawn with matplotlib's Agg canvas.

Figures are built with ``matplotlib.figure.Figure`` and saved through
``FigureCanvasAgg`` rather than pyplot: no global figure registry, no backend
switch imposed on whoever imported kmexp, and no GUI needed on a server.
Each function returns the path it wrote, or None when there is nothing to draw.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from kmexp.report.stats import Grid, Run, Transfer, unique

DPI = 100
ANNOTATE_UP_TO = 400  # cells; larger heatmaps are unreadable with numbers in them
MAX_PANELS = 12  # learning-curve panels (one per locale); more locales share one panel


def text(value: str) -> str:
    """A dataset or config string as literal plot text: ``$`` would otherwise start matplotlib mathtext."""
    return str(value).replace("$", r"\$")


def save(fig: Figure, path: Path) -> Path:
    """Write the figure as PNG; fonts lacking a dataset's script only warn, so those warnings are silenced."""
    FigureCanvasAgg(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph .* missing")
        fig.savefig(path, format="png", dpi=DPI, bbox_inches="tight")
    return path


def score_bars(grid: Grid, objective: str, path: Path) -> Path | None:
    """Grouped bars: test objective per locale, one bar per setting (error bars: std over seeds)."""
    if not grid.cells:
        return None
    n_loc, n_set = len(grid.locales), len(grid.settings)
    fig = Figure(figsize=(min(30, max(6, 0.35 * n_loc * n_set + 2)), 4.5))
    ax = fig.add_subplot()
    width = 0.8 / n_set
    x = np.arange(n_loc)
    for j, setting in enumerate(grid.settings):
        stats = [grid.test(loc, setting) for loc in grid.locales]
        means = [math.nan if s is None else s.mean for s in stats]
        errors = [0.0 if s is None or s.n < 2 else s.std for s in stats]
        spread = {"yerr": errors, "capsize": 2} if any(errors) else {}
        ax.bar(x + (j - (n_set - 1) / 2) * width, means, width, label=text(setting), **spread)
    ax.set_xticks(x, [text(loc) for loc in grid.locales], rotation=45 if n_loc > 8 else 0)
    ax.set_ylabel(f"test {text(objective)}")
    ax.set_xlabel("locale")
    ax.set_title(f"Test {text(objective)} by locale and setting")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.3)
    return save(fig, path)


def heatmap(ax, fig: Figure, matrix: np.ndarray, rows: list[str], columns: list[str], label: str, number: str = ".3f") -> None:
    """A colored matrix with its values written in the cells (``number`` format; NaN cells left blank)."""
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(columns)), [text(c) for c in columns], rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), [text(r) for r in rows])
    fig.colorbar(image, ax=ax, label=text(label))
    if matrix.size <= ANNOTATE_UP_TO:
        finite = matrix[np.isfinite(matrix)]
        middle = (finite.min() + finite.max()) / 2 if finite.size else 0.0
        for (i, j), value in np.ndenumerate(matrix):
            if np.isfinite(value):
                ax.text(j, i, format(value, number), ha="center", va="center", fontsize=8, color="black" if value > middle else "white")


def score_heatmap(grid: Grid, objective: str, path: Path) -> Path | None:
    """Settings (rows) x locales (columns), test objective, mean over seeds."""
    if not grid.cells:
        return None
    matrix = np.array(
        [[s.mean if (s := grid.test(loc, setting)) else math.nan for loc in grid.locales] for setting in grid.settings]
    )
    fig = Figure(figsize=(min(30, max(5, 0.7 * len(grid.locales) + 3)), max(2.5, 0.5 * len(grid.settings) + 1.5)))
    ax = fig.add_subplot()
    heatmap(ax, fig, matrix, grid.settings, grid.locales, f"test {objective}")
    ax.set_title(f"Test {text(objective)}: setting x locale")
    return save(fig, path)


def curve_column(runs: list[Run], objective: str) -> str | None:
    """The history column to plot: the dev objective when any job logged it, else the dev loss."""
    columns = {name for run in runs for name in run.job.history()}
    for name in (f"val_{objective}", "val_loss"):
        if name in columns:
            return name
    return None


def learning_curves(runs: list[Run], objective: str, path: Path) -> Path | None:
    """Dev score per epoch from each job's history.csv: one panel per locale, one line per setting and seed."""
    column = curve_column(runs, objective)
    if column is None:
        return None
    locales = unique(r.locale for r in runs)
    panels = locales if len(locales) <= MAX_PANELS else ["all locales"]
    n_cols = min(3, len(panels))
    n_rows = math.ceil(len(panels) / n_cols)
    fig = Figure(figsize=(4.5 * n_cols + 2, 3.2 * n_rows))
    axes = {panel: fig.add_subplot(n_rows, n_cols, i + 1) for i, panel in enumerate(panels)}
    seeds = len({r.seed for r in runs}) > 1
    for run in runs:
        history = run.job.history()
        values = history.get(column)
        if not values:
            continue
        ax = axes.get(run.locale, axes.get("all locales"))
        label = f"{run.setting} seed={run.seed}" if seeds else run.setting
        # history.csv's own epoch numbers (from 1), as metrics.json's best_epoch counts them.
        epochs = history.get("epoch", range(1, len(values) + 1))
        ax.plot(epochs, values, marker="o", markersize=3, label=text(label))
    for panel, ax in axes.items():
        ax.set_title(text(panel))
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(text(column))
        ax.grid(alpha=0.3)
    handles, labels = next(iter(axes.values())).get_legend_handles_labels()
    if handles and len(runs) <= 40:
        fig.legend(handles, labels, fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(f"Learning curves ({text(column)} per epoch)")
    fig.tight_layout()
    return save(fig, path)


def confusion(run: Run, path: Path) -> Path | None:
    """The test confusion matrix (rows: true label) of one run, usually the best one by dev."""
    matrix = run.job.record.test.get("confusion_matrix")
    labels = run.job.record.labels
    if not matrix or not labels or len(labels) != len(matrix):
        return None
    size = max(4, 0.6 * len(labels) + 2)
    fig = Figure(figsize=(size + 1, size))
    ax = fig.add_subplot()
    heatmap(ax, fig, np.array(matrix, dtype=float), [str(x) for x in labels], [str(x) for x in labels], "test examples", number=".0f")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(text(f"Test confusion matrix, job {run.job.name} ({run.locale}, {run.setting})"))
    return save(fig, path)


def transfer_heatmap(transfer: Transfer, objective: str, path: Path) -> Path | None:
    """Cross-lingual transfer: trained on (rows) x tested on (columns), test objective."""
    if not transfer.values:
        return None
    matrix = np.array([[transfer.values.get((r, c), math.nan) for c in transfer.columns] for r in transfer.rows])
    fig = Figure(figsize=(min(30, max(5, 0.8 * len(transfer.columns) + 3)), max(3, 0.5 * len(transfer.rows) + 2)))
    ax = fig.add_subplot()
    heatmap(ax, fig, matrix, transfer.rows, transfer.columns, f"test {objective}")
    ax.set_xlabel("tested on")
    ax.set_ylabel("trained on")
    ax.set_title(text(f"Cross-lingual transfer ({transfer.setting})"))
    return save(fig, path)
