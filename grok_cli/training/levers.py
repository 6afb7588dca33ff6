"""The run config's levers on time-to-grok (`loss`, `grokfast`, `optimizer.orthogonal`,
`stop`), the keys `optimizer.decay_steps` / `min_lr`, the task keys `task.format` /
`task.nonzero_b` and `model.block`, as the rest of the code meets them: older checkpoints,
which predate these keys, and batched sweeps, which do not implement the levers.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

# Identity keys added after checkpoints were first written, at the value every earlier run
# had: a checkpoint without them continues (or marks as done) a run that has them so.
ADDED_IDENTITY: dict[str, dict[str, Any]] = {
    "loss": {"name": "cross_entropy"},
    "grokfast": {"name": "none"},
    "task": {"format": "cds", "nonzero_b": False},
    "model": {"block": "pre_ln"},  # model=gpt2's block before Grokfast's was added
    "precision": "fp32",  # only CUDA runs compute in anything else, and none predate the key
    "sampling": {"name": "replacement", "generator": "own"},
    "optimizer": {"orthogonal": False, "decay_steps": None, "min_lr": 0.0,
                  "warmup_from_zero": False},
}
WHOLE_KEYS = ("loss", "grokfast", "precision", "sampling")  # added whole; others gained sub-keys


def with_added_keys(saved: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's identity `saved` as this version writes it, for comparison with the
    `current` run's: the keys it lacks get the value they had before they existed (a sub-key
    only where the current group has it: text tasks have no `format`)."""
    upgraded = dict(saved)
    for key, added in ADDED_IDENTITY.items():
        if key in WHOLE_KEYS:
            upgraded.setdefault(key, added)
        elif isinstance(saved.get(key), dict) and isinstance(current.get(key), dict):
            upgraded[key] = {**{k: v for k, v in added.items() if k in current[key]},
                             **saved[key]}
    return upgraded


def unbatched_levers(cfg: DictConfig) -> list[str]:
    """The levers set in `cfg` that launcher=batched does not implement (its loop has its own
    loss, no gradient filter, no ⊥Grad across stacked members, no early stop and no router
    load-balancing loss)."""
    levers = {
        "loss": cfg.loss.name != "cross_entropy",
        "grokfast": cfg.grokfast.name != "none",
        "optimizer.orthogonal": bool(cfg.optimizer.get("orthogonal", False)),
        "stop.test_acc": cfg.stop.test_acc is not None,
        "model.router_aux_loss_coef": bool(cfg.model.get("router_aux_loss_coef", 0)),
    }
    return [key for key, used in levers.items() if used]
