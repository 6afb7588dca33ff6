"""`optimizer=adamw` (and adamw_fast): AdamW, decoupled weight decay (the top-level key)."""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig

from grok_cli.training.optim import fused


def build_adamw(cfg: DictConfig, params: list[torch.Tensor], **common: Any
                ) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, betas=tuple(cfg.betas), eps=cfg.eps, **fused(params, common))
