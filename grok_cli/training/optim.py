"""Optimizers of the `optimizer` config group (one file each: training/optimizers/), with the
shared linear warmup, cosine decay and ⊥Grad.

The learning rate (nanoGPT's schedule): linear warmup to `lr` over `warmup_steps` (the factor
at 0-based step s is (s + 1) / warmup_steps, so the first update already moves; with
`warmup_from_zero` it is s / warmup_steps, Grokfast's LambdaLR `update / 10`, whose first
update has lr 0 but still feeds Adam's moments and the gradient filter), then, with
`decay_steps` set, a half cosine down to `min_lr` at step `decay_steps`, and `min_lr` after, so
raising `steps` to continue a run keeps a well-defined schedule.

`optimizer.orthogonal=true` wraps the optimizer in pytorch-optimizer's OrthoGrad (Prieto et
al. 2025): before each step every parameter's gradient g loses its component along the weight
w, g_perp = g - (w.g / w.w) w, and is rescaled to g's norm; then the base optimizer steps. The
wrapper's state_dict is the base optimizer's, so checkpoints keep their format.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from grok_cli import registry
from grok_cli.errors import check, is_int, is_number


def check_optimizer(cfg: DictConfig) -> None:
    """The keys every optimizer file shares: lr, betas where it has them, the schedule and
    ⊥Grad; an optimizer's own module may check more (`check_config`)."""
    check(is_number(cfg.lr) and cfg.lr > 0, "optimizer.lr", cfg.lr, "a positive number")
    if "betas" in cfg:
        betas = cfg.betas
        check(OmegaConf.is_list(betas) and len(betas) == 2
              and all(is_number(b) and 0 <= b < 1 for b in betas), "optimizer.betas",
              OmegaConf.to_container(betas) if OmegaConf.is_list(betas) else betas,
              "two numbers in [0, 1), e.g. [0.9,0.98]")
    _lr_factor(cfg)
    orthogonal = cfg.get("orthogonal", False)
    check(isinstance(orthogonal, bool), "optimizer.orthogonal", orthogonal,
          "true (⊥Grad: gradients orthogonal to the weights) or false")
    registry.check("optimizer", cfg)


def build_optimizer(
    cfg: DictConfig, weight_decay: float, model: nn.Module
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """The optimizer its `_target_` names (training/optimizers/<name>.py), its schedule, and
    ⊥Grad around it when asked."""
    check_optimizer(cfg)
    check(is_number(weight_decay) and weight_decay >= 0, "weight_decay", weight_decay,
          "a number >= 0")
    params = list(model.parameters())
    opt = registry.build("optimizer", cfg, params, lr=cfg.lr, weight_decay=weight_decay,
                         foreach=True)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, _lr_factor(cfg))
    if cfg.get("orthogonal", False):  # the schedule stays on the base optimizer (OrthoGrad's)
        from pytorch_optimizer.optimizer.orthograd import OrthoGrad  # loads ~1.5 s: only here
        opt = OrthoGrad(opt)
    return opt, schedule


def fused(params: list[torch.Tensor], common: dict[str, Any]) -> dict[str, Any]:
    """Adam(W)'s fused kernel does the whole update in one pass per tensor: same numbers to
    float rounding, fewer passes over memory (CPU and CUDA)."""
    return dict(common, foreach=None, fused=True) if _fusable(params) else common


def _fusable(params: list[torch.Tensor]) -> bool:
    return all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)


def _lr_factor(cfg: DictConfig) -> Callable[[int], float]:
    """The multiplier of `lr` at each 0-based step, from the checked schedule keys."""
    warmup, decay, min_lr = (cfg.get("warmup_steps", 0), cfg.get("decay_steps"),
                             cfg.get("min_lr", 0.0))
    from_zero = cfg.get("warmup_from_zero", False)
    check(isinstance(from_zero, bool), "optimizer.warmup_from_zero", from_zero,
          "true (factor step / warmup_steps: the first update has lr 0) or false "
          "((step + 1) / warmup_steps)")
    check(is_int(warmup) and warmup >= 0, "optimizer.warmup_steps", warmup,
          "an integer >= 0")
    check(decay is None or (is_int(decay) and decay > warmup), "optimizer.decay_steps", decay,
          f"null (constant lr) or an integer > optimizer.warmup_steps ({warmup})")
    check(is_number(min_lr) and 0 <= min_lr <= cfg.lr, "optimizer.min_lr", min_lr,
          f"a number from 0 to optimizer.lr ({cfg.lr})")
    floor = min_lr / cfg.lr

    def factor(step: int) -> float:
        if step < warmup:
            return (step if from_zero else step + 1) / warmup
        if decay is None:
            return 1.0
        done = min(1.0, (step - warmup) / (decay - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * done))

    return factor
