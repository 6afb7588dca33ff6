"""Checks of the top-level run config: each bad value is one clear GrokError."""

from __future__ import annotations

import re

from omegaconf import DictConfig

from grok_cli.errors import check, check_choice


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_run_config(cfg: DictConfig) -> None:
    check(isinstance(cfg.alpha, int | float) and cfg.alpha > 0, "alpha", cfg.alpha,
          "a number > 0 (1 = no rescaling)")
    check(isinstance(cfg.data_fraction, int | float) and 0 < cfg.data_fraction <= 1,
          "data_fraction", cfg.data_fraction, "a fraction in (0, 1]")
    check(cfg.train_size is None or (_is_int(cfg.train_size) and cfg.train_size > 0),
          "train_size", cfg.train_size, "null or a positive integer")
    for key in ("steps", "eval_every", "ckpt_every", "eval_batch_size"):
        check(_is_int(cfg[key]) and cfg[key] > 0, key, cfg[key], "a positive integer")
    check(cfg.get("save_every") is None or (_is_int(cfg.save_every) and cfg.save_every > 0),
          "save_every", cfg.get("save_every"), "null or a positive integer (steps)")
    # Checkpoints and snapshots are taken at evaluations (their RNG snapshot comes from there).
    for key in ("ckpt_every", "save_every"):
        check(not cfg[key] or cfg[key] % cfg.eval_every == 0, key, cfg[key],
              f"a multiple of eval_every ({cfg.eval_every})")
    check(_is_int(cfg.seed), "seed", cfg.seed, "an integer")
    check(cfg.batch_size is None or (_is_int(cfg.batch_size) and cfg.batch_size > 0),
          "batch_size", cfg.batch_size, "null (full batch) or a positive integer")
    check(re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", str(cfg.device)) is not None, "device",
          cfg.device, "auto, cpu, cuda, cuda:N or mps")
    check(isinstance(cfg.resume, bool) or cfg.resume == "auto", "resume", cfg.resume,
          "auto (continue from checkpoints/last.pt when present) or false")
    check_choice("progress", cfg.progress, ("auto", "bar", "log"))
    check_choice("precision", cfg.precision, ("fp32", "bf16"))
    check(isinstance(cfg.compile, bool), "compile", cfg.compile, "true or false")
    for key in ("memorize", "generalize"):
        value = cfg.thresholds[key]
        check(isinstance(value, int | float) and 0 < value <= 1, f"thresholds.{key}", value,
              "an accuracy in (0, 1]")
