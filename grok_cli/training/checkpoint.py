"""Whose run a checkpoint is: its identity keys, checked before any use (a checkpoint, a
snapshot, a run folder's record). The files themselves (written atomically, verified, read)
are grok_cli.runfolder.checkpoints'.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from grok_cli.config import plain, with_defaults
from grok_cli.errors import GrokError
from grok_cli.io import atomic_write
from grok_cli.models.base import GrokModel
from grok_cli.runfolder import CONFIG, holds_run, snapshot_path
from grok_cli.runfolder.checkpoints import read_state
from grok_cli.runfolder.record import RunFolder, read_record
from grok_cli.tasks.base import TaskData
from grok_cli.training.device import effective_precision

log = logging.getLogger("grok")

# A checkpoint only continues a run whose config agrees on these keys; the others
# (steps, eval_every, ckpt_every, device, ...) may change between the two commands.
# `precision` is the one the numbers are computed in (bf16 acts on CUDA only).
IDENTITY_KEYS = ("task", "model", "optimizer", "alpha", "weight_decay", "data_fraction",
                 "train_size", "seed", "batch_size", "tokenizer", "loss", "grokfast",
                 "sampling", "precision")


def identity(cfg: DictConfig) -> dict[str, Any]:
    """The identity keys `cfg` has (a run's record from before a key existed lacks it:
    `check_identity` then compares it at its default), without `_target_`: where code lives
    is no part of a run."""
    values = plain(cfg)
    return {**{key: values[key] for key in IDENTITY_KEYS if key in values},
            "precision": effective_precision(cfg)}


def checkpoint_state(cfg: DictConfig, task: TaskData, step: int, elapsed_s: float,
                     metrics: dict[str, Any], **state: Any) -> dict[str, Any]:
    """What last.pt holds: `state` (model, optimizer, schedule, rng), what it belongs to, and
    the number and digest of the metrics.csv rows before its step (`MetricsLog.record_before`:
    a resume checks they are still there, unchanged)."""
    return {"step": step, "elapsed_s": elapsed_s, "identity": identity(cfg),
            "metrics": metrics,
            "tokenizer_fingerprint": task.tokenizer_fingerprint, **state}


def check_tokenizer(state: dict[str, Any], task: TaskData, path: Path) -> None:
    """The ids must come from the checkpoint's tokenizer: `tokenizer=auto` picks bert or a
    trained WordPiece by what this machine has cached, so a requeued job could differ."""
    if "tokenizer_fingerprint" not in state:  # written before fingerprints were kept
        log.warning("checkpoint %s does not record its tokenizer; resuming on the assumption "
                    "that it is this run's", path)
        return
    saved = state["tokenizer_fingerprint"]
    if saved != task.tokenizer_fingerprint:
        raise GrokError(
            f"checkpoint {path} was trained on another tokenizer (fingerprint {saved!s:.12} "
            f"there, {task.tokenizer_fingerprint!s:.12} here; tokenizer=auto resolves by what "
            "this machine has cached); pin tokenizer=bert or tokenizer=wordpiece as in the "
            "original run, or use a new run folder")


def differences(saved: dict[str, Any], current: dict[str, Any], where: str,
                prefix: str = "") -> list[str]:
    """`key: A in the <where>, B here` for each leaf that differs, nested keys dotted."""
    lines = []
    for key in sorted({*saved, *current}, key=str):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            lines += differences(a, b, where, f"{prefix}{key}.")
        elif a != b:
            lines.append(f"{prefix}{key}: {a!r} in the {where}, {b!r} here")
    return lines


def check_identity(saved: dict[str, Any], cfg: DictConfig, path: Path,
                   where: str = "checkpoint", keys: tuple[str, ...] = IDENTITY_KEYS) -> None:
    """Refuse a checkpoint or snapshot written by a run of another config, naming the keys
    that differ (among `keys`)."""
    # Either side may predate a key (an old checkpoint, or the old record `cfg` comes from in
    # an analysis): each is compared at the default of what it lacks.
    current = identity(cfg)
    saved, current = with_defaults(saved, current), with_defaults(current, saved)
    diff = differences({k: saved.get(k) for k in keys}, {k: current.get(k) for k in keys},
                       where)
    if diff:
        raise GrokError(f"{where} {path} does not match this run: {'; '.join(diff)}; use the "
                        "same config, or a new run folder")


def load_checkpoint(path: Path, cfg: DictConfig, task: TaskData | None = None
                    ) -> dict[str, Any]:
    """The checkpoint at `path`, refused unless it belongs to this run: the identity keys of
    `cfg` and, given the built `task` (a run about to resume), its tokenizer."""
    state = read_state(path)
    if "identity" not in state or "optimizer" not in state:
        raise GrokError(f"{path} is not a run's checkpoint (a step snapshot?); delete it, or "
                        "resume=false to start over")
    check_identity(state["identity"], cfg, path)
    if task is not None:
        check_tokenizer(state, task, path)
    return state


def save_snapshot(model: GrokModel, run_dir: Path, step: int, cfg: DictConfig) -> None:
    """The `save_every` snapshot of one step, kept for analysis (`grok fourier`, `grok pathways
    moe.from_run=`): a model with its own format (`save_step`: olmoe's save_pretrained) writes
    checkpoints/step_<N>/, any other checkpoints/step_<N>.pt (its state_dict, the step and the
    run's identity keys, so a snapshot copied in from another run is refused)."""
    path = snapshot_path(run_dir, step)
    if model.save_step(path):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path.with_name(f"{path.name}.pt"), "wb") as handle:
        torch.save({"model": model.state_dict(), "step": step, "identity": identity(cfg)},
                   handle)


def check_record(folder: RunFolder, cfg: DictConfig) -> None:
    """GrokError unless this folder's run (if it holds one) was recorded with `cfg`'s
    identity keys: without it, a folder whose checkpoint was deleted would be trained
    over by another config, its metrics, summary and record replaced."""
    path = folder.path / CONFIG
    if not path.is_file() or not holds_run(folder.path):
        return
    record = read_record(path)
    record.device = cfg.device  # the precision it computes in, were it run here
    try:
        saved = identity(record)
    except Exception as err:  # a value missing (???) or of a type the keys cannot have
        raise GrokError(f"{path} is damaged ({type(err).__name__}); restore it from a "
                        "copy") from None
    try:
        check_identity(saved, cfg, path, where="run folder's record")
    except GrokError as err:
        raise GrokError(f"{err} (resume=false starts this folder over)") from None
