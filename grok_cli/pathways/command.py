"""`grok pathways`: pathway metrics of MoE checkpoints on training samples, and correlations.

Flow: resolve checkpoints -> check they share one architecture -> read samples -> one batched
forward pass per checkpoint (router probabilities + per-sample loss) -> memorization step of
each sample -> group metrics per checkpoint -> correlation with accuracy -> csv/json/png.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from grok_cli.errors import GrokError, check, check_choice, report_user_errors
from grok_cli.pathways import metrics
from grok_cli.pathways.routing import (
    DTYPES,
    LOSS_TOKENS,
    Checkpoint,
    architecture,
    capture,
    load_config,
    load_model,
    load_tokenizer,
    num_experts,
)

log = logging.getLogger(__name__)

ALL = "all"
METRICS = {"d_path": "d_path_mean", "consistency": "consistency_mean",
           "complexity": "complexity_mean", "loss": "loss_mean", "loss_ma": "loss_ma"}
SAMPLE_COLUMNS = ["checkpoint", "sample_id", "group", "memorized_at", "loss", "pathway",
                  "consistency", "complexity"]


@dataclass
class Samples:
    ids: list[str]
    groups: list[str]  # "" when the data has no group column
    sequences: list[torch.Tensor]
    loss_tokens: str


@dataclass
class CheckpointResult:
    pathways: list[metrics.Pathway]
    loss: np.ndarray
    consistency: np.ndarray
    complexity: np.ndarray


# ---- config ----

def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate(cfg: DictConfig) -> None:
    sources = [bool(cfg.moe.checkpoints), cfg.moe.model is not None, cfg.moe.from_run is not None]
    check(sum(sources) == 1, "moe", "checkpoints/model/from_run",
          "exactly one of moe.checkpoints=[dir,...], moe.model=ID with moe.revisions=[...], "
          "moe.from_run=RUN_DIR")
    if cfg.moe.model is not None:
        check(len(cfg.moe.revisions) > 0, "moe.revisions", list(cfg.moe.revisions),
              "a non-empty list of hub revisions of moe.model, in training order")
    check(cfg.moe.torch_dtype is None or cfg.moe.torch_dtype in DTYPES, "moe.torch_dtype",
          cfg.moe.torch_dtype, "null, " + ", ".join(DTYPES))
    check(_is_int(cfg.moe.batch_size) and cfg.moe.batch_size > 0, "moe.batch_size",
          cfg.moe.batch_size, "a positive integer")
    check(_is_int(cfg.data.max_length) and cfg.data.max_length > 1, "data.max_length",
          cfg.data.max_length, "an integer >= 2")
    check(cfg.data.limit is None or (_is_int(cfg.data.limit) and cfg.data.limit > 0),
          "data.limit", cfg.data.limit, "null or a positive integer")
    check_choice("data.loss_tokens", cfg.data.loss_tokens, ("auto", *LOSS_TOKENS))
    check(isinstance(cfg.pathway.threshold, int | float) and 0 < cfg.pathway.threshold <= 1,
          "pathway.threshold", cfg.pathway.threshold, "a cumulative weight in (0, 1]")
    check_choice("pathway.unit", cfg.pathway.unit, metrics.UNITS)
    check(cfg.pathway.max_pairs is None or (_is_int(cfg.pathway.max_pairs)
                                            and cfg.pathway.max_pairs > 0),
          "pathway.max_pairs", cfg.pathway.max_pairs, "null (all pairs) or a positive integer")
    for key in ("epsilon", "delta"):
        value = cfg.memorization[key]
        check(isinstance(value, int | float) and value >= 0, f"memorization.{key}", value,
              "a loss value >= 0")
    check(_is_int(cfg.loss_window) and cfg.loss_window > 0, "loss_window", cfg.loss_window,
          "a positive integer")


def pick_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


# ---- checkpoints ----

def local_checkpoints(folders: list[str]) -> list[Checkpoint]:
    checkpoints = []
    for folder in folders:
        path = Path(folder)
        check(path.is_dir(), "moe.checkpoints", folder, "existing save_pretrained folders")
        checkpoints.append(Checkpoint(name=path.name, source=str(path),
                                      aliases={path.name, folder, str(path.resolve())}))
    names = [c.name for c in checkpoints]
    if len(set(names)) < len(names):  # same folder names in different places: use paths
        for checkpoint in checkpoints:
            checkpoint.name = checkpoint.source
    return checkpoints


def hub_checkpoints(model: str, revisions: list[str]) -> list[Checkpoint]:
    return [Checkpoint(name=rev, source=model, revision=rev, aliases={rev, f"{model}@{rev}"})
            for rev in revisions]


def run_checkpoints(run_dir: Path) -> tuple[list[Checkpoint], dict[str, float]]:
    """The step_<N> folders of a `grok run`, by N, and the run's test accuracy at each N."""
    found = []
    for path in (run_dir / "checkpoints").glob("step_*"):
        match = re.fullmatch(r"step_(\d+)", path.name)
        if match and path.is_dir():
            found.append((int(match.group(1)), path))
    check(bool(found), "moe.from_run", str(run_dir),
          "a grok run folder with checkpoints/step_<N>/ save_pretrained folders")
    found.sort()
    checkpoints = [Checkpoint(name=path.name, source=str(path),
                              aliases={path.name, str(step), str(path)}) for step, path in found]
    test_acc = read_run_accuracy(run_dir / "metrics.csv")
    accuracy = {path.name: test_acc.get(step, math.nan) for step, path in found}
    return checkpoints, accuracy


def read_run_accuracy(path: Path) -> dict[int, float]:
    if not path.is_file():
        return {}
    with path.open(newline="") as handle:
        return {int(float(row["step"])): float(row["test_acc"]) for row in csv.DictReader(handle)
                if row.get("step") and row.get("test_acc") not in (None, "")}


def check_architectures(checkpoints: list[Checkpoint]) -> Any:
    """All checkpoints must be MoE models of one architecture; returns the first config."""
    configs = [load_config(c) for c in checkpoints]
    for checkpoint, config in zip(checkpoints, configs, strict=True):
        if num_experts(config) is None:
            raise GrokError(f"{checkpoint.describe()} is a {config.model_type} model without MoE "
                            "layers (no num_experts in its config); pathways need an MoE model "
                            "such as OLMoE, Mixtral or Qwen-MoE")
    first = architecture(configs[0])
    for checkpoint, config in zip(checkpoints[1:], configs[1:], strict=True):
        if architecture(config) != first:
            keys = "(model_type, layers, experts, hidden)"
            raise GrokError(f"checkpoints differ in architecture {keys}: "
                            f"{checkpoints[0].describe()} is {first}, "
                            f"{checkpoint.describe()} is {architecture(config)}; "
                            "pass checkpoints of one model")
    return configs[0]


# ---- samples ----

def read_records(path: Path) -> list[dict[str, Any]]:
    check(path.is_file(), "data.path", str(path), "an existing .jsonl or .parquet file")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    check(path.suffix in (".jsonl", ".json"), "data.path", str(path), "a .jsonl or .parquet file")
    records = []
    with path.open() as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise GrokError(f"data.path={str(path)!r}: line {number} is not JSON "
                                    f"({err.msg})") from err
    return records


def samples_from_file(cfg: DictConfig, first: Checkpoint, loss_tokens: str) -> Samples:
    path = Path(cfg.data.path)
    records = read_records(path)[: cfg.data.limit]
    check(bool(records), "data.path", str(path), "a file with at least one sample")
    columns = set(records[0])
    if "input_ids" not in columns and "text" not in columns:
        raise GrokError(f"data.path={str(path)!r} has neither a `text` nor an `input_ids` "
                        f"column (found: {', '.join(sorted(columns)) or 'none'})")
    if "input_ids" in columns:
        sequences = [torch.tensor(r["input_ids"][: cfg.data.max_length], dtype=torch.long)
                     for r in records]
    else:
        source = cfg.moe.tokenizer or first.source
        tokenizer = load_tokenizer(source, None if cfg.moe.tokenizer else first.revision)
        sequences = [torch.tensor(tokenizer(r["text"], truncation=True,
                                            max_length=cfg.data.max_length)["input_ids"],
                                  dtype=torch.long) for r in records]
    for number, sequence in enumerate(sequences):
        check(len(sequence) > 0, "data.path", str(path), f"non-empty samples (row {number})")
    ids = [str(r.get("id", number)) for number, r in enumerate(records)]
    groups = [str(r.get("group") or "") for r in records]
    return Samples(ids, groups, sequences, loss_tokens)


def samples_from_run(run_dir: Path, cfg: DictConfig, loss_tokens: str) -> Samples:
    """The run's training sequences (prompt + answer), rebuilt from its saved config."""
    config_path = run_dir / ".hydra" / "config.yaml"
    check(config_path.is_file(), "moe.from_run", str(run_dir),
          "a grok run folder with .hydra/config.yaml (or give data.path=...)")
    from grok_cli.tasks import build_task

    task = build_task(OmegaConf.load(config_path), "cpu")
    full = torch.cat([task.train.x, task.train.y[:, None]], 1)[: cfg.data.limit]
    full = full[:, -cfg.data.max_length:]
    return Samples([str(i) for i in range(len(full))], [""] * len(full), list(full), loss_tokens)


def load_samples(cfg: DictConfig, first: Checkpoint) -> Samples:
    from_run = cfg.moe.from_run is not None
    loss_tokens = cfg.data.loss_tokens
    if loss_tokens == "auto":  # a grok run's loss is on the answer token only
        loss_tokens = "last" if from_run and cfg.data.path is None else "all"
    if cfg.data.path is not None:
        return samples_from_file(cfg, first, loss_tokens)
    check(from_run, "data.path", None, "a .jsonl or .parquet file of samples")
    return samples_from_run(Path(cfg.moe.from_run), cfg, loss_tokens)


# ---- accuracy ----

def read_accuracy(path: Path, checkpoints: list[Checkpoint]) -> dict[str, dict[str, float]]:
    """{group: {checkpoint name: accuracy}} from `checkpoint,accuracy[,group]` ("" = any group)."""
    check(path.is_file(), "accuracy", str(path), "an existing csv file")
    by_alias = {alias: c.name for c in checkpoints for alias in c.aliases | {c.name}}
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        fields = set(reader.fieldnames or [])
        check({"checkpoint", "accuracy"} <= fields, "accuracy", str(path),
              "a csv with columns checkpoint,accuracy[,group]")
        table: dict[str, dict[str, float]] = {}
        for row in reader:
            name = by_alias.get(row["checkpoint"]) or by_alias.get(
                str(Path(row["checkpoint"]).resolve()))
            if name is None:
                known = ", ".join(c.name for c in checkpoints)
                raise GrokError(f"accuracy={str(path)!r}: checkpoint {row['checkpoint']!r} is "
                                f"none of the checkpoints analysed ({known})")
            try:
                value = float(row["accuracy"])
            except ValueError as err:
                raise GrokError(f"accuracy={str(path)!r}: accuracy {row['accuracy']!r} of "
                                f"{row['checkpoint']!r} is not a number") from err
            table.setdefault(row.get("group") or "", {})[name] = value
    return table


# ---- analysis ----

def analyse_checkpoint(cfg: DictConfig, checkpoint: Checkpoint, samples: Samples,
                       device: str) -> CheckpointResult:
    model = load_model(checkpoint, cfg.moe.torch_dtype, cfg.moe.device_map, device)
    routing = capture(model, samples.sequences, cfg.moe.batch_size, samples.loss_tokens)
    del model
    consistency, complexity = metrics.routing_smoothness(routing.g, routing.router_weights)
    return CheckpointResult(metrics.sample_pathways(routing.g, cfg.pathway.threshold),
                            routing.loss, consistency, complexity)


def sample_groups(samples: Samples, memorized_at: np.ndarray,
                  names: list[str]) -> dict[str, np.ndarray]:
    """Group name -> sample indices: all, each data group, Pretrain@t* (memorized at t*)."""
    groups = {ALL: np.arange(len(samples.ids))}
    for group in sorted(set(samples.groups) - {""}):
        groups[group] = np.array([i for i, g in enumerate(samples.groups) if g == group])
    for t, name in enumerate(names):
        members = np.nonzero(memorized_at == t)[0]
        if len(members):
            groups[f"Pretrain@{name}"] = members
    return groups


def group_rows(cfg: DictConfig, names: list[str], results: list[CheckpointResult],
               groups: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    rows = []
    for name, result in zip(names, results, strict=True):
        for group, members in groups.items():
            pathways = [result.pathways[i] for i in members]
            distances = metrics.d_path(pathways, cfg.pathway.unit, cfg.pathway.max_pairs,
                                       cfg.pathway.seed)
            rows.append({"checkpoint": name, "group": group, "n_samples": len(members),
                         **{k: distances[k] for k in ("d_path_mean", "d_path_std", "n_pairs")},
                         "consistency_mean": _nanmean(result.consistency[members]),
                         "complexity_mean": _nanmean(result.complexity[members]),
                         "loss_mean": _nanmean(result.loss[members]),
                         **{k: v for k, v in distances.items() if k.startswith("d_path_layer_")}})
    return rows


def _nanmean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else math.nan


def add_accuracy(rows: list[dict[str, Any]], accuracy: dict[str, dict[str, float]],
                 loss_window: int) -> None:
    """Each row gets its group's accuracy (or the group-less one) and the loss moving average."""
    for group in dict.fromkeys(row["group"] for row in rows):
        series = [row for row in rows if row["group"] == group]
        table = accuracy.get(group, accuracy.get("", {}))
        moving = metrics.moving_average(np.array([r["loss_mean"] for r in series]), loss_window)
        for row, loss_ma in zip(series, moving, strict=True):
            row["loss_ma"] = float(loss_ma)
            row["accuracy"] = table.get(row["checkpoint"], math.nan)


def correlation_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for group in dict.fromkeys(row["group"] for row in rows):
        series = [row for row in rows if row["group"] == group]
        accuracy = np.array([r["accuracy"] for r in series], dtype=float)
        if not np.isfinite(accuracy).any():
            continue
        for metric, column in METRICS.items():
            values = np.array([r[column] for r in series], dtype=float)
            pearson, spearman, n = metrics.correlation(values, accuracy)
            out.append({"group": group, "metric": metric, "pearson": pearson,
                        "spearman": spearman, "n": n})
    return out


# ---- outputs ----

def write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


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


def plot(path: Path, rows: list[dict[str, Any]], names: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and clusters
    import matplotlib.pyplot as plt

    panels = ["d_path_mean", "consistency_mean", "complexity_mean", "loss_mean", "accuracy"]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6))
    for group in dict.fromkeys(row["group"] for row in rows):
        series = [row for row in rows if row["group"] == group]
        x = [names.index(r["checkpoint"]) for r in series]
        for ax, column in zip(axes, panels, strict=True):
            ax.plot(x, [r[column] for r in series], marker="o", label=group)
    for ax, column in zip(axes, panels, strict=True):
        ax.set(title=column, xlabel="checkpoint")
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_outputs(out: Path, cfg: DictConfig, names: list[str], samples: Samples,
                  results: list[CheckpointResult], memorized_at: np.ndarray,
                  rows: list[dict[str, Any]], correlations: list[dict[str, Any]]) -> None:
    write_csv(out / "pathways_samples.csv",
              sample_rows(names, results, samples, memorized_at), SAMPLE_COLUMNS)
    layer_columns = [k for k in rows[0] if k.startswith("d_path_layer_")]
    columns = ["checkpoint", "group", "n_samples", "d_path_mean", "d_path_std", "n_pairs",
               "consistency_mean", "complexity_mean", "loss_mean", "loss_ma", "accuracy",
               *layer_columns]
    write_csv(out / "pathways.csv", rows, columns)
    write_csv(out / "correlations.csv", correlations,
              ["group", "metric", "pearson", "spearman", "n"])
    summary = {"settings": OmegaConf.to_container(cfg, resolve=True),
               "checkpoints": names, "n_samples": len(samples.ids),
               "n_memorized": int((memorized_at >= 0).sum()),
               "groups": sorted({row["group"]: row["n_samples"] for row in rows}.items()),
               "loss_tokens": samples.loss_tokens}
    (out / "pathways.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    if cfg.plots:
        plot(out / "pathways.png", rows, names)


def resolve(cfg: DictConfig) -> tuple[list[Checkpoint], dict[str, dict[str, float]]]:
    """The checkpoints to analyse and the accuracy table (the run's own with from_run)."""
    accuracy: dict[str, dict[str, float]] = {}
    if cfg.moe.from_run is not None:
        run_dir = Path(cfg.moe.from_run)
        check(run_dir.is_dir(), "moe.from_run", str(run_dir), "an existing grok run folder")
        checkpoints, run_accuracy = run_checkpoints(run_dir)
        accuracy = {"": run_accuracy}
    elif cfg.moe.model is not None:
        checkpoints = hub_checkpoints(cfg.moe.model, list(cfg.moe.revisions))
    else:
        checkpoints = local_checkpoints([str(c) for c in cfg.moe.checkpoints])
    if cfg.accuracy is not None:  # an explicit file wins over the run's own accuracy
        accuracy = read_accuracy(Path(cfg.accuracy), checkpoints)
    return checkpoints, accuracy


@report_user_errors
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    validate(cfg)
    checkpoints, accuracy = resolve(cfg)
    check_architectures(checkpoints)
    samples = load_samples(cfg, checkpoints[0])
    device = pick_device(cfg.moe.device)
    names = [c.name for c in checkpoints]
    results = []
    for checkpoint in checkpoints:
        log.info("routing %d samples through %s", len(samples.ids), checkpoint.describe())
        results.append(analyse_checkpoint(cfg, checkpoint, samples, device))
    losses = np.stack([r.loss for r in results], axis=1)
    memorized_at = metrics.memorization_index(losses, cfg.memorization.epsilon,
                                              cfg.memorization.delta)
    groups = sample_groups(samples, memorized_at, names)
    rows = group_rows(cfg, names, results, groups)
    add_accuracy(rows, accuracy, cfg.loss_window)
    correlations = correlation_rows(rows)
    out = Path(HydraConfig.get().runtime.output_dir)
    write_outputs(out, cfg, names, samples, results, memorized_at, rows, correlations)
    log.info("%d checkpoints x %d samples (%d memorized), %d groups -> %s", len(names),
             len(samples.ids), int((memorized_at >= 0).sum()), len(groups), out)
