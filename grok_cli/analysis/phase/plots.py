"""phase.png of `grok phase`: the x × y grid, each cell coloured by its seeds' majority phase.

Liu et al.'s palette (green comprehension, yellow grokking, purple memorization, black
confusion); undecided is light grey and a tie between phases white. A cell whose seeds
disagree is hatched and labelled agreeing/seeds and the phases its seeds have. An axis whose
values are log-spaced is drawn on a log scale, each cell spanning half-way (in log) to its
neighbours.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; servers and clusters have no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402

from grok_cli.analysis.phase.phases import (  # noqa: E402
    COMPREHENSION,
    CONFUSION,
    GROKKING,
    MEMORIZATION,
    NO_MAJORITY,
    PHASES,
    UNDECIDED,
    Rule,
)
from grok_cli.io import atomic_write  # noqa: E402

COLORS = {  # Liu et al.'s RGB values (grokking-squared's phase-diagram notebooks)
    COMPREHENSION: (160 / 255, 218 / 255, 57 / 255),
    GROKKING: (253 / 255, 231 / 255, 37 / 255),
    MEMORIZATION: (70 / 255, 50 / 255, 126 / 255),
    CONFUSION: (30 / 255, 30 / 255, 30 / 255),
    UNDECIDED: (0.82, 0.82, 0.82),
    NO_MAJORITY: (1.0, 1.0, 1.0),  # labelled "tie" in the legend: no phase has most seeds
}
SHORT = {COMPREHENSION: "comp.", GROKKING: "grok.", MEMORIZATION: "mem.", CONFUSION: "conf.",
         UNDECIDED: "und."}  # the phases a split cell's seeds have, written in it
DARK = {MEMORIZATION, CONFUSION}  # cells whose label is written in white


def is_log_spaced(values: list[float]) -> bool:
    """Positive values spaced more evenly in log than linearly (two values: a ratio >= 10)."""
    v = np.sort(np.asarray(values, dtype=float))
    if len(v) < 2 or v[0] <= 0:
        return False
    if len(v) == 2:
        return bool(v[1] / v[0] >= 10)
    lin, log = np.diff(v), np.diff(np.log(v))
    return bool(np.std(log) / np.mean(log) < np.std(lin) / np.mean(lin))


def edges(values: list[float], log: bool) -> np.ndarray:
    """Cell boundaries: midpoints between neighbours (in log space on a log axis)."""
    v = np.log(values) if log else np.asarray(values, dtype=float)
    if len(v) == 1:
        e = np.array([v[0] - 0.5, v[0] + 0.5])
    else:
        mid = (v[1:] + v[:-1]) / 2
        e = np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])
    return np.exp(e) if log else e


def axis(values: list[Any]) -> tuple[list[Any], np.ndarray | None, bool]:
    """(sorted distinct values, cell edges or None for a categorical axis, log scale?)."""
    distinct = sorted(set(values), key=lambda v: (isinstance(v, str), str(v) if
                                                  isinstance(v, str) else v))
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in distinct):
        return distinct, None, False
    log = is_log_spaced(distinct)
    return distinct, edges(distinct, log), log


def plot_phase(path: Path, grid: list[dict[str, Any]], x_key: str, y_key: str,
               rule: Rule) -> None:
    xs, x_edges, x_log = axis([c["x"] for c in grid])
    ys, y_edges, y_log = axis([c["y"] for c in grid])
    if x_edges is None:
        x_edges = np.arange(len(xs) + 1) - 0.5
    if y_edges is None:
        y_edges = np.arange(len(ys) + 1) - 0.5
    fig, ax = plt.subplots(figsize=(1.2 * len(xs) + 3.5, 0.9 * len(ys) + 2.6))
    for c in grid:
        i, j = xs.index(c["x"]), ys.index(c["y"])
        x0, x1, y0, y1 = x_edges[i], x_edges[i + 1], y_edges[j], y_edges[j + 1]
        split = c["agree"] < c["n"]
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, facecolor=COLORS[c["majority"]],
                               edgecolor="0.5", linewidth=0.5, hatch="//" if split else None))
        if split:
            cx = np.sqrt(x0 * x1) if x_log else (x0 + x1) / 2
            cy = np.sqrt(y0 * y1) if y_log else (y0 + y1) / 2
            seen = sorted(set(c["phases"]), key=PHASES.index)
            ax.text(cx, cy, f"{c['agree']}/{c['n']}\n" + "\n".join(SHORT[p] for p in seen),
                    ha="center", va="center", fontsize=7,
                    color="white" if c["majority"] in DARK else "black",
                    bbox={"boxstyle": "round,pad=0.15", "alpha": 0.6, "linewidth": 0,
                          "facecolor": "0.3" if c["majority"] in DARK else "white"})
    for set_scale, set_lim, set_ticks, set_labels, values, e, log in (
            (ax.set_xscale, ax.set_xlim, ax.set_xticks, ax.set_xticklabels, xs, x_edges, x_log),
            (ax.set_yscale, ax.set_ylim, ax.set_yticks, ax.set_yticklabels, ys, y_edges, y_log)):
        set_scale("log" if log else "linear")
        set_lim(e[0], e[-1])
        numeric = all(isinstance(v, (int, float)) for v in values)
        set_ticks(values if numeric else np.arange(len(values)), minor=False)
        set_labels([f"{v:g}" if numeric else str(v) for v in values])
        (ax.xaxis if set_scale == ax.set_xscale else ax.yaxis).set_minor_locator(
            matplotlib.ticker.NullLocator())
    ax.set(xlabel=x_key + (" (log scale)" if x_log else ""),
           ylabel=y_key + (" (log scale)" if y_log else ""))
    shown = [p for p in COLORS if any(c["majority"] == p for c in grid)]
    handles = [Patch(facecolor=COLORS[p], edgecolor="0.5", label=p) for p in shown]
    if any(c["agree"] < c["n"] for c in grid):
        handles.append(Patch(facecolor="white", edgecolor="0.5", hatch="//",
                             label="seeds disagree (agreeing/seeds, their phases)"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8,
              title="majority over seeds", title_fontsize=8)
    ax.set_title(_wrap(rule.describe()), fontsize=8)
    fig.tight_layout()
    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=90)
    plt.close(fig)


def _wrap(text: str, width: int = 70) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))
