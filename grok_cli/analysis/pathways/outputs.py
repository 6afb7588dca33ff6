"""The files `grok pathways` writes: pathways_samples.csv, pathways.csv, correlations.csv,
pathways.json, pathways.png and pathways_groups.png (each whole or not at all, through
grok_cli.io)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from grok_cli.analysis.output import write_csv, write_json
from grok_cli.analysis.pathways import metrics
from grok_cli.analysis.pathways.aggregate import CheckpointResult, Memorization
from grok_cli.analysis.pathways.plots import plot_group_tracks, plot_pathways
from grok_cli.analysis.pathways.samples import Samples

SAMPLE_COLUMNS = ["checkpoint", "sample_id", "group", "memorized_at", "loss", "pathway",
                  "consistency", "complexity"]
GROUP_COLUMNS = ["checkpoint", "group", "n_samples", "d_path_mean", "d_path_std", "d_path_se",
                 "n_pairs", "consistency_mean", "complexity_mean", "loss_mean", "loss_ma",
                 "accuracy"]
CORRELATION_COLUMNS = ["group", "metric", "pearson", "spearman", "n"]
# A sampled D_path is reported when its standard error is below this share of its mean.
MAX_RELATIVE_SE = 0.005


def sample_rows(names: list[str], results: list[CheckpointResult], samples: Samples,
                memorized_at: np.ndarray) -> list[dict[str, Any]]:
    rows = []
    for name, result in zip(names, results, strict=True):
        for i, sample_id in enumerate(samples.ids):
            t = int(memorized_at[i])
            rows.append({"checkpoint": name, "sample_id": sample_id, "group": samples.groups[i],
                         "memorized_at": names[t] if t >= 0 else "",
                         "loss": result.loss[i],
                         "pathway": metrics.pathway_string(result.pathways[i], "char"),
                         "consistency": result.consistency[i],
                         "complexity": result.complexity[i]})
    return rows


def is_sampled(row: dict[str, Any]) -> bool:
    return row["n_pairs"] < row["n_samples"] * (row["n_samples"] - 1) // 2


def d_path_note(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """How D_path was computed: all pairs, or sampled pairs and their largest relative error."""
    sampled = [r for r in rows if is_sampled(r)]
    if not sampled:
        return {"pairs": "all"}
    worst = max(r["d_path_se"] / r["d_path_mean"] if r["d_path_mean"] else 0.0 for r in sampled)
    return {"pairs": "sampled where a group has more than pathway.max_pairs pairs of distinct "
                     "pathways (d_path_se: standard error of d_path_mean)",
            "sampled_rows": len(sampled), "max_relative_se": worst,
            "within_target": bool(worst < MAX_RELATIVE_SE), "target_relative_se": MAX_RELATIVE_SE}


def summary(cfg: DictConfig, names: list[str], samples: Samples, memorization: Memorization,
            rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"settings": OmegaConf.to_container(cfg, resolve=True),
            "checkpoints": names, "n_samples": len(samples.ids),
            "n_memorized": int((memorization.memorized_at >= 0).sum()),
            "memorization": {"epsilon": memorization.epsilon,
                             "memorized_fraction": memorization.fraction},
            "d_path": d_path_note(rows),
            "groups": sorted({row["group"]: row["n_samples"] for row in rows}.items()),
            "loss_tokens": samples.loss_tokens}


def write_outputs(out: Path, cfg: DictConfig, names: list[str], samples: Samples,
                  results: list[CheckpointResult], memorization: Memorization,
                  rows: list[dict[str, Any]], correlations: list[dict[str, Any]],
                  plot: dict[str, Any]) -> None:
    """plot: the keyword arguments of plot_pathways besides path, rows and names."""
    write_csv(out / "pathways_samples.csv",
              sample_rows(names, results, samples, memorization.memorized_at), SAMPLE_COLUMNS)
    layer_columns = [k for k in rows[0] if k.startswith("d_path_layer_")]
    write_csv(out / "pathways.csv", rows, [*GROUP_COLUMNS, *layer_columns])
    write_csv(out / "correlations.csv", correlations, CORRELATION_COLUMNS)
    write_json(out / "pathways.json", summary(cfg, names, samples, memorization, rows))
    if cfg.plots:
        plot_pathways(out / "pathways.png", rows, names, **plot)
        plot_group_tracks(out / "pathways_groups.png", rows, names, correlations, **plot)
