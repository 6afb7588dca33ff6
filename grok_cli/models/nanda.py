"""`model=nanda`: the one-layer transformer of Nanda et al. (2023), "Progress measures for
grokking via mechanistic interpretability".

No LayerNorm, learned positions, attention without biases, a ReLU MLP, an untied unembedding
without bias. Their setting: d_model 128, 4 heads of 32, d_mlp 512, one layer, read at the
`=` position (`task.format=nanda`: `a b =`). Each weight starts as in their code: a normal
with standard deviation 1/sqrt(d_model), the unembedding 1/sqrt(d_vocab); MLP biases 0.

Parameter names and shapes follow TransformerLens's HookedTransformer, so a Fourier
analysis (or `HookedTransformer.load_state_dict`) finds them by name
(d = d_model, h = heads, k = d_head, m = d_mlp, V = input vocabulary, C = answer classes):

| name                      | shape     | role                                        |
|---------------------------|-----------|---------------------------------------------|
| `embed.W_E`               | [V, d]    | token embedding (rows 0..p-1: the residues) |
| `pos_embed.W_pos`         | [T, d]    | learned positions                           |
| `blocks.{i}.attn.W_Q/W_K/W_V` | [h, d, k] | per-head query / key / value maps       |
| `blocks.{i}.attn.W_O`     | [h, k, d] | per-head output map                         |
| `blocks.{i}.mlp.W_in`, `b_in`   | [d, m], [m] | MLP input (neuron pre-activations)    |
| `blocks.{i}.mlp.W_out`, `b_out` | [m, d], [d] | MLP output                            |
| `unembed.W_U`             | [d, C]    | unembedding: logits = resid @ W_U           |

The fast path (default) runs the last block at the last position only: its keys and values
need every position, its query, attention output and MLP only the `=` position whose logits
are read. `fast=False` runs every position and reads the last; the two agree to float
rounding (tests/test_canon_models.py).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from grok_cli.errors import check
from grok_cli.models.base import GrokModel, Hook, blocks_mlp, hook_input, hook_output
from grok_cli.models.checks import check_causal_task, check_positions, check_transformer_shape
from grok_cli.tasks import TaskData


def _normal(*shape: int, std: float) -> nn.Parameter:
    return nn.Parameter(torch.randn(*shape) * std)


class Attention(nn.Module):
    def __init__(self, d_model: int, heads: int) -> None:
        super().__init__()
        d_head, std = d_model // heads, 1 / math.sqrt(d_model)
        self.W_Q = _normal(heads, d_model, d_head, std=std)
        self.W_K = _normal(heads, d_model, d_head, std=std)
        self.W_V = _normal(heads, d_model, d_head, std=std)
        self.W_O = _normal(heads, d_head, d_model, std=std)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                mask: torch.Tensor | None) -> torch.Tensor:
        """The output [B, Q, d] of queries q [B, Q, h, k] (the last Q positions) against the
        keys and values k, v [B, T, h, k] of every position.

        The per-sample scores and mixes are elementwise products summed: with a handful of
        positions, B × heads tiny matmuls cost more.
        """
        scores = (q[:, :, None] * k[:, None]).sum(-1) / math.sqrt(q.shape[-1])  # [B, Q, T, h]
        queries, length = q.shape[1], k.shape[1]
        # Query j (position length - queries + j) sees positions up to its own.
        future = torch.ones(queries, length, dtype=torch.bool, device=q.device).triu(
            length - queries + 1)
        scores = scores.masked_fill(future[:, :, None], float("-inf"))
        if mask is not None:  # padding: attended by no query
            scores = scores.masked_fill(~mask.bool()[:, None, :, None], float("-inf"))
        z = (scores.softmax(2)[..., None] * v[:, None]).sum(2)  # [B, Q, h, k]
        return z.flatten(2) @ self.W_O.flatten(0, 1)


def per_head(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x [..., d] through per-head maps [h, d, k]: [..., h, k], as one matmul."""
    heads, d, k = weight.shape
    return (x @ weight.transpose(0, 1).reshape(d, heads * k)).view(*x.shape[:-1], heads, k)


class MLP(nn.Module):
    def __init__(self, d_model: int, d_mlp: int) -> None:
        super().__init__()
        self.W_in = _normal(d_model, d_mlp, std=1 / math.sqrt(d_model))
        self.b_in = nn.Parameter(torch.zeros(d_mlp))
        self.W_out = _normal(d_mlp, d_model, std=1 / math.sqrt(d_model))
        self.b_out = nn.Parameter(torch.zeros(d_model))

    def forward(self, resid: torch.Tensor) -> torch.Tensor:
        return F.relu(resid @ self.W_in + self.b_in) @ self.W_out + self.b_out


class Block(nn.Module):
    def __init__(self, d_model: int, heads: int, d_mlp: int) -> None:
        super().__init__()
        self.attn = Attention(d_model, heads)
        self.mlp = MLP(d_model, d_mlp)

    def forward(self, resid: torch.Tensor, mask: torch.Tensor | None,
                last_only: bool = False) -> torch.Tensor:
        """The block's output at every position, or at the last one alone."""
        k, v = per_head(resid, self.attn.W_K), per_head(resid, self.attn.W_V)
        return self.at(resid[:, -1:] if last_only else resid, k, v, mask)

    def at(self, query_resid: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
           mask: torch.Tensor | None) -> torch.Tensor:
        """The output at the query positions, given every position's keys and values."""
        mid = query_resid + self.attn(per_head(query_resid, self.attn.W_Q), k, v, mask)
        return mid + self.mlp(mid)


class Embed(nn.Module):
    def __init__(self, vocab: int, d_model: int) -> None:
        super().__init__()
        self.W_E = _normal(vocab, d_model, std=1 / math.sqrt(d_model))


class PosEmbed(nn.Module):
    def __init__(self, length: int, d_model: int) -> None:
        super().__init__()
        self.W_pos = _normal(length, d_model, std=1 / math.sqrt(d_model))


class Unembed(nn.Module):
    def __init__(self, d_model: int, vocab: int, classes: int) -> None:
        super().__init__()
        self.W_U = _normal(d_model, classes, std=1 / math.sqrt(vocab))


class NandaTransformer(GrokModel):
    """Token ids [B, T] -> logits [B, C] at the last position."""

    def __init__(self, vocab: int, classes: int, length: int, cfg: DictConfig) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.embed = Embed(vocab, d)
        self.pos_embed = PosEmbed(length, d)
        self.blocks = nn.ModuleList(Block(d, cfg.num_heads, cfg.mlp_size)
                                    for _ in range(cfg.num_layers))
        self.unembed = Unembed(d, vocab, classes)
        self.fast = True

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.fast and len(self.blocks) == 1 and x.shape[0] > self.embed.W_E.shape[0]:
            return self._one_block_by_table(x, mask) @ self.unembed.W_U
        # F.embedding: its CPU backward sums each row in a fixed order (indexing's varies).
        resid = F.embedding(x, self.embed.W_E) + self.pos_embed.W_pos[: x.shape[1]]
        *early, last = self.blocks
        for block in early:
            resid = block(resid, mask)
        resid = last(resid, mask, last_only=self.fast)
        return resid[:, -1] @ self.unembed.W_U

    def weights(self) -> dict[str, torch.Tensor]:
        return {"embed": self.embed.W_E, "unembed": self.unembed.W_U}

    def activations(self) -> dict[str, Hook]:
        return blocks_mlp(self.blocks, lambda block: {
            "in": hook_input(block.mlp),
            "hidden": (block.mlp, lambda inputs, _, mlp=block.mlp:
                       F.relu(inputs[0] @ mlp.W_in + mlp.b_in)),
            "out": hook_output(block.mlp)})

    def _one_block_by_table(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """The one block's output at the last position [B, 1, d], its keys and values read
        from (position, token) tables: in one layer they depend on that pair alone, so each
        pair is projected once (T × vocab rows instead of B × T). Same numbers to rounding."""
        length, vocab = x.shape[1], self.embed.W_E.shape[0]
        table = (self.embed.W_E + self.pos_embed.W_pos[:length, None]).flatten(0, 1)
        rows = x + torch.arange(length, device=x.device) * vocab  # row t * vocab + token
        block = self.blocks[0]
        k, v = (F.embedding(rows, per_head(table, w).flatten(1)).unflatten(-1, w.shape[::2])
                for w in (block.attn.W_K, block.attn.W_V))
        return block.at(F.embedding(rows[:, -1:], table), k, v, mask)[:, 0]


def check_config(cfg: DictConfig) -> None:
    check_transformer_shape(cfg)
    check(isinstance(cfg.mlp_size, int) and cfg.mlp_size > 0, "model.mlp_size", cfg.mlp_size,
          "a positive integer")


def build_nanda(cfg: DictConfig, task: TaskData) -> NandaTransformer:
    check_causal_task(cfg, task)
    check_positions(cfg, task)
    return NandaTransformer(task.vocab_size, task.n_classes, task.train.x.shape[1], cfg)
