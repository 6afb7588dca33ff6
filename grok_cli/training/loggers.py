"""Experiment trackers fed one row per evaluation (metrics.csv itself is always written).

`logger` config group: csv (nothing extra), tensorboard, wandb. Loggers are closed even when
a run fails.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from omegaconf import DictConfig


class Logger(Protocol):
    def log(self, row: dict[str, float]) -> None: ...

    def close(self) -> None: ...


def build_loggers(cfg: DictConfig, run_dir: Path) -> list[Logger]:
    """The trackers named by `cfg.logger` (none for the csv-only default)."""
    return []
