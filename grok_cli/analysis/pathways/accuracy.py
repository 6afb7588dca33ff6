"""The accuracy that the pathway metrics are correlated with, per group and checkpoint: an
`accuracy=FILE` csv, or the test accuracy a `grok run` recorded at each snapshot's step (per
data group too, for a run of several)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from omegaconf import DictConfig

from grok_cli.analysis.pathways.routing import Checkpoint
from grok_cli.errors import GrokError, check
from grok_cli.runfolder import METRICS
from grok_cli.runfolder.metrics import read_metrics

# {group: {checkpoint name: accuracy}}; group "" = the accuracy of every group without its own
Accuracy = dict[str, dict[str, float]]


def load_accuracy(cfg: DictConfig, checkpoints: list[Checkpoint]) -> Accuracy:
    if cfg.accuracy is not None:  # an explicit file wins over the run's own accuracy
        return read_accuracy(Path(cfg.accuracy), checkpoints)
    if cfg.moe.from_run is not None:
        return run_accuracy(Path(cfg.moe.from_run) / METRICS, checkpoints)
    return {}


def accuracy_label(cfg: DictConfig) -> str:
    """What the accuracy is, for plot axes."""
    if cfg.accuracy is not None:
        return f"accuracy ({Path(cfg.accuracy).name})"
    return "test accuracy"


def run_accuracy(path: Path, checkpoints: list[Checkpoint]) -> Accuracy:
    """metrics.csv's accuracy at each snapshot's step: test_acc for "" (every sample) and, for
    a run of several data groups (task=modmix), test_acc/<group> for each group (NaN where no
    row has that step)."""
    rows = read_metrics(path) if path.is_file() else []
    columns = [c for c in (rows[0] if rows else ["test_acc"])
               if c == "test_acc" or c.startswith("test_acc/")]
    by_step = {row["step"]: row for row in rows}
    return {column.removeprefix("test_acc").removeprefix("/"):
            {c.name: by_step[c.step][column] if c.step in by_step else math.nan
             for c in checkpoints} for column in columns}


def read_accuracy(path: Path, checkpoints: list[Checkpoint]) -> Accuracy:
    """{group: {checkpoint name: accuracy}} from `checkpoint,accuracy[,group]` ("" = any group)."""
    check(path.is_file(), "accuracy", str(path), "an existing csv file")
    by_alias = {alias: c.name for c in checkpoints for alias in c.aliases | {c.name}}
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        check({"checkpoint", "accuracy"} <= set(reader.fieldnames or []), "accuracy", str(path),
              "a csv with columns checkpoint,accuracy[,group]")
        table: Accuracy = {}
        for row in reader:
            name = _checkpoint_name(path, row["checkpoint"], by_alias, checkpoints)
            table.setdefault(row.get("group") or "", {})[name] = _number(path, row)
    return table


def _checkpoint_name(path: Path, given: str, by_alias: dict[str, str],
                     checkpoints: list[Checkpoint]) -> str:
    name = by_alias.get(given) or by_alias.get(str(Path(given).resolve()))
    if name is None:
        known = ", ".join(c.name for c in checkpoints)
        raise GrokError(f"accuracy={str(path)!r}: checkpoint {given!r} is none of the "
                        f"checkpoints analysed ({known})")
    return name


def _number(path: Path, row: dict[str, str]) -> float:
    try:
        return float(row["accuracy"])
    except ValueError as err:
        raise GrokError(f"accuracy={str(path)!r}: accuracy {row['accuracy']!r} of "
                        f"{row['checkpoint']!r} is not a number") from err
