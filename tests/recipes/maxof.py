"""`task=maxof`: the largest of `task.length` digits 0..9, as the next token: every sequence."""

from __future__ import annotations

import itertools

import torch
from omegaconf import DictConfig

from grok_cli.errors import check
from grok_cli.tasks.base import Split, TaskData, prune, split_indices


def check_config(task: DictConfig) -> None:
    check(isinstance(task.length, int) and 1 <= task.length <= 4, "task.length", task.length,
          "an integer from 1 to 4")


def title(task: DictConfig) -> str:
    return f"{task.name}: the largest of {task.length} digits"


def build(cfg: DictConfig, device: torch.device) -> TaskData:
    x = torch.tensor(list(itertools.product(range(10), repeat=cfg.task.length)))
    full = Split(x, x.max(1).values)
    train_idx, test_idx = split_indices(len(full), cfg.task.train_split, cfg.task.split_seed)
    train = prune(full.subset(train_idx), cfg.data_fraction, cfg.train_size, cfg.seed)
    return TaskData(train.to(device), full.subset(test_idx).to(device), vocab_size=10,
                    n_classes=10)
