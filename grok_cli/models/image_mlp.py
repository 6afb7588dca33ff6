"""`model=image_mlp`: Omnigrok's MLP (Liu, Michaud & Tegmark 2023, mnist/grokking): flattened
pixels [B, P] -> `num_layers` hidden ReLU layers of `hidden_size` -> a linear readout to the
classes. Their MNIST model is width 200, depth 3 (3 linear layers: num_layers=2 here), every
parameter of torch's default init scaled by α (the run's `alpha`)."""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn

from grok_cli.models.base import GrokModel
from grok_cli.models.checks import check_sizes
from grok_cli.tasks import TaskData


class ImageMLP(GrokModel):
    def __init__(self, pixels: int, n_classes: int, cfg: DictConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = pixels
        for _ in range(cfg.num_layers):
            layers += [nn.Linear(width, cfg.hidden_size), nn.ReLU()]
            width = cfg.hidden_size
        layers.append(nn.Linear(width, n_classes))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.mlp(x)

    def weights(self) -> dict[str, torch.Tensor]:
        return {"unembed": self.mlp[-1].weight.T}


def check_config(cfg: DictConfig) -> None:
    check_sizes(cfg, ("hidden_size", "num_layers"))


def build_image_mlp(cfg: DictConfig, task: TaskData) -> ImageMLP:
    return ImageMLP(task.train.x.shape[1], task.n_classes, cfg)
