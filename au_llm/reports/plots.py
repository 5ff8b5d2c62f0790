"""Plots of one run: per-AU F1 bars against the always-positive baseline, a fold x AU heatmap."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from au_llm import metrics as M
from au_llm.io_utils import atomic_write_bytes
from au_llm.reports.tables import (
    OPTIMISTIC_NOTE,
    PUBLISHED_AU_LLM_MACRO_F1,
    RunTables,
    format_metric,
    normalise_dataset,
)
from au_llm.runs.layout import F1_FOLD_HEATMAP, F1_PER_AU


def _save_figure(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _title(text: str, optimistic: bool) -> str:
    return f"{text}\n({OPTIMISTIC_NOTE})" if optimistic else text


def _plot_f1_bars(tables: RunTables, path: Path, dataset: str | None, optimistic: bool) -> Path:
    table = tables.per_au_mean
    labels = [f"AU{au}" for au in table["au"]]
    x = np.arange(len(labels))
    several = tables.summary["n_seeds"] > 1
    fig = Figure(figsize=(max(7.0, 1.3 * len(labels) + 3.0), 4.6), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    panels = (
        ("binary_f1", "Binary F1 (positive class)"),
        ("macro_f1", '"Macro" F1 (mean of positive- and negative-class F1;\nAU-LLM convention)'),
    )
    reference_key = normalise_dataset(dataset)
    for ax, (key, panel_title) in zip(axes, panels, strict=True):
        model_mean = tables.summary["metrics"][f"pooled_{key}"]
        base_mean = tables.summary["metrics"][f"baseline_{key}"]
        err = table[f"{key}_std"].to_numpy(dtype=float) if several else None
        ax.bar(
            x - 0.2,
            table[key].to_numpy(dtype=float),
            0.4,
            yerr=err,
            capsize=3,
            color="tab:blue",
            label=f"model (mean {format_metric(model_mean)})",
        )
        ax.bar(
            x + 0.2,
            table[f"baseline_{key}"].to_numpy(dtype=float),
            0.4,
            color="lightgrey",
            edgecolor="grey",
            hatch="//",
            label=f"always positive (mean {format_metric(base_mean)})",
        )
        if key == "macro_f1" and reference_key in PUBLISHED_AU_LLM_MACRO_F1:
            ref = PUBLISHED_AU_LLM_MACRO_F1[reference_key]
            ax.axhline(
                ref,
                color="tab:red",
                linestyle="--",
                label=f"AU-LLM paper (own convention): {ref:.3f}",
            )
        ax.set_xticks(x, labels)
        ax.set_ylim(0, 1.3)
        ax.set_yticks(np.linspace(0, 1, 6))
        ax.set_title(panel_title, fontsize=10)
        ax.legend(fontsize=8, loc="upper right")
    axes[0].set_ylabel("F1, pooled over folds")
    seeds_note = f", mean ± std over {tables.summary['n_seeds']} seeds" if several else ""
    head = f"{dataset} per-AU F1" if dataset else "Per-AU F1"
    fig.suptitle(_title(f"{head}{seeds_note}", optimistic), fontsize=11)
    return _save_figure(fig, path)


def _fold_matrix(tables: RunTables) -> np.ndarray:
    """[F, A] binary F1 per fold and AU, averaged over seeds (nan where never defined)."""
    folds, aus = tables.summary["folds"], tables.aus
    matrix = np.full((len(folds), len(aus)), np.nan)
    grouped = tables.per_fold.groupby(["fold", "au"], sort=False)["binary_f1"]
    for (fold, au), values in grouped:
        mean, _ = M.nanmean_count(values.to_numpy(dtype=float))
        matrix[folds.index(fold), aus.index(int(au))] = mean
    return matrix


def _plot_fold_heatmap(
    tables: RunTables, path: Path, dataset: str | None, optimistic: bool
) -> Path:
    folds, aus = tables.summary["folds"], tables.aus
    matrix = _fold_matrix(tables)
    fig = Figure(
        figsize=(max(5.0, 0.7 * len(aus) + 3.0), max(3.5, 0.32 * len(folds) + 2.2)),
        layout="constrained",
    )
    ax = fig.subplots()
    cmap = colormaps["viridis"].with_extremes(bad="lightgrey")
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(np.arange(len(aus)), [f"AU{au}" for au in aus])
    ax.set_yticks(np.arange(len(folds)), folds, fontsize=8 if len(folds) > 20 else 10)
    ax.set_xlabel("AU")
    ax.set_ylabel("fold (held-out subject or domain pair)")
    if matrix.size <= 600:
        for (i, j), value in np.ndenumerate(matrix):
            text = "n/a" if math.isnan(value) else f"{value:.2f}"
            color = "black" if math.isnan(value) or value > 0.6 else "white"
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color=color)
    fig.colorbar(image, ax=ax, label="binary F1 (positive class)")
    n_nan = int(np.isnan(matrix).sum())
    note = f"grey / n/a: binary F1 undefined ({n_nan} cells: no positive clip in that fold)"
    ax.set_title(note, fontsize=8)
    seeds = tables.summary["n_seeds"]
    head = f"{dataset} binary F1 per fold" if dataset else "Binary F1 per fold"
    head += f" (mean over {seeds} seeds)" if seeds > 1 else ""
    fig.suptitle(_title(head, optimistic), fontsize=11)
    return _save_figure(fig, path)


def write_plots(
    tables: RunTables, out_dir: Path, dataset: str | None, *, optimistic: bool
) -> list[Path]:
    """Draw the run's plots as PNG files.

    Args:
        tables: Output of :func:`~au_llm.reports.tables.compute_tables`.
        out_dir: Folder for the files (created when missing).
        dataset: Test dataset name; when it is CASME II or SAMM, AU-LLM's published average (its
            own "macro" convention) is drawn as a reference line on the "macro" F1 panel.
        optimistic: Thresholds were tuned on test labels; every title says so.

    Returns:
        ``[out_dir/f1_per_au.png, out_dir/f1_fold_heatmap.png]``: per-AU bars of binary and
        "macro" F1 next to the always-positive baseline, and a fold x AU binary F1 heatmap.
    """
    out_dir = Path(out_dir)
    return [
        _plot_f1_bars(tables, out_dir / F1_PER_AU, dataset, optimistic),
        _plot_fold_heatmap(tables, out_dir / F1_FOLD_HEATMAP, dataset, optimistic),
    ]
