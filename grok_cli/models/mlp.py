"""`model=mlp`: the MLP baseline of "Exploring Grokking" and Omnigrok.

Maps token ids [B, T] (and an optional attention mask) to logits [B, n_classes], like
every model here, so it runs on modular arithmetic and on the text tasks alike.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn

from grok_cli.models.base import GrokModel
from grok_cli.models.checks import check_baseline_sizes
from grok_cli.tasks import TaskData


class MLPClassifier(GrokModel):
    """Token embeddings of all T positions concatenated, then `num_layers` hidden layers."""

    def __init__(self, vocab_size: int, length: int, n_classes: int, cfg: DictConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, cfg.embed_dim)
        layers: list[nn.Module] = []
        width = length * cfg.embed_dim
        for _ in range(cfg.num_layers):
            layers += [nn.Linear(width, cfg.hidden_size), nn.ReLU(), nn.Dropout(cfg.dropout)]
            width = cfg.hidden_size
        layers.append(nn.Linear(width, n_classes))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.embed(x)
        if mask is not None:  # padding contributes nothing, whatever its embedding learns
            emb = emb * mask.unsqueeze(-1).to(emb.dtype)
        return self.mlp(emb.flatten(1))

    def weights(self) -> dict[str, torch.Tensor]:
        return {"embed": self.embed.weight, "unembed": self.mlp[-1].weight.T}


check_config = check_baseline_sizes


def build_mlp(cfg: DictConfig, task: TaskData) -> MLPClassifier:
    return MLPClassifier(task.vocab_size, task.train.x.shape[1], task.n_classes, cfg)
