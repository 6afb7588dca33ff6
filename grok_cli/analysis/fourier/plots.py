"""Plots of `grok fourier`: progress measures against step, and the embeddings' spectra."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; servers and clusters have no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from grok_cli.analysis.output import write_png as save  # noqa: E402

PHASES = (("memorization_step", "memorized", "tab:gray"),
          ("generalization_step", "generalized", "tab:green"))


def write_plots(out: Path, report: dict[str, Any]) -> list[str]:
    """fourier_progress.png and fourier_spectrum.png of one run; in a sweep each run's go
    into a subfolder named like the run. Returns their paths relative to `out`."""
    folder = out if report["run"] == "." else out / report["run"]
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for name, plot in (("fourier_progress.png", plot_progress),
                       ("fourier_spectrum.png", plot_spectrum)):
        plot(report, folder / name)
        names.append(str((folder / name).relative_to(out)))
    return names


def plot_progress(report: dict[str, Any], path: Path) -> None:
    rows = report["rows"]
    steps = [max(row["step"], 1) for row in rows]  # step 0 sits at 1 on the log axis
    fig, (loss_ax, gini_ax, norm_ax) = plt.subplots(1, 3, figsize=(15, 4.2))
    for key, label, color in (("train_loss", "train", "tab:blue"),
                              ("test_loss", "test", "tab:red"),
                              ("restricted_loss", "restricted", "tab:purple"),
                              ("excluded_loss", "excluded (train)", "tab:orange")):
        loss_ax.plot(steps, [row[key] for row in rows], color=color, label=label)
    loss_ax.axhline(report["chance_loss"], color="k", lw=0.8, ls=":", label="chance (log p)")
    loss_ax.set(yscale="log", ylabel="loss")
    for key, label in (("gini_W_E", "Gini of W_E spectrum"), ("gini_W_U", "Gini of W_U spectrum"),
                       ("key_share", "neuron variance on key freqs")):
        gini_ax.plot(steps, [row[key] for row in rows], label=label)
    gini_ax.set(ylim=(-0.02, 1.02), ylabel="share / Gini")
    norm_ax.plot(steps, [row["sum_sq_weights"] for row in rows], color="tab:brown")
    norm_ax.set(ylabel="sum of squared weights")
    for ax in (loss_ax, gini_ax, norm_ax):
        for key, label, color in PHASES:
            if report.get(key) is not None:
                ax.axvline(max(report[key], 1), color=color, lw=1, ls="--", label=label)
        ax.set(xscale="log", xlabel="step")
        ax.grid(alpha=0.3)
    loss_ax.legend(fontsize=8)
    gini_ax.legend(fontsize=8)
    fig.suptitle(f"{report['path']}  (key frequencies {report['key_frequencies']})", fontsize=9)
    fig.tight_layout()
    save(fig, path)


def plot_spectrum(report: dict[str, Any], path: Path) -> None:
    spectra = report["spectra"]
    first, last = 0, len(spectra["steps"]) - 1
    fig, axes = plt.subplots(1, 2, figsize=(13, 4), sharex=True)
    freqs = np.arange(1, len(spectra["W_E"][0]) + 1)
    for ax, name in zip(axes, ("W_E", "W_U"), strict=True):
        # The last snapshot wide behind, the first narrow in front: both stay visible.
        for index, color, width in ((last, "tab:blue", 0.9), (first, "tab:gray", 0.4)):
            ax.bar(freqs, spectra[name][index], width=width, color=color, alpha=0.8,
                   label=f"step {spectra['steps'][index]}")
        for k in report["key_frequencies"]:
            ax.axvline(k, color="tab:red", lw=0.6, ls=":")
        ax.set(xlabel="frequency k", ylabel=f"norm of {name} along k",
               title=f"{name}: Fourier spectrum (dotted: key frequencies)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(report["path"], fontsize=9)
    fig.tight_layout()
    save(fig, path)
