"""Checks of the `grok pathways` config (conf/pathways.yaml and the conf/moe/ group), before any
checkpoint is loaded: a mistake costs one line, not minutes of loading."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from grok_cli.analysis.pathways.metrics import UNITS
from grok_cli.analysis.pathways.routing import DTYPES, LOSS_TOKENS
from grok_cli.errors import GrokError, check, check_choice, is_int
from grok_cli.threads import check_threads

AUTO = "auto"
# What a moe= choice leaves to the user (conf/moe/<choice>.yaml cannot mark it mandatory: a
# `???` merged onto the defaults in pathways.yaml does not replace them).
NEEDS = {"local": "moe.checkpoints=[dir,...] (save_pretrained folders, in training order)",
         "from_run": "moe.from_run=RUN_DIR (a grok run folder)"}


def _positive_int(value: Any) -> bool:
    return is_int(value) and value > 0


def validate(cfg: DictConfig, moe_choice: str | None = None) -> None:
    """moe_choice: the moe= group choice (conf/moe/), None when none was made."""
    validate_moe(cfg.moe, moe_choice)
    validate_data(cfg.data)
    validate_pathway(cfg.pathway)
    validate_memorization(cfg.memorization)
    check(_positive_int(cfg.loss_window), "loss_window", cfg.loss_window, "a positive integer")
    check_threads(cfg.threads)


def validate_moe(moe: DictConfig, choice: str | None) -> None:
    sources = [bool(moe.checkpoints), moe.model is not None, moe.from_run is not None]
    if not any(sources) and choice in NEEDS:
        raise GrokError(f"moe={choice} needs {NEEDS[choice]}")
    check(sum(sources) == 1, "moe", "checkpoints/model/from_run",
          "exactly one of moe.checkpoints=[dir,...] (moe=local), moe.model=ID with "
          "moe.revisions=[...] (moe=olmoe_1b_7b), moe.from_run=RUN_DIR (moe=from_run)")
    if moe.model is not None:
        check(len(moe.revisions) > 0, "moe.revisions", list(moe.revisions),
              "a non-empty list of hub revisions of moe.model, in training order")
    check(moe.torch_dtype is None or moe.torch_dtype in DTYPES, "moe.torch_dtype",
          moe.torch_dtype, "null, " + ", ".join(DTYPES))
    check(moe.batch_size == AUTO or _positive_int(moe.batch_size), "moe.batch_size",
          moe.batch_size, "auto or a positive integer")


# moe.batch_size=auto: samples per forward pass x the model's parameters stays near this
# (2^30), between 8 and 512 samples (powers of 2). A grok run's model (under 0.5M parameters)
# gets 512: a forward pass of a few hundred short sequences costs little more than one of 8;
# a 16-layer x 64-expert OLMoE of 64-wide experts (13M) gets 64, the batch at which its
# routing was fastest (2.1x faster than 8, as fast as 512: scripts/bench_analyses.py);
# OLMoE-1B-7B (7B) gets 8, for its long texts' memory.
BATCH_PARAMETERS = 2**30
MIN_BATCH, MAX_BATCH = 8, 512


def batch_size(moe: DictConfig, parameters: int) -> int:
    """moe.batch_size, with auto resolved from the model's size (results do not depend on it)."""
    if moe.batch_size != AUTO:
        return moe.batch_size
    fits = BATCH_PARAMETERS // max(parameters, 1)
    return min(max(1 << max(fits.bit_length() - 1, 0), MIN_BATCH), MAX_BATCH)


def validate_data(data: DictConfig) -> None:
    check(is_int(data.max_length) and data.max_length > 1, "data.max_length", data.max_length,
          "an integer >= 2")
    check(data.limit is None or _positive_int(data.limit), "data.limit", data.limit,
          "null or a positive integer")
    check_choice("data.loss_tokens", data.loss_tokens, (AUTO, *LOSS_TOKENS))


def validate_pathway(pathway: DictConfig) -> None:
    check(isinstance(pathway.threshold, int | float) and 0 < pathway.threshold <= 1,
          "pathway.threshold", pathway.threshold, "a cumulative weight in (0, 1]")
    check_choice("pathway.unit", pathway.unit, UNITS)
    check(pathway.max_pairs is None or is_int(pathway.max_pairs) and pathway.max_pairs > 1,
          "pathway.max_pairs", pathway.max_pairs, "null (all pairs) or an integer >= 2")


def validate_memorization(memorization: DictConfig) -> None:
    epsilon = memorization.epsilon
    check(epsilon == AUTO or _loss_value(epsilon), "memorization.epsilon", epsilon,
          "a loss value >= 0, or auto (per group, 20-25% of its samples memorized)")
    check(_loss_value(memorization.delta), "memorization.delta", memorization.delta,
          "a loss value >= 0")


def _loss_value(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
