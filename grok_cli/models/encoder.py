"""An encoder classifier from HF BertConfig (Critical Data Size paper, IMDB / Yelp / NI)."""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn
from transformers import BertConfig, BertForSequenceClassification

from grok_cli.errors import check
from grok_cli.tasks import TaskData


class EncoderClassifier(nn.Module):
    """BERT encoder + its pooler and classification head, returning logits only.

    On a modular task (kind "lm") it classifies the answer from the pooled first position,
    which attends to every input token.
    """

    def __init__(self, bert: BertForSequenceClassification) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.bert(input_ids=x, attention_mask=mask).logits


def bert_config(cfg: DictConfig, task: TaskData) -> BertConfig:
    check(isinstance(cfg.hidden_size, int) and cfg.hidden_size > 0, "model.hidden_size",
          cfg.hidden_size, "a positive integer")
    check(isinstance(cfg.num_heads, int) and cfg.num_heads > 0
          and cfg.hidden_size % cfg.num_heads == 0, "model.num_heads", cfg.num_heads,
          f"a positive divisor of model.hidden_size ({cfg.hidden_size})")
    check(isinstance(cfg.num_layers, int) and cfg.num_layers > 0, "model.num_layers",
          cfg.num_layers, "a positive integer")
    length = task.train.x.shape[1]
    check(cfg.max_positions >= length, "model.max_positions", cfg.max_positions,
          f"at least the padded input length ({length})")
    return BertConfig(
        vocab_size=task.vocab_size,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        # The paper's 512 at hidden 128; the model-wise study scales it with the width.
        intermediate_size=cfg.intermediate_size or 4 * cfg.hidden_size,
        hidden_act=cfg.activation,
        hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.dropout,
        classifier_dropout=cfg.dropout,
        max_position_embeddings=cfg.max_positions,
        initializer_range=cfg.initializer_range,
        num_labels=task.n_classes,
    )


def build_bert(cfg: DictConfig, task: TaskData) -> nn.Module:
    return EncoderClassifier(BertForSequenceClassification(bert_config(cfg, task)))
