"""`optimizer=rmsprop`: RMSprop; weight_decay is an L2 penalty in the gradient."""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig


def build_rmsprop(cfg: DictConfig, params: list[torch.Tensor], **common: Any
                  ) -> torch.optim.Optimizer:
    # `smoothing` is torch's `alpha`, renamed: alpha here is the rescale factor.
    return torch.optim.RMSprop(params, alpha=cfg.smoothing, eps=cfg.eps, momentum=cfg.momentum,
                               **common)
