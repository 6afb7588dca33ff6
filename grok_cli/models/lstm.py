"""`model=lstm`: the LSTM baseline of "Exploring Grokking" and Omnigrok.

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


class LSTMClassifier(GrokModel):
    """Embeddings -> LSTM -> linear, read at the last real token (the mask's last 1)."""

    def __init__(self, vocab_size: int, n_classes: int, cfg: DictConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, cfg.embed_dim)
        self.lstm = nn.LSTM(cfg.embed_dim, cfg.hidden_size, num_layers=cfg.num_layers,
                            batch_first=True, dropout=cfg.dropout if cfg.num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.hidden_size, n_classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        out, _ = self.lstm(self.embed(x))
        if mask is None:
            last = out[:, -1]
        else:  # right padding: a causal LSTM's state at the last real token ignores it
            index = (mask.sum(1) - 1).clamp(min=0)
            last = out[torch.arange(len(out), device=out.device), index]
        return self.head(self.dropout(last))

    def weights(self) -> dict[str, torch.Tensor]:
        return {"embed": self.embed.weight, "unembed": self.head.weight.T}


check_config = check_baseline_sizes


def build_lstm(cfg: DictConfig, task: TaskData) -> LSTMClassifier:
    return LSTMClassifier(task.vocab_size, task.n_classes, cfg)
