"""`model=concat_linear`: the token embeddings of every position concatenated, one linear map."""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn

from grok_cli.errors import check_positive_int
from grok_cli.models.base import GrokModel
from grok_cli.tasks import TaskData


class ConcatLinear(GrokModel):
    def __init__(self, vocab: int, length: int, classes: int, width: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.head = nn.Linear(length * width, classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.embed(x).flatten(1))

    def weights(self) -> dict[str, torch.Tensor]:
        return {"embed": self.embed.weight, "unembed": self.head.weight.T}


def check_config(cfg: DictConfig) -> None:
    check_positive_int("model.embed_dim", cfg.embed_dim)


def build(cfg: DictConfig, task: TaskData) -> ConcatLinear:
    return ConcatLinear(task.vocab_size, task.train.x.shape[1], task.n_classes, cfg.embed_dim)
