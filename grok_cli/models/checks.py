"""Config checks shared by the model builders, so a bad size is one clear line."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from grok_cli.errors import check, check_positive_int, is_number
from grok_cli.tasks import TaskData


def check_sizes(cfg: DictConfig, keys: tuple[str, ...]) -> None:
    """Positive integer sizes (YAML `true` is not the integer 1) and a dropout probability
    (for models that have dropout: model=nanda has none)."""
    for key in keys:
        check_positive_int(f"model.{key}", cfg[key])
    dropout = cfg.get("dropout", 0)
    check(is_number(dropout) and 0 <= dropout < 1, "model.dropout", dropout,
          "a probability in [0, 1)")


def check_transformer_shape(cfg: DictConfig) -> None:
    """Layers, width and heads usable by an HF transformer."""
    check_sizes(cfg, ("hidden_size", "num_heads", "num_layers"))
    check(cfg.hidden_size % cfg.num_heads == 0, "model.num_heads", cfg.num_heads,
          f"a positive divisor of model.hidden_size ({cfg.hidden_size})")


def check_positions(cfg: DictConfig, task: TaskData) -> None:
    """Position embeddings for the task's (padded) input length."""
    length = task.train.x.shape[1]
    max_positions = cfg.get("max_positions", length)
    check(max_positions >= length, "model.max_positions", max_positions,
          f"at least the padded input length ({length})")


def check_causal_task(cfg: DictConfig, task: TaskData) -> None:
    """Decoders read the next-token logits at the last position: an `lm` task's label."""
    check(task.kind == "lm", "model", cfg.name,
          "a task whose label is the next token (a decoder model; use model=bert or "
          "model=lstm for text classification)")


def check_baseline_sizes(cfg: DictConfig) -> None:
    """Sizes and dropout of the MLP and LSTM baselines."""
    check_sizes(cfg, ("embed_dim", "hidden_size", "num_layers"))


def decoder_sizes(cfg: DictConfig, task: TaskData) -> dict[str, Any]:
    """The keys HF's decoder configs (OpenAIGPTConfig, GPT2Config) share, from the model group
    and a task checked for them: vocabulary, positions, widths, dropout, init range."""
    check_causal_task(cfg, task)
    check_positions(cfg, task)
    return {"vocab_size": task.vocab_size, "n_positions": cfg.max_positions,
            "n_embd": cfg.hidden_size, "n_layer": cfg.num_layers, "n_head": cfg.num_heads,
            "resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout, "attn_pdrop": cfg.dropout,
            "initializer_range": cfg.initializer_range}
