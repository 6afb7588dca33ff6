"""From per-sample results to the tables: memorization, groups, per-group metrics per
checkpoint, accuracy and the moving-average loss, and the correlations (the paper's Table 1)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from omegaconf import DictConfig

from grok_cli.analysis.pathways import metrics
from grok_cli.analysis.pathways.accuracy import Accuracy
from grok_cli.analysis.pathways.config import AUTO
from grok_cli.analysis.pathways.samples import Samples

ALL = "all"
MEMORIZED = "Pretrain@"  # prefix of the groups of samples memorized at one checkpoint
METRICS = {"d_path": "d_path_mean", "consistency": "consistency_mean",
           "complexity": "complexity_mean", "loss": "loss_mean", "loss_ma": "loss_ma"}
# The paper picks epsilon per domain so that 20-25% of its samples count as memorized.
AUTO_MEMORIZED = (0.20, 0.25)


@dataclass
class CheckpointResult:
    pathways: list[metrics.Pathway]
    loss: np.ndarray
    consistency: np.ndarray
    complexity: np.ndarray


@dataclass
class Memorization:
    memorized_at: np.ndarray  # per sample: checkpoint index t*, -1 when never
    epsilon: dict[str, float]  # per data group (ALL when the data has no groups)
    fraction: dict[str, float]  # share of the group memorized at the last checkpoint


def members_of(labels: list[str]) -> dict[str, np.ndarray]:
    """Label -> indices of the samples with that label, labels sorted."""
    return {label: np.array([i for i, other in enumerate(labels) if other == label])
            for label in sorted(set(labels))}


def memorize(samples: Samples, losses: np.ndarray, memorization: DictConfig) -> Memorization:
    """Memorization step of every sample; with epsilon=auto, epsilon is chosen per data group.

    losses: (samples, checkpoints) in training order.
    """
    groups = [group or ALL for group in samples.groups]
    members = members_of(groups)
    if memorization.epsilon == AUTO:
        epsilon = {g: metrics.auto_epsilon(losses[m, -1], *AUTO_MEMORIZED)
                   for g, m in members.items()}
    else:
        epsilon = dict.fromkeys(members, float(memorization.epsilon))
    per_sample = np.array([epsilon[g] for g in groups])
    memorized_at = metrics.memorization_index(losses, per_sample, memorization.delta)
    fraction = {g: float(np.mean(memorized_at[m] >= 0)) for g, m in members.items()}
    return Memorization(memorized_at, epsilon, fraction)


def sample_groups(samples: Samples, memorized_at: np.ndarray,
                  names: list[str]) -> dict[str, np.ndarray]:
    """Group name -> sample indices: all, each data group, Pretrain@t* (memorized at t*)."""
    groups = {ALL: np.arange(len(samples.ids))}
    groups.update((g, m) for g, m in members_of(samples.groups).items() if g)
    for t, name in enumerate(names):
        members = np.nonzero(memorized_at == t)[0]
        if len(members):
            groups[f"{MEMORIZED}{name}"] = members
    return groups


def group_rows(cfg: DictConfig, names: list[str], results: list[CheckpointResult],
               groups: dict[str, np.ndarray], workers: int = 1) -> list[dict[str, Any]]:
    """workers: the edit distances' threads (`threads=`)."""
    rows = []
    for name, result in zip(names, results, strict=True):
        for group, members in groups.items():
            distances = metrics.d_path([result.pathways[i] for i in members], cfg.pathway.unit,
                                       cfg.pathway.max_pairs, cfg.pathway.seed, workers)
            rows.append({"checkpoint": name, "group": group, "n_samples": len(members),
                         **distances,
                         "consistency_mean": _nanmean(result.consistency[members]),
                         "complexity_mean": _nanmean(result.complexity[members]),
                         "loss_mean": _nanmean(result.loss[members])})
    return rows


def _nanmean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else math.nan


def series(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Rows by group, each group's rows in checkpoint order."""
    by_group: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_group.setdefault(row["group"], []).append(row)
    return by_group


def add_accuracy(rows: list[dict[str, Any]], accuracy: Accuracy, loss_window: int) -> None:
    """Each row gets its group's accuracy (or the group-less one) and the loss moving average."""
    for group, group_series in series(rows).items():
        table = accuracy.get(group, accuracy.get("", {}))
        moving = metrics.moving_average(np.array([r["loss_mean"] for r in group_series]),
                                        loss_window)
        for row, loss_ma in zip(group_series, moving, strict=True):
            row["loss_ma"] = float(loss_ma)
            row["accuracy"] = table.get(row["checkpoint"], math.nan)


def correlation_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for group, group_series in series(rows).items():
        accuracy = np.array([r["accuracy"] for r in group_series], dtype=float)
        if not np.isfinite(accuracy).any():
            continue
        for metric, column in METRICS.items():
            values = np.array([r[column] for r in group_series], dtype=float)
            pearson, spearman, n = metrics.correlation(values, accuracy)
            out.append({"group": group, "metric": metric, "pearson": pearson,
                        "spearman": spearman, "n": n})
    return out
