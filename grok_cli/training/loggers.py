"""Experiment trackers fed one row per evaluation (metrics.csv itself is always written).

`logger` config group, one lever each (it says whether it works for K > 1 members, and opens
each run folder's trackers): csv (`Csv`: nothing extra), tensorboard (`TensorBoard`), wandb
(`Wandb`). Loggers are closed even when a run fails.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Protocol

from omegaconf import DictConfig, OmegaConf

from grok_cli import registry
from grok_cli.config import check_name
from grok_cli.errors import GrokError, check_choice
from grok_cli.training.levers import Lever


class Logger(Protocol):
    def log(self, row: dict[str, float]) -> None: ...

    def close(self) -> None: ...


class Csv(Lever):
    """logger=csv: metrics.csv only, no tracker."""

    def __init__(self, node: DictConfig, cfg: DictConfig) -> None:
        super().__init__(node, cfg)
        check_name("logger", node)

    def open(self, run_dir: Path) -> list[Logger]:
        """The trackers of one run folder (trainer.RunLog's)."""
        return []


class TensorBoard(Csv):
    """logger=tensorboard: event files in <run folder>/<logger.subdir>."""

    def open(self, run_dir: Path) -> list[Logger]:
        return [TensorBoardLogger(run_dir / self.node.subdir)]


class Wandb(Csv):
    """logger=wandb: a W&B run per run folder."""

    batched = "csv or tensorboard with launcher=batched (W&B keeps one run per process)"

    def open(self, run_dir: Path) -> list[Logger]:
        return [WandbLogger(self.node, self.cfg, run_dir)]


def build_loggers(cfg: DictConfig, run_dir: Path) -> list[Logger]:
    """The trackers the `cfg.logger` choice opens in `run_dir` (none for the csv default)."""
    node = cfg.get("logger")
    if node is None:  # a config from before the logger group: csv only
        return []
    return registry.resolve("logger", registry.target("logger", node))(node, cfg).open(run_dir)


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
