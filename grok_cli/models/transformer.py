"""Transformers built from HF configs: a decoder (OpenAIGPT) reading the answer position."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn
from transformers import OpenAIGPTConfig, OpenAIGPTLMHeadModel
from transformers.activations import NewGELUActivation
from transformers.models.openai.modeling_openai import Block

from grok_cli.models.checks import check_causal_task, check_transformer_shape
from grok_cli.tasks import TaskData


class DecoderAnswer(nn.Module):
    """A causal LM whose logits are read at the last input position only.

    The loss of the Critical Data Size recipe is on the answer token alone (labels -100
    elsewhere), so only the last position's output is ever needed. The fast path (default)
    uses that: every block but the last runs as HF wrote it; in the last block only the keys
    and values need all positions, while the query, attention output, residuals, LayerNorms,
    MLP and the unembedding run at the last position alone. It reads the HF modules' own
    weights, so state_dicts, checkpoints and `rescale` are the same as with `fast=False`
    (the whole HF transformer, then its last position), and the numbers agree to float
    rounding (tests/test_speedups.py).
    """

    def __init__(self, lm: OpenAIGPTLMHeadModel, fast: bool = True) -> None:
        super().__init__()
        self.lm = lm
        self.fast = fast

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if not self.fast:
            hidden = self.lm.transformer(input_ids=x, attention_mask=mask).last_hidden_state
            return self.lm.lm_head(hidden[:, -1])
        gpt = self.lm.transformer
        positions = gpt.positions_embed(gpt.position_ids[: x.shape[-1]])
        additive = None
        if mask is not None:  # as OpenAIGPTModel: 0 where attended, dtype min where padded
            additive = (1.0 - mask.to(positions.dtype)) * torch.finfo(positions.dtype).min
        *early, last = gpt.h
        c_attn, n = last.attn.c_attn, last.attn.split_size
        if not early and self._by_table(x):
            # One block: its q/k/v at a position depend only on (token, position), so each
            # distinct pair is projected once (vocab × T rows instead of batch × T), then
            # gathered. Same numbers; the input is unchanged (no token is dropped).
            # The gathers go through F.embedding: its CPU backward sums each row in a fixed
            # order, where advanced indexing's accumulating backward varies with threads.
            table = gpt.tokens_embed.weight + positions[:, None]  # [T, vocab, n]
            length, vocab = table.shape[:2]
            rows = x + torch.arange(length, device=x.device) * vocab  # (position, token)
            flat = table.reshape(length * vocab, -1)
            query = F.embedding(x[:, -1], _conv1d(table[-1], c_attn, 0, n))
            key = F.embedding(rows, _conv1d(flat, c_attn, n, 2 * n))
            value = F.embedding(rows, _conv1d(flat, c_attn, 2 * n, 3 * n))
            x_last = gpt.drop(gpt.tokens_embed(x[:, -1]) + positions[-1])
        else:
            hidden = gpt.drop(gpt.tokens_embed(x) + positions)
            for block in early:
                hidden = block(hidden, None if additive is None else additive[:, None, None])[0]
            x_last = hidden[:, -1]
            query = _conv1d(x_last, c_attn, 0, n)
            key, value = _conv1d(hidden, c_attn, n, 2 * n), _conv1d(hidden, c_attn, 2 * n, 3 * n)
        return self.lm.lm_head(last_position(last, x_last, query, key, value, additive))

    def _by_table(self, x: torch.Tensor) -> bool:
        """The (token, position) table pays when the batch has more rows than the vocab."""
        no_dropout = not self.training or self.lm.transformer.drop.p == 0
        return no_dropout and x.shape[0] > self.lm.config.vocab_size


def _conv1d(x: torch.Tensor, conv: nn.Module, start: int, stop: int) -> torch.Tensor:
    """Output columns start:stop of HF's Conv1D (x @ W + b, its weight stored [in, out])."""
    flat = torch.addmm(conv.bias[start:stop], x.reshape(-1, x.shape[-1]),
                       conv.weight[:, start:stop])
    return flat.view(*x.shape[:-1], stop - start)


def last_position(block: Block, x_last: torch.Tensor, query: torch.Tensor, key: torch.Tensor,
                  value: torch.Tensor, additive: torch.Tensor | None) -> torch.Tensor:
    """An OpenAIGPT (post-LN) block's output at the last position: [B, n].

    h = ln_1(x + attn(x)); out = ln_2(h + mlp(h)), from the block input at the last position
    (x_last [B, n]), its query [B, n], and the keys and values of all positions [B, T, n].
    The last query attends every position, so its row of HF's causal mask
    (w * b - 1e4 * (1 - b)) is all ones and leaves w unchanged. One query per sample: the
    scores are elementwise products summed per head, not B × heads tiny matmuls.
    """
    attn = block.attn
    batch, length, n = key.shape
    heads = attn.n_head
    per_head = (batch, length, heads, n // heads)
    w = (query[:, None] * key).view(per_head).sum(-1)  # [B, T, H]
    if attn.scale:
        w = w / math.sqrt(n // heads)
    if additive is not None:
        w = w + additive[:, :, None]
    w = attn.attn_dropout(nn.functional.softmax(w, dim=1))
    a = (w[..., None] * value.view(per_head)).sum(1).reshape(batch, n)
    a = attn.resid_dropout(attn.c_proj(a))
    h = block.ln_1(x_last + a)
    mlp = block.mlp
    m = mlp.dropout(mlp.c_proj(_activation(mlp.act)(mlp.c_fc(h))))
    return block.ln_2(h + m)


def _activation(act: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """HF's "gelu" for OpenAIGPT is gelu_new, the tanh approximation written out in eight
    elementwise ops; torch's fused kernel computes the same formula in one pass."""
    return partial(F.gelu, approximate="tanh") if isinstance(act, NewGELUActivation) else act


def build_gpt(cfg: DictConfig, task: TaskData) -> nn.Module:
    check_causal_task(cfg, task)
    check_transformer_shape(cfg, task)
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
