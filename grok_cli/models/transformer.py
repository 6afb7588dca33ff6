"""Transformers built from HF configs: a decoder (OpenAIGPT) reading the answer position."""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn
from transformers import OpenAIGPTConfig, OpenAIGPTLMHeadModel

from grok_cli.tasks import TaskData


class DecoderAnswer(nn.Module):
    """A causal LM whose logits are read at the last input position only.

    The loss of the Critical Data Size recipe is on the answer token alone (labels -100
    elsewhere), so the other positions' unembeddings are never needed.
    """

    def __init__(self, lm: OpenAIGPTLMHeadModel) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.lm.transformer(input_ids=x, attention_mask=mask).last_hidden_state
        return self.lm.lm_head(hidden[:, -1])


def build_gpt(cfg: DictConfig, task: TaskData) -> nn.Module:
    config = OpenAIGPTConfig(
        vocab_size=task.vocab_size,
        n_positions=cfg.max_positions,
        n_embd=cfg.hidden_size,
        n_layer=cfg.num_layers,
        n_head=cfg.num_heads,
        afn=cfg.activation,
        resid_pdrop=cfg.dropout,
        embd_pdrop=cfg.dropout,
        attn_pdrop=cfg.dropout,
        initializer_range=cfg.initializer_range,
    )
    return DecoderAnswer(OpenAIGPTLMHeadModel(config))
