"""The training samples whose pathways are measured: a jsonl/parquet file (`text`, tokenized by
the checkpoint's tokenizer, or `input_ids`), or a `grok run`'s own training sequences."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from grok_cli.analysis.pathways.routing import Checkpoint, load_tokenizer
from grok_cli.errors import GrokError, check


@dataclass
class Samples:
    ids: list[str]
    groups: list[str]  # "" when the data has no group column
    sequences: list[torch.Tensor]
    loss_tokens: str


def load_samples(cfg: DictConfig, first: Checkpoint) -> Samples:
    from_run = cfg.moe.from_run is not None
    loss_tokens = cfg.data.loss_tokens
    if loss_tokens == "auto":  # a grok run's loss is on the answer token only
        loss_tokens = "last" if from_run and cfg.data.path is None else "all"
    if cfg.data.path is not None:
        return samples_from_file(cfg, first, loss_tokens)
    check(from_run, "data.path", None, "a .jsonl or .parquet file of samples")
    return samples_from_run(Path(cfg.moe.from_run), cfg, loss_tokens)


def read_records(path: Path) -> list[dict[str, Any]]:
    check(path.is_file(), "data.path", str(path), "an existing .jsonl or .parquet file")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    check(path.suffix in (".jsonl", ".json"), "data.path", str(path), "a .jsonl or .parquet file")
    with path.open() as handle:
        return [_json_line(path, number, line) for number, line in enumerate(handle, 1)
                if line.strip()]


def _json_line(path: Path, number: int, line: str) -> dict[str, Any]:
    try:
        return json.loads(line)
    except json.JSONDecodeError as err:
        raise GrokError(f"data.path={str(path)!r}: line {number} is not JSON ({err.msg})") from err


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
        sequences = tokenize([r["text"] for r in records], cfg, first)
    for number, sequence in enumerate(sequences):
        check(len(sequence) > 0, "data.path", str(path), f"non-empty samples (row {number})")
    ids = [str(r.get("id", number)) for number, r in enumerate(records)]
    groups = [str(r.get("group") or "") for r in records]
    return Samples(ids, groups, sequences, loss_tokens)


def tokenize(texts: list[str], cfg: DictConfig, first: Checkpoint) -> list[torch.Tensor]:
    """With moe.tokenizer unset, the first checkpoint's own tokenizer (at its revision)."""
    source = cfg.moe.tokenizer or first.source
    tokenizer = load_tokenizer(source, None if cfg.moe.tokenizer else first.revision)
    return [torch.tensor(tokenizer(text, truncation=True, max_length=cfg.data.max_length)
                         ["input_ids"], dtype=torch.long) for text in texts]


def samples_from_run(run_dir: Path, cfg: DictConfig, loss_tokens: str) -> Samples:
    """The run's training sequences (prompt + answer), rebuilt from its saved config, each in
    its data group (task=modmix: the operation)."""
    from grok_cli.runfolder import CONFIG

    config_path = run_dir / CONFIG
    check(config_path.is_file(), "moe.from_run", str(run_dir),
          "a grok run folder with .hydra/config.yaml (or give data.path=...)")
    from grok_cli.runfolder.record import read_record
    from grok_cli.tasks import build_task

    task = build_task(read_record(config_path), "cpu")
    full = torch.cat([task.train.x, task.train.y[:, None]], 1)[: cfg.data.limit]
    full = full[:, -cfg.data.max_length:]
    groups = [""] * len(full)  # a run of several data groups (task=modmix): their names
    if task.group_names is not None:
        groups = [task.group_names[g] for g in task.train.group[: len(full)].tolist()]
    return Samples([str(i) for i in range(len(full))], groups, list(full), loss_tokens)
