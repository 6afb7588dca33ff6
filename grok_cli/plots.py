"""Run curves (curves.png): train/test accuracy and loss against step, titled with the setting
and with the memorization and generalization steps marked."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

from grok_cli.io import atomic_write

matplotlib.use("Agg")  # no display on servers and clusters
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

SPLIT_COLORS = {"train": "tab:blue", "test": "tab:red"}
GROUP_COLORS = ["tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive"]


def setting_title(cfg: Any, n_train: int | None) -> str:
    """What a reader needs to place the curve: task, data, α, weight decay, seed (model too)."""
    from grok_cli.tasks import title

    task = cfg.task
    what = title(task)  # the task says it (its module's `title`), no guessing from its keys
    if cfg.get("train_size") is not None:
        data = f"train_size {cfg.train_size}"
    else:
        split = f"train_split {task.train_split}, " if "train_split" in task else ""
        data = f"{split}data_fraction {cfg.data_fraction}"
    if n_train is not None:
        data += f" → {n_train:,} train samples"
    return (f"{what}; {data}\nmodel {cfg.model.name}, α = {cfg.alpha}, "
            f"weight decay {cfg.weight_decay}, seed {cfg.seed}")


def plot_curves(rows: list[dict[str, Any]], path: Path, title: str = "",
                marks: dict[str, int | None] | None = None) -> None:
    """`marks`: {label: step} drawn as labelled vertical lines (None: never reached)."""
    steps = [row["step"] for row in rows]
    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(12, 4.6))
    for split, color in SPLIT_COLORS.items():
        acc_ax.plot(steps, [row[f"{split}_acc"] for row in rows], color=color, label=split)
        loss_ax.plot(steps, [row[f"{split}_loss"] for row in rows], color=color, label=split)
    group_columns = [key for key in rows[0] if key.startswith("test_acc/")]  # task=modmix
    for column, color in zip(group_columns, GROUP_COLORS * len(group_columns), strict=False):
        acc_ax.plot(steps, [row[column] for row in rows], color=color, linewidth=0.8,
                    label=column)
    for (label, step), style in zip((marks or {}).items(), ("--", ":"), strict=False):
        if step is not None:
            for ax in (acc_ax, loss_ax):
                ax.axvline(step, color="0.3", linestyle=style, linewidth=1,
                           label=f"{label}: step {step:,}")
    # symlog: linear from 0 to the first evaluation after 0, log above, so step 0 (the
    # untrained model) is drawn where it is instead of being moved to step 1.
    linthresh = next((step for step in steps if step > 0), 1)
    for ax in (acc_ax, loss_ax):
        ax.set_xscale("symlog", linthresh=linthresh, linscale=0.25)
        ax.set_xlim(left=0)
        ax.set_xlabel(f"step (linear up to {linthresh}, log above)")
        ax.grid(alpha=0.3)
    acc_ax.set(ylabel="accuracy", ylim=(-0.02, 1.02))
    loss_ax.set(yscale="log", ylabel="loss (log scale)")
    _loss_ticks(loss_ax, [row[f"{split}_loss"] for row in rows for split in SPLIT_COLORS])
    acc_ax.legend(loc="upper left", fontsize=8)  # empty in a grokking curve
    loss_ax.legend(loc="lower left", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=100)
    plt.close(fig)


def _loss_ticks(ax: Any, losses: list[float]) -> None:
    """Labelled ticks on the log loss axis, written as plain numbers (0.2, 1, 5; 1e-05): at
    1, 2 and 5 per decade over a short range (one decade alone would show a single label),
    at whole decades over a long one."""
    positive = [loss for loss in losses if math.isfinite(loss) and loss > 0]
    decades = math.log10(max(positive) / min(positive)) if positive else 0.0
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if decades < 3
                                          else (1.0,), numticks=30))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
