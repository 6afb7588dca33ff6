"""Tasks turn a config into tensors on the device: a train and a test split, already pruned.

Each `task=` file names its builder in `_target_` (`build(cfg, device) -> TaskData`, cfg the
whole run config: the task reads data_fraction, train_size, seed and the tokenizer too):
modadd.py, modmix.py (several ops, a data group each) and s5.py share the equation helpers
of equations.py; imdb, yelp and natural_instructions share text.py; mnist and digits (pixels,
not tokens) images.py. The builder's module may also say:
- `check_config(task)`: the group's values, checked before anything is built;
- `title(task) -> str`: how curves.png names the setting (default: the task's name);
- `PADDED = True`: its inputs are padded, each Split carrying an attention mask.
A run imports only its own task's module.
"""

from __future__ import annotations

import sys

import torch
from omegaconf import DictConfig

from grok_cli import registry
from grok_cli.tasks.base import Split, TaskData


def _module(task: DictConfig) -> object:
    return sys.modules[registry.resolve("task", registry.target("task", task)).__module__]


def build_task(cfg: DictConfig, device: torch.device | str = "cpu") -> TaskData:
    """Build the task of a run config (top-level cfg with `task`, `data_fraction`, ...), its
    values checked (again, for callers that did not validate the run config)."""
    registry.check("task", cfg.task)
    return registry.resolve("task", registry.target("task", cfg.task))(cfg, torch.device(device))


def title(task: DictConfig) -> str:
    """The task's own name for its setting (curves.png's title)."""
    said = getattr(_module(task), "title", None)
    return said(task) if said is not None else str(task.name)


def padded(task: DictConfig) -> bool:
    """Whether the task's inputs are padded (a mask that every forward must be given)."""
    return bool(getattr(_module(task), "PADDED", False))


__all__ = ["Split", "TaskData", "build_task", "padded", "title"]
