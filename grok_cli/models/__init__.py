"""Model builders, one file per `model=` choice (gpt.py, gpt2.py, nanda.py, bert.py, mlp.py,
onehot_mlp.py, lstm.py, olmoe.py, image_mlp.py), each named by its config file's `_target_`.

Every builder takes the model config group and the task and returns a `GrokModel`
(models/base.py: forward `(x, mask=None) -> logits`, and what the loop and the analyses may
use besides). A module's `check_config(cfg)` checks the group's values before anything is
built (registry.check); its builder checks only what needs the task. `rescale` applies
the grokking configuration's α.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn

from grok_cli import registry
from grok_cli.errors import check
from grok_cli.models.base import GrokModel
from grok_cli.tasks import TaskData


def build_model(model_cfg: DictConfig, task: TaskData) -> GrokModel:
    """The model of `model_cfg` for `task`, its values checked (again, for callers that did
    not validate the run config: cheap and pure)."""
    registry.check("model", model_cfg)
    pixels = model_cfg.get("reads", "tokens") == "pixels"  # the pairing: what x holds
    check(pixels == (task.kind == "image"), "model", model_cfg.name,
          "a token model for this task (model=image_mlp reads pixels: task=mnist or "
          "task=digits)" if pixels else "an image model (model=image_mlp) for an image task "
          "(task=mnist, digits)")
    return registry.build("model", model_cfg, task)


@torch.no_grad()
def rescale(model: nn.Module, alpha: float) -> None:
    """Multiply every parameter (embeddings, weights, LayerNorm gains, biases) by α.

    `parameters()` yields tied weights once, so a tied embedding is scaled once, not twice.
    """
    for param in model.parameters():
        param.mul_(alpha)


def l2_norm(model: nn.Module) -> torch.Tensor:
    """The L2 norm of all parameters together, as a 0-d tensor (no host sync)."""
    return l2_norm_of(list(model.parameters()))


@torch.no_grad()
def l2_norm_of(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors)))
