"""Plots of `grok cds`: step-wise analysis (Figure 1B/1C), accuracy curves, accuracy map (4A)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; servers and clusters have no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from grok_cli.analysis.cds.stepwise import (  # noqa: E402
    Curves,
    Params,
    SettingKey,
    by_setting,
    curve,
    setting_key,
    setting_label,
)
from grok_cli.analysis.output import threshold_column  # noqa: E402
from grok_cli.analysis.output import write_png as save  # noqa: E402

SEED_STYLES = ("-", "--", ":", "-.")


def write_all(out: Path, curves: Curves, size_rows: list[dict[str, Any]],
              results: dict[SettingKey, dict], params: Params) -> list[str]:
    """Write every cds plot into `out`, one steps and one curves plot per model setting (the
    setting in the name when there are several); returns the file names."""
    files = []
    settings = by_setting(size_rows)
    for key, rows in settings.items():
        suffix = "" if len(settings) == 1 else f"_{_slug(setting_label(key))}"
        mine = [(row, metrics) for row, metrics in curves if setting_key(row) == key]
        for name, fig in ((f"cds_steps{suffix}.png",
                           plot_step_wise(rows, results[key], params, key)),
                          (f"cds_curves{suffix}.png", plot_curves(mine, params, key))):
            save(fig, out / name)
            files.append(name)
    if len(settings) > 1:
        fig = plot_accuracy_map(size_rows, params)
        if fig is not None:
            save(fig, out / "cds_accuracy_map.png")
            files.append("cds_accuracy_map.png")
    return files


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def _ladder_colors(params: Params) -> np.ndarray:
    return plt.cm.viridis(np.linspace(0.0, 0.9, len(params.thresholds)))


def plot_step_wise(rows: list[dict[str, Any]], result: dict, params: Params,
                   key: SettingKey) -> Figure:
    """Steps to reach each accuracy threshold against data size, test and train (Fig. 1B/1C).

    Points are the censored means over seeds with bars of one std; a hollow point means some
    seed never reached that accuracy (counted at its last step, so the point is a lower bound).
    The critical data size is the dashed line (the stable one dotted, when it differs).
    """
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6))
    sizes = np.array([r["data_size"] for r in rows], dtype=float)
    for ax, split in zip(axes, ("test", "train"), strict=True):
        for t, color in zip(params.thresholds, _ladder_colors(params), strict=True):
            column = threshold_column(split, t)
            mean = np.array([r[f"{column}_mean"] for r in rows], dtype=float)
            std = np.array([r[f"{column}_std"] or 0.0 for r in rows], dtype=float)
            censored = np.array([r[f"{column}_n"] < r["n_runs"] for r in rows])
            ax.errorbar(sizes, mean, yerr=std, color=color, linewidth=1.2, elinewidth=0.8,
                        capsize=3, alpha=0.9,
                        label=f"acc ≥ {t:g}" + (" (ε)" if t == params.epsilon else ""))
            ax.scatter(sizes[~censored], mean[~censored], color=color, s=22, zorder=3)
            ax.scatter(sizes[censored], mean[censored], facecolors="white", edgecolors=color,
                       s=22, zorder=3)
        _mark_critical(ax, result, params.epsilon)
        ax.set(xlabel="data size (training samples)", title=f"{split} accuracy",
               ylabel="first step reaching accuracy\n(mean over seeds ± std)")
        ax.grid(alpha=0.3)
    handles, _ = axes[0].get_legend_handles_labels()
    handles.append(Line2D([], [], marker="o", linestyle="", markerfacecolor="white",
                          markeredgecolor="gray", label="some seed never reached it\n"
                          "(counted at its last step)"))
    fig.legend(handles=handles, fontsize=8, loc="center right")
    fig.suptitle(f"Steps to each accuracy against data size: {setting_label(key)} "
                 f"({sum(r['n_runs'] for r in rows)} runs)")
    fig.tight_layout(rect=(0, 0, 0.8, 1))
    return fig


def _mark_critical(ax: Any, result: dict, epsilon: float) -> None:
    cds, stable = result["critical_data_size"], result["critical_data_size_stable"]
    if cds is not None:
        ax.axvline(cds, color="crimson", linestyle="--", linewidth=1.2,
                   label=f"critical data size {cds} (ε={epsilon:g})")
    if stable is not None and stable != cds:
        ax.axvline(stable, color="crimson", linestyle=":", linewidth=1.2,
                   label=f"stable critical data size {stable}")


def plot_curves(curves: Curves, params: Params, key: SettingKey) -> Figure:
    """Train and test accuracy of every run against step: one colour per data size, one line
    style per seed. Step 0 is kept: the axis is linear up to the first evaluation, log after."""
    sizes = sorted({row["data_size"] for row, _ in curves})
    colors = dict(zip(sizes, plt.cm.viridis(np.linspace(0.0, 0.9, len(sizes))), strict=True))
    seeds = sorted({row["seed"] for row, _ in curves}, key=lambda s: (s is None, s))
    styles = {seed: SEED_STYLES[i % len(SEED_STYLES)] for i, seed in enumerate(seeds)}
    first_eval = min((float(m["step"][m["step"] > 0].min()) for _, m in curves
                      if (m["step"] > 0).any()), default=1.0)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), sharey=True)
    for row, metrics in curves:
        for ax, column in zip(axes, ("train_acc", "test_acc"), strict=True):
            steps, acc = curve(metrics, column, params.smooth_sigma)
            ax.plot(steps, acc, color=colors[row["data_size"]], linestyle=styles[row["seed"]],
                    linewidth=1.1, alpha=0.85)
    axes[1].axhline(params.epsilon, color="gray", linestyle="--", linewidth=0.8)
    axes[1].annotate(f"ε={params.epsilon:g}", (0.01, params.epsilon), xycoords=("axes fraction",
                     "data"), va="bottom", fontsize=8, color="gray")
    smoothed = f", smoothed (σ={params.smooth_sigma:g} steps)" if params.smooth_sigma else ""
    for ax, name in zip(axes, ("train", "test"), strict=True):
        ax.set_xscale("symlog", linthresh=first_eval, linscale=0.3)
        ax.set(xlim=(0, None), ylim=(-0.02, 1.02), xlabel="step", title=f"{name} accuracy")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    sizes_legend = fig.legend(
        handles=[Line2D([], [], color=colors[s], label=str(s)) for s in sizes],
        title="data size", fontsize=8, loc="upper right", bbox_to_anchor=(1.0, 0.9))
    if len(seeds) > 1:
        fig.add_artist(sizes_legend)  # a second fig.legend would replace it otherwise
        fig.legend(handles=[Line2D([], [], color="black", linestyle=styles[s], label=str(s))
                            for s in seeds],
                   title="seed", fontsize=8, loc="lower right", bbox_to_anchor=(1.0, 0.1))
    fig.suptitle(f"Accuracy curves: {setting_label(key)}, {len(curves)} runs{smoothed}")
    fig.tight_layout(rect=(0, 0, 0.88, 1))
    return fig


def plot_accuracy_map(size_rows: list[dict[str, Any]], params: Params) -> Figure | None:
    """Converged test accuracy over model size x data fraction, with the epsilon contour (4A).

    None (no plot) when the sweep holds fewer than two model sizes.
    """
    vary_hidden = len({r["hidden_size"] for r in size_rows}) > 1
    model_axis = "hidden_size" if vary_hidden else "num_layers"
    use_fraction = all(r["data_fraction"] is not None for r in size_rows)
    data_axis = "data_fraction" if use_fraction else "data_size"
    ys = sorted({r[model_axis] for r in size_rows}, key=lambda v: (v is None, v))
    xs = sorted({r[data_axis] for r in size_rows})
    if len(ys) < 2:
        return None
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
    return fig
