"""Experiment trackers fed one row per evaluation (metrics.csv itself is always written).

`logger` config group: csv (nothing extra), tensorboard, wandb; its lever (`Loggers`) says
which work for K > 1 members. Loggers are closed even when a run fails.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Protocol

from omegaconf import DictConfig, OmegaConf

from grok_cli.errors import GrokError, check_choice
from grok_cli.training.levers import Lever

LOGGERS = ("csv", "tensorboard", "wandb")


class Logger(Protocol):
    def log(self, row: dict[str, float]) -> None: ...

    def close(self) -> None: ...


class Loggers(Lever):
    """The `logger` group's lever: the trackers each run's log (trainer.RunLog) opens."""

    def __init__(self, node: DictConfig, cfg: DictConfig) -> None:
        super().__init__(node, cfg)
        check_choice("logger", node.name, LOGGERS)
        if node.name == "wandb":
            self.batched = ("csv or tensorboard with launcher=batched (W&B keeps one run per "
                            "process)")


def build_loggers(cfg: DictConfig, run_dir: Path) -> list[Logger]:
    """The trackers named by `cfg.logger` (none for the csv-only default)."""
    logger_cfg = cfg.get("logger")
    if logger_cfg is None:  # a config from before the logger group: csv only
        return []
    check_choice("logger", logger_cfg.name, LOGGERS)
    if logger_cfg.name == "tensorboard":
        return [TensorBoardLogger(run_dir / logger_cfg.subdir)]
    if logger_cfg.name == "wandb":
        return [WandbLogger(logger_cfg, cfg, run_dir)]
    return []


class TensorBoardLogger:
    """Scalars as TensorBoard event files: `tensorboard --logdir <run folder or sweep folder>`."""

    def __init__(self, log_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise GrokError("logger=tensorboard needs the tensorboard package: pip install "
                            "'grok-cli[tracking]' (or pip install tensorboard), or use "
                            "logger=csv") from None
        # A resumed run appends a new event file; TensorBoard merges them by step.
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def log(self, row: dict[str, float]) -> None:
        step = int(row["step"])
        for key, value in row.items():
            if key != "step":
                self.writer.add_scalar(key, value, global_step=step)

    def close(self) -> None:
        self.writer.close()


class WandbLogger:
    """A Weights & Biases run per run folder, offline unless logger.mode=online."""

    def __init__(self, logger_cfg: DictConfig, cfg: DictConfig, run_dir: Path) -> None:
        try:
            import wandb
        except ImportError:
            raise GrokError("logger=wandb needs the wandb package: pip install "
                            "'grok-cli[tracking]' (or pip install wandb), or use logger=csv "
                            "or logger=tensorboard") from None
        check_choice("logger.mode", logger_cfg.mode, ("offline", "online", "disabled"))
        run_dir = run_dir.resolve()
        self.run = wandb.init(
            project=logger_cfg.project,
            entity=logger_cfg.entity,
            name=logger_cfg.run_name or run_dir.name,
            group=logger_cfg.group,
            tags=list(logger_cfg.tags or []),
            mode=logger_cfg.mode,
            dir=str(run_dir),
            config=_plain_config(cfg),
            # One id per run folder: a resumed run continues the same W&B run.
            id=hashlib.sha1(str(run_dir).encode()).hexdigest()[:16],
            resume="allow",
        )

    def log(self, row: dict[str, float]) -> None:
        step = int(row["step"])
        self.run.log({key: value for key, value in row.items() if key != "step"}, step=step)

    def close(self) -> None:
        self.run.finish()


def _plain_config(cfg: DictConfig) -> dict[str, Any]:
    try:
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except Exception:  # ${hydra:...} interpolations resolve only inside a Hydra app
        return OmegaConf.to_container(cfg, resolve=False)  # type: ignore[return-value]
