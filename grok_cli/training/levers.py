"""The run config's levers on time-to-grok (`loss`, `grokfast`, `optimizer.orthogonal`,
`stop`) as batched sweeps meet them: they do not implement the levers. (Older checkpoints,
which predate keys added since, are compared by a rule: config.with_defaults.)
"""

from __future__ import annotations

from omegaconf import DictConfig


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
