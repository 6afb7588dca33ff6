"""Non-transformer baselines of "Exploring Grokking" and Omnigrok: an MLP and an LSTM.

Both map token ids [B, T] (and an optional attention mask) to logits [B, n_classes], like
every model here, so they run on modular arithmetic and on the text tasks alike.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn

from grok_cli.errors import check
from grok_cli.tasks import TaskData


def _check_sizes(cfg: DictConfig) -> None:
    for key in ("embed_dim", "hidden_size", "num_layers"):
        check(isinstance(cfg[key], int) and cfg[key] > 0, f"model.{key}", cfg[key],
              "a positive integer")
    check(0 <= cfg.dropout < 1, "model.dropout", cfg.dropout, "a probability in [0, 1)")


class MLPClassifier(nn.Module):
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


class LSTMClassifier(nn.Module):
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


def build_mlp(cfg: DictConfig, task: TaskData) -> nn.Module:
    _check_sizes(cfg)
    return MLPClassifier(task.vocab_size, task.train.x.shape[1], task.n_classes, cfg)


def build_lstm(cfg: DictConfig, task: TaskData) -> nn.Module:
    _check_sizes(cfg)
    return LSTMClassifier(task.vocab_size, task.n_classes, cfg)
