"""The `grokfast` config group: Grokfast's gradient filters (Lee et al. 2024, "Grokfast:
accelerated grokking by amplifying slow gradients"), applied between backward and step.

`ema` (`EMA`): g_ema <- alpha * g_ema + (1 - alpha) * g (g_ema starts at the first gradient),
then g <- g + lamb * g_ema. `ma` (`MA`): g <- g + lamb * mean(last window_size gradients),
once the window is full when `warmup` is true. Both are pytorch-optimizer's `gradfilter_ema` /
`gradfilter_ma` (>= 4.0: earlier versions keep references to the gradients they then modify
in place). The filter's memory is part of the checkpoint, so a resumed run is exact. `none`
(`NoFilter`) has no hook, so the loop does no work for it.

Both filters act on each gradient element alone, so on K members' stacked parameters they are
K filters: member k's memory is the slice [k] (its checkpoint keeps only that).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from grok_cli import registry
from grok_cli.config import check_name
from grok_cli.errors import check, is_int, is_number
from grok_cli.training.levers import Lever


class NoFilter(Lever):
    """grokfast=none: no filter. It overrides no hook, so a step does no work for it."""

    def __init__(self, node: DictConfig, cfg: DictConfig | None = None) -> None:
        super().__init__(node, cfg or DictConfig({}))
        check_name("grokfast", node)


class GradFilter(Lever):
    """A Grokfast filter over a model's named parameters, with its memory (`grads`): what
    `EMA` and `MA` share. Its settings are read once here: a config node is slow to read
    every step."""

    member_dim = 0  # where K members' memory keeps member k

    def __init__(self, node: DictConfig, cfg: DictConfig | None = None) -> None:
        super().__init__(node, cfg or DictConfig({}))
        check_name("grokfast", node)
        check(is_number(node.lamb) and node.lamb >= 0, "grokfast.lamb", node.lamb,
              "a number >= 0 (the amplification of the slow gradient)")
        self.lamb = node.lamb
        self.model: Any = None
        self.stacked = False  # K > 1 members: memory [K, ...] (an MA window [W, K, ...])
        self.grads: dict[str, Any] | None = None  # None until the first step, as the package

    def start(self, members: Any) -> None:
        self.model = members  # its named_parameters: the model's, or K members' stacked
        self.stacked = members.batched

    def after_backward(self, members: Any) -> None:
        self()

    def __call__(self) -> None:
        """Filter the gradients in place (after backward, before the optimizer step)."""
        raise NotImplementedError

    def memory(self) -> dict[str, torch.Tensor]:
        """The memory as one tensor per parameter."""
        return dict(self.grads or {})

    def state_dict(self, k: int = 0) -> dict[str, torch.Tensor] | None:
        """Tensors only (a checkpoint loads with weights_only). With `k`, member k's slice of
        K members' memory."""
        state = self.memory()
        if not self.stacked:
            return state
        return {name: t.select(self.member_dim, k) for name, t in state.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if not state:
            self.grads = None  # saved before the first step
            return
        params = dict(self.model.named_parameters())
        self.grads = {name: self.restored(tensor.to(params[name].device))
                      for name, tensor in state.items()}

    def restored(self, tensor: torch.Tensor) -> Any:
        """One parameter's memory as `memory` gave it, in the form the filter keeps."""
        return tensor


class EMA(GradFilter):
    """grokfast=ema: pytorch-optimizer's gradfilter_ema."""

    def __init__(self, node: DictConfig, cfg: DictConfig | None = None) -> None:
        super().__init__(node, cfg)
        check(is_number(node.alpha) and 0 <= node.alpha < 1, "grokfast.alpha", node.alpha,
              "a number in [0, 1) (the EMA's momentum)")
        self.alpha = node.alpha

    def __call__(self) -> None:
        # Imported here: pytorch-optimizer loads its whole catalogue (~1.5 s), for this run only.
        from pytorch_optimizer.optimizer.grokfast import gradfilter_ema

        self.grads = gradfilter_ema(self.model, self.grads, alpha=self.alpha, lamb=self.lamb)


class MA(GradFilter):
    """grokfast=ma: pytorch-optimizer's gradfilter_ma; its memory, a window of gradients per
    parameter, is checkpointed stacked ([W, ...]; K members: [W, K, ...])."""

    member_dim = 1

    def __init__(self, node: DictConfig, cfg: DictConfig | None = None) -> None:
        super().__init__(node, cfg)
        check(is_int(node.window_size) and node.window_size > 0, "grokfast.window_size",
              node.window_size, "a positive integer (gradients averaged)")
        check(isinstance(node.warmup, bool), "grokfast.warmup", node.warmup,
              "true (filter once the window is full) or false")
        self.window_size, self.warmup = node.window_size, node.warmup

    def __call__(self) -> None:
        from pytorch_optimizer.optimizer.grokfast import gradfilter_ma

        self.grads = gradfilter_ma(self.model, self.grads, window_size=self.window_size,
                                   lamb=self.lamb, warmup=self.warmup)

    def memory(self) -> dict[str, torch.Tensor]:
        grads = self.grads or {}
        return {name: torch.stack(list(window)) for name, window in grads.items() if window}

    def restored(self, tensor: torch.Tensor) -> Any:
        return deque(tensor.unbind(0), maxlen=self.window_size)


def build_grad_filter(node: DictConfig, model: nn.Module) -> GradFilter | None:
    """The filter the `grokfast` node names over `model` alone (outside a run's loop), or
    None for grokfast=none."""
    lever = registry.resolve("grokfast", registry.target("grokfast", node))(node)
    if not isinstance(lever, GradFilter):
        return None
    lever.model = model
    return lever
