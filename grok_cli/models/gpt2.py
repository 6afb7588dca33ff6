"""`model=gpt2`: a pre-LN decoder from HF `GPT2Config`, read at the last input position.

The decoder of Power et al. (2022) and Grokfast (2 layers, width 128, 4 heads, GELU MLP 4×,
LayerNorm before attention and MLP and after the last block; see `model.block`). Grokfast's
head is a separate linear map without bias: `model.tie_embeddings=false` (the default)
unties GPT-2's `lm_head` from the token embedding.

`model.init`: `hf` starts from HF's GPT-2 initialization (normal, std `initializer_range`,
0.02); `torch` from PyTorch's layer defaults, as the decoders of Grokfast and openai/grok are
built from nn.Embedding / nn.MultiheadAttention / nn.Linear: embeddings N(0, 1), linear maps
and their biases U(±1/sqrt(fan_in)), attention's input projection Xavier-uniform, attention
biases 0, LayerNorms 1 and 0. Grokking is sensitive to this scale (the N(0, 1) embeddings are
~50× HF's), so the Power et al. preset uses `torch`. `grokfast` draws the same distributions
in the order and layout of Grokfast's main.py (`grokfast_init`), so seed S is their seed S's
network.

`model.block`: `pre_ln` is GPT-2's block, `x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))`.
`grokfast` is the Block of Grokfast's main.py (ironjr/grokfast, from danielmamay/grokking):
`x = ln_1(x); x = x + attn(x); x = x + mlp(ln_2(x))`, the first LayerNorm normalizing the
residual stream itself. It matters: their main.py's Grokfast-MA run (x·y mod 97, seed 0)
reaches 95% validation accuracy at step 790 with their Block, and 3% by step 1,000 with
GPT-2's block in its place.

With `block=grokfast`, evaluation and training without dropout (no padding mask) take the
answer-position path (`LastPosition.answer_logits`): every block but the last runs whole, and
the last one computes only what the answer reads, its query, attention output and MLP at the
last position (keys and values at all positions). The loss reads the last position alone, so
this is the same function and the same gradient to float rounding, with ~30% fewer
operations for a 4-token input (Grokfast-MA at their cadence: 1.04× → 1.44× their main.py's
steps/s, scripts/bench_peer_grokfast.py). Otherwise
the whole HF transformer runs, then the last position's hidden state goes through the head.
"""

from __future__ import annotations

import math

import torch
from omegaconf import DictConfig
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.activations import ACT2FN

from grok_cli.errors import check, check_choice
from grok_cli.models.base import GrokModel, Hook, blocks_mlp, hook_input, hook_output
from grok_cli.models.checks import check_transformer_shape, decoder_sizes
from grok_cli.tasks import TaskData


class LastPosition(GrokModel):
    """An HF causal LM's logits at the last input position."""

    def __init__(self, lm: GPT2LMHeadModel, answer_path: bool = False,
                 dropout: bool = False) -> None:
        super().__init__()
        self.lm, self.answer_path, self.dropout = lm, answer_path, dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        # The answer path has no dropout: a model with it trains the whole way.
        if self.answer_path and mask is None and not (self.training and self.dropout):
            return self.answer_logits(x)
        hidden = self.lm.transformer(input_ids=x, attention_mask=mask).last_hidden_state
        return self.lm.lm_head(hidden[:, -1])

    def weights(self) -> dict[str, torch.Tensor]:
        return {"embed": self.lm.transformer.wte.weight, "unembed": self.lm.lm_head.weight.T}

    def activations(self) -> dict[str, Hook]:
        return blocks_mlp([block.mlp for block in self.lm.transformer.h], lambda mlp: {
            "in": hook_input(mlp.c_fc),
            "hidden": (mlp.c_fc, lambda _, output: mlp.act(output)),
            "out": hook_output(mlp.c_proj)})

    def answer_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The logits at the last position, computing the last block at that position only
        (model.block=grokfast: each block normalizes its input first, `ln_in`)."""
        gpt = self.lm.transformer
        h = gpt.wte(x) + gpt.wpe(torch.arange(x.shape[1], device=x.device))
        for block in gpt.h[:-1]:
            h = _block(block, h)
        return self.lm.lm_head(gpt.ln_f(_block(gpt.h[-1], h, last_only=True)[:, -1]))


def _block(block: nn.Module, h: torch.Tensor, last_only: bool = False) -> torch.Tensor:
    """A model.block=grokfast block without dropout, causal: x = ln_1(x); x = x + attn(x);
    x = x + mlp(ln_2(x)); with `last_only` the output at the last position alone."""
    h = block.ln_in(h)
    attn = block.attn
    q, k, v = (t.unflatten(-1, (attn.num_heads, attn.head_dim)).transpose(1, 2)
               for t in attn.c_attn(h).split(attn.split_size, dim=-1))
    if last_only:
        q, h = q[:, :, -1:], h[:, -1:]
    a = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=not last_only)
    h = h + attn.c_proj(a.transpose(1, 2).flatten(2))
    return h + block.mlp(block.ln_2(h))


@torch.no_grad()
def torch_default_init(lm: GPT2LMHeadModel) -> None:
    """Re-initialize as PyTorch's nn.Embedding, nn.MultiheadAttention and nn.Linear would.

    HF's Conv1D stores its weight [in, out], so fan_in is the first dimension.
    """
    gpt = lm.transformer
    for embedding in (gpt.wte, gpt.wpe):
        nn.init.normal_(embedding.weight)
    for block in gpt.h:
        nn.init.xavier_uniform_(block.attn.c_attn.weight)  # symmetric in fan_in and fan_out
        for bias in (block.attn.c_attn.bias, block.attn.c_proj.bias):
            nn.init.zeros_(bias)
        for conv in (block.attn.c_proj, block.mlp.c_fc, block.mlp.c_proj):
            bound = 1 / math.sqrt(conv.weight.shape[0])
            nn.init.uniform_(conv.weight, -bound, bound)
            if conv is not block.attn.c_proj:
                nn.init.uniform_(conv.bias, -bound, bound)
    if lm.lm_head.weight is not gpt.wte.weight:  # untied: a Linear(d, vocab) of its own
        bound = 1 / math.sqrt(lm.lm_head.weight.shape[1])
        nn.init.uniform_(lm.lm_head.weight, -bound, bound)


@torch.no_grad()
def grokfast_init(lm: GPT2LMHeadModel, start: torch.Tensor) -> None:
    """model.init=grokfast: the weights Grokfast's main.py Decoder gets from the same seed.

    Their Decoder builds nn.Embedding (tokens, then positions), per block nn.LayerNorm × 2,
    nn.MultiheadAttention (its out_proj Linear draws before the Xavier in_proj; the out_proj
    bias is drawn, then zeroed), the MLP's two nn.Linear, then the head: the same modules are
    built here in that order from the generator state `start` (the seed's, before HF's own
    init drew), and copied in (HF's Conv1D holds the transpose of a Linear weight). The
    global generator ends where theirs does, so what is drawn next (their split) matches too.
    """
    torch.set_rng_state(start)
    gpt = lm.transformer
    for embedding in (gpt.wte, gpt.wpe):
        embedding.weight.copy_(nn.Embedding(*embedding.weight.shape).weight)
    width = gpt.embed_dim
    for block in gpt.h:
        attn = nn.MultiheadAttention(width, block.attn.num_heads)
        mlp = (nn.Linear(width, block.mlp.c_fc.nf), nn.Linear(block.mlp.c_fc.nf, width))
        pairs = ((block.attn.c_attn, attn.in_proj_weight, attn.in_proj_bias),
                 (block.attn.c_proj, attn.out_proj.weight, attn.out_proj.bias),
                 *((conv, linear.weight, linear.bias)
                   for conv, linear in zip((block.mlp.c_fc, block.mlp.c_proj), mlp, strict=True)))
        for conv, weight, bias in pairs:
            conv.weight.copy_(weight.T)
            conv.bias.copy_(bias)
    head = lm.lm_head.weight
    head.copy_(nn.Linear(head.shape[1], head.shape[0], bias=False).weight)


def normalize_block_inputs(lm: GPT2LMHeadModel) -> None:
    """model.block=grokfast: each block's ln_1 moves in front of the block (as `ln_in`, an
    identity left in its place), so the block's residual starts from ln_1(x)."""
    for block in lm.transformer.h:
        block.ln_in, block.ln_1 = block.ln_1, nn.Identity()
        block.register_forward_pre_hook(_normalize_input)


def _normalize_input(block: nn.Module, args: tuple) -> tuple:
    return (block.ln_in(args[0]), *args[1:])


def check_config(cfg: DictConfig) -> None:
    check_transformer_shape(cfg)
    check(isinstance(cfg.tie_embeddings, bool), "model.tie_embeddings", cfg.tie_embeddings,
          "true (lm_head shares the token embedding) or false (a separate head, as Grokfast)")
    check_choice("model.activation", cfg.activation, sorted(ACT2FN))
    check_choice("model.init", cfg.init, ("hf", "torch", "grokfast"))
    check_choice("model.block", cfg.block, ("pre_ln", "grokfast"))
    check(cfg.init != "grokfast" or not cfg.tie_embeddings, "model.tie_embeddings",
          cfg.tie_embeddings, "false with model.init=grokfast (their head is a Linear of its own)")


def build_gpt2(cfg: DictConfig, task: TaskData) -> LastPosition:
    config = GPT2Config(
        **decoder_sizes(cfg, task),
        activation_function=cfg.activation,
        tie_word_embeddings=cfg.tie_embeddings,
        bos_token_id=None,  # GPT-2's 50256 is outside these vocabularies
        eos_token_id=None,
    )
    start = torch.get_rng_state()
    lm = GPT2LMHeadModel(config)
    if cfg.init == "torch":
        torch_default_init(lm)
    elif cfg.init == "grokfast":
        grokfast_init(lm, start)
    if cfg.block == "grokfast":
        normalize_block_inputs(lm)
    return LastPosition(lm, answer_path=cfg.block == "grokfast", dropout=cfg.dropout > 0)
