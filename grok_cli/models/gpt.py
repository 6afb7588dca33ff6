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

from grok_cli.models.base import GrokModel, Hook, blocks_mlp, hook_input, hook_output
from grok_cli.models.checks import check_transformer_shape, decoder_sizes
from grok_cli.tasks import TaskData


class DecoderAnswer(GrokModel):
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
            return self.lm.lm_head(self._one_block_by_table(x, positions, last, additive))
        hidden = gpt.drop(gpt.tokens_embed(x) + positions)
        for block in early:
            hidden = block(hidden, None if additive is None else additive[:, None, None])[0]
        x_last = hidden[:, -1]
        query = _conv1d(x_last, c_attn, 0, n)
        key, value = _conv1d(hidden, c_attn, n, 2 * n), _conv1d(hidden, c_attn, 2 * n, 3 * n)
        scores = _scores(query, key, last.attn.n_head)
        return self.lm.lm_head(last_position(last, x_last, scores, value, additive))

    def weights(self) -> dict[str, torch.Tensor]:
        return {"embed": self.lm.transformer.tokens_embed.weight,
                "unembed": self.lm.lm_head.weight.T}

    def activations(self) -> dict[str, Hook]:
        # On c_fc and c_proj: the fast path calls them, not the MLP module or its act.
        return blocks_mlp([block.mlp for block in self.lm.transformer.h], lambda mlp: {
            "in": hook_input(mlp.c_fc),
            "hidden": (mlp.c_fc, lambda _, output: mlp.act(output)),
            "out": hook_output(mlp.c_proj)})

    def _one_block_by_table(self, x: torch.Tensor, positions: torch.Tensor, block: Block,
                            additive: torch.Tensor | None) -> torch.Tensor:
        """The one block's output at the last position, from (token, position) tables.

        In a 1-block model the query, key and value at a position depend only on the
        (token, position) pair there, so each distinct pair is projected once (vocab × T rows
        instead of batch × T) and gathered; the query depends on the last token alone. With
        a small vocabulary even every query-key score is one entry of a [last token,
        position, token, head] table made by per-head matmuls, and no per-sample
        [batch, positions, hidden] products are formed; that table has vocab² × T × heads
        entries, so it is used only while it is no larger than those products. Same numbers
        to float rounding; no input token is dropped. The gathers go through F.embedding:
        its CPU backward sums each row in a fixed order, where advanced indexing's
        accumulating backward varies with threads.
        """
        gpt = self.lm.transformer
        c_attn, n, heads = block.attn.c_attn, block.attn.split_size, block.attn.n_head
        table = gpt.tokens_embed.weight + positions[:, None]  # [T, vocab, n]
        length, vocab = table.shape[:2]
        flat = table.reshape(length * vocab, n)  # row t * vocab + token
        rows = x + torch.arange(length, device=x.device) * vocab  # [B, T]
        queries, keys = _conv1d(table[-1], c_attn, 0, n), _conv1d(flat, c_attn, n, 2 * n)
        if vocab * vocab * heads <= x.shape[0] * n:
            per_head = (-1, heads, n // heads)
            by_pair = torch.bmm(queries.view(per_head).transpose(0, 1),
                                keys.view(per_head).permute(1, 2, 0))  # [H, last, T * vocab]
            score_rows = rows + x[:, -1:] * (length * vocab)
            scores = F.embedding(score_rows, by_pair.permute(1, 2, 0).reshape(-1, heads))
        else:
            scores = _scores(F.embedding(x[:, -1], queries), F.embedding(rows, keys), heads)
        value = F.embedding(rows, _conv1d(flat, c_attn, 2 * n, 3 * n))  # [B, T, n]
        x_last = gpt.drop(gpt.tokens_embed(x[:, -1]) + positions[-1])
        return last_position(block, x_last, scores, value, additive)

    def _by_table(self, x: torch.Tensor) -> bool:
        """The (token, position) table pays when the batch has more rows than the vocab."""
        no_dropout = not self.training or self.lm.transformer.drop.p == 0
        return no_dropout and x.shape[0] > self.lm.config.vocab_size


def _conv1d(x: torch.Tensor, conv: nn.Module, start: int, stop: int) -> torch.Tensor:
    """Output columns start:stop of HF's Conv1D (x @ W + b, its weight stored [in, out])."""
    flat = torch.addmm(conv.bias[start:stop], x.reshape(-1, x.shape[-1]),
                       conv.weight[:, start:stop])
    return flat.view(*x.shape[:-1], stop - start)


def _scores(query: torch.Tensor, key: torch.Tensor, heads: int) -> torch.Tensor:
    """The last position's query [B, n] against every key [B, T, n], per head: [B, T, heads].
    One query per sample: elementwise products summed per head, not B × heads tiny matmuls."""
    return (query[:, None] * key).view(*key.shape[:2], heads, -1).sum(-1)


def last_position(block: Block, x_last: torch.Tensor, scores: torch.Tensor, value: torch.Tensor,
                  additive: torch.Tensor | None) -> torch.Tensor:
    """An OpenAIGPT (post-LN) block's output at the last position: [B, n].

    h = ln_1(x + attn(x)); out = ln_2(h + mlp(h)), from the block input at the last position
    (x_last [B, n]), the last query's unscaled scores against every position [B, T, heads]
    and the values of all positions [B, T, n]. The last query attends every position, so
    its row of HF's causal mask (w * b - 1e4 * (1 - b)) is all ones and leaves w unchanged.
    """
    attn = block.attn
    batch, length, n = value.shape
    heads = attn.n_head
    per_head = (batch, length, heads, n // heads)
    w = scores / math.sqrt(n // heads) if attn.scale else scores
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


def check_config(cfg: DictConfig) -> None:
    check_transformer_shape(cfg)


def build_gpt(cfg: DictConfig, task: TaskData) -> DecoderAnswer:
    config = OpenAIGPTConfig(
        **decoder_sizes(cfg, task),
        afn=cfg.activation,
    )
    return DecoderAnswer(OpenAIGPTLMHeadModel(config))
