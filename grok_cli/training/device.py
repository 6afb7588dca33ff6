"""The device a run trains on: which one, at what precision, and its random number state."""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from omegaconf import DictConfig
from torch import nn

from grok_cli.errors import GrokError
from grok_cli.threads import check_flush_threads

if TYPE_CHECKING:
    from grok_cli.training.sampling import Sampler

log = logging.getLogger("grok")


@functools.cache
def resolve_device(name: str) -> torch.device:
    """The device `device=name` means on this machine, resolved once per process (however
    many places ask: the run, its identity, an analysis); one line when it is not there."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GrokError(f"device={name!r} is not available: no CUDA GPU found; use device=auto "
                        "or device=cpu")
    return device


def effective_precision(cfg: DictConfig) -> str:
    """The precision the numbers are computed in: `precision=bf16` acts on CUDA only."""
    precision = cfg.get("precision", "fp32")
    return precision if resolve_device(cfg.device).type == "cuda" else "fp32"


def accelerate(model: nn.Module, cfg: DictConfig, device: torch.device) -> None:
    """The GPU-only switches `precision=bf16` and `compile=true`; on a CPU both are no-ops.

    Both act on the module in place, so its state_dict (and checkpoints) keep their keys.
    bf16 autocast changes the numbers (opt-in); torch.compile does not, beyond rounding.
    """
    precision, compile_ = cfg.precision, cfg.get("compile", False)
    if device.type != "cuda":
        if precision != "fp32" or compile_:
            log.info("precision=%s compile=%s apply on CUDA only: running fp32, eager, on %s",
                     precision, compile_, device)
        return
    if precision == "bf16":  # the loss stays fp32: the loops cast the logits with .float()
        model.forward = torch.autocast("cuda", dtype=torch.bfloat16)(model.forward)
    if compile_:
        model.compile()


def apply_flush_denormal(cfg: DictConfig, device: torch.device, threads: int) -> None:
    """The CPU-only switch `flush_denormal`: subnormal floats (below 1.2e-38) count as 0, or
    not; set either way, since the mode is the process's and a run must not inherit another's.

    x86 computes with subnormal floats through a slow microcode path (a cross-entropy step
    with 17% of its softmax probabilities subnormal: 11.6 against 2.9 ms, one thread), so a
    run memorized to a loss of ~1e-8 slows several-fold. The mode is per thread: torch's
    intra-op workers, once started, keep theirs (half of a 2-thread op stayed subnormal), so
    a flushing run computes on one thread.
    """
    wanted = bool(cfg.get("flush_denormal", False))
    flush = wanted and device.type == "cpu"
    if wanted and not flush:
        log.info("flush_denormal=true applies on a CPU only: %s keeps subnormal floats", device)
    check_flush_threads(flush, threads)
    if not torch.set_flush_denormal(flush) and flush:
        log.warning("flush_denormal=true: this CPU cannot flush subnormal floats; they stay")


def rng_state(sampler: Sampler) -> dict[str, Any]:
    """The random state a checkpoint keeps: the global CPU generator (init, dropout on a CPU),
    the minibatch sampler's (training/sampling.py), and on a GPU that one device's generator
    (dropout there)."""
    state = {"torch": torch.get_rng_state(), **sampler.state_dict()}
    if sampler.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(sampler.device)
    return state


def set_rng_state(state: dict[str, Any], sampler: Sampler, path: Path) -> None:
    """Restore `rng_state`, also from a checkpoint written on another device or GPU count.

    Only what a continuation needs must carry over: on a CPU a GPU's generator is never
    drawn from, and a full-batch run never draws minibatches. A minibatch order written by
    another kind of device (a CUDA generator's state is not a CPU one's) cannot continue:
    refused in one line.
    """
    torch.set_rng_state(state["torch"])
    _set_gpu_state(state.get("cuda"), sampler.device, path)
    try:
        sampler.load_state_dict(state)
    except RuntimeError:
        if not sampler.full_batch:
            raise GrokError(
                f"checkpoint {path} holds the minibatch sampler state of another kind of "
                f"device than {sampler.device.type}: resume on the device it was written on, "
                "or pass resume=false to start over") from None
        log.info("checkpoint %s was written on another kind of device; a full-batch run "
                 "draws no minibatches, so it continues on %s", path, sampler.device)


def _set_gpu_state(saved: Any, device: torch.device, path: Path) -> None:
    if saved is None or device.type != "cuda":
        return
    if isinstance(saved, (list, tuple)):  # older checkpoints: one state per visible GPU
        index = device.index or 0
        if index >= len(saved):
            raise GrokError(f"checkpoint {path} holds the random state of {len(saved)} GPU(s), "
                            f"none for {device}: resume on the GPU it was written on, or pass "
                            "resume=false to start over")
        saved = saved[index]
    torch.cuda.set_rng_state(saved, device)
