"""Checkpoints and snapshots: written atomically, verified and checked before any use.

`read_state` is the one reader of a `.pt` file (a run's last.pt, a step_<N>.pt snapshot) and
`verify` the one integrity check of every checkpoint or snapshot: `torch.load` does not look at
the zip CRCs torch writes, so a zeroed span would load as wrong weights. A snapshot folder
(olmoe's save_pretrained) carries a digest file of its own, written inside it before it is
renamed into place (`write_digests`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import zipfile
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from grok_cli.errors import GrokError
from grok_cli.io import atomic_write, write_json
from grok_cli.tasks.base import TaskData
from grok_cli.training.device import effective_precision
from grok_cli.training.levers import with_added_keys

log = logging.getLogger("grok")

# A checkpoint only continues a run whose config agrees on these keys; the others
# (steps, eval_every, ckpt_every, device, ...) may change between the two commands.
# `precision` is the one the numbers are computed in (bf16 acts on CUDA only).
IDENTITY_KEYS = ("task", "model", "optimizer", "alpha", "weight_decay", "data_fraction",
                 "train_size", "seed", "batch_size", "tokenizer", "loss", "grokfast",
                 "sampling", "precision")


def identity(cfg: DictConfig) -> dict[str, Any]:
    plain = OmegaConf.to_container(cfg, resolve=True)
    # Where a choice's code lives (`_target_`) is not what the run computed.
    plain = {key: {k: v for k, v in value.items() if k != "_target_"}
             if isinstance(value, dict) else value for key, value in plain.items()}
    return {**{key: plain.get(key) for key in IDENTITY_KEYS},
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


DIGESTS = "grok.sha256.json"  # in a snapshot folder: {file name: sha256 of its bytes}


def write_digests(folder: Path) -> None:
    """Record the sha256 of every file of a snapshot folder about to be renamed into place."""
    write_json(folder / DIGESTS, {f.name: _sha256(f) for f in sorted(folder.iterdir())
                                  if f.is_file() and f.name != DIGESTS})


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def verify(path: Path) -> None:
    """GrokError naming the file unless the checkpoint or snapshot at `path` holds the bytes
    that were written: every zip entry's CRC of a .pt file, the recorded digests of a snapshot
    folder (a folder without a digest file, made by another tool, is taken as it is)."""
    if path.is_dir() and path.suffix != ".pt":
        digests_path = path / DIGESTS
        if not digests_path.is_file():
            return
        try:
            digests = json.loads(digests_path.read_text())
            bad = next((name for name, digest in digests.items()
                        if not (path / name).is_file() or _sha256(path / name) != digest), None)
        except (OSError, ValueError, AttributeError) as err:
            raise damaged(digests_path, f"{type(err).__name__}: {err}") from None
        if bad is not None:
            raise damaged(path / bad, f"its bytes differ from the digest {DIGESTS} "
                          "recorded when it was written: truncated or overwritten")
        return
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except Exception as err:  # zipfile raises several types for damaged headers
        raise damaged(path, f"not a whole checkpoint: {type(err).__name__}: {err}") from None
    if bad is not None:
        raise damaged(path, f"its entry {bad} fails its CRC check: bytes changed on disk")


def damaged(path: Path, reason: str) -> GrokError:
    return GrokError(f"{path} is damaged ({reason}); restore it from a copy, or delete it")


def read_state(path: Path) -> dict[str, Any]:
    """The dict a .pt checkpoint or snapshot holds, verified first."""
    verify(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a file it cannot read
        raise damaged(path, f"unreadable: {type(err).__name__}") from None
    if not isinstance(state, dict) or "model" not in state or "step" not in state:
        raise GrokError(f"{path} is not a grok checkpoint or snapshot (no model and step); "
                        "delete it, or resume=false to start over")
    return state


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
    current = identity(cfg)
    saved = with_added_keys(saved, current)  # older checkpoints lack newer keys
    diff = differences({k: saved.get(k) for k in keys}, {k: current[k] for k in keys}, where)
    if diff:
        raise GrokError(f"{where} {path} does not match this run: {'; '.join(diff)}; use the "
                        "same config, or a new run folder")


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Written whole or not at all: a kill mid-write leaves the old file intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb") as handle:
        torch.save(state, handle)


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


def save_snapshot(model: nn.Module, run_dir: Path, step: int, cfg: DictConfig) -> None:
    """The `save_every` snapshot of one step, kept for analysis (`grok fourier`, `grok pathways
    moe.from_run=`): a model with its own format (`save_step`: olmoe's save_pretrained) writes
    checkpoints/step_<N>/, any other checkpoints/step_<N>.pt (its state_dict, the step and the
    run's identity keys, so a snapshot copied in from another run is refused)."""
    path = run_dir / "checkpoints" / f"step_{step}"
    if hasattr(model, "save_step"):
        model.save_step(path)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path.with_name(f"{path.name}.pt"), "wb") as handle:
        torch.save({"model": model.state_dict(), "step": step, "identity": identity(cfg)},
                   handle)


def snapshots(run_dir: Path) -> dict[int, Path]:
    """The run's step snapshots (files or folders) by step."""
    found = {}
    for path in (run_dir / "checkpoints").glob("step_*"):
        number = path.name.removesuffix(".pt").removeprefix("step_")
        if number.isdigit():
            found[int(number)] = path
    return dict(sorted(found.items()))


def snapshot_files(run_dir: Path) -> list[str]:
    """The run's step snapshots, relative to the run folder, by step."""
    return [str(p.relative_to(run_dir)) for p in snapshots(run_dir).values()]
