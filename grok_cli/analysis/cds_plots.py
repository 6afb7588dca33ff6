"""Plots of `grok cds`: step-wise analysis (Figure 1B/1C), accuracy curves, accuracy map (4A)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; servers and clusters have no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm, Normalize  # noqa: E402

from grok_cli.analysis.cds import (  # noqa: E402
    Params,
    by_setting,
    smooth_curve,
    threshold_column,
)


def write_all(
    out: Path,
    curves: list[tuple[dict[str, Any], dict[str, np.ndarray]]],
    size_rows: list[dict[str, Any]],
    params: Params,
    label: Callable[[Any], str],
) -> list[str]:
    """Write every cds plot into `out`; returns the file names."""
    files = []
    settings = by_setting(size_rows)
    for key, rows in settings.items():
        name = "cds_steps.png" if len(settings) == 1 else f"cds_steps_{_slug(label(key))}.png"
        plot_step_wise(out / name, rows, params, label(key))
        files.append(name)
    plot_curves(out / "cds_curves.png", curves, params.smooth_sigma)
    files.append("cds_curves.png")
    if len(settings) > 1 and plot_accuracy_map(out / "cds_accuracy_map.png", size_rows, params):
        files.append("cds_accuracy_map.png")
    return files


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def plot_step_wise(path: Path, rows: list[dict[str, Any]], params: Params, title: str) -> None:
    """Steps to reach each accuracy threshold against data size, test and train (Fig. 1B/1C)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = plt.cm.viridis(np.linspace(0.1, 0.9, len(params.thresholds)))
    sizes = np.array([r["data_size"] for r in rows], dtype=float)
    for ax, split in zip(axes, ("test", "train"), strict=True):
        for t, color in zip(params.thresholds, colors, strict=True):
            means = [r[f"{threshold_column(split, t)}_mean"] for r in rows]
            ys = np.array([np.nan if m is None else m for m in means], dtype=float)
            ax.plot(sizes, ys, "o-", color=color, label=f"acc ≥ {t:g}", markersize=4)
        ax.set_xlabel("data size (training samples)")
        ax.set_ylabel("first step reaching accuracy")
        ax.set_title(f"{split} accuracy")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle(f"step-wise analysis: {title}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_curves(
    path: Path, curves: list[tuple[dict[str, Any], dict[str, np.ndarray]]], sigma: float
) -> None:
    """Train and test accuracy of every run against step (log axis), colored by data size."""
    sizes = [row["data_size"] for row, _ in curves]
    low, high = min(sizes), max(sizes)
    norm = LogNorm(low, high) if low > 0 and high > low else Normalize(low - 1, high + 1)
    cmap = plt.cm.viridis
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for row, metrics in curves:
        for ax, column in zip(axes, ("train_acc", "test_acc"), strict=True):
            keep = np.isfinite(metrics[column]) & (metrics["step"] > 0)  # log axis: no step 0
            steps = metrics["step"][keep]
            ax.plot(steps, smooth_curve(steps, metrics[column][keep], sigma),
                    color=cmap(norm(row["data_size"])), linewidth=0.9, alpha=0.8)
    for ax, name in zip(axes, ("train", "test"), strict=True):
        ax.set_xscale("log")
        ax.set_xlabel("step")
        ax.set_title(f"{name} accuracy" + (f" (smoothed, σ={sigma:g} steps)" if sigma else ""))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes, label="data size")
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_accuracy_map(path: Path, size_rows: list[dict[str, Any]], params: Params) -> bool:
    """Converged test accuracy over model size x data fraction, with the epsilon contour (4A).

    Returns False (no file) when the sweep holds fewer than two model sizes.
    """
    vary_hidden = len({r["hidden_size"] for r in size_rows}) > 1
    model_axis = "hidden_size" if vary_hidden else "num_layers"
    use_fraction = all(r["data_fraction"] is not None for r in size_rows)
    data_axis = "data_fraction" if use_fraction else "data_size"
    ys = sorted({r[model_axis] for r in size_rows}, key=lambda v: (v is None, v))
    xs = sorted({r[data_axis] for r in size_rows})
    if len(ys) < 2:
        return False
    grid = np.full((len(ys), len(xs)), np.nan)
    for r in size_rows:
        if r["converged_test_acc_mean"] is not None:
            grid[ys.index(r[model_axis]), xs.index(r[data_axis])] = r["converged_test_acc_mean"]
    fig, ax = plt.subplots(figsize=(7, 5))
    image = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis", vmin=0, vmax=1)
    finite = grid[np.isfinite(grid)]
    if len(xs) > 1 and finite.size and finite.min() < params.epsilon < finite.max():
        contour = ax.contour(grid, levels=[params.epsilon], colors="white", linewidths=1.5)
        ax.clabel(contour, fmt=f"ε={params.epsilon:g}", fontsize=8)
    ax.set_xticks(range(len(xs)), [f"{x:g}" for x in xs], rotation=45)
    ax.set_yticks(range(len(ys)), [str(y) for y in ys])
    ax.set_xlabel(data_axis.replace("_", " "))
    ax.set_ylabel(model_axis.replace("_", " "))
    ax.set_title("converged test accuracy")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
