"""`optimizer=adam`: Adam; its weight_decay is an L2 penalty in the gradient, not decoupled."""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig

from grok_cli.training.optim import fused


def build_adam(cfg: DictConfig, params: list[torch.Tensor], **common: Any
               ) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, betas=tuple(cfg.betas), eps=cfg.eps, **fused(params, common))
