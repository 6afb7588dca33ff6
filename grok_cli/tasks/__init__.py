"""Tasks turn a config into tensors on the device: a train and a test split, already pruned.

`task=modadd` lives in modadd.py, `task=modmix` (several ops, a data group each) in
modmix.py, `task=s5` in s5.py; imdb, yelp and natural_instructions
share the text classification loader in text.py; mnist and digits (pixels, not tokens) are
in images.py. Each registers a builder
`build(cfg, device) -> TaskData` in TASKS.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from omegaconf import DictConfig

from grok_cli.errors import check_choice
from grok_cli.tasks.base import Split, TaskData
from grok_cli.tasks.images import build_digits, build_mnist
from grok_cli.tasks.modadd import build_modadd
from grok_cli.tasks.modmix import build_modmix
from grok_cli.tasks.s5 import build_s5
from grok_cli.tasks.text import build_text

TASKS: dict[str, Callable[[DictConfig, torch.device], TaskData]] = {
    "modadd": build_modadd,
    "modmix": build_modmix,
    "s5": build_s5,
    "imdb": build_text,
    "yelp": build_text,
    "natural_instructions": build_text,
    "mnist": build_mnist,
    "digits": build_digits,
}


def build_task(cfg: DictConfig, device: torch.device | str = "cpu") -> TaskData:
    """Build the task of a run config (top-level cfg with `task`, `data_fraction`, ...)."""
    check_choice("task.name", cfg.task.name, TASKS)
    return TASKS[cfg.task.name](cfg, torch.device(device))


__all__ = ["Split", "TaskData", "TASKS", "build_task"]
