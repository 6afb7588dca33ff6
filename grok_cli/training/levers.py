"""Levers: the training loop's callbacks.

A lever is any top-level node of the run config whose `_target_` names a `Lever` class
(`grokfast`, `stop`, `logger`; a new one: its module and its conf file, `+mylever=choice`), plus
the two the loop always has (`Snapshots` for `save_every`, `AuxiliaryLoss` for a model's own
term). The loop calls each hook at one place; a lever says itself whether it works for K > 1
members (`batched`: True, or the reason it refuses), so no list elsewhere names the levers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from grok_cli import registry

if TYPE_CHECKING:
    import torch

    from grok_cli.training.members import Members

class Lever:
    """A training-loop callback; every hook a no-op. Built as `cls(node, cfg)` from its config
    node and the whole run config, before the model exists (`start` binds it)."""

    key = ""  # its place in the run config, for error lines
    batched: bool | str = True  # works for K > 1 members; else the refusal's allowed part

    def __init__(self, node: DictConfig, cfg: DictConfig) -> None:
        self.node, self.cfg = node, cfg

    def acts(self, hook: str) -> bool:
        """Whether the loop must call `hook` every step (asked once, after `start`): a lever
        that does not override it, or has nothing to do this run, costs the step nothing."""
        return getattr(type(self), hook) is not getattr(Lever, hook)

    def start(self, members: Members) -> None:
        """After the model is built (and before a resume restores `load_state_dict`)."""

    def extra_loss(self, members: Members) -> torch.Tensor | float:
        """A term added to the training objective of this step's forward."""
        return 0.0

    def after_backward(self, members: Members) -> None:
        """Between backward and the optimizer step (e.g. a gradient filter)."""

    def should_stop(self, members: Members, rows: list[dict[str, Any]]) -> bool:
        """After an evaluation's rows are written: True ends the run here, with a checkpoint."""
        return False

    def after_eval(self, members: Members, step: int) -> None:
        """After an evaluation and its checkpoint."""

    def finish(self, members: Members) -> None:
        """After the loop, also when it broke off (summary.json fields go in outcome.extra)."""

    def state_dict(self, k: int = 0) -> dict[str, Any] | None:
        """Member k's state for its checkpoint (None: the lever keeps none)."""
        return None

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Snapshots(Lever):
    """`save_every`: keep checkpoints/step_<N> beside last.pt, for every live member."""

    def after_eval(self, members: Members, step: int) -> None:
        from grok_cli.training.checkpoint import save_snapshot

        every = self.cfg.save_every
        if every and step % every == 0:
            for k, member in enumerate(members.all):
                if member.live:
                    save_snapshot(members.own_model(k), member.run_dir, step, member.cfg)

    def finish(self, members: Members) -> None:
        from grok_cli.runfolder import snapshot_files

        if self.cfg.save_every:
            for member in members.all:
                member.outcome.extra["snapshots"] = snapshot_files(member.run_dir)


class AuxiliaryLoss(Lever):
    """A model's own term of the objective (olmoe: the router's load-balancing loss of this
    step's forward, kept by the module, which a vmapped forward does not keep)."""

    key = "model.router_aux_loss_coef"

    def __init__(self, node: DictConfig, cfg: DictConfig) -> None:
        super().__init__(node, cfg)
        if cfg.model.get("router_aux_loss_coef", 0):
            self.batched = "0 with launcher=batched (a vmapped forward keeps no router loss)"

    def start(self, members: Members) -> None:
        # K > 1: the stacked parameters have no module to keep it (refused above when set);
        # a model without its own term (GrokModel's 0.0) adds nothing to any step.
        from grok_cli.models.base import GrokModel

        self.model = None if members.batched else members.module
        self.active = (self.model is not None
                       and type(self.model).auxiliary_loss is not GrokModel.auxiliary_loss)

    def acts(self, hook: str) -> bool:
        return hook == "extra_loss" and self.active

    def extra_loss(self, members: Members) -> torch.Tensor | float:
        return self.model.auxiliary_loss()


ALWAYS = (Snapshots, AuxiliaryLoss)


def build_levers(cfg: DictConfig) -> list[Lever]:
    """The run's levers: every top-level node whose `_target_` names a Lever class, then
    the built-in ones. Nothing is imported but the targets' modules."""
    levers: list[Lever] = []
    for key, node in cfg.items():
        if key == "hydra" or not isinstance(node, DictConfig) or "_target_" not in node:
            continue
        target = registry.resolve(str(key), node._target_)
        if isinstance(target, type) and issubclass(target, Lever):
            lever = target(node, cfg)
            lever.key = lever.key or str(key)
            levers.append(lever)
    return levers + [lever(DictConfig({}), cfg) for lever in ALWAYS]


def unbatched(levers: list[Lever]) -> list[Lever]:
    """The levers that refuse K > 1 members."""
    return [lever for lever in levers if lever.batched is not True]
