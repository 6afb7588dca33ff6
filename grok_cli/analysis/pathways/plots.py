"""pathways.png: one panel per metric and one for accuracy, against checkpoint, one line per
group; groups too small for their mean to say anything are drawn thin and grey.
pathways_groups.png: a row per data group (and all), each metric beside that group's own
accuracy, so whether a metric tracks a group's generalization is read off one panel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from grok_cli.analysis.pathways.aggregate import MEMORIZED, series
from grok_cli.io import atomic_write

# Below this many samples a group's D_path rests on a handful of pairs: grey, not coloured.
MIN_GROUP_SAMPLES = 20
# The metrics drawn against each group's accuracy in pathways_groups.png, as in the paper.
TRACKED = [("d_path", "d_path_mean"), ("consistency", "consistency_mean"), ("loss", "loss_mean")]
PANELS = [("d_path_mean", "D_path (mean edit distance)"),
          ("consistency_mean", "consistency (mean cos, layers)"),
          ("complexity_mean", "complexity"),
          ("loss_mean", "training loss (mean NLL)")]


def plot_pathways(path: Path, rows: list[dict[str, Any]], names: list[str],
                  steps: list[int] | None, accuracy_label: str, title: str) -> None:
    """steps: the training step of each checkpoint when known (a grok run), else None."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and clusters
    import matplotlib.pyplot as plt

    with plt.rc_context({"font.size": 11, "axes.titlesize": 12, "legend.fontsize": 10}):
        fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
        panels = [*PANELS, ("accuracy", accuracy_label)]
        x = steps if steps is not None else list(range(len(names)))
        cells = list(axes.flat)
        _draw_groups(cells, panels, rows, names, x)
        for ax, (_, label) in zip(cells, panels, strict=False):
            _axis(ax, label, names, steps)
        _legend(cells[-1], cells[0])
        fig.suptitle(title)
        fig.tight_layout()
        with atomic_write(path, "wb") as handle:
            fig.savefig(handle, format="png", dpi=110)
        plt.close(fig)


def plot_group_tracks(path: Path, rows: list[dict[str, Any]], names: list[str],
                      correlations: list[dict[str, Any]], steps: list[int] | None,
                      accuracy_label: str, title: str) -> None:
    """A row per data group (memorization groups left out): D_path, consistency and training
    loss against checkpoint, each with the group's accuracy on a second axis and the Pearson
    r between the two in the panel's title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    by_group = {g: s for g, s in series(rows).items() if not g.startswith(MEMORIZED)}
    pearson = {(c["group"], c["metric"]): c["pearson"] for c in correlations}
    x = steps if steps is not None else list(range(len(names)))
    with plt.rc_context({"font.size": 10, "axes.titlesize": 11}):
        fig, axes = plt.subplots(len(by_group), len(TRACKED), squeeze=False,
                                 figsize=(4.6 * len(TRACKED), 2.8 * len(by_group)))
        for row_axes, (group, group_series) in zip(axes, by_group.items(), strict=True):
            points = [x[names.index(r["checkpoint"])] for r in group_series]
            accuracy = [r["accuracy"] for r in group_series]
            for ax, (metric, column) in zip(row_axes, TRACKED, strict=True):
                ax.plot(points, [r[column] for r in group_series], "o-", color="C0", ms=3)
                ax.set_ylabel(metric, color="C0")
                if metric == "loss":  # from ~log(vocab) at init to ~0: only a log axis shows both
                    ax.set_yscale("log")
                twin = ax.twinx()
                twin.plot(points, accuracy, "--", color="0.2", lw=1.2)
                twin.set_ylabel(accuracy_label.split(" (")[0], color="0.2")
                r = pearson.get((group, metric), float("nan"))
                ax.set_title(f"{group}: {metric} (Pearson r = {r:+.2f})")
                _axis_x(ax, names, steps)
                ax.grid(alpha=0.3)
        fig.suptitle(title)
        fig.tight_layout()
        with atomic_write(path, "wb") as handle:
            fig.savefig(handle, format="png", dpi=100)
        plt.close(fig)


def _draw_groups(axes: list[Any], panels: list[tuple[str, str]], rows: list[dict[str, Any]],
                 names: list[str], x: list[int]) -> None:
    groups = list(dict.fromkeys(row["group"] for row in rows))
    colours = iter(f"C{i % 10}" for i in range(len(groups)))
    small_labelled = False
    for group in groups:
        series = [row for row in rows if row["group"] == group]
        points = [x[names.index(r["checkpoint"])] for r in series]
        n = series[0]["n_samples"]
        if n >= MIN_GROUP_SAMPLES or group == "all":  # all: the whole data, always shown
            style = {"color": next(colours), "marker": "o", "lw": 2, "label": f"{group} (n={n})"}
        else:
            label = None if small_labelled else f"groups with < {MIN_GROUP_SAMPLES} samples"
            style = {"color": "0.7", "lw": 1, "label": label, "zorder": 0}
            small_labelled = True
        for ax, (column, _) in zip(axes, panels, strict=False):
            ax.plot(points, [r[column] for r in series], **style)


def _axis(ax: Any, label: str, names: list[str], steps: list[int] | None) -> None:
    ax.set_ylabel(label)
    ax.set_title(label.split(" (")[0])
    ax.grid(alpha=0.3)
    _axis_x(ax, names, steps)


def _axis_x(ax: Any, names: list[str], steps: list[int] | None) -> None:
    if steps is not None:
        ax.set_xlabel("training step")
    else:
        ax.set_xlabel("checkpoint")
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=9)


def _legend(legend_ax: Any, source_ax: Any) -> None:
    """The sixth cell holds the legend: it would cover the curves inside any panel."""
    legend_ax.axis("off")
    entries = list(zip(*source_ax.get_legend_handles_labels(), strict=True))
    entries.sort(key=lambda entry: entry[1].startswith("groups with <"))  # grey entry last
    handles, labels = zip(*entries, strict=True)
    legend_ax.legend(handles, labels, loc="center", title="group (samples)", frameon=False)
