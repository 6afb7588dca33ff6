"""`optimizer=adagrad`: Adagrad; weight_decay is an L2 penalty in the gradient."""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig


def build(cfg: DictConfig, params: list[torch.Tensor], **common: Any) -> torch.optim.Optimizer:
    return torch.optim.Adagrad(params, eps=cfg.eps, **common)
