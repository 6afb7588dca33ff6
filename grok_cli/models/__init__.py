"""Model builders, one file per `model=` choice (gpt.py, gpt2.py, nanda.py, bert.py, mlp.py,
onehot_mlp.py, lstm.py, olmoe.py; image_mlp.py reads pixels):
HF configs -> modules mapping token ids [B, T] to logits [B, n_classes].

Every builder takes the model config group and the task and returns an nn.Module whose
forward is `(x, mask=None) -> logits`. `rescale` applies the grokking configuration's α.
"""

from __future__ import annotations

import importlib

import torch
from omegaconf import DictConfig
from torch import nn

from grok_cli.errors import bad_value, check_choice
from grok_cli.tasks import TaskData

# model.name -> its file and builder, imported when built: a run loads only its own model's
# transformers code (importing every model's took seconds of each command's start).
MODELS: dict[str, str] = {
    "gpt": "gpt:build_gpt",
    "gpt2": "gpt2:build_gpt2",
    "nanda": "nanda:build_nanda",
    "olmoe": "olmoe:build_olmoe",
    "bert": "bert:build_bert",
    "mlp": "mlp:build_mlp",
    "onehot_mlp": "onehot_mlp:build_onehot_mlp",
    "lstm": "lstm:build_lstm",
    "image_mlp": "image_mlp:build_image_mlp",
}
IMAGE_MODELS = {"image_mlp"}  # read pixels (task=mnist, digits); every other model, token ids


def build_model(model_cfg: DictConfig, task: TaskData) -> nn.Module:
    check_choice("model.name", model_cfg.name, MODELS)
    image_model = model_cfg.name in IMAGE_MODELS
    if image_model != (task.kind == "image"):
        raise bad_value("model", model_cfg.name, "model=image_mlp for an image task (task=mnist, "
                        "digits)" if not image_model else "a token model for this task (image_mlp "
                        "reads pixels: task=mnist or task=digits)")
    module, builder = MODELS[model_cfg.name].split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), builder)(model_cfg, task)


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
