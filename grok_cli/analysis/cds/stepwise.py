"""Step-wise analysis and critical data size (Zhu et al.), as pure functions of metric arrays.

Per run: the first step at which the (optionally smoothed) train / test accuracy reaches each
threshold of the ladder, the memorization and generalization steps and the converged test
accuracy. Per data size (and model size): statistics over seeds and the regime of the Data
Efficiency Hypothesis. The critical data size is Definition 1: the smallest data size whose mean
converged test accuracy reaches epsilon.

No files here: `command` reads run folders and writes the tables, `plots` draws them; both
import this module, never the other way.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from grok_cli.analysis.output import threshold_column
from grok_cli.runfolder.metrics import converged_accuracy, first_step_reaching
from grok_cli.runfolder.runs import Run

INSUFFICIENCY, SUFFICIENCY, SURPLUS = "insufficiency", "sufficiency", "surplus"
# How cds_by_size.csv averages a step over seeds (reported in cds.json). Averaging only the
# seeds that reached a threshold would make a size where one seed in three generalizes look
# as fast as that lucky seed; counting the others at their last step is a lower bound instead.
STEP_RULE = ("censored mean over seeds: a seed that never reached the accuracy counts at its "
             "last evaluated step (last_step)")

SettingKey = tuple[Any, Any, Any, Any]  # (task, model, hidden_size, num_layers)
Curves = list[tuple[dict[str, Any], dict[str, np.ndarray]]]  # (cds_runs.csv row, metrics)


@dataclass(frozen=True)
class Params:
    """The analysis settings from conf/cds.yaml, validated."""

    thresholds: tuple[float, ...]  # the ladder, sorted; always holds epsilon
    smooth_sigma: float
    epsilon: float
    grok_ratio: float

    @property
    def regime_column(self) -> str:
        """The step the regime and the peak use: test accuracy first >= epsilon."""
        return threshold_column("test", self.epsilon)


# ---------------------------------------------------------------- curves


def smooth_curve(steps: np.ndarray, acc: np.ndarray, sigma_steps: float) -> np.ndarray:
    """Gaussian smoothing with sigma given in training steps (the paper: 100 for modular).

    sigma 0 returns the values untouched (float64), so thresholds compare exactly. The filter
    works on rows, so sigma is divided by the evaluation spacing (the median gap between
    evaluated steps, which also copes with an occasional irregular row).
    """
    acc = np.asarray(acc, dtype=np.float64)
    if sigma_steps <= 0 or len(acc) < 2:
        return acc
    from scipy.ndimage import gaussian_filter1d  # imported here: only needed when smoothing

    spacing = float(np.median(np.diff(steps)))
    if spacing <= 0:
        return acc
    return gaussian_filter1d(acc, sigma_steps / spacing, mode="nearest")


def curve(metrics: dict[str, np.ndarray], column: str, sigma: float
          ) -> tuple[np.ndarray, np.ndarray]:
    """(steps, smoothed accuracy) of one column, rows with a missing value dropped."""
    keep = np.isfinite(metrics[column])
    steps = metrics["step"][keep]
    return steps, smooth_curve(steps, metrics[column][keep], sigma)


# ---------------------------------------------------------------- per run


def analyze_run(run: Run, metrics: dict[str, np.ndarray], params: Params) -> dict[str, Any]:
    """One row of cds_runs.csv.

    memorization_step / generalization_step use the run's own thresholds.memorize /
    thresholds.generalize, as summary.json does (equal to it when smooth_sigma is 0).
    """
    train_steps, train = curve(metrics, "train_acc", params.smooth_sigma)
    test_steps, test = curve(metrics, "test_acc", params.smooth_sigma)
    row: dict[str, Any] = {
        "run_dir": str(run.path),
        "task": run.task_name,
        "model": run.model_name,
        "hidden_size": run.hidden_size,
        "num_layers": run.num_layers,
        "data_size": run.data_size,
        "data_fraction": run.data_fraction,
        "seed": run.seed,
        "last_step": int(metrics["step"][-1]),
    }
    for split, steps, acc in (("train", train_steps, train), ("test", test_steps, test)):
        for t in params.thresholds:
            row[threshold_column(split, t)] = first_step_reaching(steps, acc, t)
    mem = first_step_reaching(train_steps, train, run.memorize_threshold)
    gen = first_step_reaching(test_steps, test, run.generalize_threshold)
    row["memorization_step"] = mem
    row["generalization_step"] = gen
    row["grokking_delay"] = gen - mem if gen is not None and mem is not None else None
    # Raw, not smoothed: the same number summary.json reports.
    row["converged_test_acc"] = converged_accuracy(metrics["test_acc"])
    return row


def step_columns(params: Params) -> list[str]:
    """The per-run step columns that cds_by_size.csv summarizes over seeds."""
    columns = [threshold_column("train", t) for t in params.thresholds]
    columns += [threshold_column("test", t) for t in params.thresholds]
    return columns + ["memorization_step", "generalization_step"]


# ---------------------------------------------------------------- per data size


def setting_key(row: dict[str, Any]) -> SettingKey:
    return (row["task"], row["model"], row["hidden_size"], row["num_layers"])


def setting_label(key: SettingKey) -> str:
    task, model, hidden, layers = key
    return f"{task}/{model}-h{hidden}-l{layers}"


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Exact mean (summed exactly, rounded once: seeds all at 0.9 average to 0.9) and sample
    std; None when there is no value (std needs two)."""
    if not values:
        return None, None
    std = float(statistics.stdev(values)) if len(values) > 1 else None
    return float(statistics.mean(values)), std


def censored_steps(rows: list[dict[str, Any]], column: str) -> list[int]:
    """The column's step for each run, a run that never reached it counted at its last step."""
    return [r["last_step"] if r[column] is None else r[column] for r in rows]


def classify_regime(converged: float | None, gen_step: float, mem_step: float,
                    params: Params) -> str:
    """The regime of the Data Efficiency Hypothesis for one data size.

    insufficiency: mean converged test accuracy below epsilon (memorization only).
    sufficiency: reaches epsilon, but generalizes only grok_ratio x later than it memorized.
    surplus: reaches epsilon about as soon as it memorizes (or without ever memorizing).
    """
    if converged is None or converged < params.epsilon:
        return INSUFFICIENCY
    return SUFFICIENCY if gen_step >= params.grok_ratio * mem_step else SURPLUS


def summarize_size(key: SettingKey, size: int, rows: list[dict[str, Any]], params: Params
                   ) -> dict[str, Any]:
    """One row of cds_by_size.csv: the runs (seeds) of one model setting and data size."""
    task, model, hidden, layers = key
    fractions = [r["data_fraction"] for r in rows if r["data_fraction"] is not None]
    summary: dict[str, Any] = {
        "task": task, "model": model, "hidden_size": hidden, "num_layers": layers,
        "data_size": size,
        "data_fraction": mean_std(fractions)[0],
        "n_runs": len(rows),
    }
    for column in step_columns(params):
        summary[f"{column}_n"] = sum(r[column] is not None for r in rows)
        summary[f"{column}_mean"], summary[f"{column}_std"] = mean_std(
            censored_steps(rows, column))
    summary["converged_test_acc_mean"], summary["converged_test_acc_std"] = mean_std(
        [r["converged_test_acc"] for r in rows if r["converged_test_acc"] is not None])
    summary["regime"] = classify_regime(
        summary["converged_test_acc_mean"],
        summary[f"{params.regime_column}_mean"],
        summary["memorization_step_mean"],
        params,
    )
    return summary


def summarize_sizes(run_rows: list[dict[str, Any]], params: Params) -> list[dict[str, Any]]:
    """Rows of cds_by_size.csv: one per (model setting, data size), sorted."""
    groups: dict[tuple[SettingKey, int], list[dict[str, Any]]] = {}
    for row in run_rows:
        groups.setdefault((setting_key(row), row["data_size"]), []).append(row)
    return [summarize_size(key, size, rows, params)
            for (key, size), rows in sorted(groups.items(), key=lambda kv: _sort_key(kv[0]))]


def _sort_key(group: tuple[SettingKey, int]) -> tuple:
    # None sorts before values; str() keeps mixed types comparable.
    key, size = group
    return tuple((v is not None, v if isinstance(v, (int, float)) else str(v)) for v in key) + (
        size,
    )


def _reaches(row: dict[str, Any], epsilon: float) -> bool:
    converged = row["converged_test_acc_mean"]
    return converged is not None and converged >= epsilon


def critical_data_size(size_rows: list[dict[str, Any]], epsilon: float) -> int | None:
    """Definition 1: the smallest data size whose mean converged test accuracy is >= epsilon."""
    return min((r["data_size"] for r in size_rows if _reaches(r, epsilon)), default=None)


def critical_data_size_stable(size_rows: list[dict[str, Any]], epsilon: float) -> int | None:
    """The smallest data size from which every larger size also reaches epsilon.

    Equal to Definition 1 unless a small size reached epsilon by luck (a seed's fluke) while a
    larger one did not; None when the largest size does not reach it.
    """
    stable = None
    for row in sorted(size_rows, key=lambda r: r["data_size"], reverse=True):
        if not _reaches(row, epsilon):
            break
        stable = row["data_size"]
    return stable


def peak_generalization_size(size_rows: list[dict[str, Any]], params: Params) -> int | None:
    """The data size that generalizes slowest (Figure 1B's peak) among those reaching epsilon,
    by the censored mean step to test accuracy epsilon."""
    candidates = [r for r in size_rows if r["regime"] != INSUFFICIENCY]
    if not candidates:
        return None
    return max(candidates, key=lambda r: r[f"{params.regime_column}_mean"])["data_size"]


def by_setting(size_rows: list[dict[str, Any]]) -> dict[SettingKey, list[dict[str, Any]]]:
    groups: dict[SettingKey, list[dict[str, Any]]] = {}
    for row in size_rows:
        groups.setdefault(setting_key(row), []).append(row)
    return groups


def setting_result(key: SettingKey, rows: list[dict[str, Any]], params: Params) -> dict:
    """What cds.json reports for one model setting."""
    task, model, hidden, layers = key
    return {
        "task": task, "model": model, "hidden_size": hidden, "num_layers": layers,
        "critical_data_size": critical_data_size(rows, params.epsilon),
        "critical_data_size_stable": critical_data_size_stable(rows, params.epsilon),
        "peak_generalization_size": peak_generalization_size(rows, params),
        "regimes": {str(r["data_size"]): r["regime"] for r in rows},
    }

