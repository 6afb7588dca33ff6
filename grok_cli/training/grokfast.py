"""The `grokfast` config group: Grokfast's gradient filters (Lee et al. 2024, "Grokfast:
accelerated grokking by amplifying slow gradients"), applied between backward and step.

`ema`: g_ema <- alpha * g_ema + (1 - alpha) * g (g_ema starts at the first gradient), then
g <- g + lamb * g_ema. `ma`: g <- g + lamb * mean(last window_size gradients), once the
window is full when `warmup` is true. Both are pytorch-optimizer's `gradfilter_ema` /
`gradfilter_ma` (>= 4.0: earlier versions keep references to the gradients they then modify
in place). The filter's memory is part of the checkpoint, so a resumed run is exact.

Both filters act on each gradient element alone, so on K members' stacked parameters they are
K filters: member k's memory is the slice [k] (its checkpoint keeps only that).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from grok_cli.errors import check, check_choice
from grok_cli.training.levers import Lever

NAMES = ("none", "ema", "ma")


class GradFilter(Lever):
    """One Grokfast filter over a model's named parameters, with its memory (`grads`); the
    `grokfast` group's lever (grokfast=none: no filter)."""

    def __init__(self, cfg: DictConfig, run_cfg: DictConfig | None = None) -> None:
        super().__init__(cfg, run_cfg or DictConfig({}))
        check_config(cfg)
        self.model: Any = None
        self.on = cfg.name != "none"  # read once: a config node is slow to read every step
        self.stacked = False  # K > 1 members: memory [K, ...] (an MA window [W, K, ...])
        self.grads: dict[str, Any] | None = None  # None until the first step, as the package

    def start(self, members: Any) -> None:
        self.model = members  # its named_parameters: the model's, or K members' stacked
        self.stacked = members.batched

    def after_backward(self, members: Any) -> None:
        if self.on:
            self()

    def __call__(self) -> None:
        """Filter the gradients in place (after backward, before the optimizer step)."""
        # Imported here: pytorch-optimizer loads its whole catalogue (~1.5 s), for this run only.
        from pytorch_optimizer.optimizer.grokfast import gradfilter_ema, gradfilter_ma

        cfg = self.node
        if cfg.name == "ema":
            self.grads = gradfilter_ema(self.model, self.grads, alpha=cfg.alpha, lamb=cfg.lamb)
        else:
            self.grads = gradfilter_ma(self.model, self.grads, window_size=cfg.window_size,
                                       lamb=cfg.lamb, warmup=cfg.warmup)

    def state_dict(self, k: int = 0) -> dict[str, torch.Tensor] | None:
        """Tensors only (a checkpoint loads with weights_only): an MA window is stacked. With
        `k`, member k's slice of K members' memory."""
        if self.node.name == "none":
            return None
        grads = self.grads or {}
        if self.node.name == "ema":
            state = dict(grads)
        else:
            state = {name: torch.stack(list(window)) for name, window in grads.items() if window}
        if not self.stacked:
            return state
        at = 0 if self.node.name == "ema" else 1  # an MA window: [W, K, ...]
        return {name: t.select(at, k) for name, t in state.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if not state:
            self.grads = None  # saved before the first step
            return
        params = dict(self.model.named_parameters())
        moved = {name: tensor.to(params[name].device) for name, tensor in state.items()}
        if self.node.name == "ma":
            moved = {name: deque(t.unbind(0), maxlen=self.node.window_size)
                     for name, t in moved.items()}
        self.grads = moved


def build_grad_filter(cfg: DictConfig, model: nn.Module) -> GradFilter | None:
    """The filter of the `grokfast` config group over `model`, or None for grokfast=none."""
    check_config(cfg)
    if cfg.name == "none":
        return None
    grad_filter = GradFilter(cfg)
    grad_filter.model = model
    return grad_filter


def check_config(cfg: DictConfig) -> None:
    """One line for a bad value of the `grokfast` group."""
    check_choice("grokfast.name", cfg.name, NAMES)
    if cfg.name == "none":
        return
    number = (int, float)
    check(isinstance(cfg.lamb, number) and not isinstance(cfg.lamb, bool) and cfg.lamb >= 0,
          "grokfast.lamb", cfg.lamb, "a number >= 0 (the amplification of the slow gradient)")
    if cfg.name == "ema":
        check(isinstance(cfg.alpha, number) and not isinstance(cfg.alpha, bool)
              and 0 <= cfg.alpha < 1, "grokfast.alpha", cfg.alpha,
              "a number in [0, 1) (the EMA's momentum)")
    else:
        check(isinstance(cfg.window_size, int) and not isinstance(cfg.window_size, bool)
              and cfg.window_size > 0, "grokfast.window_size", cfg.window_size,
              "a positive integer (gradients averaged)")
        check(isinstance(cfg.warmup, bool), "grokfast.warmup", cfg.warmup,
              "true (filter once the window is full) or false")
