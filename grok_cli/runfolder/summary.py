"""A run folder's summary.json: the run's outcome, written last (docs/design.md, run folder
contract), from its metrics.csv rows and the run's thresholds.

The thresholds are the run's own (`thresholds` in its .hydra/config.yaml); a run recorded
without them (an older version) is read with conf/run.yaml's, the one place they are set.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from grok_cli.errors import GrokError
from grok_cli.io import write_json
from grok_cli.runfolder import SUMMARY
from grok_cli.runfolder.metrics import converged_accuracy, first_step


@functools.cache
def default_thresholds() -> DictConfig:
    """conf/run.yaml's `thresholds` (memorize, generalize): what a run records by default."""
    from grok_cli.config import conf_dir

    return OmegaConf.load(conf_dir() / "run.yaml").thresholds


def group_steps(rows: list[dict[str, Any]], thresholds: Any) -> dict[str, Any] | None:
    """Per data group (the train_acc/<group> columns): its memorization and generalization
    steps by the run's thresholds; None for a task without groups."""
    groups = [key.removeprefix("train_acc/") for key in (rows[0] if rows else ())
              if key.startswith("train_acc/")]
    return {group: {"memorization_step": first_step(rows, f"train_acc/{group}",
                                                    thresholds.memorize),
                    "generalization_step": first_step(rows, f"test_acc/{group}",
                                                      thresholds.generalize)}
            for group in groups} or None


def summarize(rows: list[dict[str, Any]], thresholds: Any, **extra: Any) -> dict[str, Any]:
    """The summary.json fields derived from the metrics rows (docs/design.md)."""
    elapsed = rows[-1]["elapsed_s"] if rows else 0.0
    return {
        "memorization_step": first_step(rows, "train_acc", thresholds.memorize),
        "generalization_step": first_step(rows, "test_acc", thresholds.generalize),
        "groups": group_steps(rows, thresholds),
        "final": rows[-1] if rows else None,
        "best_test_acc": max((row["test_acc"] for row in rows
                              if math.isfinite(row["test_acc"])), default=None),
        "converged_test_acc": (converged_accuracy([r["test_acc"] for r in rows])
                               if rows else None),
        "wall_s": elapsed,
        "steps_per_s": rows[-1]["step"] / elapsed if rows and elapsed > 0 else None,
        **extra,
    }


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    write_json(Path(run_dir) / SUMMARY, summary)


def has_summary(run_dir: Path) -> bool:
    """The folder holds a summary.json, readable or not."""
    return (Path(run_dir) / SUMMARY).exists()


def remove_summary(run_dir: Path) -> None:
    """An earlier summary no longer describes a folder whose training restarts."""
    (Path(run_dir) / SUMMARY).unlink(missing_ok=True)


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """The run's summary.json as a dict; None when the run never wrote one (still running or
    killed); GrokError naming the file when it is not a JSON object."""
    path = Path(run_dir) / SUMMARY
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise GrokError(f"{path} is damaged ({type(err).__name__}: {err})") from None
    if not isinstance(data, dict):
        raise GrokError(f"{path} is damaged (not a JSON object)")
    return data
