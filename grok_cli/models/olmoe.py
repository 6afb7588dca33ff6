"""A small OLMoE (HF `OlmoeConfig`) trained as a causal LM, read at the answer position.

It is the model behind `grok pathways moe.from_run=RUN`: the trainer calls `save_step` at
`save_every` steps, which writes an `OlmoeForCausalLM.save_pretrained` folder, so the pathway
analysis loads the very model that was trained, with the standard HF class.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from omegaconf import DictConfig
from transformers import OlmoeConfig, OlmoeForCausalLM
from transformers.models.olmoe.modeling_olmoe import load_balancing_loss_func
from transformers.utils import logging as hf_logging

from grok_cli.errors import check, is_number
from grok_cli.io import atomic_directory
from grok_cli.models.base import GrokModel, Hook, blocks_mlp, hook_input
from grok_cli.models.checks import check_causal_task, check_positions, check_transformer_shape
from grok_cli.tasks import TaskData


class MoEAnswer(GrokModel):
    """An OLMoE causal LM whose logits are read at the last input position only.

    As in `DecoderAnswer` (GPT), the loss is on the answer token alone, so only the last
    position is unembedded. With `router_aux_loss_coef` > 0, a training forward also keeps
    OLMoE's load-balancing loss (HF's `load_balancing_loss_func` over every token's router
    logits, times the coefficient) for the trainer to add to the objective
    (`auxiliary_loss`); metrics.csv's losses stay the answer's cross-entropy.
    """

    def __init__(self, lm: OlmoeForCausalLM) -> None:
        super().__init__()
        self.lm = lm
        self.aux_loss: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        config = self.lm.config
        balance = self.training and config.router_aux_loss_coef > 0
        out = self.lm.model(input_ids=x, attention_mask=mask, output_router_logits=balance)
        if balance:
            self.aux_loss = config.router_aux_loss_coef * load_balancing_loss_func(
                out.router_logits, config.num_experts, config.num_experts_per_tok, mask)
        return self.lm.lm_head(out.last_hidden_state[:, -1])

    def auxiliary_loss(self) -> torch.Tensor | float:
        """The load-balancing term of the last training forward (0 when off); taken once."""
        aux, self.aux_loss = self.aux_loss, None
        return 0.0 if aux is None else aux

    @property
    def noisy(self) -> bool:
        """OLMoE's attention dropout is a float in its config, not an nn.Dropout module."""
        return self.lm.config.attention_dropout > 0 or super().noisy

    def weights(self) -> dict[str, torch.Tensor]:
        return {"embed": self.lm.model.embed_tokens.weight, "unembed": self.lm.lm_head.weight.T}

    def activations(self) -> dict[str, Hook]:
        # The MoE feed-forward as a whole: its experts' neurons are no one hidden layer.
        return blocks_mlp([layer.mlp for layer in self.lm.model.layers], lambda moe: {
            "in": hook_input(moe), "out": (moe, lambda _, output: _first(output))})

    def save_step(self, path: Path) -> bool:
        """Write `path` as a save_pretrained folder (safetensors), atomically: a kill
        mid-write never leaves a half snapshot under the final name (the hidden temporary
        name is one `step_*` globs skip)."""
        from grok_cli.runfolder.checkpoints import write_digests

        with _quiet_progress(), atomic_directory(path) as tmp:  # no "Writing shards" bar
            self.lm.save_pretrained(tmp, safe_serialization=True)
            write_digests(tmp)  # safetensors has no checksum: grok pathways verifies these
        return True


def _first(output: torch.Tensor | tuple) -> torch.Tensor:
    """The hidden states of an MoE block's output (some versions add the router logits)."""
    return output[0] if isinstance(output, tuple) else output


@contextmanager
def _quiet_progress() -> Iterator[None]:
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def olmoe_config(cfg: DictConfig, vocab_size: int) -> OlmoeConfig:
    return OlmoeConfig(
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        num_experts=cfg.num_experts,
        num_experts_per_tok=cfg.num_experts_per_tok,
        norm_topk_prob=cfg.norm_topk_prob,
        router_aux_loss_coef=cfg.router_aux_loss_coef,
        max_position_embeddings=cfg.max_positions,
        initializer_range=cfg.initializer_range,
        attention_dropout=cfg.dropout,
        # Token ids come from the task, not a tokenizer: id 0 is a real token (the number 0),
        # so no padding id, and the embedding row of 0 is trained like any other.
        pad_token_id=None, bos_token_id=None, eos_token_id=None,
        tie_word_embeddings=False,
        use_cache=False,
    )


def check_config(cfg: DictConfig) -> None:
    check_transformer_shape(cfg)
    check(0 < cfg.num_experts_per_tok <= cfg.num_experts, "model.num_experts_per_tok",
          cfg.num_experts_per_tok, f"an integer from 1 to model.num_experts ({cfg.num_experts})")
    check(is_number(cfg.router_aux_loss_coef) and cfg.router_aux_loss_coef >= 0,
          "model.router_aux_loss_coef", cfg.router_aux_loss_coef,
          "a number >= 0 (0: no load-balancing loss; OLMoE trains with 0.01)")


def build_olmoe(cfg: DictConfig, task: TaskData) -> MoEAnswer:
    check_causal_task(cfg, task)
    check_positions(cfg, task)
    return MoEAnswer(OlmoeForCausalLM(olmoe_config(cfg, task.vocab_size)))
